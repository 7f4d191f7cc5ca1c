"""Pre-norm transformer block of the SSAST-style baseline (official attribute names)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axlstm.layers.drop import drop_path


class Attention(nn.Module):
    """Multi-head self-attention with a fused (SDPA) or an eager implementation.

    Args:
        dim: token width.
        num_heads: attention heads.
        impl: "sdpa" (torch's fused scaled-dot-product attention) or "eager" (explicit softmax,
            kept as the reference for parity tests).
    """

    def __init__(self, dim: int, num_heads: int, impl: str = "sdpa") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if impl not in ("sdpa", "eager"):
            raise ValueError(f"unknown attention impl {impl!r} (use 'sdpa' or 'eager')")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.impl = impl
        self.qkv_layer = nn.Linear(dim, 3 * dim)
        self.proj_layer = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, S, d = x.shape
        qkv = self.qkv_layer(x).view(B, S, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, S, hd) each
        if self.impl == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)
            out = attn.softmax(dim=-1) @ v
        return self.proj_layer(out.transpose(1, 2).reshape(B, S, d))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.layer1 = nn.Linear(dim, hidden)
        self.layer2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.gelu(self.layer1(x)))


class TransformerBlock(nn.Module):
    """x + Attn(LN(x)), then x + MLP(LN(x)); LayerNorm eps 1e-6, exact GELU, no dropout;
    with ``drop_path`` > 0 each branch is dropped per sample in training (stochastic depth)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        attn_impl: str = "sdpa",
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, impl=attn_impl)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)
