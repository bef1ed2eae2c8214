"""MODEL.INIT_WEIGHTS initialises the learnable tensors from our or an official-format checkpoint."""
from __future__ import annotations

import pytest
import torch

from .helpers import build, caltech_argv


@pytest.mark.parametrize("trainer,config,key", [
    ("CoOp", "CoOp/vit_b16.yaml", "ctx"),
    ("IVLP", "IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml", "image_encoder.VPT"),  # official name, renamed on import
])
def test_init_weights_loads_learnable_tensors(trainer, config, key, data_root, tmp_path, tiny_clip_path):
    first = build(caltech_argv(data_root, tmp_path / "a", tiny_clip_path, trainer, config, 32))
    first.save_model(0, str(tmp_path / "a"))
    name = first.get_model_names()[0]
    saved = torch.load(tmp_path / "a" / name / "model.pth.tar-1", map_location="cpu", weights_only=False)
    assert key in saved["state_dict"]
    wanted = {k: torch.randn_like(v) for k, v in saved["state_dict"].items()}
    saved["state_dict"] = wanted
    torch.save(saved, tmp_path / "init.pth")
    second = build(caltech_argv(data_root, tmp_path / "b", tiny_clip_path, trainer, config, 32,
                                ["MODEL.INIT_WEIGHTS", str(tmp_path / "init.pth")]))
    exported = second.export_state_dict(name, {k: p for k, p in second._models[name].named_parameters()
                                               if p.requires_grad})
    assert set(exported) == set(wanted)
    for k, v in wanted.items():
        torch.testing.assert_close(exported[k].detach(), v)
