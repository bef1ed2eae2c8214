"""MuDPT / UMuDPT / UUMuDPT equal the authors' code (tests/fixtures/mudpt) and keep their defining properties.

Tolerances (fixture README): logits 1e-4 abs, loss 1e-5, gradients 1e-4 of each tensor's abs max.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from engine.checkpoint import load_learnable
from trainers.base import PromptedCLIP
from trainers.ivlp import IVLPPromptLearner
from trainers.mudpt import LinearInjection, MuDPTPromptLearner, TransformerInjection

from .helpers import assert_official_init, build, caltech_argv, check_against_fixture

CONFIGS = {"MuDPT": "MuDPT/vit_b16_bz4_ep10_nctx4_depth9.yaml", "UMuDPT": "UMuDPT/vit_b16_bz4_ep5_nctx2_depth9.yaml",
           "UUMuDPT": "UUMuDPT/vit_b16_bz4_ep10_nctx4_depth9.yaml"}
# README table: learnable parameters at ViT-B/16 widths = a * depth * n_ctx + b
COUNT = {"MuDPT": (1280, 1_181_696), "UMuDPT": (512, 3_548_416), "UUMuDPT": (1280, 11_033_088)}


def _opts(variant, n_ctx=4, depth=9, prec="fp32"):
    node = f"TRAINER.{variant.upper()}"
    return [f"{node}.N_CTX", str(n_ctx), f"{node}.DEEP_PROMPT_DEPTH", str(depth), f"{node}.PREC", prec]


def _build(variant, data_root, out, weights, extra=()):
    return build(caltech_argv(data_root, out, weights, variant, CONFIGS[variant], 32, extra))


def _regenerate(key, entry):
    """The fixture's size-budget tensors, rebuilt with its recipe (and checked against its stored sample)."""
    if not (isinstance(entry, dict) and entry.get("__regenerate__")):
        return entry
    shape = tuple(entry["shape"])
    bound = (6 / (shape[0] + shape[1])) ** 0.5 if key.endswith("in_proj_weight") else shape[1] ** -0.5
    seed = zlib.crc32(key.encode("utf-8"))
    assert (seed, pytest.approx(bound)) == (entry["seed"], entry["bound"])
    value = torch.from_numpy(np.random.RandomState(seed).uniform(-bound, bound, size=shape).astype(np.float32))
    assert torch.equal(value.reshape(-1)[torch.as_tensor(entry["flat_index"])], torch.as_tensor(entry["values"]))
    return value


def _learnable(module):
    return {k: p for k, p in module.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("variant", ["MuDPT", "UMuDPT", "UUMuDPT"])
def test_variant_matches_official(variant, fixtures_dir, data_root, vit_b16_32px_path, tmp_path):
    fx = torch.load(fixtures_dir / "mudpt" / f"trainer_{variant}.pt", map_location="cpu", weights_only=False)
    trainer = _build(variant, data_root, tmp_path / "out", vit_b16_32px_path, _opts(variant))
    assert list(trainer.dm.dataset.classnames) == list(fx["classnames"])
    assert_official_init(trainer, fx)  # seed 1 draws the authors' tensors, vision side inside CLIP's construction
    assert trainer.get_model_names() == fx["registered_models"]
    name = fx["registered_models"][0]
    state = {k: _regenerate(k, v) for k, v in fx["state_dict"].items()}
    report = load_learnable(trainer.model, trainer.import_state_dict(name, state))
    params = _learnable(trainer.model)
    assert set(report.loaded) == set(params) and not report.unexpected
    a, b = COUNT[variant]
    assert sum(p.numel() for p in params.values()) == fx["n_learnable_params"] == a * 9 * 4 + b
    learner = trainer.model.prompt_learner
    assert sorted(learner.text_inputs()["deep"]) == sorted(learner.vision_prompts()[1]) == list(range(1, 9))

    check_against_fixture(trainer, fx, loss_atol=1e-5)

    # Our checkpoints carry the authors' key names, and nothing but the learnable tensors.
    trainer.save_model(0, str(tmp_path / "ckpt"))
    saved = torch.load(tmp_path / "ckpt" / name / "model.pth.tar-1", weights_only=False)["state_dict"]
    assert sorted(saved) == sorted(fx["state_dict"])

    # Parameter counts of the README table at ViT-B/16 widths (other N_CTX / depths).
    for n_ctx, depth in ((2, 5), (2, 9), (4, 5)):
        other = MuDPTPromptLearner(trainer.model.clip, ["a", "b"], variant, n_ctx, "a photo of a", depth)
        assert sum(p.numel() for p in other.parameters()) == a * depth * n_ctx + b


def _zero_injections(learner):
    """Force every injection output to zero (its last linear map -> 0), leaving each tower's own prompts."""
    with torch.no_grad():
        for module in (learner.text_to_vision, learner.vision_to_text):
            if isinstance(module, LinearInjection):
                linears = [m for m in (module.shallow, module.deep) if m is not None]
            elif isinstance(module, TransformerInjection):
                linears = [module.proj]
            else:
                assert module is None
                continue
            for lin in linears:
                lin.weight.zero_()
                lin.bias.zero_()


def _ivlp_twin(trainer, learner, depth, with_vision):
    """IVLP (independent prompts) holding the same prompt tokens as ``learner``."""
    clip_model = trainer.model.clip
    twin = IVLPPromptLearner(clip_model, list(trainer.dm.dataset.classnames), learner.text_ctx.shape[0],
                             "a photo of a", depth, learner.text_ctx.shape[0], depth if with_vision else 0)
    with torch.no_grad():
        twin.ctx.copy_(learner.text_ctx)
        for k, p in enumerate(twin.text_deep):
            p.copy_(learner.text_deep[k])
        if with_vision:
            twin.vision_shallow.copy_(learner.vision_ctx)
            for k, p in enumerate(twin.vision_deep):
                p.copy_(learner.vision_deep[k])
    return PromptedCLIP(clip_model, twin).eval()


@pytest.mark.parametrize("variant", ["MuDPT", "UUMuDPT", "UMuDPT"])
def test_zero_injection_is_independent_prompting(variant, data_root, tmp_path, tiny_clip_path):
    # N_CTX = number of CTX_INIT words, so MuDPT and IVLP tokenize the same "a photo of a <class>." prompts.
    trainer = _build(variant, data_root, tmp_path / "out", tiny_clip_path, _opts(variant, 4, 2))
    learner = trainer.model.prompt_learner
    with torch.no_grad():  # make the towers' own prompts differ from what the injections would emit
        for p in learner.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    _zero_injections(learner)
    images = next(iter(trainer.dm.test_loader))["img"][:4]
    trainer.set_model_mode("eval")
    with torch.no_grad():
        ours = trainer.model_inference(images)
        if variant != "UMuDPT":
            twin = _ivlp_twin(trainer, learner, 2, with_vision=True)
            torch.testing.assert_close(ours, twin(images), atol=1e-5, rtol=0)
            return
        # UMuDPT owns no visual prompt: its visual prompts come only from text, zero without the injection,
        # and the text side is text-only deep prompting.
        assert not any(k.startswith("vision") for k, _ in learner.named_parameters())
        shallow, deep = learner.vision_prompts()
        assert not shallow.any() and not any(t.any() for t in deep.values())
        twin = _ivlp_twin(trainer, learner, 2, with_vision=False)
        torch.testing.assert_close(trainer.model.text_features(), twin.text_features(), atol=1e-6, rtol=0)


def test_prompt_keeps_first_n_ctx_words_and_rejects_too_many(data_root, tmp_path, tiny_clip_path):
    from clip import clip

    trainer = _build("UMuDPT", data_root, tmp_path / "out", tiny_clip_path, _opts("UMuDPT", 2, 3))
    learner = trainer.model.prompt_learner
    names = [n.replace("_", " ") for n in trainer.dm.dataset.classnames]
    assert torch.equal(learner.tokens, clip.tokenize([f"a photo {n}." for n in names]).long())
    word = trainer.model.clip.token_embedding(clip.tokenize("a photo").long())[0, 1:3].float()
    torch.testing.assert_close(learner.text_ctx.detach(), word)
    assert learner.text_deep.stacked().shape == (2, 2, 64)
    assert learner.text_blocks == [1] and learner.vision_blocks == [1]
    with pytest.raises(ValueError, match=r"N_CTX \(5\) is larger than the number of CTX_INIT words \(4"):
        MuDPTPromptLearner(trainer.model.clip, names, "MuDPT", 5, "a photo of a", 9)
    with pytest.raises(ValueError, match="DEEP_PROMPT_DEPTH is 0"):
        MuDPTPromptLearner(trainer.model.clip, names, "MuDPT", 2, "a photo of a", 0)
    random_ctx = MuDPTPromptLearner(trainer.model.clip, names, "MuDPT", 6, "", 1)
    assert random_ctx.text_ctx.shape == (6, 64) and random_ctx.vision_prompts()[1] is None


def test_whole_model_official_checkpoint_loads(data_root, tmp_path, tiny_clip_path, caplog):
    # The authors save the whole CustomCLIP: their frozen CLIP keys and token buffers are ignored on load.
    trainer = _build("UUMuDPT", data_root, tmp_path / "out", tiny_clip_path, _opts("UUMuDPT", 2, 2))
    name = "UnifiedMultimodalDeepPromptTuning"
    trainer.save_model(0, str(tmp_path / "ckpt"))
    path = tmp_path / "ckpt" / name / "model.pth.tar-1"
    ckpt = torch.load(path, weights_only=False)
    expected = {k: v.clone() + 1 for k, v in ckpt["state_dict"].items()}
    frozen = {"uumudpt_prompt_learner.token_prefix": torch.zeros(6, 1, 64), "logit_scale": torch.zeros(()),
              "text_encoder.ln_final.weight": torch.zeros(64), "image_encoder.conv1.weight": torch.zeros(1),
              "image_encoder.transformer.resblocks.0.ln_1.weight": torch.zeros(64)}
    ckpt["state_dict"] = {**expected, **frozen}
    torch.save(ckpt, path)
    with caplog.at_level("WARNING"):
        trainer.load_model(str(tmp_path / "ckpt"), epoch=1)
    assert "unexpected" not in caplog.text
    loaded = trainer.export_state_dict(name, {k: p.detach() for k, p in _learnable(trainer.model).items()})
    assert sorted(loaded) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, atol=0, rtol=0)


def test_levels_past_the_last_block_are_kept_and_only_decay(data_root, tmp_path, tiny_clip_path):
    # Depth 9 on the 2-block tiny CLIP: level 0 enters block 1; levels 1..7 keep the authors' tensor shapes, but no
    # block reads them: their gradient is zero and SGD only applies weight decay, as to the rows of the authors'
    # stacked tensor.
    trainer = _build("MuDPT", data_root, tmp_path / "out", tiny_clip_path, _opts("MuDPT", 2, 9))
    learner = trainer.model.prompt_learner
    towers = (learner.text_deep, learner.vision_deep)
    before = [[p.detach().clone() for p in tower] for tower in towers]
    decay = 1 - trainer.get_current_lr() * trainer.cfg.OPTIM.WEIGHT_DECAY
    trainer.set_model_mode("train")
    trainer.forward_backward(next(iter(trainer.dm.train_loader_x)))
    for tower, old in zip(towers, before):
        assert len(tower) == 8 and tower[0].grad.abs().sum() > 0
        for p, value in zip(list(tower)[1:], old[1:]):
            assert torch.equal(p.grad, torch.zeros_like(p))
            torch.testing.assert_close(p.detach(), value * decay, atol=0, rtol=1e-6)
    trainer.save_model(0, str(tmp_path / "ckpt"))
    saved = torch.load(tmp_path / "ckpt" / "MultimodalDeepPromptTuning" / "model.pth.tar-1", weights_only=False)
    for key in ("mudpt_prompt_learner.deep_prompts", "image_encoder.visual_ctx_deep_prompts"):
        assert saved["state_dict"][key].shape == (8, 2, 64)
