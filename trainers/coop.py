"""CoOp: a learned context replaces the hand-written template words."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from clip import clip
from clip.model import CLIP
from clip.tokenizer import get_tokenizer
from engine import TRAINER_REGISTRY

from .base import PromptLearnerBase, PromptTrainer, clean_classnames
from .prompts import WHOLE_PHRASE, context_words, init_context, resolve_context_length


class CoOpPromptLearner(PromptLearnerBase):
    """Context ``ctx`` (n, D) shared, or (C, n, D) one per class, placed at the end, middle or front.

    Prompts are tokenized as ``"<prefix> <class>."``; with ``end`` the context simply replaces the prefix span
    right after SOS. ``middle``/``front`` move the class tokens: the embeddings are rebuilt by an index map
    (one gather, no per-class loop).
    """

    def __init__(self, clip_model: CLIP, classnames: List[str], n_ctx: int, ctx_init: str = "", csc: bool = False,
                 position: str = "end", draw_dtype: torch.dtype = torch.float32, words: str = WHOLE_PHRASE) -> None:
        super().__init__()
        if position not in ("end", "middle", "front"):
            raise ValueError(f"TRAINER.COOP.CLASS_TOKEN_POSITION is {position!r}; choose end, middle or front")
        names = clean_classnames(classnames)
        ctx, prefix = init_context(clip_model, n_ctx, ctx_init, words, "TRAINER.COOP", len(names) if csc else 0,
                                   draw_dtype)
        self.ctx = nn.Parameter(ctx)
        self.n_ctx = ctx.shape[-2]
        self.position = position
        tokens = clip.tokenize([f"{prefix} {name}." for name in names]).long()  # (C, L)
        self.register_buffer("tokens", tokens, persistent=False)
        name_lens = [len(get_tokenizer().encode(name)) for name in names]
        if position != "end":
            src = self._source_index(tokens.shape[1], name_lens)
            self.register_buffer("src_index", src, persistent=False)  # (C, L)
            with torch.no_grad():  # frozen word embeddings of the tokenized prompts, rebuilt from class names
                embeds = clip_model.token_embedding(tokens).float()  # (C, L, D)
            self.register_buffer("token_embeds", embeds, persistent=False)

    def _source_index(self, length: int, name_lens: List[int]) -> torch.Tensor:
        """For each output position: ``p >= 0`` copies token position p, ``-1 - j`` takes context vector j."""
        n = self.n_ctx
        rows = []
        for nl in name_lens:
            class_pos = list(range(1 + n, 1 + n + nl))
            ctx_pos = [-1 - j for j in range(n)]
            if self.position == "middle":
                half = n // 2
                body = ctx_pos[:half] + class_pos + ctx_pos[half:]
            else:  # front
                body = class_pos + ctx_pos
            rows.append([0] + body + list(range(1 + n + nl, length)))
        return torch.tensor(rows, dtype=torch.long)

    def class_context(self) -> torch.Tensor:
        """The context per class, ``(C, n, D)``."""
        ctx = self.ctx
        return ctx if ctx.dim() == 3 else ctx.unsqueeze(0).expand(self.tokens.shape[0], -1, -1)

    def text_inputs(self, image_features: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        if self.position == "end":
            return {"text": self.tokens, "shallow": self.ctx}
        emb = self.token_embeds  # (C, L, D)
        from_ctx = self.src_index < 0  # (C, L)
        tok_idx = self.src_index.clamp(min=0)
        ctx_idx = (-1 - self.src_index).clamp(min=0)
        D = emb.shape[-1]
        gathered = emb.gather(1, tok_idx.unsqueeze(-1).expand(-1, -1, D))  # (C, L, D)
        ctx_vals = self.class_context().gather(1, ctx_idx.unsqueeze(-1).expand(-1, -1, D))  # (C, L, D)
        embeddings = torch.where(from_ctx.unsqueeze(-1), ctx_vals, gathered)
        return {"text": self.tokens, "embeddings": embeddings}


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    """CoOp: Learning to Prompt for Vision-Language Models (Zhou et al., IJCV 2022, arXiv 2109.01134)."""

    CFG_NODE = "COOP"
    LOG_ACCURACY = True  # the official CoOp's log lines show the training accuracy
    REGISTERED_NAME = "prompt_learner"

    @classmethod
    def add_config(cls, cfg) -> None:
        # One node for CoOp, KgCoOp, ProGrad and TCP (as in their official code): each adds its keys to it.
        cfg.TRAINER.COOP = cfg.TRAINER.get("COOP", CN())
        cfg.TRAINER.COOP.N_CTX = 16  # learned tokens in each prompt (replaced by the word count of CTX_INIT)
        cfg.TRAINER.COOP.CSC = False  # True: every class learns its own tokens (random start only)
        # words the learned tokens start from; "" (or False) = random start; True = the method's own words
        # (KgCoOp, ProGrad, TCP). None by default so that both the words and True/False merge from a file.
        cfg.TRAINER.COOP.CTX_INIT = None
        cfg.TRAINER.COOP.PREC = "fp16"  # fp16 | fp32 | amp | bf16
        cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # where the class name sits: end | middle | front

    @classmethod
    def resolve_config(cls, cfg) -> None:
        resolve_context_length(cfg.TRAINER[cls.CFG_NODE], f"TRAINER.{cls.CFG_NODE}")

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> CoOpPromptLearner:
        c = self.method_cfg
        return CoOpPromptLearner(clip_model, classnames, c.N_CTX, context_words(c.CTX_INIT, "TRAINER.COOP"), c.CSC,
                                 c.CLASS_TOKEN_POSITION, self.draw_dtype)
