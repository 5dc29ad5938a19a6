"""Describable Textures (47 texture classes) (CoOp layout: `dtd/images/...` + `dtd/split_zhou_DescribableTextures.json`)."""

from .. import templates
from ..coop import CoopSplitDataset
from ..registry import DATASETS


@DATASETS.register("dtd", help="Describable Textures (47 texture classes)")
class DTD(CoopSplitDataset):
    folder_name = "dtd"
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    clip_templates = templates.CLIP_DTD
    templates = templates.DTD
