"""SUN397 (397 scene categories) (CoOp layout: `sun397/SUN397/...` + `sun397/split_zhou_SUN397.json`)."""

from .. import templates
from ..coop import CoopSplitDataset
from ..registry import DATASETS


@DATASETS.register("sun397", help="SUN397 (397 scene categories)")
class SUN397(CoopSplitDataset):
    folder_name = "sun397"
    image_subdir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    clip_templates = templates.CLIP_SUN397
    templates = templates.SUN397
