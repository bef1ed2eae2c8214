"""CLIP image and text towers (OpenAI state_dict layout) with optional prompt tokens.

One residual attention block and one Transformer serve both towers; prompts enter through ``clip.prompts``.
Activations are batch-first ``(N, L, D)``; attention uses ``scaled_dot_product_attention`` but keeps the
parameter names of ``nn.MultiheadAttention`` (``attn.in_proj_weight`` ...), so official checkpoints load strictly.
Where other CLIP families (OpenCLIP, Hugging Face) chose differently -- exact GELU, other head counts or MLP
widths, layer scale, LayerNorm epsilon -- the choice is a :class:`TowerOptions` field of the constructor, read
from the checkpoint by the loaders; the defaults are OpenAI's.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .prompts import BACK, FRONT, DeepPrompts, PromptSpan, append_tokens, apply_deep, check_deep, replace_span

logger = logging.getLogger(__name__)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the input dtype; the result is cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(torch.float32)
        bias = None if self.bias is None else self.bias.to(torch.float32)
        out = F.layer_norm(x.to(torch.float32), self.normalized_shape, weight, bias, self.eps)
        return out.to(x.dtype)


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"quick_gelu": QuickGELU, "gelu": nn.GELU}  # gelu: the exact (erf) GELU


@dataclass(frozen=True)
class TowerOptions:
    """How one tower departs from OpenAI's architecture; the defaults are OpenAI's choices.

    heads: attention heads of the image tower (ViT blocks, or the ResNet's attention pool); None = one head per
        64 channels. The text tower's count is the constructor's ``transformer_heads``.
    mlp_width: hidden width of each block's MLP; None = 4 x width.
    activation: the MLP's non-linearity, a key of ``ACTIVATIONS``.
    layer_scale: a learned per-channel scale on both residual branches of every block (``ls_1`` / ``ls_2``).
    norm_eps: the epsilon of every LayerNorm of the tower.
    """

    heads: Optional[int] = None
    mlp_width: Optional[int] = None
    activation: str = "quick_gelu"
    layer_scale: bool = False
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {sorted(ACTIVATIONS)}")


OPENAI = TowerOptions()


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch (key ``gamma``)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names, batch-first."""

    def __init__(self, width: int, heads: int, causal: bool = False) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.causal = causal
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)
        if not self.in_proj_weight.is_meta:  # as nn.MultiheadAttention (meta: values come from a checkpoint)
            nn.init.xavier_uniform_(self.in_proj_weight)
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, width = x.shape  # (N, L, D)
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (N, L, 3D)
        qkv = qkv.view(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)  # (3, N, H, L, D/H)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=self.causal)  # (N, H, L, D/H)
        return self.out_proj(out.transpose(1, 2).reshape(n, length, width))  # (N, L, D)


class FeedForward(nn.Module):
    """The MLP of a residual block (keys ``mlp.c_fc`` / ``mlp.c_proj``; ``gelu`` names whichever activation)."""

    def __init__(self, width: int, hidden: Optional[int] = None, activation: str = "quick_gelu") -> None:
        super().__init__()
        hidden = hidden or 4 * width
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = ACTIVATIONS[activation]()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: ``x + ls_1(attn(ln_1(x)))`` then ``x + ls_2(mlp(ln_2(x)))`` (``ls``: layer scale
    where the options ask for it, else nothing)."""

    def __init__(self, width: int, heads: int, causal: bool = False, options: TowerOptions = OPENAI) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(width, eps=options.norm_eps)
        self.attn = SelfAttention(width, heads, causal)
        self.ln_2 = LayerNorm(width, eps=options.norm_eps)
        self.mlp = FeedForward(width, options.mlp_width, options.activation)
        self.ls_1 = LayerScale(width) if options.layer_scale else nn.Identity()
        self.ls_2 = LayerScale(width) if options.layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls_1(self.attn(self.ln_1(x)))  # (N, L, D)
        return x + self.ls_2(self.mlp(self.ln_2(x)))  # (N, L, D)


class Transformer(nn.Module):
    """A stack of residual blocks; deep prompts replace (or, wrapped in ``Insert``, extend) the prompt span at the
    input of block i."""

    def __init__(self, width: int, layers: int, heads: int, causal: bool = False,
                 options: TowerOptions = OPENAI) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, causal, options) for _ in range(layers))

    def forward(
        self, x: torch.Tensor, deep: Optional[DeepPrompts] = None, span: Optional[PromptSpan] = None
    ) -> torch.Tensor:
        """x: ``(N, L, D)``; deep: ``{i: (n, D) | (N, n, D) | callable(x, i) | Insert(...)}``; span: where
        prompts live. Returns ``(N, L', D)``: ``L' = L`` + the number of inserted tokens."""
        check_deep(deep, self.layers, "transformer")
        for i, block in enumerate(self.resblocks):
            if deep and i in deep:
                if span is None:
                    raise ValueError("deep prompts need a PromptSpan")
                x, span = apply_deep(x, deep[i], span, i)  # (N, L', D)
            x = block(x)  # (N, L', D)
        return x


class VisionTransformer(nn.Module):
    """ViT image tower: patch conv, class token, positional embedding, transformer, projection."""

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int,
                 output_dim: int, options: TowerOptions = OPENAI) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.width = width
        self.output_dim = output_dim
        grid = input_resolution // patch_size
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, width))
        self.ln_pre = LayerNorm(width, eps=options.norm_eps)
        self.transformer = Transformer(width, layers, heads, options=options)
        self.ln_post = LayerNorm(width, eps=options.norm_eps)
        self.proj = nn.Parameter(torch.empty(width, output_dim))

    def forward(self, x: torch.Tensor, shallow: Optional[torch.Tensor] = None, deep: Optional[DeepPrompts] = None,
                prompt_tokens: bool = False) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """x: ``(B, 3, H, W)``; shallow: ``(n, D)`` | ``(B, n, D)`` appended tokens; returns ``(B, E)``, and with
        ``prompt_tokens`` also the prompt span's output tokens after ``ln_post``, ``(B, n', D)`` (shallow and
        inserted tokens; for methods that read features from their own tokens)."""
        x = self.conv1(x)  # (B, D, g, g)
        x = x.flatten(2).transpose(1, 2)  # (B, g*g, D)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # (B, 1+g*g, D)
        n_prompt = 0
        if shallow is not None:
            x = append_tokens(x, shallow, "vision shallow prompt")  # (B, 1+g*g+n, D)
            n_prompt = x.shape[1] - self.positional_embedding.shape[0]
        x = self.ln_pre(x)
        x = self.transformer(x, deep, PromptSpan(BACK, n_prompt))  # (B, 1+g*g+n', D)
        features = self.ln_post(x[:, 0]) @ self.proj  # (B, E)
        if not prompt_tokens:
            return features
        return features, self.ln_post(x[:, self.positional_embedding.shape[0]:])  # (B, E), (B, n', D)


class Bottleneck(nn.Module):
    """ResNet bottleneck whose stride is an average pool (anti-aliasing), on both branches."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample: Optional[nn.Sequential] = None
        if stride > 1 or in_channels != out_channels:
            # keys downsample.0 (conv) / downsample.1 (BN); the pool in front of them has no weights
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (B, p, H, W)
        out = F.relu(self.bn2(self.conv2(out)))  # (B, p, H, W)
        out = self.bn3(self.conv3(self.pool(out)))  # (B, 4p, H/s, W/s)
        shortcut = x if self.downsample is None else self.downsample(self.pool(x))
        return F.relu(out + shortcut)


class AttentionPool2d(nn.Module):
    """Attention pooling: the mean token queries all spatial tokens (+ itself)."""

    def __init__(self, grid: int, width: int, heads: int, output_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, width))
        self.k_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.c_proj = nn.Linear(width, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)  # (B, 1+HW, C)
        x = x + self.positional_embedding.to(x.dtype)
        b, length, width = x.shape
        head_dim = width // self.heads
        q = self.q_proj(x[:, :1]).view(b, 1, self.heads, head_dim).transpose(1, 2)  # (B, H, 1, C/H)
        k = self.k_proj(x).view(b, length, self.heads, head_dim).transpose(1, 2)  # (B, H, 1+HW, C/H)
        v = self.v_proj(x).view(b, length, self.heads, head_dim).transpose(1, 2)  # (B, H, 1+HW, C/H)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, 1, C/H)
        return self.c_proj(out.transpose(1, 2).reshape(b, width))  # (B, E)


class ModifiedResNet(nn.Module):
    """CLIP's ResNet: 3-conv stem with average pool, anti-aliased bottlenecks, attention pooling."""

    def __init__(self, layers: Sequence[int], output_dim: int, heads: int, input_resolution: int = 224,
                 width: int = 64) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.width = width
        self.output_dim = output_dim
        half = width // 2
        self.conv1 = nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        channels = width
        for stage, depth in enumerate(layers):
            planes = width * 2 ** stage
            blocks = [Bottleneck(channels, planes, 1 if stage == 0 else 2)]
            blocks += [Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(depth - 1)]
            setattr(self, f"layer{stage + 1}", nn.ModuleList(blocks))
            channels = planes * Bottleneck.expansion
        self.num_stages = len(layers)
        self.attnpool = AttentionPool2d(input_resolution // 32, channels, heads, output_dim)

    def forward(self, x: torch.Tensor, shallow: Optional[torch.Tensor] = None,
                deep: Optional[DeepPrompts] = None, prompt_tokens: bool = False) -> torch.Tensor:
        """x: ``(B, 3, H, W)`` -> ``(B, E)``. Prompts are a ViT concept: passing any raises ValueError."""
        if shallow is not None or deep or prompt_tokens:
            raise ValueError("vision prompts need a ViT image tower; this CLIP has a ModifiedResNet (ResNet) tower")
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = F.relu(bn(conv(x)))
        x = self.avgpool(x)  # (B, w, H/4, W/4)
        for stage in range(1, self.num_stages + 1):
            for block in getattr(self, f"layer{stage}"):
                x = block(x)
        return self.attnpool(x)  # (B, E)


class CLIP(nn.Module):
    """Contrastive image-text model; argument names follow OpenAI's constructor.

    ``vision_layers`` is an int for a ViT image tower and a 4-tuple of block counts for a ModifiedResNet.
    ``vision_options`` / ``text_options``: where a tower departs from OpenAI's architecture (see
    :class:`TowerOptions`; only ``heads`` applies to a ResNet tower). The weights are left uninitialised: build it
    with :func:`build_model`, which loads every value from a checkpoint.
    """

    def __init__(self, embed_dim: int, image_resolution: int, vision_layers: Union[int, Sequence[int]],
                 vision_width: int, vision_patch_size: Optional[int], context_length: int, vocab_size: int,
                 transformer_width: int, transformer_heads: int, transformer_layers: int,
                 vision_options: TowerOptions = OPENAI, text_options: TowerOptions = OPENAI) -> None:
        super().__init__()
        # the constructor's arguments, e.g. to replay what OpenAI's constructor draws (trainers/replay.py)
        self.config = dict(embed_dim=embed_dim, image_resolution=image_resolution, vision_layers=vision_layers,
                           vision_width=vision_width, vision_patch_size=vision_patch_size,
                           context_length=context_length, vocab_size=vocab_size, transformer_width=transformer_width,
                           transformer_heads=transformer_heads, transformer_layers=transformer_layers)
        self.vision_options, self.text_options = vision_options, text_options
        # set by the loaders: the checkpoint family the weights came from ("openai", "openclip", "hf") and its image
        # preprocessing (a clip.loading.Preprocess)
        self.family = "openai"
        self.preprocess: Optional[Any] = None
        self.embed_dim = embed_dim
        self.context_length = context_length
        self.vocab_size = vocab_size
        if isinstance(vision_layers, (tuple, list)):
            # the ResNet feature width is 32x the stem width; one head per 64 channels unless the options say
            self.visual: nn.Module = ModifiedResNet(vision_layers, embed_dim,
                                                    vision_options.heads or vision_width * 32 // 64,
                                                    image_resolution, vision_width)
        else:
            self.visual = VisionTransformer(image_resolution, vision_patch_size, vision_width, vision_layers,
                                            vision_options.heads or max(1, vision_width // 64), embed_dim,
                                            vision_options)
        self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads, causal=True,
                                       options=text_options)
        # an explicit weight skips nn.Embedding's own random init (see the meta-device note below)
        self.token_embedding = nn.Embedding(vocab_size, transformer_width,
                                            _weight=torch.empty(vocab_size, transformer_width))
        self.positional_embedding = nn.Parameter(torch.empty(context_length, transformer_width))
        self.ln_final = LayerNorm(transformer_width, eps=text_options.norm_eps)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.empty(()))

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype of the towers (that of the first conv, as in OpenAI CLIP)."""
        return self.visual.conv1.weight.dtype

    @property
    def vision_width(self) -> int:
        return self.visual.width

    @property
    def text_width(self) -> int:
        return self.transformer.width

    def encode_image(self, image: torch.Tensor, shallow: Optional[torch.Tensor] = None,
                     deep: Optional[DeepPrompts] = None, prompt_tokens: bool = False
                     ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """image: ``(B, 3, H, W)``; shallow: ``(n, Dv)`` | ``(B, n, Dv)``; deep: ``{i: prompt}``. Returns ``(B, E)``;
        ``prompt_tokens``: also the prompt tokens after ``ln_post`` ``(B, n', Dv)`` (ViT only)."""
        return self.visual(image.to(self.dtype), shallow=shallow, deep=deep, prompt_tokens=prompt_tokens)

    def encode_text(self, text: torch.Tensor, shallow: Optional[torch.Tensor] = None,
                    deep: Optional[DeepPrompts] = None, embeddings: Optional[torch.Tensor] = None,
                    trim: bool = True) -> torch.Tensor:
        """Text features taken at the EOT token (the largest id of each row).

        Args:
            text: ``(N, L)`` token ids.
            shallow: ``(n, Dt)`` | ``(N, n, Dt)``, replaces token embeddings ``[1, 1+n)``.
            deep: ``{i: (n, Dt) | (N, n, Dt) | callable(x, i)}``, replaces ``[1, 1+n)`` at block i's input;
                an ``Insert`` entry puts its tokens right after SOS instead, and EOT is read that much later.
            embeddings: ``(N, L, Dt)`` caller-built token embeddings used instead of ``token_embedding(text)``.
            trim: run the tower only up to the last EOT of the batch. Attention is causal and the feature is read
                at EOT, so the padding after it never reaches the output: the result equals the full-length
                path up to float rounding. (A callable deep prompt then sees the trimmed length.)
        Returns:
            ``(N, E)`` unnormalised features.
        """
        if embeddings is not None and embeddings.shape[:2] != text.shape:
            raise ValueError(f"embeddings {tuple(embeddings.shape)} do not match the token ids {tuple(text.shape)}")
        if trim:
            length = int(text.argmax(dim=-1).max()) + 1
            text = text[:, :length]  # (N, L')
            embeddings = None if embeddings is None else embeddings[:, :length]
        x = self.token_embedding(text) if embeddings is None else embeddings  # (N, L, Dt)
        x = x.to(self.dtype)
        span = PromptSpan(FRONT, x.shape[1] - 1)
        if shallow is not None:
            x = replace_span(x, shallow, span, "text shallow prompt")
        x = x + self.positional_embedding[: x.shape[1]].to(self.dtype)  # (N, L, Dt)
        inserted = -x.shape[1]
        x = self.transformer(x, deep, span)  # (N, L', Dt)
        inserted += x.shape[1]  # tokens inserted after SOS move EOT on; attention stays causal at any length
        x = self.ln_final(x)
        eot = x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1) + inserted]  # (N, Dt)
        return eot @ self.text_projection.to(x.dtype)  # (N, E)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """image ``(B, 3, H, W)``, text ``(N, L)`` -> logits_per_image ``(B, N)``, logits_per_text ``(N, B)``."""
        image_features = F.normalize(self.encode_image(image), dim=-1)  # (B, E)
        text_features = F.normalize(self.encode_text(text), dim=-1)  # (N, E)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()  # (B, N)
        return logits_per_image, logits_per_image.t()


def cast_model(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Set the precision of a CLIP in place; the only place clip/ changes parameter dtypes.

    ``torch.float32``: every floating tensor becomes fp32 (what OpenAI's ``clip.load`` does on CPU).
    Lower precision (fp16/bf16): only the compute weights -- convolutions, linear layers, attention projections,
    ``proj`` and ``text_projection`` -- as OpenAI's ``convert_weights``; LayerNorm / BatchNorm parameters,
    embeddings and ``logit_scale`` stay fp32.
    """
    if dtype == torch.float32:
        return model.to(dtype=torch.float32)

    def cast(param: Optional[torch.Tensor]) -> None:
        if param is not None and param.is_floating_point():
            param.data = param.data.to(dtype)

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear, SelfAttention)):
            for param in module.parameters(recurse=False):
                cast(param)
        for name in ("proj", "text_projection"):
            if isinstance(getattr(module, name, None), nn.Parameter):
                cast(getattr(module, name))
    return model


class CheckpointError(RuntimeError):
    """A file or state_dict that is not a CLIP checkpoint this package can load."""


# Keys of OpenAI's TorchScript archives that are metadata, not weights.
METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")


def _count_blocks(state_dict: dict, prefix: str) -> int:
    """Number of distinct ``{prefix}{i}.`` indices among the keys."""
    found = {key[len(prefix):].split(".", 1)[0] for key in state_dict if key.startswith(prefix)}
    return len(found)


def _grid(num_positions: int, key: str) -> int:
    grid = round(math.sqrt(num_positions - 1))
    if grid * grid + 1 != num_positions:
        raise CheckpointError(f"{key} has {num_positions} rows, not grid**2 + 1")
    return grid


def infer_config(state_dict: dict) -> dict:
    """OpenAI ``CLIP`` constructor arguments inferred from the tensors of a state_dict (ViT or ResNet)."""
    required = ("text_projection", "positional_embedding", "token_embedding.weight", "ln_final.weight")
    missing = [k for k in required if k not in state_dict]
    if "visual.proj" in state_dict:  # ViT
        conv = state_dict["visual.conv1.weight"]  # (width, 3, patch, patch)
        patch = conv.shape[-1]
        vision = dict(vision_width=conv.shape[0], vision_patch_size=patch,
                      vision_layers=_count_blocks(state_dict, "visual.transformer.resblocks."),
                      image_resolution=patch * _grid(state_dict["visual.positional_embedding"].shape[0],
                                                     "visual.positional_embedding"))
    elif "visual.attnpool.positional_embedding" in state_dict:  # ModifiedResNet
        pos = state_dict["visual.attnpool.positional_embedding"]  # (grid**2 + 1, 32 * width)
        vision = dict(vision_width=state_dict["visual.layer1.0.conv1.weight"].shape[0], vision_patch_size=None,
                      vision_layers=tuple(_count_blocks(state_dict, f"visual.layer{s}.") for s in range(1, 5)),
                      image_resolution=32 * _grid(pos.shape[0], "visual.attnpool.positional_embedding"))
    else:
        missing.append("visual.proj (ViT) or visual.attnpool.positional_embedding (ResNet)")
    if missing:
        raise CheckpointError(f"not an OpenAI CLIP state_dict: missing {missing}; first keys: {list(state_dict)[:5]}")
    text_width = state_dict["ln_final.weight"].shape[0]
    return dict(embed_dim=state_dict["text_projection"].shape[1], **vision,
                context_length=state_dict["positional_embedding"].shape[0],
                vocab_size=state_dict["token_embedding.weight"].shape[0], transformer_width=text_width,
                transformer_heads=max(1, text_width // 64),
                transformer_layers=_count_blocks(state_dict, "transformer.resblocks."))


def infer_options(state_dict: dict, config: dict) -> dict:
    """The :class:`TowerOptions` fields the tensors show (MLP width, layer scale), per tower, for ``config``."""
    options = {}
    for tower, prefix, width in (("vision_options", "visual.transformer.resblocks.0.", config["vision_width"]),
                                 ("text_options", "transformer.resblocks.0.", config["transformer_width"])):
        fc = state_dict.get(f"{prefix}mlp.c_fc.weight")  # (hidden, width); absent for a ResNet image tower
        hidden = None if fc is None or fc.shape[0] == 4 * width else fc.shape[0]
        options[tower] = TowerOptions(mlp_width=hidden, layer_scale=f"{prefix}ls_1.gamma" in state_dict)
    return options


def infer_architecture(state_dict: dict, choices: Optional[Mapping[str, Mapping[str, Any]]] = None
                       ) -> Tuple[dict, dict]:
    """``(config, options)``: the ``CLIP`` constructor arguments of a state_dict, OpenAI's (:func:`infer_config`)
    and ``vision_options`` / ``text_options`` from the tensors and ``choices`` (see :func:`build_model`)."""
    config = infer_config(state_dict)
    options = infer_options(state_dict, config)
    chosen = {tower: dict((choices or {}).get(tower, {})) for tower in ("vision", "text")}
    text_heads = chosen["text"].pop("heads", None)
    if text_heads:
        config["transformer_heads"] = text_heads
    for tower in ("vision", "text"):
        options[f"{tower}_options"] = replace(options[f"{tower}_options"], **chosen[tower])
    return config, options


def _check_keys(model: nn.Module, state_dict: dict, config: dict, source: str) -> None:
    expected, found = set(model.state_dict()), set(state_dict)
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match the CLIP architecture inferred from its own tensors ({config}): "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}. "
            "Is it a CLIP checkpoint (not a trainer checkpoint), of a family this package loads?"
        )


def build_model(state_dict: dict, source: str = "state_dict", dtype: torch.dtype = torch.float16,
                choices: Optional[Mapping[str, Mapping[str, Any]]] = None, family: str = "openai") -> CLIP:
    """Build a CLIP from an OpenAI-layout state_dict with strict key matching, in eval mode.

    The architecture is inferred from tensor shapes; ``input_resolution`` / ``context_length`` / ``vocab_size``
    entries are ignored and a ``logit_scale`` of shape ``[1]`` is accepted. The default precision is OpenAI's
    ``build_model``: mixed fp16 (see ``cast_model``).

    Args:
        state_dict: ``{key: tensor}`` (not modified).
        source: the file name (or a description) used in error messages.
        dtype: precision passed to ``cast_model`` (``torch.float32`` gives an all-fp32 model).
        choices: what tensors cannot show, from the checkpoint's own config (other families):
            ``{"vision": {field: value}, "text": {field: value}}`` with :class:`TowerOptions` fields; a text
            ``heads`` sets ``transformer_heads``. None = OpenAI's choices.
        family: recorded as ``model.family``.
    """
    weights = {k: v for k, v in state_dict.items() if k not in METADATA_KEYS}
    try:
        config, options = infer_architecture(weights, choices)
    except CheckpointError as err:
        raise CheckpointError(f"{source}: {err}") from None
    except (KeyError, IndexError, AttributeError) as err:  # a key of the detected tower is absent / not a tensor
        raise CheckpointError(f"{source}: not an OpenAI CLIP state_dict ({type(err).__name__}: {err})") from None
    scale = weights.get("logit_scale")
    if scale is not None and scale.shape == (1,):  # the test weights store [1]; the parameter is 0-d
        weights["logit_scale"] = scale.reshape(())
    # Building on the meta device skips the random init of ~100M parameters that loading overwrites anyway.
    with torch.device("meta"):
        model = CLIP(**config, **options)
    model.family = family
    # precision is set before memory exists, so loading converts each checkpoint tensor once
    model = cast_model(model, dtype).to_empty(device="cpu")
    _check_keys(model, weights, config, source)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(f"{source} does not fit the inferred CLIP architecture {config}: {err}") from None
    logger.debug("built CLIP from %s: %s %s", source, config, options)
    return model.eval()
