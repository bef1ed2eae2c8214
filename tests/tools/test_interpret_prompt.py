"""tools/interpret_prompt.py: context vectors equal to known token embeddings -> those words come out first."""
from __future__ import annotations

import pytest
import torch

from clip import clip
from clip.tokenizer import get_tokenizer
from tools.interpret_prompt import interpret, main, nearest_tokens, resolve_checkpoint, text_prompt_keys

WORDS = ["photo</w>", "dog</w>", "a</w>", "painting</w>", "cat</w>", "blurry</w>"]


@pytest.fixture(scope="module")
def embedding(tiny_clip_path) -> torch.Tensor:
    model, _ = clip.load(str(tiny_clip_path), device="cpu")
    return model.token_embedding.weight.detach()  # (49408, 64)


def _ids(words: list[str]) -> list[int]:
    encoder = get_tokenizer().encoder
    return [encoder[w] for w in words]


def _save(path, state_dict) -> None:
    torch.save({"state_dict": state_dict, "epoch": 2, "optimizer": None, "scheduler": None}, path)


def test_nearest_tokens_matches_cdist(embedding):
    gen = torch.Generator().manual_seed(0)
    vectors = torch.randn(3, embedding.shape[1], generator=gen)
    indices, distances = nearest_tokens(vectors, embedding, topk=4)
    full = ((vectors[:, None, :] - embedding[None].float()) ** 2).sum(-1).sqrt()
    expected = full.sort(dim=1)
    assert torch.equal(indices, expected.indices[:, :4])
    assert torch.allclose(distances, expected.values[:, :4], atol=1e-6)
    with pytest.raises(ValueError, match="token embedding width"):
        nearest_tokens(torch.zeros(2, 7), embedding, 3)


def test_coop_checkpoint_words_first(tmp_path, tiny_clip_path, embedding, capsys):
    ids = _ids(WORDS[:4])
    ctx = embedding[ids].clone() + 1e-3  # slightly off the token embedding: still the nearest
    model_dir = tmp_path / "seed1" / "prompt_learner"
    model_dir.mkdir(parents=True)
    _save(model_dir / "model.pth.tar-2", {"ctx": ctx, "token_prefix": torch.zeros(5, 1, 64)})
    _save(model_dir / "model.pth.tar-10", {"ctx": ctx.flip(0)})  # the last epoch of the folder
    assert resolve_checkpoint(tmp_path / "seed1").name == "model.pth.tar-10"
    assert main([str(model_dir / "model.pth.tar-2"), "2", "--clip", str(tiny_clip_path)]) == 0  # official args
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "ctx [4, 64], layer 0"
    for position, (line, word) in enumerate(zip(out[2:6], WORDS[:4]), start=1):
        assert line.startswith(f"{position}: ['{word}', ")
        assert "] ['0.0080', " in line  # |1e-3 * ones(64)| = 0.008
    assert len(out) == 6
    assert main([str(tmp_path / "seed1"), "--topk", "1", "--clip", str(tiny_clip_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith(f"1: ['{WORDS[3]}'] ") and len(out[2].split("] [")) == 2


def test_class_specific_context(embedding):
    ids = torch.tensor(_ids(WORDS)).reshape(2, 3)
    report = interpret({"ctx": embedding[ids].clone()}, embedding, topk=3)
    (prompt,) = report
    assert prompt.shape == (2, 3, 64) and prompt.indices.shape == (2, 3, 3)
    assert torch.equal(prompt.indices[..., 0], ids)
    assert torch.all(prompt.distances[..., 0] == 0)


def test_maple_per_layer_text_prompts(tmp_path, tiny_clip_path, embedding, capsys):
    state = {
        "prompt_learner.ctx": embedding[_ids(["a</w>", "photo</w>"])].clone(),
        "prompt_learner.proj.weight": torch.zeros(64, 64),
        "prompt_learner.compound_prompts_text.1": embedding[_ids(["cat</w>", "dog</w>"])].clone(),
        "prompt_learner.compound_prompts_text.0": embedding[_ids(["blurry</w>", "painting</w>"])].clone(),
        "prompt_learner.compound_prompt_projections.0.weight": torch.zeros(64, 64),
        "image_encoder.transformer.resblocks.1.VPT_shallow": torch.zeros(2, 64),  # vision: no vocabulary
    }
    assert text_prompt_keys(state) == [("prompt_learner.ctx", 0), ("prompt_learner.compound_prompts_text.0", 1),
                                       ("prompt_learner.compound_prompts_text.1", 2)]
    assert text_prompt_keys({"text_encoder.transformer.resblocks.3.VPT_shallow": torch.zeros(2, 64)}) == [
        ("text_encoder.transformer.resblocks.3.VPT_shallow", 3)]
    path = tmp_path / "model.pth.tar-5"
    _save(path, state)
    assert main([str(path), "--topk", "1", "--clip", str(tiny_clip_path)]) == 0
    out = capsys.readouterr().out.splitlines()[1:]
    assert out == ["prompt_learner.ctx [2, 64], layer 0", "1: ['a</w>'] ['0.0000']", "2: ['photo</w>'] ['0.0000']",
                   "prompt_learner.compound_prompts_text.0 [2, 64], layer 1", "1: ['blurry</w>'] ['0.0000']",
                   "2: ['painting</w>'] ['0.0000']",
                   "prompt_learner.compound_prompts_text.1 [2, 64], layer 2", "1: ['cat</w>'] ['0.0000']",
                   "2: ['dog</w>'] ['0.0000']"]


def test_official_maple_checkpoint_keys(fixtures_dir):
    from engine.checkpoint import load_checkpoint

    state = load_checkpoint(str(fixtures_dir / "train_runs" / "caltech101" / "MaPLe" / "MultiModalPromptLearner"
                                / "model.pth.tar-2"))["state_dict"]
    keys = text_prompt_keys(state)
    assert keys[0] == ("prompt_learner.ctx", 0)
    assert [layer for _, layer in keys] == list(range(9))  # depth 9: shallow + 8 deep text prompts


def test_errors(tmp_path, tiny_clip_path, capsys):
    assert main([str(tmp_path / "none"), "--clip", str(tiny_clip_path)]) == 1
    assert "no checkpoint" in capsys.readouterr().err
    path = tmp_path / "model.pth.tar-1"
    _save(path, {"meta_net.linear1.weight": torch.zeros(4, 64)})
    assert main([str(path), "--clip", str(tiny_clip_path)]) == 1
    assert "no text prompt" in capsys.readouterr().err
