"""ImageNet distribution-shift test sets in CoOp's layouts (``test`` split only).

Each folder holds a copy of ImageNet's ``classnames.txt``; labels are always indices
into ImageNet's 1000 classes, so a model trained on ImageNet is evaluated directly.

* ``imagenet_v2``: ``imagenetv2/imagenetv2-matched-frequency-format-val/<label 0..999>/*``
* ``imagenet_sketch``: ``imagenet-sketch/images/<wnid>/*``
* ``imagenet_a``: ``imagenet-adversarial/imagenet-a/<wnid>/*`` (200 classes)
* ``imagenet_r``: ``imagenet-rendition/imagenet-r/<wnid>/*`` (200 classes)

ImageNet-A and -R cover 200 of the 1000 classes: their ``class_subset`` lists the
ImageNet indices present, and an evaluator restricts the 1000-way logits to those
columns (``logits[:, source.class_subset]``) before taking the arg-max (mapping the
arg-max back through ``class_subset``), as is standard for these benchmarks.
"""

from .. import templates
from ..folders import ClassFolderDataset
from ..registry import DATASETS


class _ImageNetTestSet(ClassFolderDataset):
    splits = ("test",)
    split_dirs = {"test": ""}
    clip_templates = templates.CLIP_IMAGENET
    templates = templates.IMAGENET
    imagenet_prompt_names = True


@DATASETS.register("imagenet_v2", help="ImageNetV2 matched-frequency (test only, 1000 classes)")
class ImageNetV2(_ImageNetTestSet):
    folder_name = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"
    folder_key = "index"


@DATASETS.register("imagenet_sketch", help="ImageNet-Sketch (test only, 1000 classes)")
class ImageNetSketch(_ImageNetTestSet):
    folder_name = "imagenet-sketch"
    image_subdir = "images"


@DATASETS.register("imagenet_a", help="ImageNet-A (test only, 200-class subset: see class_subset)")
class ImageNetA(_ImageNetTestSet):
    folder_name = "imagenet-adversarial"
    image_subdir = "imagenet-a"
    partial = True


@DATASETS.register("imagenet_r", help="ImageNet-R (test only, 200-class subset: see class_subset)")
class ImageNetR(_ImageNetTestSet):
    folder_name = "imagenet-rendition"
    image_subdir = "imagenet-r"
    partial = True
