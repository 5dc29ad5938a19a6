"""Protocol checks shared by RunSpec and the suite compiler (dho.protocol): a label-leaked
student and choices made on a test set are refused with one line."""

import pytest

from dho.errors import ConfigError
from dho.spec import RunSpec

IMAGENET_PAPER = {"dataset": "imagenet", "alpha_beta": "fixed", "epoch_select": "last"}


@pytest.mark.parametrize("student", ["resnet18", "mobilenet_v2"])
def test_imagenet_supervised_student_on_imagenet_is_refused(student):
    with pytest.raises(ConfigError) as e:
        RunSpec.from_dict({**IMAGENET_PAPER, "student": student})
    msg = str(e.value)
    assert "\n" not in msg and f"student '{student}'" in msg and "label-leaked" in msg and "dino_resnet50" in msg


@pytest.mark.parametrize("extra", [
    {"student": "resnet18", "student_pretrained": False},          # Table 1: from scratch
    {"student": "dino_resnet50"},                                  # Table 1: self-supervised
    {"student": "resnet18", "student_kwargs": {"weights": "my_ssl_resnet18.pt"}},
    {"student": "clip_vit_b16"},                                   # Table 3
])
def test_allowed_imagenet_students(extra):
    RunSpec.from_dict({**IMAGENET_PAPER, **extra, "student_pretrained": extra.get("student_pretrained", True)})


def test_imagenet_supervised_student_elsewhere_is_fine():
    RunSpec.from_dict({"dataset": "caltech101", "student": "resnet18"})


@pytest.mark.parametrize("keys, named", [
    ({"alpha_beta": "search", "epoch_select": "last"}, "alpha_beta = 'search'"),
    ({"alpha_beta": "fixed", "epoch_select": "best_val"}, "epoch_select = 'best_val'"),
    ({}, "alpha_beta = 'search' and epoch_select = 'best_val'"),
])
def test_choice_on_imagenet_test_images_needs_opt_in(keys, named):
    base = {"dataset": "imagenet", "student": "dino_resnet50"}
    with pytest.raises(ConfigError) as e:
        RunSpec.from_dict({**base, **keys})
    msg = str(e.value)
    assert "\n" not in msg and named in msg and "no validation split" in msg and "test_selection: true" in msg
    spec = RunSpec.from_dict({**base, **keys, "test_selection": True})  # the authors' train_imgnet.py
    assert spec.test_selection


def test_datasets_with_a_real_val_split_choose_on_val():
    spec = RunSpec.from_dict({"dataset": "dtd", "alpha_beta": "search", "epoch_select": "best_val"})
    assert spec.epoch_select == "best_val"


@pytest.mark.parametrize("key, value", [("epoch_select", "best_test"), ("crop_interpolation", "nearest")])
def test_new_keys_are_checked(key, value):
    with pytest.raises(ConfigError, match=f"key '{key}' = '{value}'"):
        RunSpec.from_dict({key: value})


def test_supervised_students_list_matches_the_registry():
    """Every registered student whose default weights are torchvision's ImageNet-supervised
    IMAGENET1K ones is checked; dino_resnet50 (self-supervised) is not."""
    from dho.models import STUDENTS
    from dho.protocol import IMAGENET_SUPERVISED_STUDENTS

    supervised = {n for n in STUDENTS if "IMAGENET1K" in STUDENTS.describe(n)}
    assert supervised == IMAGENET_SUPERVISED_STUDENTS and "dino_resnet50" not in supervised
