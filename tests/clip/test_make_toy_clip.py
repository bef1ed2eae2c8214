"""tools/make_toy_clip.py: the tiny CLIP is in OpenAI layout, fp16, deterministic, and loads strictly."""
from __future__ import annotations

import torch

from clip.model import build_model
from tools.make_toy_clip import main, make_toy_clip_state_dict


def test_toy_state_dict_layout_and_dtypes():
    sd = make_toy_clip_state_dict(seed=0)
    assert sd["logit_scale"].shape == (1,)
    assert {t.dtype for t in sd.values()} == {torch.float16}
    assert sd["visual.conv1.weight"].shape == (64, 3, 16, 16)
    assert sd["visual.positional_embedding"].shape == (5, 64)
    assert sd["token_embedding.weight"].shape == (49408, 64) and sd["positional_embedding"].shape == (77, 64)
    assert sd["text_projection"].shape == (64, 32) and sd["visual.proj"].shape == (64, 32)
    assert torch.isfinite(torch.stack([t.float().abs().max() for t in sd.values()])).all()


def test_toy_state_dict_is_deterministic_per_seed():
    a, b, c = make_toy_clip_state_dict(0), make_toy_clip_state_dict(0), make_toy_clip_state_dict(1)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["visual.proj"], c["visual.proj"])


def test_toy_model_builds_strictly_with_expected_sizes():
    model = build_model(make_toy_clip_state_dict(0))
    assert (model.vision_width, model.text_width, model.embed_dim) == (64, 64, 32)
    assert len(model.visual.transformer.resblocks) == 2 and len(model.transformer.resblocks) == 2
    assert model.visual.input_resolution == 32 and model.context_length == 77


def test_cli_writes_the_same_tensors(tmp_path, capsys):
    out = tmp_path / "toy.pt"
    main([str(out), "--seed", "3"])
    assert "toy.pt" in capsys.readouterr().out
    saved, expected = torch.load(out), make_toy_clip_state_dict(3)
    assert list(saved) == list(expected) and all(torch.equal(saved[k], expected[k]) for k in saved)
