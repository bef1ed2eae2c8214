"""ActionCLIP's "post-network" visual prompts: temporal fusion of per-frame features ``(B, T, E)`` -> ``(B, E)``.

``build_fusion(kind, clip_model, num_frames)`` returns one of ``FUSION_TYPES`` with the official parameter names
(``frame_position_embeddings``, ``transformer.resblocks.*``, ``lstm_visual.*``, ``shift.weight``,
``transformer.transformer_enc.*``), so official ``fusion_model_state_dict`` files load strictly (after the
``module.`` prefix of their DataParallel wrapper is dropped). Widths come from the CLIP model.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from clip.model import CLIP, Transformer

FUSION_TYPES = ("meanP", "Conv_1D", "LSTM", "Transf", "Transf_cls")
TF_LAYER_NORM_EPS = 1e-12  # the temporal transformer normalises with the TF-style epsilon, not PyTorch's 1e-5


def _normal_init(module: nn.Module) -> None:
    """Linear / Embedding weights N(0, 0.02), Linear biases 0 (the official init of the fusion modules)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def _truncated_02(t: torch.Tensor) -> torch.Tensor:
    """In place: standard normal values folded into (-2, 2) by ``fmod``, times 0.02 (the official recipe)."""
    with torch.no_grad():
        return t.normal_().fmod_(2).mul_(0.02)


class MeanPool(nn.Module):
    """``meanP``: the mean of the frame features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)  # (B, E)


class _Residual(nn.Module):
    """Base of the fusions that add a temporal model's output to the frame features, then average over frames.

    Holds the official (unused outside ``Transf``) ``frame_position_embeddings`` table, one row per text position.
    """

    def __init__(self, embed_dim: int, context_length: int) -> None:
        super().__init__()
        self.frame_position_embeddings = nn.Embedding(context_length, embed_dim)

    def temporal(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.temporal(x).to(x.dtype) + x).mean(dim=1)  # (B, E)


class ShiftConv(_Residual):
    """``Conv_1D``: a depthwise temporal convolution initialised as a shift (first quarter of the channels reads
    the previous step, the middle half the current one, the last quarter the next). As in the official code it
    is applied to the ``(B, T, E)`` memory read as ``(B, E, T)`` (a reshape, not a transpose)."""

    def __init__(self, embed_dim: int, context_length: int) -> None:
        super().__init__(embed_dim, context_length)
        self.apply(_normal_init)
        self.shift = nn.Conv1d(embed_dim, embed_dim, 3, padding=1, groups=embed_dim, bias=False)
        kernel = torch.zeros(embed_dim, 1, 3)
        quarter = embed_dim // 4
        kernel[:quarter, 0, 0] = 1.0
        kernel[quarter:quarter + embed_dim // 2, 0, 1] = 1.0
        kernel[-quarter:, 0, 2] = 1.0
        self.shift.weight = nn.Parameter(kernel)

    def temporal(self, x: torch.Tensor) -> torch.Tensor:
        b, t, e = x.shape
        return self.shift(x.reshape(b, e, t).float()).permute(0, 2, 1)  # (B, T, E)


class RecurrentFusion(_Residual):
    """``LSTM``: a one-layer unidirectional LSTM over the frames (PyTorch's default init)."""

    def __init__(self, embed_dim: int, context_length: int) -> None:
        super().__init__(embed_dim, context_length)
        self.lstm_visual = nn.LSTM(embed_dim, embed_dim, batch_first=True)
        self.apply(_normal_init)

    def temporal(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm_visual(x.float())[0]  # (B, T, E)


class TemporalTransformer(_Residual):
    """``Transf``: learned frame positions + 6 CLIP-style pre-LN blocks (no mask) over the frames."""

    def __init__(self, embed_dim: int, context_length: int, heads: int, layers: int = 6) -> None:
        super().__init__(embed_dim, context_length)
        self.transformer = Transformer(embed_dim, layers, heads)
        for name, module in self.transformer.named_modules():
            if isinstance(module, nn.LayerNorm):
                module.eps = TF_LAYER_NORM_EPS
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self.apply(_normal_init)  # the attention's in-projection keeps its xavier init, as nn.MultiheadAttention's

    def temporal(self, x: torch.Tensor) -> torch.Tensor:
        positions = self.frame_position_embeddings.weight[:x.shape[1]]  # (T, E)
        return self.transformer(x + positions)  # (B, T, E)


class ClassTokenAggregate(nn.Module):
    """The ``Transf_cls`` core: CLS token + positions, a post-LN ``nn.TransformerEncoder`` (6 layers, 8 heads,
    ReLU, dropout 0.1) with a final LayerNorm; the output is the CLS token."""

    def __init__(self, num_frames: int, embed_dim: int, layers: int = 6) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=embed_dim, nhead=8)
        self.transformer_enc = nn.TransformerEncoder(layer, num_layers=layers, norm=nn.LayerNorm(embed_dim),
                                                     enable_nested_tensor=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_frames + 1, embed_dim))
        _truncated_02(self.pos_embed)
        _truncated_02(self.cls_token)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                _truncated_02(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed  # (B, 1+T, E)
        return self.transformer_enc(tokens.transpose(0, 1))[0]  # (B, E): the CLS position, sequence-first


class ClassTokenFusion(nn.Module):
    """``Transf_cls``: :class:`ClassTokenAggregate` (no residual, no mean) + the unused position table."""

    def __init__(self, embed_dim: int, context_length: int, num_frames: int) -> None:
        super().__init__()
        self.frame_position_embeddings = nn.Embedding(context_length, embed_dim)
        self.apply(_normal_init)
        self.transformer = ClassTokenAggregate(num_frames, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transformer(x).to(x.dtype)  # (B, E)


def build_fusion(kind: str, clip_model: CLIP, num_frames: int) -> nn.Module:
    """The fusion module ``kind`` for this CLIP (output width = its embedding width) and clip length."""
    embed, context = clip_model.embed_dim, clip_model.context_length
    if kind == "meanP":
        return MeanPool()
    if kind == "Conv_1D":
        return ShiftConv(embed, context)
    if kind == "LSTM":
        return RecurrentFusion(embed, context)
    if kind == "Transf":
        return TemporalTransformer(embed, context, heads=max(1, clip_model.text_width // 64))
    if kind == "Transf_cls":
        return ClassTokenFusion(embed, context, num_frames)
    raise ValueError(f"TRAINER.ACTIONCLIP.SIM_HEADER is {kind!r}; choose one of {list(FUSION_TYPES)}")
