"""Oxford-IIIT Pets (37 breeds) (CoOp layout: `oxford_pets/images/...` + `oxford_pets/split_zhou_OxfordPets.json`)."""

from .. import templates
from ..coop import CoopSplitDataset
from ..registry import DATASETS


@DATASETS.register("oxford_pets", help="Oxford-IIIT Pets (37 breeds)")
class OxfordPets(CoopSplitDataset):
    folder_name = "oxford_pets"
    image_subdir = "images"
    split_file = "split_zhou_OxfordPets.json"
    clip_templates = templates.CLIP_OXFORD_PETS
    templates = templates.OXFORD_PETS
