"""What learners are built from: the initial text context, deep prompt levels, depth checks, official key names.

One of each, for every method: :func:`init_context` (the three official ways CTX_INIT becomes a context are a
parameter), :class:`PromptLevels` (every method's deep prompts) with :func:`deep_by_block`, and
:func:`rename_keys` (our checkpoint keys <-> the official ones, including block offsets and stacked tensors).
"""
from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Any, Callable, Container, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from clip import clip
from clip.model import CLIP, VisionTransformer

logger = logging.getLogger(__name__)

# How the words of CTX_INIT become the initial context. Each lineage's rule is kept exactly: official
# checkpoints and the parity fixtures were made with it.
WHOLE_PHRASE = "whole_phrase"  # CoOp, CoCoOp: the whole phrase is learned; N_CTX becomes its number of words
FIRST_WORDS = "first_words"  # MuDPT: the phrase is cut to its first N_CTX words, all of them learned
SHORT_PHRASE = "short_phrase"  # MaPLe, IVLP: N_CTX <= 4 learns the first N_CTX tokens, the rest stays as words
# ProGrad: the phrase's k words fill the last k of the N_CTX tokens (the first k tokens' embeddings; a word of two
# tokens leaves its last token as a word), the N_CTX - k before them start at zero and read "X" in the prompt
LEFT_PADDED = "left_padded"
WORD_RULES = (WHOLE_PHRASE, FIRST_WORDS, SHORT_PHRASE, LEFT_PADDED)
MAX_SHORT_PHRASE_CTX = 4  # SHORT_PHRASE: longer contexts start random


def random_prompts(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Prompt tokens of ``shape`` drawn from N(0, 0.02^2), returned in fp32: how every random prompt of these
    methods starts. ``dtype``: the type the official code drew in (fp16 for CoOp-lineage contexts under PREC
    fp16, whose CLIP stayed fp16): the generator gives other numbers for other types."""
    return torch.empty(*shape, dtype=dtype).normal_(std=0.02).float()


def round_to_fp16(module: nn.Module) -> nn.Module:
    """Round every parameter's value to the nearest fp16 number (kept fp32): the official code cast some freshly
    initialised layers to fp16, so their initial values are fp16 numbers."""
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(param.to(torch.float16))
    return module


def take(drawn: Optional[Mapping[str, Any]], name: str, make: Callable[[], Any]) -> Any:
    """``drawn[name]`` when it was drawn earlier in the official order (``PromptTrainer.official_draws``), else
    ``make()``: a learner built on its own still gets a valid random start."""
    return drawn[name] if drawn and name in drawn else make()


def vision_point(block: int) -> str:
    """The construction point (trainers/replay.py) right after vision block ``block``."""
    return f"visual.block{block}"


def text_point(block: int) -> str:
    """The construction point (trainers/replay.py) right after text block ``block``."""
    return f"text.block{block}"


def context_words(ctx_init: Any, key: str, own_words: str = "") -> str:
    """``CTX_INIT`` as the words the context starts from ("" = random). The KgCoOp, ProGrad and TCP config files
    write ``CTX_INIT: True`` for "the method's own words" (``own_words``) and ``False`` for a random start."""
    if ctx_init is True:
        if not own_words:
            raise ValueError(f"{key}.CTX_INIT is True, which names the start words of KgCoOp, ProGrad or TCP; this "
                             f"trainer needs the words themselves (e.g. \"a photo of a\") or \"\" for a random start")
        return own_words
    return ctx_init or ""


def resolve_context_length(node, key: str, own_words: str = "") -> None:
    """CoOp/CoCoOp (:data:`WHOLE_PHRASE`): a CTX_INIT phrase makes N_CTX its number of words. Written into the
    config node before it is saved, with a warning when it changes what was asked. ``own_words``: what
    ``CTX_INIT: True`` stands for (:func:`context_words`)."""
    phrase = context_words(node.CTX_INIT, key, own_words)
    words = len(phrase.replace("_", " ").split(" ")) if phrase else 0
    if words and words != node.N_CTX:
        logger.warning("%s.N_CTX %d becomes %d, the number of words of CTX_INIT %r (as the official code does)",
                       key, node.N_CTX, words, phrase)
        node.N_CTX = words


def init_context(clip_model: CLIP, n_ctx: int, ctx_init: str, words: str, key: str, n_classes: int = 0,
                 dtype: torch.dtype = torch.float32) -> Tuple[torch.Tensor, str]:
    """The initial text context and the phrase written before each class name in the tokenized prompts.

    Args:
        n_ctx: ``N_CTX``, the number of context tokens (WHOLE_PHRASE replaces it by the phrase's word count).
        ctx_init: ``CTX_INIT``; "" = random context. Underscores stand for spaces.
        words: how CTX_INIT is used, one of :data:`WORD_RULES` (see their comments).
        key: the config node named in messages, e.g. ``TRAINER.MAPLE``.
        n_classes: > 0 draws a separate random context per class (CoOp's CSC); unused with words.
        dtype: the type a random context is drawn in (see :func:`random_prompts`).
    Returns:
        ``(ctx, phrase)``: ``ctx`` ``(n, Dt)`` (``(n_classes, n, Dt)``) is the embedding of the phrase's first
        ``n`` tokens, or N(0, 0.02^2) with ``n`` placeholder words "X" as the phrase.
    """
    if words not in WORD_RULES:
        raise ValueError(f"unknown context rule {words!r}; choose one of {WORD_RULES}")
    phrase = ctx_init.replace("_", " ")
    if phrase and words == LEFT_PADDED:
        ctx = _left_padded(clip_model, n_ctx, phrase, key)
        return ctx, " ".join(["X"] * (n_ctx - len(phrase.split(" "))) + [phrase])
    if phrase and words == WHOLE_PHRASE:
        n_ctx = len(phrase.split(" "))
    elif phrase and words == FIRST_WORDS:
        split = phrase.split()
        if n_ctx > len(split):
            # The context would cover EOT and padding, and the class name would drop out of the prompt.
            raise ValueError(f"N_CTX ({n_ctx}) is larger than the number of CTX_INIT words ({len(split)}: "
                             f"{ctx_init!r}); the class name would be dropped from the prompt. Use N_CTX <= "
                             f"{len(split)}, a longer CTX_INIT, or CTX_INIT \"\" for a random context")
        phrase = " ".join(split[:n_ctx])
    elif phrase and n_ctx > MAX_SHORT_PHRASE_CTX:
        logger.warning("%s.CTX_INIT is not used for N_CTX %d > %d: the context starts random (as the official "
                       "code does)", key, n_ctx, MAX_SHORT_PHRASE_CTX)
        phrase = ""
    if n_ctx < 1:
        raise ValueError(f"{key}.N_CTX is {n_ctx}; at least one context token is needed")
    if not phrase:
        shape = (n_classes, n_ctx, clip_model.text_width) if n_classes else (n_ctx, clip_model.text_width)
        logger.info("%s: %d context tokens%s, drawn at random", key, n_ctx, " per class" if n_classes else "")
        return random_prompts(*shape, dtype=dtype), " ".join(["X"] * n_ctx)
    ids = clip.tokenize(phrase).long()  # (1, L)
    n_tokens = int(ids[0].argmax()) - 1  # BPE tokens between SOS and EOT
    if n_ctx > n_tokens:
        # The context span would cover the class name and EOT (the official code silently does that).
        raise ValueError(f"{key}.CTX_INIT {ctx_init!r} has {n_tokens} tokens but N_CTX is {n_ctx}; use a phrase "
                         f"of at least {n_ctx} tokens or an empty CTX_INIT")
    with torch.no_grad():
        emb = clip_model.token_embedding(ids)  # (1, L, Dt)
    logger.info('%s: %d context tokens, starting from the words of "%s"', key, n_ctx, phrase)
    return emb[0, 1:1 + n_ctx].float().clone(), phrase


def _left_padded(clip_model: CLIP, n_ctx: int, phrase: str, key: str) -> torch.Tensor:
    """:data:`LEFT_PADDED`: ``(n_ctx, Dt)`` = zeros, then the embeddings of the phrase's first k tokens (k words)."""
    k = len(phrase.split(" "))
    if n_ctx < k:
        raise ValueError(f"{key}.N_CTX is {n_ctx} but the start words {phrase!r} need {k} context tokens: use "
                         f"N_CTX >= {k}")
    with torch.no_grad():
        emb = clip_model.token_embedding(clip.tokenize(phrase).long())[0, 1:1 + k].float()  # (k, Dt)
    logger.info('%s: %d context tokens, %d at zero then the words of "%s"', key, n_ctx, n_ctx - k, phrase)
    return torch.cat([emb.new_zeros(n_ctx - k, emb.shape[1]), emb])


class PromptLevels(nn.ParameterList):
    """The deep prompts of one tower: level ``k`` ``(n, width)`` replaces the prompt span at the input of block
    ``k + 1`` (:func:`deep_by_block`). Checkpoint keys are ``<name>.<k>``; official names that differ (block
    numbers, one stacked tensor) are mapped by :func:`rename_keys`.

    Every level starts at N(0, 0.02^2). ``single_draw``: one ``(levels, n, width)`` draw for all levels (the MuDPT
    authors' order) instead of one ``(n, width)`` draw per level (MaPLe, IVLP, VPT). torch's CPU ``normal_`` gives
    the same numbers both ways only when ``n * width`` is a multiple of 16, so each method keeps its own order.
    """

    def __init__(self, levels: int = 0, n: int = 0, width: int = 0, single_draw: bool = False,
                 drawn: Optional[Sequence[torch.Tensor]] = None) -> None:
        if drawn is not None:  # drawn earlier, where the official code drew them (trainers/replay.py)
            draws = list(drawn)
            n, width = draws[0].shape if draws else (n, width)
        elif single_draw:
            draws = [level.clone() for level in random_prompts(levels, n, width).unbind(0)]
        else:
            draws = [random_prompts(n, width) for _ in range(levels)]
        super().__init__([nn.Parameter(d) for d in draws])
        # stacked() without levels; a buffer, so that it follows the learner to its device.
        self.register_buffer("no_levels", torch.zeros(0, n, width), persistent=False)

    def stacked(self) -> torch.Tensor:
        """Every level in one ``(levels, n, width)`` tensor, for methods that transform all levels at once."""
        return torch.stack(list(self)) if len(self) else self.no_levels


def deep_by_block(levels: Iterable[torch.Tensor], blocks: Optional[Container[int]] = None
                  ) -> Optional[Dict[int, torch.Tensor]]:
    """``{block k + 1: level k}`` for ``CLIP.encode_*`` (only the blocks in ``blocks`` when given); None when empty."""
    return {k + 1: level for k, level in enumerate(levels) if blocks is None or k + 1 in blocks} or None


def prompt_depth(depth: int, num_blocks: int, key: str, minimum: int = 0) -> int:
    """The prompt depth actually used: ``depth`` checked (>= ``minimum``) and capped at ``num_blocks``.

    Depth ``d`` = prompts at the input + blocks ``1 .. d-1``; above the block count every block is prompted.
    """
    if depth < minimum:
        raise ValueError(f"{key} is {depth}; it must be >= {minimum}")
    if depth > num_blocks:
        logger.warning("%s is %d but the tower has %d blocks: prompting every block", key, depth, num_blocks)
    return min(depth, num_blocks)


def require_vit(clip_model: CLIP, what: str) -> None:
    """Vision prompts are tokens of a ViT: fail at build time (not at the first batch) on a ResNet tower."""
    if not isinstance(clip_model.visual, VisionTransformer):
        raise ValueError(f"{what} needs a ViT image tower, but this CLIP has a {type(clip_model.visual).__name__} "
                         f"(ResNet) tower: choose a ViT backbone (e.g. MODEL.BACKBONE.NAME ViT-B/16)")


# ------------------------------------------------------------------------------------------- checkpoint keys
_INDEX = re.compile(r"\{i(?:\+(\d+))?\}")
_ROWS = "[{i}]"


class KeyTemplate:
    """A checkpoint key, optionally with an index: ``{i}`` is a level, ``{i+N}`` the level plus N (e.g. a block
    number), and a trailing ``[{i}]`` means row ``i`` of ONE stacked tensor of that name. Keys below a template
    (``name.rest``, e.g. a layer's ``.weight``) match it too, except below a stacked one."""

    def __init__(self, template: str) -> None:
        self.stacked = template.endswith(_ROWS)
        self.name = template[:-len(_ROWS)] if self.stacked else template
        found = _INDEX.search(self.name)
        self.indexed = found is not None
        self.offset = int(found.group(1) or 0) if found else 0
        self.head, self.tail = (self.name[:found.start()], self.name[found.end():]) if found else (self.name, "")
        index = r"(?P<i>\d+)" if found else ""
        rest = "" if self.stacked else r"(?P<rest>\..*)?"
        self.regex = re.compile(re.escape(self.head) + index + re.escape(self.tail) + rest)

    def match(self, key: str) -> Optional[Tuple[Optional[int], str]]:
        """``(level, rest)`` if ``key`` is this template's (or below it), else None."""
        found = self.regex.fullmatch(key)
        if found is None:
            return None
        index = found.groupdict().get("i")
        return (None if index is None else int(index) - self.offset), found.groupdict().get("rest") or ""

    def key(self, level: Optional[int], rest: str = "") -> str:
        """The key of ``level`` (offset applied), followed by ``rest``."""
        index = str(level + self.offset) if self.indexed else ""
        return self.head + index + self.tail + rest


def _stack_rows(rows: Dict[int, Optional[torch.Tensor]], name: str) -> Optional[torch.Tensor]:
    if sorted(rows) != list(range(len(rows))):
        raise ValueError(f"cannot stack {name}: levels {sorted(rows)} are not 0..{len(rows) - 1}")
    if any(rows[k] is None for k in rows):  # e.g. gradients of levels that received none
        return None
    return torch.stack([rows[k] for k in range(len(rows))])


def rename_keys(state: Mapping[str, Optional[torch.Tensor]], pairs: Sequence[Tuple[str, str]]
                ) -> Dict[str, Optional[torch.Tensor]]:
    """Rename the keys of ``state`` by ``(source, target)`` :class:`KeyTemplate` pairs, in order.

    A matched key takes the target's name with the same level (offsets applied); a stacked source is split into
    one entry per row, and the entries of a stacked target are stacked into one tensor (in the place of its first
    row). Keys that match nothing (the frozen CLIP of an official whole-model file) pass unchanged, so the
    checkpoint loader can recognise and ignore them.
    """
    compiled = [(KeyTemplate(src), KeyTemplate(dst)) for src, dst in pairs]
    out: Dict[str, Optional[torch.Tensor]] = OrderedDict()
    stacks: Dict[str, Dict[int, Optional[torch.Tensor]]] = {}
    for key, value in state.items():
        for src, dst in compiled:
            found = src.match(key)
            if found is None:
                continue
            level, rest = found
            if src.stacked:
                for row, part in enumerate(value.unbind(0)):
                    out[dst.key(row)] = part
                key = ""
            elif dst.stacked:
                stacks.setdefault(dst.name, {})[level] = value
                key = dst.name
            else:
                key = dst.key(level, rest)
            break
        if key:
            out[key] = value
    for name, rows in stacks.items():
        out[name] = _stack_rows(rows, name)
    return out
