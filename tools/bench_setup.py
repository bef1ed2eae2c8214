"""Inputs of ``tools/benchmark.py``: class names, a random ViT-B/16-shaped CLIP, a synthetic dataset, FLOP counts.

Nothing here measures time; it only builds what the measurements run on and counts the matmul FLOPs that any
implementation of a step must execute (the "FLOP floor").
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch
from PIL import Image

# The 100 classes of CoOp's Caltech101 split in label order (folder names sorted, BACKGROUND_Google and
# Faces_easy dropped, the four renamed folders as in the official reader).
CALTECH101_CLASSNAMES: List[str] = [
    "face", "leopard", "motorbike", "accordion", "airplane", "anchor", "ant", "barrel", "bass", "beaver",
    "binocular", "bonsai", "brain", "brontosaurus", "buddha", "butterfly", "camera", "cannon", "car_side",
    "ceiling_fan", "cellphone", "chair", "chandelier", "cougar_body", "cougar_face", "crab", "crayfish",
    "crocodile", "crocodile_head", "cup", "dalmatian", "dollar_bill", "dolphin", "dragonfly", "electric_guitar",
    "elephant", "emu", "euphonium", "ewer", "ferry", "flamingo", "flamingo_head", "garfield", "gerenuk",
    "gramophone", "grand_piano", "hawksbill", "headphone", "hedgehog", "helicopter", "ibis", "inline_skate",
    "joshua_tree", "kangaroo", "ketch", "lamp", "laptop", "llama", "lobster", "lotus", "mandolin", "mayfly",
    "menorah", "metronome", "minaret", "nautilus", "octopus", "okapi", "pagoda", "panda", "pigeon", "pizza",
    "platypus", "pyramid", "revolver", "rhino", "rooster", "saxophone", "schooner", "scissors", "scorpion",
    "sea_horse", "snoopy", "soccer_ball", "stapler", "starfish", "stegosaurus", "stop_sign", "strawberry",
    "sunflower", "tick", "trilobite", "umbrella", "watch", "water_lilly", "wheelchair", "wild_cat",
    "windsor_chair", "wrench", "yin_yang",
]

# Word pools for ImageNet-length names. CoOp's ImageNet class names are mostly one to three words
# ("goldfinch", "great white shark", "American Staffordshire Terrier"), a few with hyphens
# ("red-breasted merganser"); the longest prompt sets the truncated text length, so the pools include such words.
_MODIFIERS = ("American", "European", "African", "Siberian", "Japanese", "Mexican", "great", "little", "common",
              "giant", "red", "black", "white", "grey", "spotted", "striped", "long-horned", "red-breasted",
              "sea", "water", "mountain", "Egyptian", "Irish", "Scottish", "Welsh", "desert", "garden", "toy")
_NOUNS = ("terrier", "retriever", "spaniel", "shark", "beetle", "warbler", "snake", "lizard", "truck", "bridge",
          "cabinet", "machine", "hound", "setter", "moth", "salamander", "jay", "heron", "monkey", "fox", "bear",
          "wolf", "turtle", "frog", "crane", "boat", "car", "clock", "drum", "jacket", "stove", "helmet",
          "mushroom", "pepper", "coat", "oven", "kite", "shepherd", "schnauzer", "pinscher", "merganser")
# Fraction of names with 1, 2, 3, 4 words (roughly that of CoOp's ImageNet class names).
_WORD_COUNTS = ((1, 0.45), (2, 0.38), (3, 0.14), (4, 0.03))

# OpenAI ViT-B/16: CLIP(embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
# context_length, vocab_size, transformer_width, transformer_heads, transformer_layers)
VIT_B16_ARGS = (512, 224, 12, 768, 16, 77, 49408, 512, 8, 12)


def imagenet_length_names(n: int, seed: int = 0) -> List[str]:
    """``n`` distinct synthetic class names with ImageNet-like word counts (see ``_WORD_COUNTS``).

    At least one name has four words including a hyphenated one, as ImageNet's longest names do, so the
    truncated text length is representative of the real 1000-class prompts.
    """
    rng = random.Random(seed)
    counts, weights = zip(*_WORD_COUNTS)
    names: List[str] = ["American red-breasted long-horned terrier"]
    seen = set(names)

    def make(k: int, compound: bool) -> str:
        # a compound ("mothcrane") stands for ImageNet's rare single words that BPE splits ("hartebeest")
        head = rng.choice(_NOUNS) + rng.choice(_NOUNS) if compound else rng.choice(_NOUNS)
        return " ".join([rng.choice(_MODIFIERS) for _ in range(k - 1)] + [head])

    while len(names) < n:
        k = rng.choices(counts, weights)[0]
        name = make(k, compound=False)
        while name in seen:  # the pools run out: redraw as a compound word
            name = make(k, compound=True)
        seen.add(name)
        names.append(name)
    rng.shuffle(names)
    return names[:n]


def classnames_for(n: int, imagenet_like: bool) -> List[str]:
    """The first ``n`` Caltech101 names (``n`` <= 100), or ``n`` ImageNet-length names."""
    if imagenet_like:
        return imagenet_length_names(n)
    if not 2 <= n <= len(CALTECH101_CLASSNAMES):
        raise ValueError(f"Caltech101 has {len(CALTECH101_CLASSNAMES)} classes; asked for {n} "
                         "(use ImageNet-length names for more)")
    return CALTECH101_CLASSNAMES[:n]


def write_vit_b16_weights(path: Path, seed: int = 0) -> Path:
    """Save a random-weight CLIP of OpenAI's ViT-B/16 shape (224 px) as an fp16 state_dict (OpenAI layout)."""
    from clip.model import CLIP

    torch.manual_seed(seed)
    model = CLIP(*VIT_B16_ARGS)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path)
    return path


def write_dataset(root: Path, classnames: Sequence[str], n_train: int, n_test: int, size: int = 8) -> Path:
    """Synthetic Caltech101 tree under ``root`` (``caltech-101/101_ObjectCategories`` + ``split_zhou_*.json``).

    One tiny random image per class (the test transform resizes to the model's resolution); the split lists
    ``n_train`` train items and ``n_test`` test items cycling over the classes (items may share a file) and one
    val item per class. Returns the data root to pass as ``--root``.
    """
    rng = np.random.RandomState(0)
    image_dir = Path(root) / "caltech-101" / "101_ObjectCategories"
    rel_paths = []
    for name in classnames:
        folder = name.replace(" ", "_")
        (image_dir / folder).mkdir(parents=True, exist_ok=True)
        rel = f"{folder}/image_0001.jpg"
        Image.fromarray(rng.randint(0, 256, (size, size, 3), dtype=np.uint8)).save(image_dir / rel)
        rel_paths.append(rel)

    def items(count: int) -> List[list]:
        return [[rel_paths[i % len(classnames)], i % len(classnames), classnames[i % len(classnames)]]
                for i in range(count)]

    split = {"train": items(max(n_train, len(classnames))), "val": items(len(classnames)), "test": items(n_test)}
    (image_dir.parent / "split_zhou_Caltech101.json").write_text(json.dumps(split))
    return Path(root)


def tower_flops(sequences: int, length: int, width: int, layers: int, backward: bool) -> float:
    """Matmul FLOPs of a transformer tower over ``sequences`` x ``length`` tokens.

    Per token and block: ``24 D^2`` for the linear layers (QKV 3D^2 + out D^2 + MLP 2 * 4D^2 multiply-adds,
    x2 FLOPs each) and ``4 L D`` for attention (QK^T and AV). With ``backward`` (gradients flow to prompts
    through FROZEN weights) the linear layers cost one more matmul each (input gradient only: autograd skips
    the weight gradient of a frozen tensor) and attention two more (dQ/dK from dS, dV and dP): 2x linear +
    3x attention. Elementwise ops (LayerNorm, GELU, softmax) are not counted.
    """
    tokens = sequences * length * layers
    linear = 24.0 * width * width * tokens
    attention = 4.0 * length * width * tokens
    return 2 * linear + 3 * attention if backward else linear + attention


def step_flops(dims: Dict[str, int], batch: int, prompts: int, text_length: int, vision_prompts: int,
               image_backward: bool, text_backward: bool) -> Dict[str, float]:
    """Image + text matmul FLOPs of one step (see :func:`tower_flops`); ``dims`` from :func:`clip_dims`.

    ``prompts``: text sequences per step (C, or B*C for image-conditional prompts); ``text_length``: tokens up
    to the longest prompt's EOT. The patch embedding (forward only) is added to the image tower.
    """
    grid = dims["resolution"] // dims["patch"]
    image_len = 1 + grid * grid + vision_prompts
    patch = 2.0 * batch * grid * grid * 3 * dims["patch"] ** 2 * dims["vision_width"]
    image = patch + tower_flops(batch, image_len, dims["vision_width"], dims["vision_layers"], image_backward)
    text = tower_flops(prompts, text_length, dims["text_width"], dims["text_layers"], text_backward)
    return {"image": image, "text": text, "total": image + text}


def clip_dims(clip_model) -> Dict[str, int]:
    """The sizes :func:`step_flops` needs, read from a ViT CLIP."""
    visual = clip_model.visual
    return {"resolution": visual.input_resolution, "patch": visual.conv1.kernel_size[0],
            "vision_width": visual.width, "vision_layers": visual.transformer.layers,
            "text_width": clip_model.text_width, "text_layers": clip_model.transformer.layers}
