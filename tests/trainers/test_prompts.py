"""The building blocks every learner shares (trainers/prompts.py): the context initialiser and its three word
rules, deep prompt levels, and the checkpoint key mapping (block offsets, stacked official tensors)."""
from __future__ import annotations

import logging

import pytest
import torch

from clip import clip
from trainers.prompts import (FIRST_WORDS, SHORT_PHRASE, WHOLE_PHRASE, PromptLevels, deep_by_block, init_context,
                              rename_keys)


@pytest.fixture(scope="module")
def tiny(tiny_clip_path):
    model, _ = clip.load(str(tiny_clip_path))
    return model


def _words(model, phrase, n):
    with torch.no_grad():
        return model.token_embedding(clip.tokenize(phrase).long())[0, 1:1 + n].float()


def test_the_three_word_rules(tiny):
    # CoOp/CoCoOp: the whole phrase is learned, N_CTX becomes its word count.
    ctx, phrase = init_context(tiny, 16, "a_photo_of_a", WHOLE_PHRASE, "TRAINER.COOP")
    assert phrase == "a photo of a" and torch.equal(ctx, _words(tiny, "a photo of a", 4))
    # MuDPT: the phrase is cut to its first N_CTX words.
    ctx, phrase = init_context(tiny, 2, "a photo of a", FIRST_WORDS, "TRAINER.MUDPT")
    assert phrase == "a photo" and torch.equal(ctx, _words(tiny, "a photo", 2))
    # MaPLe/IVLP: the first N_CTX tokens are learned and the whole phrase stays in the prompts.
    ctx, phrase = init_context(tiny, 2, "a photo of a", SHORT_PHRASE, "TRAINER.MAPLE")
    assert phrase == "a photo of a" and torch.equal(ctx, _words(tiny, "a photo", 2))


def test_random_contexts_draw_as_before(tiny, caplog):
    torch.manual_seed(0)
    expected = torch.empty(3, 5, 64).normal_(std=0.02)
    torch.manual_seed(0)
    ctx, phrase = init_context(tiny, 5, "", WHOLE_PHRASE, "TRAINER.COOP", n_classes=3)  # CoOp's CSC
    assert torch.equal(ctx, expected) and phrase == "X X X X X"
    torch.manual_seed(0)
    expected = torch.empty(5, 64).normal_(std=0.02)
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING):
        ctx, phrase = init_context(tiny, 5, "a photo of a", SHORT_PHRASE, "TRAINER.IVLP")  # N_CTX > 4: random
    assert torch.equal(ctx, expected) and phrase == "X X X X X"
    assert "TRAINER.IVLP.CTX_INIT is not used" in caplog.text


@pytest.mark.parametrize("n_ctx,ctx_init,words,match", [
    (5, "a photo of a", FIRST_WORDS, r"N_CTX \(5\) is larger than the number of CTX_INIT words"),
    (4, "a photo", SHORT_PHRASE, "has 2 tokens but N_CTX is 4"),
    (0, "", SHORT_PHRASE, "TRAINER.X.N_CTX is 0"),
    (0, "a photo", FIRST_WORDS, "TRAINER.X.N_CTX is 0"),
    (2, "a photo", "first_tokens", "unknown context rule"),
])
def test_bad_contexts_are_clear(tiny, n_ctx, ctx_init, words, match):
    with pytest.raises(ValueError, match=match):
        init_context(tiny, n_ctx, ctx_init, words, "TRAINER.X")


@pytest.mark.parametrize("single_draw", [False, True])
def test_levels_draw_in_the_methods_order(single_draw):
    torch.manual_seed(0)
    draws = torch.empty(3, 3, 24).normal_(std=0.02) if single_draw else torch.stack(
        [torch.empty(3, 24).normal_(std=0.02) for _ in range(3)])
    torch.manual_seed(0)
    levels = PromptLevels(3, 3, 24, single_draw=single_draw)
    assert [name for name, _ in levels.named_parameters()] == ["0", "1", "2"]
    assert torch.equal(levels.stacked(), draws)
    assert all(p.data_ptr() != levels[0].data_ptr() for p in list(levels)[1:])  # separate tensors


def test_deep_by_block_and_no_levels():
    levels = PromptLevels(3, 2, 8)
    deep = deep_by_block(levels)
    assert sorted(deep) == [1, 2, 3] and deep[2] is levels[1]
    assert sorted(deep_by_block(levels, blocks=[1, 2])) == [1, 2]
    empty = PromptLevels(0, 2, 8)
    assert deep_by_block(empty) is None and empty.stacked().shape == (0, 2, 8)
    assert dict(empty.state_dict()) == {}  # the placeholder is not a checkpoint entry


def test_key_mapping_offsets_and_stacking_round_trip():
    pairs = [("p.ctx", "official.ctx"), ("p.deep.{i}", "enc.blocks.{i+1}.prompt"), ("p.rows.{i}", "official.rows[{i}]"),
             ("p.net", "official.net")]
    ours = {"p.ctx": torch.zeros(2), "p.deep.0": torch.ones(2), "p.deep.1": 2 * torch.ones(2),
            "p.rows.0": torch.zeros(2, 3), "p.rows.1": torch.ones(2, 3), "p.net.weight": torch.ones(1),
            "clip.frozen": torch.ones(1)}
    official = rename_keys(ours, pairs)
    assert list(official) == ["official.ctx", "enc.blocks.1.prompt", "enc.blocks.2.prompt", "official.rows",
                              "official.net.weight", "clip.frozen"]
    assert torch.equal(official["official.rows"], torch.stack([torch.zeros(2, 3), torch.ones(2, 3)]))
    back = rename_keys(official, [(b, a) for a, b in pairs])
    assert sorted(back) == sorted(ours) and all(torch.equal(back[k], v) for k, v in ours.items())
    # Gradients of levels that received none stack to None; a gap in the levels is an error.
    assert rename_keys({"p.rows.0": None, "p.rows.1": torch.ones(1)}, pairs)["official.rows"] is None
    with pytest.raises(ValueError, match="levels"):
        rename_keys({"p.rows.0": torch.ones(1), "p.rows.2": torch.ones(1)}, pairs)
    # Official keys that only look alike are left alone (the frozen CLIP of a whole-model file).
    frozen = {"enc.blocks.1.attn.weight": torch.ones(1), "official.rows_extra": torch.ones(1)}
    assert list(rename_keys(frozen, [(b, a) for a, b in pairs])) == list(frozen)
