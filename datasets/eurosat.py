"""EuroSAT reader: ``<ROOT>/eurosat/2750/<class>/*.jpg`` + ``split_zhou_EuroSAT.json``.

Without the split JSON it is built as the official code does (the DTD rule: 50/20/30 % per class folder) and the
folder names are replaced by the descriptive names of ``NEW_CNAMES``; the official split JSON already holds them.
"""
from __future__ import annotations

from engine.registry import DATASET_REGISTRY

from .dtd import DescribableTextures

# Folder name -> class name used in prompts (the official EuroSAT names).
NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(DescribableTextures):
    """EuroSAT RGB, 10 land-use classes with descriptive names (``"Annual Crop Land"``, ...)."""

    folder = "eurosat"
    image_subdir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    new_cnames = NEW_CNAMES
