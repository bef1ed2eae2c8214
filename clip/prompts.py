"""The single extension point of the CLIP towers: prompt tokens entering at the input or at block i.

Every prompt method is a *learner* that emits tensors; CLIP itself owns no prompt parameter. A tower accepts

* a shallow prompt that enters with the embeddings (text: replaces positions ``[1, 1+n)`` right after SOS;
  vision: appended after the positional embedding, so it is not position-embedded), and
* a deep mapping ``{block i: tensor | callable(x, i) -> tensor}`` whose tensor replaces the prompt span at the
  INPUT of block ``i`` (text span ``[1, 1+n)``, vision span = the last ``n`` tokens); an entry wrapped in
  :class:`Insert` adds its tokens to the span instead, so the sequence grows from that block on (the text tower
  then reads EOT ``n`` positions further on); an entry wrapped in :class:`Rewrite` maps the whole input of block
  ``i`` instead (ActionCLIP's temporal shift between the frames of a clip).

A prompt tensor is ``(n, D)`` (shared by every sequence) or ``(N, n, D)`` (one per sequence; ``N == 1``
broadcasts). ``prepare_prompt`` is the only place that reshapes a prompt and casts it to the activations' dtype,
so learnable fp32 prompts work with a low-precision frozen tower and gradients flow back through the cast.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping, Optional, Tuple, Union

import torch

PromptSource = Union[torch.Tensor, Callable[[torch.Tensor, int], torch.Tensor]]


@dataclass(frozen=True)
class Insert:
    """A deep entry whose ``n`` tokens are INSERTED at block i's input instead of replacing the prompt span.

    They go where the span is anchored (text: right after SOS; vision: after the last token), the sequence grows
    by ``n`` and the span with it, so an ``n``-token entry at a later block replaces exactly these tokens.
    """

    tokens: PromptSource


@dataclass(frozen=True)
class Rewrite:
    """A deep entry that maps block i's whole input, ``fn(x, i)``: ``(N, L, D) -> (N, L, D)``, instead of writing
    the prompt span (for prompts made of the tokens themselves, e.g. channels shifted between video frames)."""

    fn: Callable[[torch.Tensor, int], torch.Tensor]


DeepPrompts = Mapping[int, Union[PromptSource, Insert, Rewrite]]

FRONT = "front"  # text: the span starts right after the SOS token
BACK = "back"  # vision: the span is the tail of the sequence (the appended prompt tokens)


@dataclass(frozen=True)
class PromptSpan:
    """Where a tower keeps its prompt tokens.

    anchor: ``FRONT`` (positions ``[1, 1+n)``) or ``BACK`` (the last ``n`` positions).
    capacity: the largest ``n`` a prompt may cover (text: ``L - 1``; vision: the number of appended tokens), so
    a deep vision prompt can never silently overwrite patch tokens.
    """

    anchor: str
    capacity: int

    def start(self, length: int, n: int) -> int:
        """First position of an ``n``-token span in a sequence of ``length`` tokens."""
        if n > self.capacity:
            raise ValueError(
                f"a prompt of {n} tokens does not fit the {self.anchor} prompt span of this tower "
                f"(room for {self.capacity}; vision deep prompts need a shallow prompt of the same length)"
            )
        return 1 if self.anchor == FRONT else length - n


def prepare_prompt(prompt: torch.Tensor, x: torch.Tensor, what: str = "prompt") -> torch.Tensor:
    """Validate ``prompt`` against the activations ``x`` and return it as ``(N, n, D)`` in ``x.dtype``.

    Args:
        prompt: ``(n, D)`` or ``(N, n, D)`` (``N`` equal to the batch of ``x``, or 1).
        x: activations ``(N, L, D)``.
        what: a name for error messages.
    """
    if not isinstance(prompt, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(prompt).__name__}")
    batch, _, width = x.shape
    if prompt.dim() == 2:
        prompt = prompt.unsqueeze(0)  # (1, n, D)
    if prompt.dim() != 3:
        raise ValueError(f"{what} must be (n, D) or (N, n, D), got shape {tuple(prompt.shape)}")
    if prompt.shape[-1] != width:
        raise ValueError(f"{what} has width {prompt.shape[-1]} but the tower has width {width}")
    if prompt.shape[0] not in (1, batch):
        raise ValueError(f"{what} has {prompt.shape[0]} sequences but the batch has {batch}")
    # The cast is differentiable: an fp32 learnable prompt receives fp32 gradients from a fp16 tower.
    return prompt.to(dtype=x.dtype).expand(batch, -1, -1)  # (N, n, D)


def replace_span(x: torch.Tensor, prompt: torch.Tensor, span: PromptSpan, what: str = "prompt") -> torch.Tensor:
    """Return ``x`` with its prompt span replaced by ``prompt`` (no in-place write, so autograd stays intact).

    Args:
        x: ``(N, L, D)`` activations.
        prompt: ``(n, D)`` or ``(N, n, D)``.
        span: the tower's ``PromptSpan``.
    """
    tokens = prepare_prompt(prompt, x, what)  # (N, n, D)
    n = tokens.shape[1]
    start = span.start(x.shape[1], n)
    return torch.cat([x[:, :start], tokens, x[:, start + n:]], dim=1)  # (N, L, D)


def insert_span(x: torch.Tensor, prompt: torch.Tensor, span: "PromptSpan", what: str = "prompt"
                ) -> Tuple[torch.Tensor, "PromptSpan"]:
    """Insert ``prompt`` at the anchor of ``span``: ``(N, L, D)`` -> ``(N, L + n, D)``, and the grown span.

    Args:
        x: ``(N, L, D)`` activations.
        prompt: ``(n, D)`` or ``(N, n, D)``.
        span: the tower's ``PromptSpan`` before the insertion.
    """
    tokens = prepare_prompt(prompt, x, what)  # (N, n, D)
    at = 1 if span.anchor == FRONT else x.shape[1]
    x = torch.cat([x[:, :at], tokens, x[:, at:]], dim=1)  # (N, L + n, D)
    return x, replace(span, capacity=span.capacity + tokens.shape[1])


def apply_deep(x: torch.Tensor, entry: Union[PromptSource, Insert, Rewrite], span: "PromptSpan", index: int
               ) -> Tuple[torch.Tensor, "PromptSpan"]:
    """Block ``index``'s deep entry applied to its input ``x``: the span replaced, tokens inserted (the span
    grows) or the whole input rewritten. Returns the new input and span."""
    what = f"deep prompt for block {index}"
    if isinstance(entry, Rewrite):
        out = entry.fn(x, index)
        if out.shape != x.shape:
            raise ValueError(f"{what}: a Rewrite must keep the shape {tuple(x.shape)}, got {tuple(out.shape)}")
        return out, span
    if isinstance(entry, Insert):
        return insert_span(x, resolve_deep(entry.tokens, x, index), span, what)
    return replace_span(x, resolve_deep(entry, x, index), span, what), span


def append_tokens(x: torch.Tensor, prompt: torch.Tensor, what: str = "vision prompt") -> torch.Tensor:
    """Append prompt tokens at the end of the sequence: ``(N, L, D)`` -> ``(N, L + n, D)``."""
    return torch.cat([x, prepare_prompt(prompt, x, what)], dim=1)


def resolve_deep(source: PromptSource, x: torch.Tensor, index: int) -> torch.Tensor:
    """The tensor a deep entry stands for: the tensor itself, or ``source(x, index)`` for a callable."""
    return source(x, index) if callable(source) else source


def check_deep(deep: Optional[DeepPrompts], num_blocks: int, tower: str) -> None:
    """Fail loudly on block indices the tower does not have (a typo would otherwise train nothing)."""
    if not deep:
        return
    bad = [i for i in deep if not isinstance(i, int) or not 0 <= i < num_blocks]
    if bad:
        raise ValueError(f"{tower} deep prompts name blocks {bad}; valid block indices are 0..{num_blocks - 1}")
