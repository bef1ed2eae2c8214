"""OpenCLIP and Hugging Face CLIP checkpoints give, in our CLIP, the libraries' own features, logits and tokens.

The references are the libraries themselves: ``open_clip.create_model(name, pretrained=None)`` and
``transformers.CLIPModel(CLIPConfig(...))`` build the real architectures with random weights (nothing is
downloaded), and their state_dicts go through the same conversion as a downloaded file. To keep the suite fast the
towers are shrunk (2 blocks of width 128, 64 px images: patch grids of 4x4 and 2x2, a 2x2 ResNet map): the code
path, head width, MLP ratio, activation, pooling and norms are the named model's own.
"""
from __future__ import annotations

import gzip
import html
import json
import unicodedata

import ftfy
import pytest
import torch

from clip import clip, hf, openclip
from clip.clip import model_from_checkpoint
from clip.tokenizer import NUM_MERGES, PACKAGED_BPE, get_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
ATOL = 1e-5  # fp32
RESOLUTION = 64
TEXTS = ["a photo of a Leopards.", "X X X X dalmatian.", "an image of a very large dog wearing a red hat",
         "a blurry photo of the yin yang, a type of symbol."]


def _features(out):
    """transformers 5 returns a model output whose pooler_output is the feature; earlier versions the tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _images(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(1))


def _assert_equal_outputs(got, expected):
    for name, g, e in zip(("image features", "text features", "logits per image", "logits per text"), got, expected):
        assert g.shape == e.shape, name
        torch.testing.assert_close(g, e, atol=ATOL, rtol=0, msg=lambda m, name=name: f"{name}: {m}")


def _shrunk(model_cfg: dict) -> dict:
    """An OpenCLIP model config with fewer and narrower blocks and 64 px images, its other choices kept."""
    vision, text = dict(model_cfg["vision_cfg"]), dict(model_cfg["text_cfg"])
    if isinstance(vision["layers"], (list, tuple)):  # ModifiedResNet: one bottleneck per stage, 16-wide stem
        vision.update(layers=[1, 1, 1, 1], width=16)
    else:
        vision.update(layers=2, width=2 * vision.get("head_width", 64))
    vision["image_size"] = RESOLUTION
    text.update(layers=2, width=128, heads=2)
    return {**model_cfg, "embed_dim": 64, "vision_cfg": vision, "text_cfg": text}


@pytest.fixture(scope="module", params=["ViT-B-16", "ViT-B-32-quickgelu", "RN50"])
def openclip_pair(request, one_thread):
    """(name, OpenCLIP's model, ours from its state_dict) for an architecture of OpenCLIP's table."""
    import open_clip

    config = _shrunk(open_clip.get_model_config(request.param))
    torch.manual_seed(0)
    ref = open_clip.create_model(request.param, pretrained=None, **config).eval()  # config: highest priority
    ckpt = openclip.checkpoint_from(ref.state_dict(), config, quick_gelu=bool(config.get("quick_gelu")))
    return request.param, ref, model_from_checkpoint(ckpt)


def test_openclip_features_and_logits_equal_the_library(openclip_pair):
    import open_clip

    name, ref, ours = openclip_pair
    tokens = open_clip.get_tokenizer(name)(TEXTS)
    images = _images()
    with torch.no_grad():
        expected = (ref.encode_image(images), ref.encode_text(tokens), *ref.get_logits(images, tokens))
        got = (ours.encode_image(images), ours.encode_text(tokens), *ours(images, tokens))
    _assert_equal_outputs(got, expected)
    assert ours.family == "openclip" and ours.logit_scale.item() == ref.logit_scale.item()


def test_openclip_architecture_choices_are_read(openclip_pair):
    name, ref, ours = openclip_pair
    activation = "quick_gelu" if name.endswith("quickgelu") else "gelu"
    assert ours.text_options.activation == activation
    assert type(ours.transformer.resblocks[0].mlp.gelu).__name__ == type(ref.transformer.resblocks[0].mlp.gelu).__name__
    if name != "RN50":
        assert ours.vision_options.activation == activation
        assert ours.visual.transformer.resblocks[0].attn.heads == ref.visual.transformer.resblocks[0].attn.num_heads


@pytest.fixture(scope="module")
def hf_pair(one_thread):
    """(transformers' CLIPModel with openai/clip-vit-base-patch16's architecture, ours from its state_dict)."""
    from transformers import CLIPConfig, CLIPModel

    # transformers' defaults are ViT-B/32's towers (QuickGELU, head width 64, MLP ratio 4); patch 16 makes it
    # ViT-B/16, shrunk to 2 blocks of width 128 (2 heads)
    small = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = CLIPConfig(vision_config={"patch_size": 16, "image_size": RESOLUTION, **small}, text_config=small,
                        projection_dim=64)
    torch.manual_seed(0)
    ref = CLIPModel(config).eval()
    ckpt = hf.checkpoint_from(ref.state_dict(), config.to_dict())
    return ref, model_from_checkpoint(ckpt)


def test_hf_features_and_logits_equal_the_library(hf_pair):
    ref, ours = hf_pair
    tokens = clip.tokenize(TEXTS).long()
    images = _images()
    with torch.no_grad():
        out = ref(input_ids=tokens, pixel_values=images)
        expected = (_features(ref.get_image_features(pixel_values=images)),
                    _features(ref.get_text_features(input_ids=tokens)), out.logits_per_image, out.logits_per_text)
        got = (ours.encode_image(images), ours.encode_text(tokens), *ours(images, tokens))
    _assert_equal_outputs(got, expected)
    assert ours.family == "hf" and ours.visual.transformer.resblocks[0].attn.heads == 2


def _hf_tokenizer():
    """transformers' CLIPTokenizer over the vocabulary and merges of our packaged BPE file (no download)."""
    from transformers import CLIPTokenizer

    with gzip.open(PACKAGED_BPE, "rt", encoding="utf-8") as handle:
        merges = [tuple(line.split()) for line in handle.read().split("\n")[1:NUM_MERGES + 1]]
    return CLIPTokenizer(vocab=dict(get_tokenizer().encoder), merges=merges)


def test_hf_text_features_with_its_own_tokens_and_mask(hf_pair):
    """transformers pads with EOT and passes an attention mask; the features are those of our zero-padded ids."""
    ref, ours = hf_pair
    enc = _hf_tokenizer()(TEXTS, padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        expected = _features(ref.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]))
        got = ours.encode_text(clip.tokenize(TEXTS).long())
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def _fixture_texts(fixtures_dir):
    return [case["text"] for case in json.loads((fixtures_dir / "tokenizer.json").read_text())["cases"]]


def test_openclip_tokenizer_gives_our_ids(fixtures_dir):
    """Equal on every fixture string but the two that are literally a special token's name: OpenCLIP's tokenizer
    reads them as text, OpenAI's (and ours, checked against it in test_tokenizer.py) as the special id."""
    import open_clip

    texts = _fixture_texts(fixtures_dir)
    theirs, ours = open_clip.get_tokenizer("ViT-B-16")(texts), clip.tokenize(texts, truncate=True).long()
    differ = [t for t, a, b in zip(texts, theirs, ours) if not torch.equal(a, b)]
    assert differ == ["<|startoftext|>", "<|endoftext|>"]


def test_hf_tokenizer_gives_our_ids(fixtures_dir):
    """transformers' CLIPTokenizer (on our vocabulary) gives our ids up to EOT, except where OpenAI's tokenizer
    repairs text with ftfy and unescapes HTML (ligatures, ``&amp;``...), which transformers' does not."""
    texts = _fixture_texts(fixtures_dir)
    ids = _hf_tokenizer()(texts, padding="max_length", truncation=True, max_length=77)["input_ids"]
    ours = clip.tokenize(texts, truncate=True)
    differ = [t for t, theirs, row in zip(texts, ids, ours)
              if theirs[:int((row != 0).sum())] != row[row != 0].tolist()]
    repaired = [t for t in texts
                if html.unescape(html.unescape(ftfy.fix_text(t))) != unicodedata.normalize("NFC", t)]
    assert differ == repaired and len(differ) == 4
