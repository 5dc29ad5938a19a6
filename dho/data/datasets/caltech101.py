"""Caltech101 (100 object classes, CoOp split without the background class) (CoOp layout: `caltech-101/101_ObjectCategories/...` + `caltech-101/split_zhou_Caltech101.json`)."""

from .. import templates
from ..coop import CoopSplitDataset
from ..registry import DATASETS


@DATASETS.register("caltech101", help="Caltech101 (100 object classes, CoOp split without the background class)")
class Caltech101(CoopSplitDataset):
    folder_name = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    clip_templates = templates.CLIP_CALTECH101
    templates = templates.CALTECH101
