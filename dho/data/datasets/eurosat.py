"""EuroSAT (10 land-use classes, Sentinel-2 RGB) (CoOp layout: `eurosat/2750/...` + `eurosat/split_zhou_EuroSAT.json`)."""

from .. import templates
from ..coop import CoopSplitDataset
from ..registry import DATASETS


@DATASETS.register("eurosat", help="EuroSAT (10 land-use classes, Sentinel-2 RGB)")
class EuroSAT(CoopSplitDataset):
    folder_name = "eurosat"
    image_subdir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    clip_templates = templates.CLIP_EUROSAT
    templates = templates.EUROSAT
