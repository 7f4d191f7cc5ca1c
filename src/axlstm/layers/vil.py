"""Vision-LSTM (ViL) block: a pre-norm residual block around one mLSTM layer.

Attribute names follow the official AxLSTM/ViL checkpoints so their state dicts load as they
are. Shapes: B batch, S tokens, d embedding width, D = e * d inner width, NH mLSTM heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from axlstm.layers.drop import drop_path
from axlstm.layers.mlstm import mlstm, mlstm_carried
from axlstm.layers.norms import MultiHeadNorm, OffsetLayerNorm


class HeadwiseLinear(nn.Module):
    """Block-diagonal linear map: D channels in independent blocks of ``block_size``, no bias.

    The weight is stored as (D // block_size, block_size, block_size) = (blocks, out, in).
    """

    def __init__(self, dim: int, block_size: int) -> None:
        super().__init__()
        if dim % block_size:
            raise ValueError(f"dim {dim} is not divisible by block size {block_size}")
        self.dim = dim
        self.block_size = block_size
        n = dim // block_size
        self.weight = nn.Parameter(torch.empty(n, block_size, block_size))
        nn.init.normal_(self.weight, std=math.sqrt(2.0 / (5.0 * block_size)))  # ViL's default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        xb = x.reshape(-1, self.dim // self.block_size, self.block_size)  # (N, nb, bs)
        # one batched matmul over the blocks: (nb, N, bs) @ (nb, bs_in, bs_out)
        y = torch.bmm(xb.transpose(0, 1), self.weight.transpose(1, 2))  # (nb, N, bs)
        return y.transpose(0, 1).reshape(shape)


class CausalConv1d(nn.Module):
    """Depthwise causal conv along the token axis: output s sees inputs s-k+1 .. s."""

    def __init__(self, dim: int, kernel_size: int = 4) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size - 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))  # (B, D, S + k - 1)
        return y[..., : x.shape[1]].transpose(1, 2)  # (B, S, D)

    def forward_cached(
        self, x: torch.Tensor, cache: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Continue a sequence: ``cache`` (B, k-1, D) holds the previous inputs (zeros at the
        start, which is what the zero padding of :meth:`forward` amounts to)."""
        B, S, D = x.shape
        k = self.kernel_size
        if cache is None:
            cache = x.new_zeros(B, k - 1, D)
        xx = torch.cat([cache, x], dim=1)  # (B, k - 1 + S, D)
        conv = self.conv
        y = F.conv1d(xx.transpose(1, 2), conv.weight, conv.bias, groups=conv.groups)  # (B, D, S)
        return y.transpose(1, 2), xx[:, xx.shape[1] - (k - 1) :]


class MLSTMCell(nn.Module):
    """Gates, the mLSTM recurrence and the per-head output norm.

    Args:
        dim: inner width D.
        num_heads: mLSTM heads NH.
        backend: "auto" (fastest form for the length), "parallel", "chunkwise" or "recurrent".
        chunk_size: chunk length of the chunkwise form.
    """

    def __init__(
        self, dim: int, num_heads: int, backend: str = "auto", chunk_size: int = 64
    ) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.backend = backend
        self.chunk_size = chunk_size
        self.igate = nn.Linear(3 * dim, num_heads)
        self.fgate = nn.Linear(3 * dim, num_heads)
        self.outnorm = MultiHeadNorm(dim, num_heads, eps=1e-5)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.fgate.weight)
        with torch.no_grad():
            self.fgate.bias.copy_(torch.linspace(3.0, 6.0, self.num_heads))
        nn.init.zeros_(self.igate.weight)
        nn.init.normal_(self.igate.bias, mean=0.0, std=0.1)
        self.outnorm.reset_parameters()

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        B, S, _ = x.shape
        return x.view(B, S, self.num_heads, -1).transpose(1, 2)  # (B, NH, S, DH)

    def gates(self, q, k, v) -> tuple[torch.Tensor, torch.Tensor]:
        """Input and forget gate preactivations (B, NH, S) from the concatenation [q, k, v].

        Both gates are computed together and the concatenation is never built: its product
        with the stacked weight is the sum of three products with the weight's column blocks.
        """
        D, NH = self.dim, self.num_heads
        w = torch.cat([self.igate.weight, self.fgate.weight], dim=0)  # (2 NH, 3 D)
        b = torch.cat([self.igate.bias, self.fgate.bias], dim=0)
        y = torch.addmm(b, q.reshape(-1, D), w[:, :D].t())
        y = y.addmm_(k.reshape(-1, D), w[:, D : 2 * D].t()).addmm_(
            v.reshape(-1, D), w[:, 2 * D :].t()
        )
        y = y.view(*q.shape[:-1], 2 * NH).transpose(-2, -1)  # (B, 2 NH, S)
        return y[:, :NH], y[:, NH:]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        igate, fgate = self.gates(q, k, v)
        h = mlstm(
            self.heads(q),
            self.heads(k),
            self.heads(v),
            igate,
            fgate,
            backend=self.backend,
            chunk_size=self.chunk_size,
        )
        return self.outnorm(h)  # (B, S, D)


class ViLLayer(nn.Module):
    """The mLSTM layer of a ViL block (up-projection, conv, q/k/v, cell, gating, down-projection).

    Args:
        dim: embedding width d.
        expansion: inner width factor e (D = e * d).
        num_heads: mLSTM heads (ViL always uses 4).
        qkv_block_size: block size of the head-wise q/k/v projections.
        conv_kernel_size: causal depthwise conv kernel.
        backend, chunk_size: how the mLSTM recurrence is computed (see :class:`MLSTMCell`).
        segment_size: process sequences longer than this many tokens segment by segment with
            carried state (0: never).
    """

    def __init__(
        self,
        dim: int,
        expansion: int = 2,
        num_heads: int = 4,
        qkv_block_size: int = 4,
        conv_kernel_size: int = 4,
        backend: str = "auto",
        chunk_size: int = 64,
        segment_size: int = 0,
    ) -> None:
        super().__init__()
        inner = expansion * dim
        self.dim = dim
        self.inner_dim = inner
        self.segment_size = segment_size
        self.proj_up = nn.Linear(dim, 2 * inner, bias=False)
        self.q_proj = HeadwiseLinear(inner, qkv_block_size)
        self.k_proj = HeadwiseLinear(inner, qkv_block_size)
        self.v_proj = HeadwiseLinear(inner, qkv_block_size)
        self.conv1d = CausalConv1d(inner, conv_kernel_size)
        self.mlstm_cell = MLSTMCell(inner, num_heads, backend, chunk_size)
        self.learnable_skip = nn.Parameter(torch.ones(inner))
        self.proj_down = nn.Linear(inner, dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # "small init" sigma = sqrt(2 / (5 d)) on the up- and q/k/v projections, "Wang init"
        # 2 / sqrt(d) with one block on the down-projection, as the official code does.
        small = math.sqrt(2.0 / (5.0 * self.dim))
        nn.init.normal_(self.proj_up.weight, std=small)
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.normal_(proj.weight, std=small)
        nn.init.normal_(self.proj_down.weight, std=2.0 / math.sqrt(self.dim))
        self.conv1d.conv.reset_parameters()
        self.mlstm_cell.reset_parameters()
        nn.init.ones_(self.learnable_skip)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The layer written step by step as SPEC §3.2 states it (for tests and reading)."""
        x_m, z = self.proj_up(x).chunk(2, dim=-1)  # (B, S, D) each
        c = F.silu(self.conv1d(x_m))
        q, k = self.q_proj(c), self.k_proj(c)
        v = self.v_proj(x_m)  # v comes from the pre-conv branch
        h = self.mlstm_cell(q, k, v)
        h = (h + self.learnable_skip * c) * F.silu(z)
        return self.proj_down(h)

    def _head_maps(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Dense per-head forms of the q/k/v maps and the gate weights folded through them.

        Returns:
            R_qk (NH, DH, 2 DH): right-multipliers giving [q | k] from c, one head at a time.
            R_v (NH, DH, DH): the same for v from x_m.
            W_c, W_x (2 NH, D): [input; forget] gate weights acting on c and on x_m directly,
                since gate = W_q q + W_k k + W_v v = (W_q BD_q + W_k BD_k) c + (W_v BD_v) x_m.
        """
        cell = self.mlstm_cell
        NH, D = cell.num_heads, self.inner_dim
        DH, bs = D // NH, self.q_proj.block_size
        nb = DH // bs  # blocks per head
        eye = torch.eye(nb, dtype=self.q_proj.weight.dtype, device=self.q_proj.weight.device)

        def dense(w: torch.Tensor) -> torch.Tensor:  # (NH * nb, out, in) -> (NH, DH_in, DH_out)
            w = w.view(NH, nb, bs, bs).transpose(-2, -1)  # (NH, nb, in, out)
            full = w[:, :, :, None, :] * eye[None, :, None, :, None]  # (NH, nb, in, nb, out)
            return full.reshape(NH, DH, DH)

        R_qk = torch.cat([dense(self.q_proj.weight), dense(self.k_proj.weight)], dim=-1)
        R_v = dense(self.v_proj.weight)
        w_gate = torch.cat([cell.igate.weight, cell.fgate.weight], dim=0)  # (2 NH, 3 D)

        def fold(w: torch.Tensor, proj: HeadwiseLinear) -> torch.Tensor:
            w = w.reshape(2 * NH, D // bs, bs)  # (gates, blocks, out)
            return torch.einsum("gbo,boi->gbi", w, proj.weight).reshape(2 * NH, D)

        W_c = fold(w_gate[:, :D], self.q_proj) + fold(w_gate[:, D : 2 * D], self.k_proj)
        W_x = fold(w_gate[:, 2 * D :], self.v_proj)
        return R_qk, R_v, W_c, W_x

    def forward(self, x: torch.Tensor, state=None, return_state: bool = False):
        """Same result as :meth:`forward_reference`, organised for speed.

        The head-wise q/k/v maps run as one batched matmul per branch with heads as the batch,
        the mLSTM works head-major (NH, B, S, DH) so no per-tensor transposes are needed, and
        the gates are computed from c and x_m with folded weights instead of from [q, k, v].
        A sequence longer than ``segment_size`` tokens is processed segment by segment with the
        state carried across (exactly as streaming does), so the layer's wide intermediates
        exist for one segment at a time: less memory, and a working set that stays in cache.

        Args:
            x: (B, S, d).
            state: carried (conv inputs, mLSTM state) from an earlier segment of the same
                sequence, to continue it (streaming); ``None`` starts a new sequence.
            return_state: also return the state after the last token.
        """
        maps = self._head_maps()
        seg = self.segment_size
        S = x.shape[1]
        if not seg or S <= seg:
            return self._forward_segment(x, maps, state, return_state)
        outs = []
        for start in range(0, S, seg):
            y, state = self._forward_segment(x[:, start : start + seg], maps, state, True)
            outs.append(y)
        out = torch.cat(outs, dim=1)
        return (out, state) if return_state else out

    def _forward_segment(self, x: torch.Tensor, maps, state, return_state: bool):
        B, S, _ = x.shape
        cell = self.mlstm_cell
        NH, D = cell.num_heads, self.inner_dim
        DH = D // NH
        x_m, z = self.proj_up(x).chunk(2, dim=-1)  # (B, S, D) views
        stateful = state is not None or return_state
        conv_cache, mlstm_state = state if state is not None else (None, None)
        if stateful:
            c, conv_cache = self.conv1d.forward_cached(x_m, conv_cache)
            c = F.silu(c)
        else:
            c = F.silu(self.conv1d(x_m))  # (B, S, D)
        R_qk, R_v, W_c, W_x = maps
        c2, x2 = c.reshape(B * S, D), x_m.reshape(B * S, D)
        qk = torch.bmm(c2.view(B * S, NH, DH).transpose(0, 1), R_qk)  # (NH, BS, 2 DH)
        v = torch.bmm(x2.view(B * S, NH, DH).transpose(0, 1), R_v)  # (NH, BS, DH)
        q = qk[..., :DH].view(NH, B, S, DH)
        k = qk[..., DH:].view(NH, B, S, DH)
        bias = torch.cat([cell.igate.bias, cell.fgate.bias])
        gates = torch.addmm(bias, c2, W_c.t()).addmm_(x2, W_x.t())  # (BS, 2 NH)
        gates = gates.t().view(2 * NH, B, S)
        if stateful:  # a chunk-state form (chunkwise or its Triton kernel) carries state exactly
            h, mlstm_state = mlstm_carried(
                q, k, v.view(NH, B, S, DH), gates[:NH], gates[NH:], mlstm_state,
                backend=cell.backend, chunk_size=cell.chunk_size,
            )  # fmt: skip
        else:
            h = mlstm(
                q, k, v.view(NH, B, S, DH), gates[:NH], gates[NH:],
                backend=cell.backend, chunk_size=cell.chunk_size,
            )  # fmt: skip  # (NH, B, S, DH)
        h = F.layer_norm(h, (DH,), eps=cell.outnorm.eps)  # per-head norm
        h = h * (1.0 + cell.outnorm.weight).view(NH, 1, 1, DH)
        h = h.permute(1, 2, 0, 3).reshape(B, S, D)
        h = (h + self.learnable_skip * c) * F.silu(z)
        out = self.proj_down(h)
        return (out, (conv_cache, mlstm_state)) if return_state else out


class ViLBlock(nn.Module):
    """x + layer(norm(x)), with the token order reversed around the layer when ``reverse``;
    with ``drop_path`` > 0 the branch is dropped per sample in training (stochastic depth)."""

    def __init__(
        self, dim: int, reverse: bool = False, drop_path: float = 0.0, **layer_kwargs
    ) -> None:
        super().__init__()
        self.reverse = reverse
        self.drop_path = drop_path
        self.norm = OffsetLayerNorm(dim, bias=False, eps=1e-5)
        self.layer = ViLLayer(dim, **layer_kwargs)

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        self.layer.reset_parameters()

    def forward(self, x: torch.Tensor, state=None, return_state: bool = False):
        """(B, S, d) -> (B, S, d); with ``state``/``return_state`` it continues a sequence
        (forward-running blocks only: a reversed block needs the whole sequence)."""
        h = self.norm(x)
        if state is not None or return_state:
            if self.reverse:
                raise ValueError("a right-to-left block cannot continue a sequence (stream)")
            out, state = self.layer(h, state, return_state=True)
            out = drop_path(out, self.drop_path, self.training)
            return (x + out, state) if return_state else x + out
        out = self.layer(h.flip(1)).flip(1) if self.reverse else self.layer(h)
        return x + drop_path(out, self.drop_path, self.training)
