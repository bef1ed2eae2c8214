"""Hand-written prompt templates (data), keyed by the registered dataset name."""

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


def template_for(dataset_name: str) -> str:
    """The dataset's hand-written template; a clear error for an unknown dataset."""
    try:
        return CUSTOM_TEMPLATES[dataset_name]
    except KeyError:
        raise KeyError(f"No prompt template for dataset {dataset_name!r}; add one to trainers/templates.py "
                       f"(known: {', '.join(sorted(CUSTOM_TEMPLATES))})") from None
