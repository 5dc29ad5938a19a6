"""Prompt templates: the authors' (default) and CLIP's ensembles (named option)."""

import pytest

from dho.data import get_dataset
from dho.errors import ConfigError

# Read off erjui/DHO datasets/<name>.py (module-level ``template`` / ``imagenet_templates``).
AUTHORS = {
    "caltech101": ["a photo of a {}."],
    "dtd": ["{} texture."],
    "eurosat": ["a centered satellite photo of {}."],
    "fgvc_aircraft": ["a photo of a {}, a type of aircraft."],
    "food101": ["a photo of {}, a type of food."],
    "flowers102": ["a photo of a {}, a type of flower."],
    "oxford_pets": ["a photo of a {}, a type of pet."],
    "stanford_cars": ["a photo of a {}."],
    "sun397": ["a photo of a {}."],
    "ucf101": ["a photo of a person doing {}."],
}


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_fine_grained_datasets_use_the_authors_single_template(name, tmp_path):
    source = get_dataset(name, tmp_path)
    assert source.prompt_templates() == AUTHORS[name] == source.templates
    assert len(source.prompt_templates("clip")) >= 1


@pytest.mark.parametrize("name", ["imagenet", "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"])
def test_imagenet_uses_the_7_template_ensemble(name, tmp_path):
    from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES  # the same 7, independently

    source = get_dataset(name, tmp_path)
    assert source.prompt_templates() == [t("{}") for t in SIMPLE_IMAGENET_TEMPLATES]
    clip80 = source.prompt_templates("clip")
    assert len(clip80) == 80 and "a bad photo of a {}." in clip80


def test_unknown_prompt_set_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"prompts = 'coop': expected one of authors, clip"):
        get_dataset("dtd", tmp_path).prompt_templates("coop")


def _imagenet_classnames_file(root, wnids):
    folder = root / "imagenet"
    for split in ("train", "val"):  # empty class folders: only the names matter here
        for w in wnids:
            (folder / "images" / split / w).mkdir(parents=True)
    (folder / "classnames.txt").write_text("".join(f"{w} coop name {i}\n" for i, w in enumerate(wnids)))


def test_imagenet_prompts_use_the_authors_class_names(tmp_path):
    """The authors prompt ImageNet with the refined names of datasets/imagenet.py (the
    same list as open_clip's IMAGENET_CLASSNAMES), label i = i-th sorted wnid."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    wnids = [f"n{i:08d}" for i in range(1000)]
    _imagenet_classnames_file(tmp_path / "a", wnids)
    source = get_dataset("imagenet", tmp_path / "a")
    assert source.classnames[1] == "coop name 1"  # tables and teacher files keep these
    assert source.prompt_classnames() == list(IMAGENET_CLASSNAMES) and source.prompt_classnames()[0] == "tench"
    assert source.prompt_classnames("clip") == source.classnames
    _imagenet_classnames_file(tmp_path / "b", wnids[::-1])  # not the standard order: names kept
    assert get_dataset("imagenet", tmp_path / "b").prompt_classnames() == get_dataset("imagenet", tmp_path / "b").classnames
