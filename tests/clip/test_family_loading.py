"""Loading OpenCLIP and Hugging Face checkpoints: local layouts, names, Hub downloads (a local stand-in), the
checkpoint's own preprocessing, and a clear refusal of every architecture our CLIP cannot express."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image

from clip import clip, hf, openclip
from clip.model import CLIP, CheckpointError, infer_architecture
from tests.conftest import TINY_HF, TINY_OPENCLIP, save_hf, save_openclip

pytestmark = pytest.mark.usefixtures("one_thread")
ATOL = 1e-5


def _image() -> Image.Image:
    pixels = torch.arange(48 * 40 * 3, dtype=torch.uint8).reshape(40, 48, 3).numpy()
    return Image.fromarray(pixels)


def _check_openclip_outputs(ours: CLIP, ref) -> None:
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tokens = clip.tokenize(["a photo of a cat.", "X X dalmatian"]).long()
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_image(images), ref.encode_image(images), atol=ATOL, rtol=0)
        torch.testing.assert_close(ours.encode_text(tokens), ref.encode_text(tokens), atol=ATOL, rtol=0)


# ------------------------------------------------------------------ OpenCLIP
def test_openclip_folder_loads_by_path_alone(tmp_path):
    ref = save_openclip(tmp_path / "m", TINY_OPENCLIP)
    for path in (tmp_path / "m", tmp_path / "m" / "open_clip_model.safetensors"):
        model, _ = clip.load("", path=path)
        assert model.family == "openclip" and not model.training
        assert model.vision_options.layer_scale and model.vision_options.mlp_width == 192
        assert model.visual.transformer.resblocks[0].attn.heads == 2 and model.text_options.activation == "gelu"
        _check_openclip_outputs(model, ref)


def test_openclip_preprocessing_is_the_checkpoints_own(tmp_path):
    """The returned transform equals OpenCLIP's own for the preprocess_cfg its config file carries."""
    import open_clip

    cfg = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.3, 0.4], "interpolation": "bilinear", "resize_mode": "squash"}
    save_openclip(tmp_path / "m", TINY_OPENCLIP, preprocess_cfg=cfg)
    model, preprocess = clip.load("", path=tmp_path / "m")
    assert model.preprocess.mean == (0.5, 0.4, 0.3) and model.preprocess.resize_mode == "squash"
    theirs = open_clip.image_transform(32, is_train=False, **cfg)
    torch.testing.assert_close(preprocess(_image()), theirs(_image()), atol=0, rtol=0)


def test_openclip_training_checkpoint_and_architecture_name(tmp_path):
    """A training checkpoint ({"state_dict": {"module." keys}}) loads; a bare file needs the architecture named."""
    import open_clip

    ref = save_openclip(tmp_path / "m", TINY_OPENCLIP)
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}
    bare = tmp_path / "bare" / "epoch_3.pt"
    bare.parent.mkdir()
    torch.save(wrapped, bare)
    with pytest.raises(CheckpointError, match="an OpenCLIP one loads with MODEL.BACKBONE.NAME openclip:ARCH"):
        clip.load("", path=bare)  # no open_clip_config.json beside it, no family named: read as OpenAI's
    arch = tmp_path / "tiny-test-arch.json"
    arch.write_text(json.dumps(TINY_OPENCLIP))
    open_clip.add_model_config(arch)  # adds "tiny-test-arch" to OpenCLIP's table
    model, _ = clip.load("openclip:tiny-test-arch", path=bare)
    _check_openclip_outputs(model, ref)
    with pytest.raises(CheckpointError, match="names no weights"):
        clip.load("openclip:tiny-test-arch")


@pytest.mark.parametrize("name,reason", [
    ("convnext_base", "timm's 'convnext_base'"),
    ("EVA02-B-16", "timm's"),
    ("ViT-B-16-SigLIP", "sigmoid loss"),
    ("ViT-L-14-CLIPA", "tokens of bert-base-uncased"),
    ("coca_ViT-B-32", "CoCa"),
    ("xlm-roberta-base-ViT-B-32", "Hugging Face model 'xlm-roberta-base'"),
])
def test_openclip_towers_we_cannot_express_are_refused(name, reason):
    import open_clip

    assert any(reason in r for r in openclip.refusals(open_clip.get_model_config(name)))
    tag = (open_clip.list_pretrained_tags_by_model(name) or ["x"])[0]
    with pytest.raises(CheckpointError, match=f"OpenCLIP model {name} cannot be loaded"):
        clip.load(f"openclip:{name}/{tag}")  # refused from the table, before any download


@pytest.mark.parametrize("change,reason", [
    ({"vision_cfg": {"pos_embed_type": "sin_cos_2d"}}, "not a learned embedding"),
    ({"text_cfg": {"tokenizer_mode": "clips"}}, "tokens of another vocabulary"),
    ({"text_cfg": {"pool_type": "last"}}, "pooled at 'last'"),
    ({"vision_cfg": {"qk_norm": True}}, "image blocks use ['qk_norm']"),
])
def test_openclip_config_choices_we_cannot_express_are_named(change, reason):
    assert any(reason in r for r in openclip.refusals(change))


def test_unknown_openclip_names_list_the_choices():
    with pytest.raises(CheckpointError, match="not an OpenCLIP architecture; known: .*ViT-B-16"):
        clip.load("openclip:ViT-Q-99/laion")
    with pytest.raises(CheckpointError, match="no pretrained tag 'nope' for ViT-B-16; its tags: .*laion2b_s34b_b88k"):
        clip.load("openclip:ViT-B-16/nope")


# kinds of tower among the 42 loadable models of OpenCLIP's table beyond the parity tests' ViT-B-16, ViT-B-32-quickgelu
# and RN50 (the others differ in size only): wider ResNets, 14 heads, a 4.36 MLP ratio and head width 88, layer
# scale, text towers narrower than the image tower, 336 px
REPRESENTATIVE = ["RN50x4-quickgelu", "RN101", "ViT-B-16-plus-240", "ViT-g-14", "ViT-M-16-alt", "ViT-S-32-alt",
                  "ViT-L-14-336"]


def test_loadable_openclip_architectures_fit_our_clip():
    """OpenCLIP's table: the models we load include the widely used ones, and representative ones have exactly our
    keys and shapes (both built on the meta device: no memory, no weights) with the heads and activation their
    configs ask for."""
    import open_clip

    loadable = [name for name in open_clip.list_models() if not openclip.refusals(open_clip.get_model_config(name))]
    assert {"ViT-B-16", "ViT-B-32-quickgelu", "ViT-L-14", "ViT-H-14", "ViT-bigG-14", "RN50", "ViT-M-16-alt"} <= set(
        loadable) and set(REPRESENTATIVE) <= set(loadable)
    for name in REPRESENTATIVE:
        config = open_clip.get_model_config(name)
        chosen = openclip.choices(config, bool(config.get("quick_gelu")))
        with torch.device("meta"):
            ref = open_clip.create_model(name, pretrained=None, device="meta")
            arch, options = infer_architecture(ref.state_dict(), chosen)
            ours = CLIP(**arch, **options)
        shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
        assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == shapes, name
        pairs = [(ours.transformer, ref.transformer)]
        if hasattr(ref.visual, "transformer"):
            pairs.append((ours.visual.transformer, ref.visual.transformer))
        for mine, theirs in pairs:
            assert mine.resblocks[0].attn.heads == theirs.resblocks[0].attn.num_heads, name
            assert type(mine.resblocks[0].mlp.gelu).__name__ == type(theirs.resblocks[0].mlp.gelu).__name__, name


# ------------------------------------------------------------------ Hugging Face
def _check_hf_outputs(ours: CLIP, ref) -> None:
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tokens = clip.tokenize(["a photo of a cat.", "X X dalmatian"]).long()
    with torch.no_grad():
        out = ref(input_ids=tokens, pixel_values=images)
        logits, _ = ours(images, tokens)
    torch.testing.assert_close(logits, out.logits_per_image, atol=ATOL, rtol=0)
    torch.testing.assert_close(torch.nn.functional.normalize(ours.encode_text(tokens), dim=-1), out.text_embeds,
                               atol=ATOL, rtol=0)


def test_hf_folder_loads_by_path_alone(tmp_path):
    ref = save_hf(tmp_path / "m", TINY_HF)
    for path in (tmp_path / "m", tmp_path / "m" / "model.safetensors"):
        model, _ = clip.load("", path=path)
        assert model.family == "hf" and model.text_options.activation == "gelu"
        assert model.vision_options.activation == "quick_gelu" and model.text_options.mlp_width == 96
        assert model.visual.transformer.resblocks[0].attn.heads == 4 and model.transformer.resblocks[0].attn.heads == 2
        _check_hf_outputs(model, ref)


def test_hf_preprocessing_and_legacy_position_ids(tmp_path):
    """preprocessor_config.json sets the transform; older files' saved position_ids are checked and dropped."""
    ref = save_hf(tmp_path / "m", TINY_HF)
    (tmp_path / "m" / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "resample": 2, "do_center_crop": True,
         "size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}))
    state = dict(ref.state_dict())
    state["text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    (tmp_path / "m" / "model.safetensors").unlink()
    torch.save(state, tmp_path / "m" / "pytorch_model.bin")
    model, preprocess = clip.load("", path=tmp_path / "m")
    assert model.preprocess.mean == (0.5, 0.5, 0.5) and model.preprocess.interpolation == "bilinear"
    assert preprocess(_image()).shape == (3, 32, 32)
    _check_hf_outputs(model, ref)
    state["text_model.embeddings.position_ids"] = torch.arange(77).flip(0).unsqueeze(0)
    with pytest.raises(CheckpointError, match="position_ids is not 0 .. 76"):
        hf.convert_state_dict(state)


@pytest.mark.parametrize("change,message", [
    ({"model_type": "siglip"}, "model_type 'siglip', not a transformers CLIPModel"),
    ({"text_config": {"hidden_act": "gelu_new"}}, "hidden_act is 'gelu_new'"),
    ({"text_config": {"vocab_size": 250002}}, "tokenises with CLIP's BPE"),
])
def test_hf_configs_we_cannot_express_are_refused(change, message):
    with pytest.raises(CheckpointError, match=message):
        hf.choices({"model_type": "clip", **change}, "x")


def test_hf_keys_of_other_models_are_refused(tmp_path):
    ref = save_hf(tmp_path / "m", TINY_HF)
    state = {**ref.state_dict(), "classifier.weight": torch.zeros(2, 64)}
    with pytest.raises(CheckpointError, match=r"not those of a transformers CLIPModel: \['classifier.weight'\]"):
        hf.convert_state_dict(state)


# ------------------------------------------------------------------ downloads (a local stand-in for the Hub)
def test_hf_name_downloads_through_the_hub_and_caches(fake_hub, tmp_path, monkeypatch):
    root, requests = fake_hub
    ref = save_hf(root / "org" / "tiny-clip", TINY_HF)
    cache = tmp_path / "cache"
    model, _ = clip.load("hf:org/tiny-clip@v1.0", download_root=cache)
    _check_hf_outputs(model, ref)
    assert any("/org/tiny-clip/resolve/v1.0/model.safetensors" in r for r in requests)
    snapshots = list(cache.glob("models--org--tiny-clip/snapshots/*/model.safetensors"))
    assert [p.parts[-2] for p in snapshots] == ["0123456789abcdef0123456789abcdef01234567"]
    shutil.rmtree(root / "org")  # the server no longer has it: offline, the cache serves
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    again, _ = clip.load("hf:org/tiny-clip@0123456789abcdef0123456789abcdef01234567", download_root=cache)
    _check_hf_outputs(again, ref)


def test_openclip_hub_name_downloads_config_and_weights(fake_hub, tmp_path):
    root, _ = fake_hub
    ref = save_openclip(root / "org" / "tiny-openclip", TINY_OPENCLIP)
    model, _ = clip.load("openclip:hf-hub:org/tiny-openclip", download_root=tmp_path / "cache")
    assert model.family == "openclip"
    _check_openclip_outputs(model, ref)


def test_missing_hub_repository_or_file_is_clear(fake_hub, tmp_path):
    root, _ = fake_hub
    (root / "org" / "empty").mkdir(parents=True)
    (root / "org" / "empty" / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(FileNotFoundError, match=r"has none of \['model.safetensors', 'pytorch_model.bin'\]"):
        clip.load("hf:org/empty", download_root=tmp_path / "cache")
    with pytest.raises(RuntimeError, match="could not fetch config.json of org/absent.*MODEL.BACKBONE.PATH"):
        clip.load("hf:org/absent", download_root=tmp_path / "cache")


def test_openclip_table_name_downloads_its_tags_weights_with_its_preprocessing(fake_hub, tmp_path, monkeypatch):
    """openclip:ARCH/TAG: OpenCLIP's table names the Hub repository and the preprocessing; QuickGELU follows the tag."""
    import open_clip

    root, requests = fake_hub
    ref = save_openclip(root / "org" / "tiny-tagged", {**TINY_OPENCLIP, "quick_gelu": True})
    arch = tmp_path / "tiny-tagged-arch.json"
    arch.write_text(json.dumps(TINY_OPENCLIP))
    open_clip.add_model_config(arch)
    tag = {"hf_hub": "org/tiny-tagged/", "quick_gelu": True, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
           "interpolation": "bilinear", "resize_mode": "shortest"}
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda model, name: tag if name == "mytag" else {})
    model, _ = clip.load("openclip:tiny-tagged-arch/mytag@v2", download_root=tmp_path / "cache")
    assert model.text_options.activation == "quick_gelu" and model.preprocess.interpolation == "bilinear"
    assert any(r.endswith("/org/tiny-tagged/resolve/v2/open_clip_model.safetensors") for r in requests)
    _check_openclip_outputs(model, ref)


@pytest.mark.filterwarnings("ignore:.*(deprecated|TorchScript archive)")  # torch.jit's own, expected here
@pytest.mark.parametrize("family,weights_name", [("openclip", "open_clip_pytorch_model.bin"),
                                                 ("hf", "pytorch_model.bin")])
def test_family_files_are_never_read_as_torchscript(family, weights_name, tmp_path):
    """Only OpenAI's releases are TorchScript archives; a family's file is read as tensors only (weights_only)."""
    (tmp_path / "m").mkdir()
    if family == "openclip":
        (tmp_path / "m" / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_OPENCLIP}))
    else:
        (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "clip", **TINY_HF}))
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "m" / weights_name))
    with pytest.raises(CheckpointError, match="TorchScript: not tried .*weights_only"):
        clip.load("", path=tmp_path / "m")
