"""build_transform: exact reference test transform, Dassl's fixed train order, errors on bad names."""
from __future__ import annotations

import pytest
import torch
import torchvision.transforms as T
import yaml
from PIL import Image

from engine import get_cfg_default
from engine.data import load_rgb_image
from engine.transforms import SUPPORTED_TRANSFORMS, build_transform

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def clip_cfg(size=(32, 32), transforms=("random_resized_crop", "random_flip", "normalize")):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = size
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD = CLIP_MEAN, CLIP_STD
    cfg.INPUT.TRANSFORMS = transforms
    return cfg


@pytest.mark.parametrize("fixture_file,size", [("trainers/trainer_CoOp.pt", 32), ("rn50/trainer_CoOp_rn50.pt", 64)])
def test_test_transform_reproduces_reference_images(fixtures_dir, fixture_file, size):
    ref = torch.load(fixtures_dir / fixture_file, weights_only=False)
    dumped = yaml.safe_load(ref["cfg_dump"])["INPUT"]
    assert dumped["SIZE"] == [size, size] and dumped["INTERPOLATION"] == "bicubic"
    assert dumped["PIXEL_MEAN"] == CLIP_MEAN and dumped["PIXEL_STD"] == CLIP_STD
    tfm = build_transform(clip_cfg((size, size), tuple(dumped["TRANSFORMS"])), is_train=False)
    image_dir = fixtures_dir / "data" / "caltech-101" / "101_ObjectCategories"
    images = torch.stack([tfm(load_rgb_image(str(image_dir / p))) for p in ref["eval_impaths"]])
    assert torch.equal(images, ref["eval_images"])  # bit-exact
    train_images = torch.stack([tfm(load_rgb_image(str(image_dir / p))) for p in ref["train_impaths"]])
    assert torch.equal(train_images, ref["train_images"])


def test_test_transform_resizes_shorter_side_then_centre_crops():
    img = Image.new("RGB", (80, 40), (255, 0, 0))
    out = build_transform(clip_cfg((16, 24)), is_train=False)(img)
    assert out.shape == (3, 16, 24)
    ops = build_transform(clip_cfg((16, 24)), is_train=False).transforms
    assert isinstance(ops[0], T.Resize) and ops[0].size == 24
    assert ops[0].interpolation == T.InterpolationMode.BICUBIC
    assert isinstance(ops[1], T.CenterCrop) and tuple(ops[1].size) == (16, 24)
    red = (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]
    assert torch.allclose(out[0], torch.full((16, 24), red), atol=1e-5)


def _types(tfm):
    return [type(op).__name__ for op in tfm.transforms]


def test_train_order_is_fixed_whatever_the_list_order():
    names = ["normalize", "random_flip", "center_crop", "random_resized_crop"]
    expected = ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    cfg = clip_cfg(transforms=tuple(names))
    assert _types(build_transform(cfg, is_train=True)) == expected
    assert _types(build_transform(cfg, is_train=True, choices=list(reversed(names)))) == expected
    rrc = build_transform(cfg, is_train=True).transforms[0]
    assert rrc.scale == (0.08, 1.0) and rrc.size == (32, 32) and rrc.interpolation == T.InterpolationMode.BICUBIC


def test_train_resizes_without_a_random_crop():
    cfg = clip_cfg(transforms=("random_flip", "center_crop"))
    tfm = build_transform(cfg, is_train=True)
    assert _types(tfm) == ["Resize", "RandomHorizontalFlip", "ToTensor"]
    assert tfm(Image.new("RGB", (50, 40))).shape == (3, 32, 32)
    assert _types(build_transform(clip_cfg(transforms=()), is_train=True)) == ["Resize", "ToTensor"]


def test_random_resized_crop_output_and_determinism_under_torch_seed():
    tfm = build_transform(clip_cfg(transforms=("random_resized_crop", "random_flip", "normalize")), True)
    img = Image.effect_mandelbrot((60, 45), (-2, -1.2, 1, 1.2), 50).convert("RGB")
    torch.manual_seed(3)
    a = tfm(img)
    torch.manual_seed(3)
    assert a.shape == (3, 32, 32) and torch.equal(a, tfm(img))


def test_unknown_names_raise_value_error_listing_supported():
    for name in ("randaugment_v9", "colorjitter"):  # colorjitter: a Dassl augmentation no config here uses
        with pytest.raises(ValueError) as err:
            build_transform(clip_cfg(transforms=("random_flip", name)), is_train=True)
        assert name in str(err.value)
        assert all(supported in str(err.value) for supported in SUPPORTED_TRANSFORMS)
    cfg = clip_cfg()
    cfg.INPUT.INTERPOLATION = "lanczos"
    with pytest.raises(ValueError, match="bicubic"):
        build_transform(cfg, is_train=False)
