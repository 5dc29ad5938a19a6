"""Prompt templates (one ``{}`` for the class name) per dataset, in two named sets.

``authors`` (the default): the templates of the DHO authors' code (GitHub erjui/DHO,
``datasets/<name>.py``): ONE template per fine-grained dataset and the 7-template
ensemble for ImageNet (``imagenet_templates``, the same 7 as open_clip's
``SIMPLE_IMAGENET_TEMPLATES``); used for the zero-shot teachers and for the CLIP
students' head initialisation.  The ImageNet OOD sets use the ImageNet set.

``clip``: CLIP's prompt-ensemble templates: ``data/prompts.md`` of the openai/CLIP
repository for the few-shot datasets, and the 80 ImageNet templates of CLIP's
``notebooks/Prompt_Engineering_for_ImageNet.ipynb`` for ImageNet and its variants
(V2, Sketch, A, R), exactly as CLIP used them (including "a embroidered").

A dataset class carries both (``templates`` and ``clip_templates``);
:meth:`dho.data.source.DatasetSource.prompt_templates` picks one by name.
"""

PROMPT_SETS = ("authors", "clip")

# How the per-template text embeddings of a class become its classifier column (the
# authors' code differs by model): "renormalized" = mean of the L2-normalised embeddings,
# normalised again (their clip_classifier: the RN50 and OpenAI ViT teachers);
# "mean_of_normalized" = the same mean, not normalised again (their DFN5B ViT-H/14
# teacher in train_imgnet_semi.py); "raw_mean" = mean of the raw embeddings (their CLIP
# students' head initialisation).
TEXT_NORMS = ("renormalized", "mean_of_normalized", "raw_mean")

# --- the authors' templates (erjui/DHO datasets/*.py) ------------------------------------
IMAGENET = [
    "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
    "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
]
CALTECH101 = ["a photo of a {}."]
OXFORD_PETS = ["a photo of a {}, a type of pet."]
STANFORD_CARS = ["a photo of a {}."]
FLOWERS102 = ["a photo of a {}, a type of flower."]
FOOD101 = ["a photo of {}, a type of food."]
FGVC_AIRCRAFT = ["a photo of a {}, a type of aircraft."]
SUN397 = ["a photo of a {}."]
DTD = ["{} texture."]
EUROSAT = ["a centered satellite photo of {}."]
UCF101 = ["a photo of a person doing {}."]

# --- CLIP's prompt ensembles ----------------------------------------------------------------
CLIP_IMAGENET = [
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
    "graffiti of a {}.", "a bad photo of the {}.", "a cropped photo of the {}.", "a tattoo of a {}.",
    "the embroidered {}.", "a photo of a hard to see {}.", "a bright photo of a {}.",
    "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.",
    "a bright photo of the {}.", "a cropped photo of a {}.", "a plastic {}.",
    "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.",
    "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.",
    "a close-up photo of the {}.", "a photo of a {}.", "the origami {}.",
    "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
    "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.",
    "a photo of a nice {}.", "a photo of a weird {}.", "a blurry photo of a {}.",
    "a cartoon {}.", "art of a {}.", "a sketch of the {}.", "a embroidered {}.",
    "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.",
    "a photo of the small {}.", "a photo of the weird {}.", "the cartoon {}.", "art of the {}.",
    "a drawing of the {}.", "a photo of the large {}.", "a black and white photo of a {}.",
    "the plushie {}.", "a dark photo of a {}.", "itap of a {}.", "graffiti of the {}.",
    "a toy {}.", "itap of my {}.", "a photo of a cool {}.", "a photo of a small {}.",
    "a tattoo of the {}.",
]

CLIP_CALTECH101 = [
    "a photo of a {}.", "a painting of a {}.", "a plastic {}.", "a sculpture of a {}.",
    "a sketch of a {}.", "a tattoo of a {}.", "a toy {}.", "a rendition of a {}.",
    "a embroidered {}.", "a cartoon {}.", "a {} in a video game.", "a plushie {}.",
    "a origami {}.", "art of a {}.", "graffiti of a {}.", "a drawing of a {}.",
    "a doodle of a {}.", "a photo of the {}.", "a painting of the {}.", "the plastic {}.",
    "a sculpture of the {}.", "a sketch of the {}.", "a tattoo of the {}.", "the toy {}.",
    "a rendition of the {}.", "the embroidered {}.", "the cartoon {}.",
    "the {} in a video game.", "the plushie {}.", "the origami {}.", "art of the {}.",
    "graffiti of the {}.", "a drawing of the {}.", "a doodle of the {}.",
]

CLIP_OXFORD_PETS = ["a photo of a {}, a type of pet."]

CLIP_STANFORD_CARS = [
    "a photo of a {}.", "a photo of the {}.", "a photo of my {}.", "i love my {}!",
    "a photo of my dirty {}.", "a photo of my clean {}.", "a photo of my new {}.",
    "a photo of my old {}.",
]

CLIP_FLOWERS102 = ["a photo of a {}, a type of flower."]

CLIP_FOOD101 = ["a photo of {}, a type of food."]

CLIP_FGVC_AIRCRAFT = ["a photo of a {}, a type of aircraft.", "a photo of the {}, a type of aircraft."]

CLIP_SUN397 = ["a photo of a {}.", "a photo of the {}."]

CLIP_DTD = [
    "a photo of a {} texture.", "a photo of a {} pattern.", "a photo of a {} thing.",
    "a photo of a {} object.", "a photo of the {} texture.", "a photo of the {} pattern.",
    "a photo of the {} thing.", "a photo of the {} object.",
]

CLIP_EUROSAT = [
    "a centered satellite photo of {}.", "a centered satellite photo of a {}.",
    "a centered satellite photo of the {}.",
]

CLIP_UCF101 = [
    f"a {kind} of {who} {verb}{{}}."
    for verb in ("", "using ", "doing ", "during ", "performing ", "practicing ")
    for who in ("a person", "the person")
    for kind in ("photo", "video", "example", "demonstration")
]
