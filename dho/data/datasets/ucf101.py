"""UCF101 middle frames (101 actions) (CoOp layout: `ucf101/UCF-101-midframes/...` + `ucf101/split_zhou_UCF101.json`)."""

from .. import templates
from ..coop import CoopSplitDataset
from ..registry import DATASETS


@DATASETS.register("ucf101", help="UCF101 middle frames (101 actions)")
class UCF101(CoopSplitDataset):
    folder_name = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    clip_templates = templates.CLIP_UCF101
    templates = templates.UCF101
