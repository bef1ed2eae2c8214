"""Hand-written prompt templates (data), keyed by the registered dataset name."""
from typing import Mapping

# The single template ZeroshotCLIP uses per dataset (CoOp paper, Table of hand-crafted prompts).
CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}

# The 7-template ImageNet ensemble selected in the CLIP paper's prompt-engineering notebook.
IMAGENET_TEMPLATES_SELECT = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

# The 60 ImageNet templates (from the CLIP prompt-engineering notebook) whose average PromptSRC's frozen teacher
# uses as the class text features of every dataset (its textual-diversity ensemble).
IMAGENET_TEMPLATES = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
)


# Methods whose official code carries its own copy of the table, with a few entries changed (only those are
# listed). KgCoOp's anchors for its knowledge-guided loss:
KGCOOP_TEMPLATES = {**CUSTOM_TEMPLATES, "DescribableTextures": "a photo of a {}, a type of texture."}
# TCP's anchors (the input of its class-aware tokens and of its loss):
TCP_TEMPLATES = {**KGCOOP_TEMPLATES, "FGVCAircraft": "a photo of an aircraft {}.",
                 "Food101": "a photo of a {}, a type of food."}
# TCP's learned prompts: the four leading words are replaced by the context (UCF101 and the ImageNets keep
# words there instead of X's, as in its code).
TCP_PROMPT_TEMPLATES = {
    **{name: "X X X X {}." for name in ("EuroSAT", "SUN397", "Caltech101")},
    **{name: template for name, template in CUSTOM_TEMPLATES.items() if name.startswith("ImageNet")},
    "OxfordPets": "X X X X {}, a type of pet.",
    "OxfordFlowers": "X X X X {}, a type of flower.",
    "FGVCAircraft": "X X X X {}, a type of aircraft.",
    "DescribableTextures": "X X X X {} texture.",
    "StanfordCars": "X X X X {}, a type of car",  # sic: no final period in the official table
    "Food101": "X X X X {}, a type of food.",
    "UCF101": "a photo of a person doing {}.",
}
# ProGrad's zero-shot teacher; its learned context starts from the words before " {}." (see trainers/prograd.py).
PROGRAD_TEMPLATES = {
    **CUSTOM_TEMPLATES,
    "OxfordPets": "a type of pet, a photo of a {}.",
    "OxfordFlowers": "a type of flower, a photo of a {}.",
    "FGVCAircraft": "a type of aircraft, a photo of a {}.",
    "DescribableTextures": "a texture of {}.",
    "Food101": "a type of food, a photo of {}.",
}


def template_for(dataset_name: str, table: Mapping[str, str] = CUSTOM_TEMPLATES) -> str:
    """The dataset's hand-written template in ``table``; a clear error for an unknown dataset."""
    try:
        return table[dataset_name]
    except KeyError:
        raise KeyError(f"No prompt template for dataset {dataset_name!r}; add one to trainers/templates.py "
                       f"(known: {', '.join(sorted(table))})") from None
