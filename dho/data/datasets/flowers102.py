"""Oxford Flowers-102 (102 flower species) (CoOp layout: `oxford_flowers/jpg/...` + `oxford_flowers/split_zhou_OxfordFlowers.json`)."""

from .. import templates
from ..coop import CoopSplitDataset
from ..registry import DATASETS


@DATASETS.register("flowers102", help="Oxford Flowers-102 (102 flower species)")
class Flowers102(CoopSplitDataset):
    folder_name = "oxford_flowers"
    image_subdir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    clip_templates = templates.CLIP_FLOWERS102
    templates = templates.FLOWERS102
