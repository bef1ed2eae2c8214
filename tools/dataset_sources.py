"""Where each of the 15 benchmark datasets comes from and how its files are laid out under ``$DATA``.

The table is data: URLs are those of the official CoOp ``DATASETS.md`` (and the pages it links to); split files
live on Google Drive (``gdrive:<file id>``, fetched with ``gdown``). A URL may also be ``root:<path>``: a file
copied from another dataset under the same root (the ImageNet variants reuse ``imagenet/classnames.txt``).

Checksums: a source carries an ``md5`` only where a public, independent code base pins the same file (its
``checksum_origin`` says which). None of the URLs or checksums could be fetched or checked from the machine
this table was written on (no network), so every entry is "not verified here"; see docs/DATASETS.md.

A source without URLs is a manual step: the user downloads it and puts it in the download folder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

VERIFIED_HERE = False  # no URL or checksum of this table could be fetched from the machine that wrote it

TORCHVISION = "torchvision 0.29.1 source (torchvision/datasets)"
TORCHVISION_OLD = "torchvision <= 0.15 source (datasets/caltech.py)"
THIRD_PARTY_IN = "several public ImageNet-robustness loaders (e.g. torch_uncertainty)"


@dataclass(frozen=True)
class Source:
    """One downloaded file.

    ``extract`` (archives): ``(path inside the archive, destination under the dataset folder)`` pairs; the
    archive path ``"*"`` means "the single top-level folder" (or the archive root if there is not exactly one)
    and the destination ``"."`` merges the contents into the dataset folder itself. Plain files go to ``dest``
    (default: ``filename``).
    """

    filename: str
    urls: Tuple[str, ...] = ()
    extract: Tuple[Tuple[str, str], ...] = ()
    dest: str = ""
    md5: Optional[str] = None
    sha256: Optional[str] = None
    size: Optional[int] = None
    checksum_origin: str = ""

    @property
    def is_archive(self) -> bool:
        return bool(self.extract)

    @property
    def is_manual(self) -> bool:
        return not self.urls

    @property
    def target(self) -> str:
        """Where a plain file ends up, relative to the dataset folder."""
        return self.dest or self.filename


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: CLI/config ``name``, registered ``reader``, ``folder`` under the root and its sources.

    ``required`` are the paths (relative to the folder) the reader needs; ``--check`` reports each missing one.
    ``in_place`` are paths the user lays out by hand inside the folder (ImageNet); the tool then only adds the
    downloadable files next to them. ``manual`` explains any manual step.
    """

    name: str
    reader: str
    folder: str
    required: Tuple[str, ...]
    sources: Tuple[Source, ...]
    homepage: str = ""
    manual: str = ""
    in_place: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = field(default_factory=tuple)


def _split(reader_suffix: str, drive_id: str) -> Source:
    """The CoOp split file ``split_zhou_<Name>.json`` (Google Drive, no published checksum)."""
    return Source(f"split_zhou_{reader_suffix}.json", (f"gdrive:{drive_id}",))


IMAGENET_CLASSNAMES_ID = "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"
# The variants first copy ImageNet's file (as the official instructions say), else download the same file.
VARIANT_CLASSNAMES = Source("classnames.txt", ("root:imagenet/classnames.txt", f"gdrive:{IMAGENET_CLASSNAMES_ID}"))

_SPECS: Tuple[DatasetSpec, ...] = (
    DatasetSpec(
        "imagenet", "ImageNet", "imagenet", ("classnames.txt", "images/train", "images/val"),
        (Source("classnames.txt", (f"gdrive:{IMAGENET_CLASSNAMES_ID}",)),),
        homepage="https://image-net.org/index.php", in_place=("images/train", "images/val"),
        manual=("ImageNet needs an account and licence agreement at https://image-net.org (ILSVRC2012). Download "
                "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar and lay them out as one folder per class "
                "(wnid, e.g. n01440764) for BOTH splits: the val tar is flat, sort it into class folders with the "
                "devkit labels (e.g. torchvision.datasets.ImageNet(root, split='val') or the widely used "
                "valprep.sh). A symbolic link to an existing copy works. classnames.txt is then downloaded by "
                "this tool.")),
    DatasetSpec(
        "caltech101", "Caltech101", "caltech-101", ("101_ObjectCategories", "split_zhou_Caltech101.json"),
        (Source("101_ObjectCategories.tar.gz",
                ("http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",
                 "gdrive:137RyRjvTBkBiIfeYBNZBtViDHQ6_Ewsp"),
                extract=(("101_ObjectCategories", "101_ObjectCategories"),),
                md5="b224c7392d521a49829488ab0f1120d9", checksum_origin=TORCHVISION_OLD),
         _split("Caltech101", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN")),
        homepage="https://data.caltech.edu/records/mzrjq-6wc02",
        notes=("The official vision.caltech.edu link has moved; the Google Drive copy (same md5) is tried next.",)),
    DatasetSpec(
        "oxford_pets", "OxfordPets", "oxford_pets", ("images", "split_zhou_OxfordPets.json"),
        (Source("images.tar.gz", ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",),
                extract=(("images", "images"),), md5="5c4f3ee8e5d25df40f4fd59a7f44e54c",
                checksum_origin=TORCHVISION),
         Source("annotations.tar.gz", ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",),
                extract=(("annotations", "annotations"),), md5="95a8c909bbe2e81eed6a22bccdf3f68f",
                checksum_origin=TORCHVISION),
         _split("OxfordPets", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs")),
        homepage="https://www.robots.ox.ac.uk/~vgg/data/pets/"),
    DatasetSpec(
        "stanford_cars", "StanfordCars", "stanford_cars",
        ("cars_train", "cars_test", "split_zhou_StanfordCars.json"),
        (Source("cars_train.tgz", extract=(("cars_train", "cars_train"),)),
         Source("cars_test.tgz", extract=(("cars_test", "cars_test"),)),
         Source("car_devkit.tgz", extract=(("devkit", "devkit"),)),
         Source("cars_test_annos_withlabels.mat"),
         _split("StanfordCars", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT")),
        homepage="https://ai.stanford.edu/~jkrause/cars/car_dataset.html",
        manual=("The official Stanford links (http://ai.stanford.edu/~jkrause/car196/cars_train.tgz, cars_test.tgz, "
                "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz, "
                "http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat) are dead. Get these four "
                "files, with these exact names, from a mirror you trust (e.g. a Kaggle or Hugging Face copy of the "
                "original archives) and put them in the download folder; the split file is downloaded by this "
                "tool.")),
    DatasetSpec(
        "oxford_flowers", "OxfordFlowers", "oxford_flowers", ("jpg", "split_zhou_OxfordFlowers.json"),
        (Source("102flowers.tgz", ("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",),
                extract=(("jpg", "jpg"),), md5="52808999861908f626f3c1f4e79d11fa", checksum_origin=TORCHVISION),
         Source("imagelabels.mat", ("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat",),
                md5="e0620be6f572b9609742df49c70aed4d", checksum_origin=TORCHVISION),
         Source("cat_to_name.json", ("gdrive:1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0",)),
         _split("OxfordFlowers", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT")),
        homepage="https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"),
    DatasetSpec(
        "food101", "Food101", "food-101", ("images", "split_zhou_Food101.json"),
        (Source("food-101.tar.gz", ("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",), extract=(("*", "."),),
                md5="85eeb15f3717b99a5da872d97d918f87", checksum_origin=TORCHVISION),
         _split("Food101", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl")),
        homepage="https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/"),
    DatasetSpec(
        "fgvc_aircraft", "FGVCAircraft", "fgvc_aircraft",
        ("images", "variants.txt", "images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt"),
        (Source("fgvc-aircraft-2013b.tar.gz",
                ("https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",),
                extract=(("fgvc-aircraft-2013b/data", "."),)),),
        homepage="https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/",
        notes=("Uses the dataset's own variant lists (no split JSON).",)),
    DatasetSpec(
        "sun397", "SUN397", "sun397", ("SUN397", "split_zhou_SUN397.json"),
        (Source("SUN397.tar.gz", ("http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",),
                extract=(("SUN397", "SUN397"),), md5="8ca2778205c41d23104230ba66911c7a",
                checksum_origin=TORCHVISION),
         Source("Partitions.zip", ("https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip",),
                extract=(("*", "."),)),
         _split("SUN397", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq")),
        homepage="https://vision.princeton.edu/projects/2010/SUN/"),
    DatasetSpec(
        "dtd", "DescribableTextures", "dtd", ("images", "split_zhou_DescribableTextures.json"),
        (Source("dtd-r1.0.1.tar.gz", ("https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",),
                extract=(("dtd", "."),), md5="fff73e5086ae6bdbea199a49dfb8a4c1", checksum_origin=TORCHVISION),
         _split("DescribableTextures", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x")),
        homepage="https://www.robots.ox.ac.uk/~vgg/data/dtd/"),
    DatasetSpec(
        "eurosat", "EuroSAT", "eurosat", ("2750", "split_zhou_EuroSAT.json"),
        (Source("EuroSAT.zip", ("http://madm.dfki.de/files/sentinel/EuroSAT.zip",
                                "https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                                "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip"),
                extract=(("2750", "2750"),), md5="c8fa014336c82ac7804f0398fcb19387", checksum_origin=TORCHVISION),
         _split("EuroSAT", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o")),
        homepage="https://github.com/phelber/eurosat",
        notes=("The official madm.dfki.de link is often down; the Hugging Face copy torchvision uses (same md5) "
               "is tried next.",)),
    DatasetSpec(
        "ucf101", "UCF101", "ucf101", ("UCF-101-midframes", "split_zhou_UCF101.json"),
        (Source("UCF-101-midframes.zip", ("gdrive:10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O",),
                extract=(("UCF-101-midframes", "UCF-101-midframes"),)),
         _split("UCF101", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y")),
        homepage="https://www.crcv.ucf.edu/data/UCF101.php",
        notes=("The middle frames of each video, extracted by the CoOp authors.",)),
    DatasetSpec(
        "imagenetv2", "ImageNetV2", "imagenetv2", ("imagenetv2-matched-frequency-format-val", "classnames.txt"),
        (Source("imagenetv2-matched-frequency.tar.gz",
                ("https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz",),
                extract=(("imagenetv2-matched-frequency-format-val", "imagenetv2-matched-frequency-format-val"),)),
         VARIANT_CLASSNAMES),
        homepage="https://github.com/modestyachts/ImageNetV2"),
    DatasetSpec(
        "imagenet_sketch", "ImageNetSketch", "imagenet-sketch", ("images", "classnames.txt"),
        (Source("ImageNet-Sketch.zip", ("gdrive:1Mj0i5HBthqH1p_yeXzsg22gZduvgoNeA",), extract=(("*", "images"),)),
         VARIANT_CLASSNAMES),
        homepage="https://github.com/HaohanWang/ImageNet-Sketch",
        notes=("The zip holds one folder (sketch/) of 1,000 class folders; it becomes images/.",)),
    DatasetSpec(
        "imagenet_a", "ImageNetA", "imagenet-adversarial", ("imagenet-a", "classnames.txt"),
        (Source("imagenet-a.tar", ("https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",),
                extract=(("imagenet-a", "imagenet-a"),), md5="c3e55429088dc681f30d81f4726b6595",
                checksum_origin=THIRD_PARTY_IN),
         VARIANT_CLASSNAMES),
        homepage="https://github.com/hendrycks/natural-adv-examples"),
    DatasetSpec(
        "imagenet_r", "ImageNetR", "imagenet-rendition", ("imagenet-r", "classnames.txt"),
        (Source("imagenet-r.tar", ("https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",),
                extract=(("imagenet-r", "imagenet-r"),), md5="a61312130a589d0ca1a8fca1f2bd3337",
                checksum_origin=THIRD_PARTY_IN),
         VARIANT_CLASSNAMES),
        homepage="https://github.com/hendrycks/imagenet-r"),
)

DATASETS: Dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}


def resolve_names(names: Iterable[str], specs: Mapping[str, DatasetSpec] = DATASETS) -> List[str]:
    """CLI names (``caltech101``), reader names (``Caltech101``, any case) or ``all`` -> spec names, in order."""
    aliases = {}
    for spec in specs.values():
        aliases[spec.name.lower()] = spec.name
        aliases[spec.reader.lower()] = spec.name
    out: List[str] = []
    for name in names:
        if name.lower() == "all":
            wanted = list(specs)
        elif name.lower() in aliases:
            wanted = [aliases[name.lower()]]
        else:
            raise KeyError(f"Unknown dataset {name!r}; choose from: all, {', '.join(specs)}")
        out += [w for w in wanted if w not in out]
    return out


def _source_from_dict(raw: Mapping[str, Any]) -> Source:
    """A :class:`Source` from its JSON form (lists instead of tuples); unknown keys are an error."""
    known = set(Source.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"Unknown source key(s) {sorted(unknown)}; allowed: {sorted(known)}")
    data = dict(raw)
    data["urls"] = tuple(data.get("urls", ()))
    data["extract"] = tuple(tuple(pair) for pair in data.get("extract", ()))
    return Source(**data)


def load_source_overrides(path: str, specs: Mapping[str, DatasetSpec] = DATASETS) -> Dict[str, DatasetSpec]:
    """Specs with the sources of some datasets replaced from a JSON file (mirrors, local servers, tests).

    Format: ``{"<dataset name>": [{"filename": ..., "urls": [...], "extract": [["*", "."]], "md5": ...}, ...]}``.
    """
    with open(path) as f:
        raw = json.load(f)
    out = dict(specs)
    for name, sources in raw.items():
        if name not in specs:
            raise KeyError(f"{path}: unknown dataset {name!r}; choose from: {', '.join(specs)}")
        out[name] = replace(specs[name], sources=tuple(_source_from_dict(s) for s in sources))
    return out
