"""Prompt entry points of the towers (clip/prompts.py): placement, block-locality, gradients, errors."""
from __future__ import annotations

import pytest
import torch

from clip import clip
from clip.model import CLIP, build_model, cast_model
from clip.prompts import Insert, Rewrite
from tools.make_toy_clip import make_clip_state_dict

TEXTS = ["X X X X cat.", "X X X X a small red dog.", "X X X X car."]
N_CTX = 4


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def text():
    return clip.tokenize(TEXTS)


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=_gen(1))


def _block_io(blocks, run):
    """Inputs and outputs of every block of ``blocks`` during ``run()``."""
    inputs, outputs = {}, {}
    handles = []
    for i, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0].detach())))
        handles.append(block.register_forward_hook(lambda m, a, o, i=i: outputs.__setitem__(i, o.detach())))
    try:
        with torch.no_grad():
            result = run()
    finally:
        for handle in handles:
            handle.remove()
    return result, inputs, outputs


def test_text_shallow_replaces_positions_after_sos(tiny_model, text):
    with torch.no_grad():
        plain = tiny_model.encode_text(text)
        same = tiny_model.encode_text(text, shallow=tiny_model.token_embedding(text)[0, 1:1 + N_CTX])
        ctx = torch.randn(N_CTX, tiny_model.text_width, generator=_gen())
        prompted = tiny_model.encode_text(text, shallow=ctx)
        embeddings = tiny_model.token_embedding(text).clone()
        embeddings[:, 1:1 + N_CTX] = ctx
        built = tiny_model.encode_text(text, embeddings=embeddings)
    # the "X X X X" embeddings are identical in every row, so row 0's placeholders reproduce plain CLIP exactly
    assert torch.equal(same, plain)
    assert (prompted - plain).abs().amax(dim=1).min() > 1e-3
    torch.testing.assert_close(built, prompted, atol=1e-6, rtol=0)


def test_embeddings_override_equal_to_token_embedding_is_plain_clip(tiny_model, text):
    with torch.no_grad():
        assert torch.equal(tiny_model.encode_text(text, embeddings=tiny_model.token_embedding(text)),
                           tiny_model.encode_text(text))
        assert torch.equal(tiny_model.encode_text(text, shallow=None, deep={}), tiny_model.encode_text(text))


def test_per_sequence_text_prompts(tiny_model, text):
    width = tiny_model.text_width
    ctx = torch.randn(len(TEXTS), N_CTX, width, generator=_gen(2))  # (N, n, D)
    with torch.no_grad():
        batched = tiny_model.encode_text(text, shallow=ctx, deep={1: ctx * 0.5})
        for row in range(len(TEXTS)):
            single = tiny_model.encode_text(text[row:row + 1], shallow=ctx[row], deep={1: ctx[row] * 0.5})
            torch.testing.assert_close(batched[row:row + 1], single, atol=1e-5, rtol=0)


@pytest.mark.parametrize("block", [0, 1])
def test_text_deep_prompt_enters_at_block_input_and_leaves_earlier_blocks(tiny_model, text, block):
    deep = torch.randn(N_CTX, tiny_model.text_width, generator=_gen(3))
    blocks = tiny_model.transformer.resblocks
    plain, _, plain_out = _block_io(blocks, lambda: tiny_model.encode_text(text))
    prompted, inputs, out = _block_io(blocks, lambda: tiny_model.encode_text(text, deep={block: deep}))
    for i in range(block):
        assert torch.equal(out[i], plain_out[i]), f"block {i} < {block} changed"
    assert torch.equal(inputs[block][:, 1:1 + N_CTX], deep.expand(len(TEXTS), -1, -1))
    before = plain_out[block - 1] if block else None
    if before is not None:  # the rest of block i's input is the previous block's output, untouched
        assert torch.equal(inputs[block][:, 1 + N_CTX:], before[:, 1 + N_CTX:])
        assert torch.equal(inputs[block][:, :1], before[:, :1])
    assert not torch.allclose(prompted, plain, atol=1e-3)


def test_vision_shallow_is_appended_after_positional_embedding(tiny_model, images):
    n = 3
    prompt = torch.randn(n, tiny_model.vision_width, generator=_gen(4))
    blocks = tiny_model.visual.transformer.resblocks
    plain, plain_in, _ = _block_io(blocks, lambda: tiny_model.encode_image(images))
    prompted, inputs, _ = _block_io(blocks, lambda: tiny_model.encode_image(images, shallow=prompt))
    grid_tokens = tiny_model.visual.positional_embedding.shape[0]
    assert inputs[0].shape == (2, grid_tokens + n, tiny_model.vision_width)
    # ln_pre is per token: the image tokens are unchanged, the prompt tokens are ln_pre(prompt) (no pos. emb.)
    assert torch.equal(inputs[0][:, :grid_tokens], plain_in[0])
    torch.testing.assert_close(inputs[0][0, grid_tokens:], tiny_model.visual.ln_pre(prompt), atol=1e-6, rtol=0)
    assert prompted.shape == plain.shape and not torch.allclose(prompted, plain, atol=1e-3)


def test_vision_deep_prompt_replaces_last_tokens_at_block_input(tiny_model, images):
    n, width = 2, tiny_model.vision_width
    shallow = torch.randn(2, n, width, generator=_gen(5))  # (B, n, D) per image
    deep = torch.randn(n, width, generator=_gen(6))
    blocks = tiny_model.visual.transformer.resblocks
    _, _, plain_out = _block_io(blocks, lambda: tiny_model.encode_image(images, shallow=shallow))
    _, inputs, out = _block_io(blocks, lambda: tiny_model.encode_image(images, shallow=shallow, deep={1: deep}))
    assert torch.equal(out[0], plain_out[0])
    assert torch.equal(inputs[1][:, -n:], deep.expand(2, -1, -1))
    assert torch.equal(inputs[1][:, :-n], plain_out[0][:, :-n])
    assert not torch.equal(out[1], plain_out[1])


def test_callable_deep_prompt(tiny_model, text, images):
    calls = []
    table = torch.randn(N_CTX, tiny_model.text_width, generator=_gen(7))

    def make(x, i):
        calls.append((tuple(x.shape), i))
        return table + x[:, 1:1 + N_CTX].mean(dim=0)  # depends on the activations

    with torch.no_grad():
        out = tiny_model.encode_text(text, deep={1: make})
        _, inputs, _ = _block_io(tiny_model.transformer.resblocks, lambda: tiny_model.encode_text(text))
        expected_ctx = table + inputs[1][:, 1:1 + N_CTX].mean(dim=0)
        assert torch.equal(out, tiny_model.encode_text(text, deep={1: expected_ctx}))
    # encode_text trims to the last EOT by default, so the callable sees the trimmed length
    assert calls == [((len(TEXTS), int(text.argmax(dim=-1).max()) + 1, tiny_model.text_width), 1)]
    vision = torch.zeros(1, tiny_model.vision_width)
    with torch.no_grad():
        got = tiny_model.encode_image(images, shallow=vision, deep={1: lambda x, i: x[:, -1:] * 2})
    assert got.shape == (2, tiny_model.embed_dim)


def test_gradients_reach_prompts_only(tiny_model, text, images):
    ctx = torch.zeros(N_CTX, tiny_model.text_width).normal_(generator=_gen(8)).requires_grad_()
    deep_text = torch.zeros(N_CTX, tiny_model.text_width).requires_grad_()
    vis = torch.zeros(2, tiny_model.vision_width).normal_(generator=_gen(9)).requires_grad_()
    deep_vis = torch.zeros(2, tiny_model.vision_width).requires_grad_()
    image_features = tiny_model.encode_image(images, shallow=vis, deep={1: deep_vis})
    text_features = tiny_model.encode_text(text, shallow=ctx, deep={1: deep_text})
    logits = image_features @ text_features.t()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    for prompt in (ctx, deep_text, vis, deep_vis):
        assert prompt.grad is not None and prompt.grad.abs().sum() > 0 and torch.isfinite(prompt.grad).all()
    assert all(p.grad is None for p in tiny_model.parameters())


def test_fp32_prompt_on_fp16_tower_gets_fp32_gradient(tiny_clip_path, text):
    model = build_model(torch.load(tiny_clip_path)).requires_grad_(False)  # OpenAI mixed fp16
    ctx = torch.randn(N_CTX, model.text_width, generator=_gen(10)).requires_grad_()
    features = model.encode_text(text, shallow=ctx)
    assert features.dtype == torch.float16
    features.float().pow(2).sum().backward()
    assert ctx.grad.dtype == torch.float32 and torch.isfinite(ctx.grad).all() and ctx.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(shallow=torch.zeros(4, 63)), "width 63"),
    (dict(shallow=torch.zeros(2, 4, 64)), "2 sequences"),
    (dict(shallow=torch.zeros(4)), r"\(n, D\) or \(N, n, D\)"),
    (dict(deep={2: torch.zeros(4, 64)}), r"blocks \[2\]"),
    (dict(shallow=torch.zeros(77, 64)), "does not fit"),
])
def test_bad_text_prompts_raise(tiny_model, text, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_model.encode_text(text, **kwargs)


def test_vision_deep_prompt_needs_matching_shallow(tiny_model, images):
    with pytest.raises(ValueError, match="does not fit"):
        tiny_model.encode_image(images, deep={0: torch.zeros(2, 64)})
    with pytest.raises(ValueError, match="does not fit"):
        tiny_model.encode_image(images, shallow=torch.zeros(1, 64), deep={1: torch.zeros(2, 64)})


def _tiny_resnet_clip(layers=(1, 2, 1, 1)) -> CLIP:
    """Built directly (not through build_model) and filled with the test-weight builder's values."""
    config = dict(embed_dim=32, image_resolution=64, vision_layers=layers, vision_width=8, vision_patch_size=None,
                  context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                  transformer_layers=1)
    model = CLIP(**config)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in make_clip_state_dict(config, seed=0).items()})
    return model.eval()


def test_resnet_tower_rejects_vision_prompts():
    model = _tiny_resnet_clip()
    image = torch.randn(1, 3, 64, 64)
    assert model.encode_image(image).shape == (1, 32)
    with pytest.raises(ValueError, match="ViT image tower.*ResNet"):
        model.encode_image(image, shallow=torch.zeros(2, 8))
    with pytest.raises(ValueError, match="ViT image tower.*ResNet"):
        model.encode_image(image, deep={0: torch.zeros(2, 8)})


def test_build_model_infers_resnet_architecture():
    model = _tiny_resnet_clip(layers=(1, 2, 1, 1))
    checkpoint = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(checkpoint)  # the reference now holds the checkpoint's fp16-rounded values in fp32
    rebuilt = cast_model(build_model(checkpoint), torch.float32)
    assert [len(getattr(rebuilt.visual, f"layer{s}")) for s in range(1, 5)] == [1, 2, 1, 1]
    assert rebuilt.visual.attnpool.heads == 8 * 32 // 64 and rebuilt.visual.input_resolution == 64
    assert rebuilt.visual.width == 8 and rebuilt.embed_dim == 32 and rebuilt.text_width == 64
    image = torch.randn(2, 3, 64, 64, generator=_gen(11))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.encode_image(image), model.encode_image(image), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- tokens inserted mid-tower (clip.prompts.Insert)
def _text_by_hand(model, text, inserts):
    """encode_text written out block by block, without trimming: ``inserts[i]`` (n, D) goes right after SOS at block
    i's input (the sequence grows), and the feature is read at EOT, moved on by the inserted tokens."""
    x = model.token_embedding(text) + model.positional_embedding  # (N, 77, D)
    moved = 0
    for i, block in enumerate(model.transformer.resblocks):
        if i in inserts:
            tokens = inserts[i].expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :1], tokens, x[:, 1:]], dim=1)
            moved += tokens.shape[1]
        x = block(x)
    x = model.ln_final(x)
    return x[torch.arange(x.shape[0]), text.argmax(dim=-1) + moved] @ model.text_projection


@pytest.mark.parametrize("trim", [True, False])
def test_inserted_text_tokens_follow_sos_and_move_eot(tiny_model, text, trim):
    n = 3
    tokens = torch.randn(n, tiny_model.text_width, generator=_gen(12))
    blocks = tiny_model.transformer.resblocks
    _, _, plain_out = _block_io(blocks, lambda: tiny_model.encode_text(text, trim=trim))
    got, inputs, out = _block_io(blocks, lambda: tiny_model.encode_text(text, deep={1: Insert(tokens)}, trim=trim))
    assert torch.equal(out[0], plain_out[0])  # blocks before the insertion are untouched
    before = plain_out[0]
    assert inputs[1].shape[1] == before.shape[1] + n  # the sequence grows by n from block 1 on
    assert torch.equal(inputs[1], torch.cat([before[:, :1], tokens.expand(len(TEXTS), -1, -1), before[:, 1:]], 1))
    with torch.no_grad():
        expected = _text_by_hand(tiny_model, text, {1: tokens})
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)  # read at EOT + n, causal over the longer sequence
    plain = tiny_model.encode_text(text)
    assert (got - plain).abs().amax(dim=1).min() > 1e-3  # every row sees the inserted tokens


def test_later_deep_entry_replaces_the_inserted_tokens(tiny_model, text, images):
    n = 2
    first, second = torch.randn(2, n, tiny_model.text_width, generator=_gen(13))
    blocks = tiny_model.transformer.resblocks
    _, _, inserted_out = _block_io(blocks, lambda: tiny_model.encode_text(text, deep={0: Insert(first)}))
    _, inputs, _ = _block_io(blocks, lambda: tiny_model.encode_text(text, deep={0: Insert(first), 1: second}))
    assert torch.equal(inputs[1][:, 1:1 + n], second.expand(len(TEXTS), -1, -1))
    assert torch.equal(inputs[1][:, :1], inserted_out[0][:, :1])
    assert torch.equal(inputs[1][:, 1 + n:], inserted_out[0][:, 1 + n:])
    # vision: the span is the tail; the inserted tokens are the span, so a later entry of n tokens replaces them
    vis_first, vis_second = torch.randn(2, n, tiny_model.vision_width, generator=_gen(14))
    vblocks = tiny_model.visual.transformer.resblocks
    _, _, vis_out = _block_io(vblocks, lambda: tiny_model.encode_image(images, deep={0: Insert(vis_first)}))
    _, vis_in, _ = _block_io(vblocks, lambda: tiny_model.encode_image(images, deep={0: Insert(vis_first),
                                                                                    1: vis_second}))
    grid_tokens = tiny_model.visual.positional_embedding.shape[0]
    assert vis_in[1].shape[1] == grid_tokens + n
    assert torch.equal(vis_in[1][:, -n:], vis_second.expand(2, -1, -1))
    assert torch.equal(vis_in[1][:, :-n], vis_out[0][:, :-n])


def test_inserted_vision_tokens_and_their_outputs(tiny_model, images):
    n = 3
    tokens = torch.randn(n, tiny_model.vision_width, generator=_gen(15))
    visual = tiny_model.visual
    with torch.no_grad():
        plain = tiny_model.encode_image(images)
        features, outputs = tiny_model.encode_image(images, deep={1: Insert(tokens)}, prompt_tokens=True)
        # by hand, with the tokens right after the class token (the MMRL order): attention without a mask and
        # without positional embeddings after the insertion does not depend on where the tokens sit
        x = visual.conv1(images).flatten(2).transpose(1, 2)
        x = torch.cat([visual.class_embedding.expand(2, 1, -1), x], dim=1) + visual.positional_embedding
        x = visual.ln_pre(x)
        x = visual.transformer.resblocks[0](x)
        x = torch.cat([x[:, :1], tokens.expand(2, -1, -1), x[:, 1:]], dim=1)
        x = visual.transformer.resblocks[1](x)
        torch.testing.assert_close(features, visual.ln_post(x[:, 0]) @ visual.proj, atol=1e-5, rtol=0)
        torch.testing.assert_close(outputs, visual.ln_post(x[:, 1:1 + n]), atol=1e-5, rtol=0)
        no_tokens, empty = tiny_model.encode_image(images, prompt_tokens=True)
    assert outputs.shape == (2, n, tiny_model.vision_width) and empty.shape == (2, 0, tiny_model.vision_width)
    assert torch.equal(no_tokens, plain) and not torch.allclose(features, plain, atol=1e-3)


def test_gradients_reach_inserted_tokens_only(tiny_model, text, images):
    text_tokens = torch.randn(2, tiny_model.text_width, generator=_gen(16)).requires_grad_()
    text_later = torch.randn(2, tiny_model.text_width, generator=_gen(17)).requires_grad_()
    vis_tokens = torch.randn(2, tiny_model.vision_width, generator=_gen(18)).requires_grad_()
    features, outputs = tiny_model.encode_image(images, deep={0: Insert(vis_tokens)}, prompt_tokens=True)
    text_features = tiny_model.encode_text(text, deep={0: Insert(text_tokens), 1: text_later})
    loss = (features @ text_features.t()).sum() + outputs.sum()
    loss.backward()
    for prompt in (text_tokens, text_later, vis_tokens):
        assert prompt.grad is not None and prompt.grad.abs().sum() > 0 and torch.isfinite(prompt.grad).all()
    assert all(p.grad is None for p in tiny_model.parameters())


def test_bad_inserts_raise(tiny_model, text, images):
    with pytest.raises(ValueError, match="width 63"):
        tiny_model.encode_text(text, deep={0: Insert(torch.zeros(2, 63))})
    with pytest.raises(ValueError, match="does not fit"):  # 3 tokens cannot replace the 2 inserted ones
        tiny_model.encode_image(images, deep={0: Insert(torch.zeros(2, 64)), 1: torch.zeros(3, 64)})
    with pytest.raises(ValueError, match="ViT image tower.*ResNet"):
        _tiny_resnet_clip().encode_image(torch.randn(1, 3, 64, 64), prompt_tokens=True)


# ---------------------------------------------------------- the whole block input rewritten (clip.prompts.Rewrite)
def test_rewrite_maps_the_whole_input_of_its_block_only(tiny_model, images):
    blocks = tiny_model.visual.transformer.resblocks
    _, plain_inputs, _ = _block_io(blocks, lambda: tiny_model.encode_image(images))
    seen = []
    rewrite = Rewrite(lambda x, i: seen.append(i) or x.flip(1))  # reverse the token order at block 1's input
    _, inputs, outputs = _block_io(blocks, lambda: tiny_model.encode_image(images, deep={1: rewrite}))
    assert seen == [1] and torch.equal(inputs[0], plain_inputs[0])
    assert torch.equal(inputs[1], outputs[0].flip(1)) and not torch.equal(inputs[1], plain_inputs[1])
    with pytest.raises(ValueError, match="must keep the shape"):
        tiny_model.encode_image(images, deep={0: Rewrite(lambda x, i: x[:, :-1])})
