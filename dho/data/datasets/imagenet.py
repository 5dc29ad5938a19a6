"""ImageNet-1k in CoOp's layout.

``imagenet/images/train/<wnid>/*``, ``imagenet/images/val/<wnid>/*`` and
``imagenet/classnames.txt`` (lines ``<wnid> <class name>``, line order = label).
As in CoOp, ``train`` is ``images/train`` and both ``val`` and ``test`` are
``images/val`` (the official validation set): model selection on ImageNet therefore
sees the test images, exactly as in the CoOp/DHO protocol.
"""

from .. import templates
from ..folders import ClassFolderDataset
from ..registry import DATASETS


@DATASETS.register("imagenet", help="ImageNet-1k (1000 classes; val = test = images/val, CoOp convention)")
class ImageNet(ClassFolderDataset):
    folder_name = "imagenet"
    image_subdir = "images"
    split_dirs = {"train": "train", "val": "val", "test": "val"}
    val_is_test = True      # no validation split of its own (dho.protocol)
    imagenet_train = True   # its train split is ImageNet-1k train (label leak check)
    imagenet_prompt_names = True
    clip_templates = templates.CLIP_IMAGENET
    templates = templates.IMAGENET
