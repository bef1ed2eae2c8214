"""Our CLIP equals OpenAI's clip.load on the parity weights (ViT and ResNet), and precision follows OpenAI."""
from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from clip import clip
from clip.model import CLIP, LayerNorm, SelfAttention, build_model, cast_model

ATOL = 1e-4
OUTPUTS = ("image_features", "text_features", "logits_per_image", "logits_per_text")


def _forward(model: CLIP, fixture: dict) -> dict:
    tokens = clip.tokenize(fixture["texts"])
    with torch.no_grad():
        logits_per_image, logits_per_text = model(fixture["images"], tokens)
        return {"tokens": tokens, "image_features": model.encode_image(fixture["images"]),
                "text_features": model.encode_text(tokens), "logits_per_image": logits_per_image,
                "logits_per_text": logits_per_text}


def test_vit_forward_matches_openai(vit_model, clip_forward):
    out = _forward(vit_model, clip_forward)
    assert out["tokens"].dtype == torch.int32
    assert torch.equal(out["tokens"], clip_forward["tokens"])
    for key in OUTPUTS:
        assert out[key].shape == clip_forward[key].shape, key
        torch.testing.assert_close(out[key], clip_forward[key], atol=ATOL, rtol=0, msg=key)
    assert vit_model.logit_scale.item() == pytest.approx(float(clip_forward["logit_scale"]))


def test_rn50_forward_matches_openai(rn50_64px_path, fixtures_dir):
    fixture = torch.load(fixtures_dir / "rn50" / "clip_forward_rn50.pt", weights_only=False)
    model, preprocess = clip.load(str(rn50_64px_path))
    assert model.visual.input_resolution == 64 and model.embed_dim == 1024
    out = _forward(model, fixture)
    assert torch.equal(out["tokens"], fixture["tokens"])
    for key in OUTPUTS:
        torch.testing.assert_close(out[key], fixture[key], atol=ATOL, rtol=0, msg=key)


def test_vit_architecture_is_inferred(vit_model):
    m = vit_model
    assert (m.vision_width, m.text_width, m.embed_dim, m.context_length) == (768, 512, 512, 77)
    assert m.visual.width == 768 and m.transformer.width == 512
    assert m.visual.input_resolution == 32 and len(m.visual.transformer.resblocks) == 12
    assert len(m.transformer.resblocks) == 12 and m.token_embedding.num_embeddings == 49408
    assert m.visual.transformer.resblocks[0].attn.heads == 12 and m.transformer.resblocks[0].attn.heads == 8
    assert not m.training


def test_cpu_load_is_fp32_everywhere(vit_model):
    assert vit_model.dtype == torch.float32
    assert {p.dtype for p in vit_model.parameters()} == {torch.float32}


def test_build_model_precision_is_openai_mixed_fp16(tiny_clip_path):
    """build_model (and load on CUDA) keeps compute weights fp16, norms/embeddings/logit_scale fp32."""
    model = build_model(torch.load(tiny_clip_path))
    params = dict(model.named_parameters())
    block = "transformer.resblocks.0."
    fp16 = ["visual.conv1.weight", "visual.proj", "text_projection", f"{block}attn.in_proj_weight",
            f"{block}attn.in_proj_bias", f"{block}attn.out_proj.weight", f"{block}mlp.c_fc.bias",
            f"visual.{block}mlp.c_proj.weight"]
    fp32 = ["visual.class_embedding", "visual.positional_embedding", "visual.ln_pre.weight", f"{block}ln_1.weight",
            "token_embedding.weight", "positional_embedding", "ln_final.bias", "logit_scale"]
    assert model.dtype == torch.float16
    assert {name: params[name].dtype for name in fp16} == dict.fromkeys(fp16, torch.float16)
    assert {name: params[name].dtype for name in fp32} == dict.fromkeys(fp32, torch.float32)
    assert model.logit_scale.shape == torch.Size([])


def test_cast_model_round_trip_and_fp16_forward(tiny_clip_path):
    state_dict = torch.load(tiny_clip_path)
    model = build_model(state_dict)
    text = clip.tokenize(["a photo of a cat", "a dog"])
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        half = model.encode_text(text), model.encode_image(image)
        cast_model(model, torch.float32)
        full = model.encode_text(text), model.encode_image(image)
    assert half[0].dtype == torch.float16 and full[0].dtype == torch.float32
    for a, b in zip(half, full):
        torch.testing.assert_close(a.to(torch.float32), b, atol=2e-2, rtol=2e-2)
    # the fp32 weights hold exactly the checkpoint's fp16 values
    assert torch.equal(model.visual.proj, state_dict["visual.proj"].to(torch.float32))


def test_layernorm_computes_in_fp32_and_returns_input_dtype():
    norm = LayerNorm(8)
    x = (torch.randn(3, 8) * 300).to(torch.float16)
    out = norm(x)
    assert out.dtype == torch.float16
    expected = nn.functional.layer_norm(x.to(torch.float32), (8,)).to(torch.float16)
    assert torch.equal(out, expected)


def test_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ours = SelfAttention(32, 4, causal=True)
    ref = nn.MultiheadAttention(32, 4, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 7, 32)
    mask = torch.full((7, 7), float("-inf")).triu(1)
    torch.testing.assert_close(ours(x), ref(x, x, x, attn_mask=mask, need_weights=False)[0], atol=1e-6, rtol=0)


def test_preprocess_matches_reference_test_transform(tiny_clip_path, fixtures_dir):
    """clip.load's preprocess gives the reference eval_images (Resize bicubic, CenterCrop, ToTensor, Normalize)."""
    _, preprocess = clip.load(str(tiny_clip_path))
    fixture = torch.load(fixtures_dir / "trainers" / "trainer_CoOp.pt", weights_only=False)
    folder = fixtures_dir / "data" / "caltech-101" / "101_ObjectCategories"
    images = torch.stack([preprocess(Image.open(folder / p)) for p in fixture["eval_impaths"]])
    torch.testing.assert_close(images, fixture["eval_images"], atol=1e-6, rtol=0)
    gray = Image.new("L", (50, 40), color=128)  # non-square, single channel -> RGB, shorter side 32
    assert preprocess(gray).shape == (3, 32, 32)


def test_load_accepts_path_objects_and_devices(tiny_clip_path):
    model, _ = clip.load(tiny_clip_path, device=torch.device("cpu"))
    assert not model.training
    assert next(model.parameters()).device.type == "cpu"


def test_mixed_fp16_model_reproduces_reference_fp16_zeroshot(vit_b16_32px_path, fixtures_dir):
    """build_model's OpenAI mixed precision run on CPU equals the reference's fp16 ZeroshotCLIP logits."""
    fixture = torch.load(fixtures_dir / "trainers" / "trainer_ZeroshotCLIP.pt", weights_only=False)
    model = build_model(torch.load(vit_b16_32px_path))
    with torch.no_grad():
        text = nn.functional.normalize(model.encode_text(clip.tokenize(fixture["prompts"])), dim=-1)
        image = nn.functional.normalize(model.encode_image(fixture["eval_images"]), dim=-1)
        logits = model.logit_scale.exp() * image @ text.t()
    assert logits.dtype == torch.float16 == fixture["eval_logits"].dtype
    torch.testing.assert_close(text, fixture["text_features_ref"], atol=1e-2, rtol=0)
    torch.testing.assert_close(logits, fixture["eval_logits"], atol=1e-2, rtol=0)
