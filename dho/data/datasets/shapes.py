"""The offline demo's "shapes" dataset: 12 classes of textured coloured shapes, e.g. "red
striped circle" (CoOp layout: `shapes/images/...` + `shapes/split_zhou_Shapes.json`).

Generated procedurally by ``dho demo data --root DIR`` (:mod:`dho.demo.data`).
"""

from ..coop import CoopSplitDataset
from ..registry import DATASETS


@DATASETS.register("shapes", help="demo: 12 procedurally generated shape classes (dho demo data)")
class Shapes(CoopSplitDataset):
    folder_name = "shapes"
    image_subdir = "images"
    split_file = "split_zhou_Shapes.json"
    templates = [
        "a photo of a {}.",
        "an image of a {}.",
        "a {} on a cluttered background.",
    ]
