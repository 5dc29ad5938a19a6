"""Protocol checks a run must pass whichever way it is made (a spec file, ``--set``, or a
suite of config.yaml): :meth:`dho.spec.RunSpec.validate` calls :func:`check_protocol`, so
the suite compiler and ``dho train`` refuse the same runs with the same one line.

* **Label leak.** A student whose pretrained weights were trained with ImageNet's labels
  (torchvision's ImageNet-supervised weights) has seen every label of ImageNet's train
  split: on a dataset made of it (ImageNet) its result is label-leaked.  The paper's
  ImageNet few-shot students are ResNet-18 from scratch and DINO's self-supervised
  ResNet-50 (``dino_resnet50``).
* **Choosing on the test set.** A dataset without a validation split of its own
  (ImageNet: val = test = ``images/val``) cannot choose the epoch or (alpha, beta) on
  "val" without choosing on the test images.  The paper fixes (alpha, beta) there and
  the authors' semi-supervised script reports the last epoch; the authors' few-shot
  ImageNet script searches both on the test set, which a run may do only with
  ``test_selection: true`` (docs/DEVIATIONS.md).
"""

from __future__ import annotations

from .errors import ConfigError

# Students whose default pretrained weights (student_pretrained true, no
# student_kwargs.weights file) were trained with ImageNet-1k labels.
IMAGENET_SUPERVISED_STUDENTS = frozenset({"resnet18", "mobilenet_v2"})


def _dataset_class(name: str):
    from .data import DATASETS

    return DATASETS.get(name) if name in DATASETS else None


def label_leak(dataset: str, student: str, pretrained: bool, student_kwargs: dict) -> bool:
    """True when ``student``'s pretrained weights were trained on ``dataset``'s labels."""
    cls = _dataset_class(dataset)
    return (cls is not None and getattr(cls, "imagenet_train", False)
            and student in IMAGENET_SUPERVISED_STUDENTS and bool(pretrained)
            and not student_kwargs.get("weights"))


def val_is_test(dataset: str) -> bool:
    """True when ``dataset``'s "val" split is its test set (ImageNet)."""
    cls = _dataset_class(dataset)
    return bool(cls is not None and getattr(cls, "val_is_test", False))


def check_protocol(spec, source: str = "spec") -> None:
    """ConfigError (one line) for a label-leaked student or a choice made on test images."""
    if label_leak(spec.dataset, spec.student, spec.student_pretrained, spec.student_kwargs):
        raise ConfigError(
            f"{source}: student '{spec.student}' with its ImageNet-supervised weights on dataset "
            f"'{spec.dataset}' is label-leaked (it has seen every ImageNet label): use student "
            f"'dino_resnet50' or student_pretrained false (the paper's Table 1 students)")
    if not val_is_test(spec.dataset) or spec.test_selection:
        return
    chosen = [f"{k} = {getattr(spec, k)!r}" for k, bad in (("alpha_beta", "search"), ("epoch_select", "best_val"))
              if getattr(spec, k) == bad]
    if chosen:
        raise ConfigError(
            f"{source}: dataset '{spec.dataset}' has no validation split of its own (val is its test set), "
            f"so {' and '.join(chosen)} would choose on the test images: set alpha_beta: fixed and "
            f"epoch_select: last (the paper), or test_selection: true (the authors' train_imgnet.py; "
            f"docs/DEVIATIONS.md)")
