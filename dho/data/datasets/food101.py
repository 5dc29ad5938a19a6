"""Food-101 (101 dishes) (CoOp layout: `food-101/images/...` + `food-101/split_zhou_Food101.json`)."""

from .. import templates
from ..coop import CoopSplitDataset
from ..registry import DATASETS


@DATASETS.register("food101", help="Food-101 (101 dishes)")
class Food101(CoopSplitDataset):
    folder_name = "food-101"
    image_subdir = "images"
    split_file = "split_zhou_Food101.json"
    clip_templates = templates.CLIP_FOOD101
    templates = templates.FOOD101
