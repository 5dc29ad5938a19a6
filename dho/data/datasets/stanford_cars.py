"""Stanford Cars (CoOp layout: `stanford_cars/cars_{train,test}/...` + `stanford_cars/split_zhou_StanfordCars.json`).

Paths in the split file are relative to the ``stanford_cars`` folder itself.
"""

from .. import templates
from ..coop import CoopSplitDataset
from ..registry import DATASETS


@DATASETS.register("stanford_cars", help="Stanford Cars (196 car models)")
class StanfordCars(CoopSplitDataset):
    folder_name = "stanford_cars"
    image_subdir = ""
    split_file = "split_zhou_StanfordCars.json"
    clip_templates = templates.CLIP_STANFORD_CARS
    templates = templates.STANFORD_CARS
