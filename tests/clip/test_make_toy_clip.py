"""tools/make_toy_clip.py: OpenAI layout, fp16, deterministic, loads strictly, and reproduces the parity weights
the golden fixtures were computed with, bit for bit (their documented content fingerprints)."""
from __future__ import annotations

import pytest
import torch

from clip.model import build_model
from tools.make_toy_clip import content_sha256, main, make_toy_clip_state_dict

# Fingerprints of the weights the official code ran on (tests/fixtures/README.md).
PARITY_SHA256 = {
    "vitb16-32px": "a9b135615a946b7187ad8cdadde3a34ce58e9476c3451fb8f5e9ff63d20347c7",
    "vitb16-224px": "a8e130b49998ea7bb9a2ba60fb36afc936e9a5cfd95cfcd49cdb741d0f2c88a8",
    "rn50-64px": "3b3d52122fdb307e3c1d94dc167571333b2e57a7edd9e531a10ff880c094e573",
}


def test_toy_state_dict_layout_and_dtypes():
    sd = make_toy_clip_state_dict(seed=0)
    assert sd["logit_scale"].shape == (1,)
    assert {t.dtype for t in sd.values()} == {torch.float16}
    assert sd["visual.conv1.weight"].shape == (64, 3, 16, 16)
    assert sd["visual.positional_embedding"].shape == (5, 64)
    assert sd["token_embedding.weight"].shape == (49408, 64) and sd["positional_embedding"].shape == (77, 64)
    assert sd["text_projection"].shape == (64, 32) and sd["visual.proj"].shape == (64, 32)
    assert torch.isfinite(torch.stack([t.float().abs().max() for t in sd.values()])).all()
    ln = sd["visual.ln_pre.weight"].float()
    assert 0.5 < ln.mean() < 1.5 and sd["visual.ln_pre.bias"].float().abs().max() < 0.2  # scales ~1, biases ~0


def test_toy_state_dict_is_deterministic_per_seed():
    a, b, c = make_toy_clip_state_dict(0), make_toy_clip_state_dict(0), make_toy_clip_state_dict(1)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["visual.proj"], c["visual.proj"])


def test_toy_model_builds_strictly_with_expected_sizes():
    model = build_model(make_toy_clip_state_dict(0))
    assert (model.vision_width, model.text_width, model.embed_dim) == (64, 64, 32)
    assert len(model.visual.transformer.resblocks) == 2 and len(model.transformer.resblocks) == 2
    assert model.visual.input_resolution == 32 and model.context_length == 77


def test_widths_and_depths_can_be_overridden():
    model = build_model(make_toy_clip_state_dict(1, vision_width=96, text_width=128, layers=(3, 1)))
    assert (model.vision_width, model.text_width) == (96, 128)
    assert (len(model.visual.transformer.resblocks), len(model.transformer.resblocks)) == (3, 1)


def test_cli_writes_the_same_tensors(tmp_path, capsys):
    out = tmp_path / "toy.pt"
    main([str(out), "--seed", "3"])
    expected = make_toy_clip_state_dict(3)
    assert content_sha256(expected) in capsys.readouterr().out
    saved = torch.load(out)
    assert list(saved) == list(expected) and all(torch.equal(saved[k], expected[k]) for k in saved)


@pytest.mark.parametrize("preset, fixture", [("vitb16-32px", "vit_b16_32px_path"), ("rn50-64px", "rn50_64px_path"),
                                             ("vitb16-224px", None)])
def test_parity_presets_reproduce_the_fixture_weights(preset, fixture, request):
    state = (torch.load(request.getfixturevalue(fixture)) if fixture
             else make_toy_clip_state_dict(0, preset=preset))
    assert content_sha256(state) == PARITY_SHA256[preset]
    assert state["logit_scale"].shape == (1,)
    if preset == "rn50-64px":
        assert len(state) == 489 and state["visual.bn1.num_batches_tracked"].dtype == torch.int64
    else:
        assert len(state) == 302


def test_content_fingerprint_sees_every_value():
    sd = make_toy_clip_state_dict(0)
    before = content_sha256(sd)
    sd["ln_final.bias"][0] += 1
    assert content_sha256(sd) != before
