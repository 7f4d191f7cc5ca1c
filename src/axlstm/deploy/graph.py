"""Graph forms of the encoders: one traced graph serves every input length.

``torch.export`` and the ONNX exporter record the operations one call makes. The eager encoders
choose their algorithm by Python branches on the sequence length (the mLSTM form, the segment
size, the positional table to take or compute, crop or interpolate SSAST's positions) and run
their recurrences as Python loops over chunks or time steps, which a trace unrolls for the one
length it saw. The forms here compute the same functions with operations whose number does not
depend on the length:

- **mLSTM** (:func:`mlstm_graph`): the chunkwise form with the recurrence between chunks
  written in closed form. The state entering chunk j is a weighted sum of the chunks before it
  (and of a carried initial state), with weights ``exp(P_j - P_i + mu_i - m_j)`` from the
  cumulative log forget gates P (kept in float64 so that the differences of large cumulative
  sums lose nothing) and the row maximum m_j as stabiliser, exactly the stabiliser the eager
  recurrence carries. One (K + 1, K) weight matrix per head replaces the loop over the K chunks.
- **Mamba's selective scan** (:func:`selective_scan_graph`): the linear recurrence
  ``h_t = a_t h_{t-1} + b_t`` in two levels: step by step inside chunks of
  :data:`SCAN_CHUNK` tokens (a fixed 32 steps, each on every chunk at once), then a
  Hillis-Steele scan over the chunk totals with a fixed number (:data:`SCAN_LEVELS`) of
  doubling steps whose shifts are gathers, so that a shift longer than the sequence is simply
  empty. This covers up to ``SCAN_CHUNK * 2 ** SCAN_LEVELS`` tokens (:data:`MAX_SCAN_TOKENS`,
  2.1 M: 4.6 h of audio for SSAM, 11.6 h for SSAMBA; beyond that the far past is dropped).
- **positions**: sin-cos positions computed from the time index (the stored table for the
  indices it holds, the formula beyond, as the eager model does); SSAST's learnt table cropped
  and interpolated both, the one the length asks for selected by a tensor condition.

Everything else (patch embedding, projections, norms, attention, the SSAST framework's token
order and frame layout) is the model's own modules, called as the eager forward calls them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axlstm.core.errors import ConfigError
from axlstm.layers import TransformerBlock, ViLBlock, sincos_pos_embed_2d
from axlstm.layers.mamba import BiMambaMixer, MambaBlock, MambaMixer
from axlstm.layers.patch import POS_ADAPTS
from axlstm.models import SSAMBA, MaskedSpecModel, SSASTFramework, SSASTOriginal
from axlstm.models.interface import resolve_frame_layout

__all__ = [
    "MAX_SCAN_TOKENS",
    "SCAN_CHUNK",
    "SCAN_LEVELS",
    "EncoderGraph",
    "export_problem",
    "linear_scan_graph",
    "mlstm_graph",
    "selective_scan_graph",
]

#: A finite stand-in for minus infinity: exp of it is 0 and differences of it are not NaN.
NEG = -1e30
#: Tokens per chunk of the graph's selective scan, and doubling steps over the chunk totals.
SCAN_CHUNK = 32
SCAN_LEVELS = 16
#: Longest token sequence the parallel selective scan covers.
MAX_SCAN_TOKENS = SCAN_CHUNK * 2**SCAN_LEVELS


# --------------------------------------------------------------------------------- mLSTM
def mlstm_graph(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    *,
    chunk_size: int = 64,
    eps: float = 1e-6,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    return_state: bool = False,
):
    """The stabilised mLSTM of :func:`axlstm.layers.mlstm.mlstm_chunkwise`, loop-free.

    Args:
        q, k, v: (..., S, DH) with any leading dimensions (batch, heads).
        igate, fgate: gate preactivations (..., S).
        chunk_size: tokens per chunk L; the work is S·L inside chunks plus (S / L)² between.
        eps: added to the normaliser.
        state: carried (C (..., DH, DH), n (..., DH), m (...)) as the chunkwise form carries it
            (C and n scaled by exp(-m)); None starts from no memory.
        return_state: also return the state after the last token.

    Returns:
        h (..., S, DH), and the final state when ``return_state``.
    """
    *lead, S, DH = q.shape
    L = chunk_size
    pad = (-S) % L  # written so that the tracer knows 0 <= pad < L
    dtype = q.dtype
    # Padded steps neither decay (log f = 0) nor write (i = -huge): outputs and state unchanged.
    log_f = F.pad(F.logsigmoid(fgate), (0, pad))
    igate = F.pad(igate, (0, pad), value=torch.finfo(dtype).min / 4)
    q, k, v = (F.pad(x, (0, 0, 0, pad)).reshape(*lead, -1, L, DH) for x in (q, k, v))
    K = q.shape[-3]
    k = k * (1.0 / DH**0.5)
    g = log_f.reshape(*lead, K, L).cumsum(-1)  # local cumulative log f
    a = igate.reshape(*lead, K, L) - g
    mu = a.amax(-1)  # (..., K) each chunk's own stabiliser
    w = torch.exp(a - mu[..., None])[..., None]
    C_loc = (v * w).transpose(-2, -1) @ k  # (..., K, DH, DH)
    n_loc = (k * w).sum(-2)  # (..., K, DH)

    # Between chunks, in float64: row j = the state entering chunk j (row K: after the last).
    P = F.pad(g[..., -1].double().cumsum(-1), (1, 0))  # (..., K + 1), P_j = sum_{r<j} G_r
    E = P[..., :, None] + (mu.double() - P[..., :-1])[..., None, :]  # (..., K + 1, K)
    rows = torch.arange(K + 1, device=q.device)
    before = torch.arange(K, device=q.device)[None, :] < rows[:, None]  # chunk i < row j
    E = E.masked_fill(~before, NEG)
    m_rows = E.amax(-1)  # the eager recurrence's stabiliser m_j
    if state is not None:
        C0, n0, m0 = state
        e0 = P + m0.double()[..., None]  # the carried state decays by P_j
        m_rows = torch.maximum(m_rows, e0)
    # Round the stabiliser to the carried dtype before scaling by it, so that a carried state
    # is scaled by exactly the m it is stored with (else each step adds a rounding of m).
    m_rows = m_rows.to(dtype).double()
    W = torch.exp((E - m_rows[..., None]).to(dtype)).masked_fill(~before, 0.0)
    C_rows = (W @ C_loc.reshape(*lead, K, DH * DH)).reshape(*lead, K + 1, DH, DH)
    n_rows = W @ n_loc
    if state is not None:
        w0 = torch.exp((e0 - m_rows).to(dtype))
        C_rows = C_rows + w0[..., None, None] * C0[..., None, :, :].to(dtype)
        n_rows = n_rows + w0[..., None] * n0[..., None, :].to(dtype)
    m_rows = m_rows.to(dtype)
    C_in, n_in, m_in = C_rows[..., :K, :, :], n_rows[..., :K, :], m_rows[..., :K]

    # Inside chunks: token t's stabiliser is g_t + max(m_in, max_{s<=t} a_s).
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    running = a[..., None, :].masked_fill(~causal, NEG).amax(-1)  # (..., K, L)
    M = torch.maximum(m_in[..., None], running)
    w_in = torch.exp(m_in[..., None] - M)  # weight of the carried state
    decay = torch.exp((a[..., None, :] - M[..., :, None]).clamp_max(0.0)).masked_fill(~causal, 0)
    scores = (q @ k.transpose(-2, -1)) * decay  # (..., K, L, L)
    num = scores @ v + w_in[..., None] * (q @ C_in.transpose(-2, -1))
    den = scores.sum(-1) + w_in * (q * n_in[..., None, :]).sum(-1)
    floor = torch.exp(-(g + M))
    h = num / (torch.maximum(den.abs(), floor)[..., None] + eps)
    h = h.reshape(*lead, K * L, DH)[..., :S, :]
    if return_state:
        return h, (C_rows[..., K, :, :], n_rows[..., K, :], m_rows[..., K])
    return h


def vil_layer_graph(
    layer, x: torch.Tensor, state=None, return_state: bool = False, chunk_size: int | None = None
):
    """:meth:`axlstm.layers.ViLLayer.forward_reference` with :func:`mlstm_graph`; with
    ``state`` = (conv inputs (B, k-1, D), C (B, NH, DH, DH), n (B, NH, DH), m (B, NH)) it
    continues a sequence as the streaming forward does. ``chunk_size``: the mLSTM's chunk
    length (default: the layer's)."""
    cell = layer.mlstm_cell
    x_m, z = layer.proj_up(x).chunk(2, dim=-1)
    if state is not None or return_state:
        cache, mstate = (None, None) if state is None else (state[0], tuple(state[1:]))
        c, cache = layer.conv1d.forward_cached(x_m, cache)
        c = F.silu(c)
    else:
        c, mstate = F.silu(layer.conv1d(x_m)), None
    q, k = layer.q_proj(c), layer.k_proj(c)
    v = layer.v_proj(x_m)
    igate, fgate = cell.gates(q, k, v)
    out = mlstm_graph(
        cell.heads(q), cell.heads(k), cell.heads(v), igate, fgate,
        chunk_size=chunk_size or cell.chunk_size, state=mstate, return_state=return_state,
    )  # fmt: skip
    h, mstate = out if return_state else (out, None)
    h = (cell.outnorm(h) + layer.learnable_skip * c) * F.silu(z)
    y = layer.proj_down(h)
    return (y, (cache, *mstate)) if return_state else y


def vil_block_graph(block: ViLBlock, x: torch.Tensor) -> torch.Tensor:
    h = block.norm(x)
    if block.reverse:
        return x + vil_layer_graph(block.layer, h.flip(1)).flip(1)
    return x + vil_layer_graph(block.layer, h)


# ---------------------------------------------------------------------------------- Mamba
def _shift_gather(x: torch.Tensor, k: int, fill: float) -> torch.Tensor:
    """x shifted by k along axis 0 of any length (all ``fill`` when k >= its length)."""
    idx = torch.arange(x.shape[0], device=x.device) - k
    picked = x.index_select(0, idx.clamp(min=0))
    valid = (idx >= 0).reshape(-1, *[1] * (x.dim() - 1))
    return torch.where(valid, picked, torch.full_like(picked, fill))


def linear_scan_graph(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All states of h_t = a_t h_{t-1} + b_t (h_{-1} = 0) for a, b of shape (T, K, ...): K
    chunks of T = :data:`SCAN_CHUNK` consecutive steps, step k T + t at index [t, k].

    Inside the chunks the recurrence runs step by step (T steps, each on all K chunks at
    once), with the running products of a; over the chunk totals a Hillis-Steele scan with the
    combine (a1, b1) ∘ (a2, b2) = (a1 a2, a2 b1 + b2) and :data:`SCAN_LEVELS` doubling steps
    whose shifts beyond the length are empty; every state then adds its carried-in state times
    its product of a. Only products of a in (0, 1] occur, so nothing overflows. Steps and
    chunks lead, so every slice is one contiguous block.
    """
    h, p = b[0], a[0]
    states, products = [h], [p]
    for t in range(1, a.shape[0]):  # inside chunks: T steps, a fixed number
        h = a[t] * h + b[t]
        p = a[t] * p
        states.append(h)
        products.append(p)
    A, H = p, h  # (K, ...) chunk products and chunk-local last states
    index = torch.arange(A.shape[0], device=A.device)
    ones = [1] * (A.dim() - 1)
    for level in range(SCAN_LEVELS):  # over chunks; no predecessor: the identity (1, 0)
        source = index - 2**level
        has = (source >= 0).to(A.dtype).reshape(-1, *ones)
        source = source.clamp(min=0)
        H = A * (H.index_select(0, source) * has) + H
        A = A * (1.0 + has * (A.index_select(0, source) - 1.0))
    carry = _shift_gather(H, 1, 0.0)  # the state entering each chunk
    return torch.stack(states) + torch.stack(products) * carry[None]


def selective_scan_graph(u, delta, A, B, C, D, z, delta_bias) -> torch.Tensor:
    """:func:`axlstm.layers.scan.selective_scan` (softplus step sizes, D skip, SiLU(z) gate)
    through :func:`linear_scan_graph`. Shapes as there; B, C (B, N, L) or (B, G, N, L).

    The sequence is padded to whole chunks with step size 0 (a = 1, b = 0: the identity) and
    laid out (T, K, batch, G, E / G, N) from the small (.., L) tensors, so that no tensor with
    the state axis is ever transposed.
    """
    acc = torch.float32
    Bsz, E, L = u.shape
    Bg = (B if B.dim() == 4 else B.unsqueeze(1)).to(acc)  # (B, G, N, L)
    Cg = (C if C.dim() == 4 else C.unsqueeze(1)).to(acc)
    G, N = Bg.shape[1], Bg.shape[2]
    T = SCAN_CHUNK
    pad = (-L) % T

    def chunked(x: torch.Tensor) -> torch.Tensor:  # (B, X, L) -> (T, K, B, X)
        x = F.pad(x, (0, pad))
        return x.reshape(*x.shape[:2], -1, T).permute(3, 2, 0, 1)

    dt = F.softplus(delta.to(acc) + delta_bias.to(acc)[:, None])  # (B, E, L)
    dt = chunked(dt)  # padded steps: dt = 0, so a = 1 and b = 0
    du = dt * chunked(u.to(acc))  # (T, K, B, E)
    K = dt.shape[1]
    dt = dt.reshape(T, K, Bsz, G, E // G, 1)
    a = torch.exp(dt * A.to(acc).reshape(G, E // G, N))  # (T, K, B, G, Eg, N)
    Bm = chunked(Bg.reshape(Bsz, G * N, L)).reshape(T, K, Bsz, G, 1, N)
    b = du.reshape(T, K, Bsz, G, E // G, 1) * Bm
    h = linear_scan_graph(a, b)
    Cm = chunked(Cg.reshape(Bsz, G * N, L)).reshape(T, K, Bsz, G, 1, N)
    y = (h * Cm).sum(-1).reshape(T, K, Bsz, E)  # (T, K, B, E)
    y = y.permute(2, 3, 1, 0).reshape(Bsz, E, K * T)[:, :, :L]
    y = (y + D.to(acc)[:, None] * u.to(acc)) * F.silu(z.to(acc))
    return y.to(u.dtype)


def mamba_mixer_graph(mixer: MambaMixer, hidden: torch.Tensor) -> torch.Tensor:
    """:meth:`MambaMixer.forward` (or :meth:`BiMambaMixer.forward`) with the graph scan."""
    x, z = mixer.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (B, E, L) each
    u, d, B, C = mixer.branch_inputs(x, mixer.conv1d, mixer.x_proj, mixer.dt_proj)
    A = -torch.exp(mixer.A_log.float())
    if not isinstance(mixer, BiMambaMixer):
        y = selective_scan_graph(u, d, A, B, C, mixer.D, z, mixer.dt_proj.bias)
        return mixer.out_proj(y.transpose(1, 2))
    u_b, d_b, B_b, C_b = mixer.branch_inputs(
        x.flip(-1), mixer.conv1d_b, mixer.x_proj_b, mixer.dt_proj_b
    )
    y = selective_scan_graph(
        torch.cat([u, u_b], dim=1),
        torch.cat([d, d_b], dim=1),
        torch.cat([A, -torch.exp(mixer.A_b_log.float())]),
        torch.stack([B, B_b], dim=1),
        torch.stack([C, C_b], dim=1),
        torch.cat([mixer.D, mixer.D_b]),
        torch.cat([z, z.flip(-1)], dim=1),
        torch.cat([mixer.dt_proj.bias, mixer.dt_proj_b.bias]),
    )
    y_f, y_b = y.chunk(2, dim=1)
    y = y_f + y_b.flip(-1)
    if mixer.divide_out:
        y = y / 2
    return mixer.out_proj(y.transpose(1, 2))


def mamba_block_graph(block: MambaBlock, x: torch.Tensor) -> torch.Tensor:
    h = mamba_mixer_graph(block.mixer, block.norm(x))
    return x.float() + h.float() if block.residual_in_fp32 else x + h


def _ssamba_encoder_graph(model: SSAMBA, x: torch.Tensor) -> torch.Tensor:
    """:meth:`SSAMBA.run_encoder` (eval: no drop path) with the graph mixers."""
    cfg = model.config

    def vim(block, hidden, residual):
        residual = hidden if residual is None else residual + hidden
        hidden = mamba_mixer_graph(block.mixer, block.norm(residual.to(block.norm.weight.dtype)))
        if block.residual_in_fp32:
            residual = residual.float()
        return hidden, residual

    H, R = x, None
    for i in range(0, len(model.layers), 2):
        h_f, r_f = vim(model.layers[i], H, R)
        h_b, r_b = vim(model.layers[i + 1], H.flip(1), None if R is None else R.flip(1))
        H = h_f + h_b.flip(1)
        R = r_f + r_b.flip(1)
        if not cfg.residual_doubling:
            R = R / 2
    out = model.norm_f((R + H).to(model.norm_f.weight.dtype))
    return model.norm_f(out) if cfg.final_norm_twice else out


# ------------------------------------------------------------------------------ positions
def sincos_time_positions(model: MaskedSpecModel, t: torch.Tensor, stored: bool) -> torch.Tensor:
    """Positions (..., n_f, d) of time patches ``t`` (int64, any shape) of a masked spectrogram
    model: the stored table where it holds the index and ``stored``, else the sin-cos formula of
    :func:`axlstm.layers.sincos_pos_embed_2d` (channels: frequency half, then time half)."""
    d = model.embed_dim
    n_t0, n_f = model.config.grid
    half = d // 2
    freq = sincos_pos_embed_2d(1, n_f, d, cls_token=False)[:, :half].to(t.device)  # (n_f, half)
    omega = torch.arange(half // 2, dtype=torch.float64, device=t.device) / (half / 2.0)
    omega = 1.0 / 10000.0**omega
    angles = t.to(torch.float64)[..., None] * omega  # float64 as the eager table
    time = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).float()  # (..., half)
    shape = (*t.shape, n_f, half)
    table = torch.cat([freq.expand(shape), time[..., None, :].expand(shape)], dim=-1)
    table = table.to(model.pos_embed.dtype)
    if not stored:
        return table
    kept = model.pos_embed[0, 1:].reshape(n_t0, n_f, d)
    return torch.where((t < n_t0)[..., None, None], kept[t.clamp(max=n_t0 - 1)], table)


def ssast_positions(model: SSASTFramework, n_t: torch.SymInt | int) -> torch.Tensor:
    """:meth:`SSASTFramework.pos_embed_for` for ``n_t`` time patches, loop- and branch-free:
    the learnt (1, D, F', T0) table centre-cropped and interpolated both, one selected by
    whether ``n_t`` exceeds T0 (at T0 itself both are the table)."""
    cfg = model.config
    n_cls, D = cfg.num_cls_tokens, model.embed_dim
    t0, f0 = cfg.grid
    table = model.pos_embed[:, n_cls:].transpose(1, 2).reshape(1, D, f0, t0)
    idx = torch.arange(n_t, device=table.device)
    crop = table.index_select(3, (idx + (t0 // 2 - n_t // 2)).clamp(0, t0 - 1))
    rows = 8 if cfg.pos_adapt == "official" else f0
    stretched = F.interpolate(table, size=(rows, n_t), mode="bilinear")
    if rows != f0:
        stretched = F.interpolate(stretched, size=(f0, n_t), mode="bilinear")
    table = torch.where((idx >= t0).any(), stretched, crop)
    return torch.cat([model.pos_embed[:, :n_cls], table.flatten(2).transpose(1, 2)], dim=1)


# ---------------------------------------------------------------------------- the encoder
def frames_graph(tokens: torch.Tensor, prefix: int, n_f: int, time_major: bool) -> torch.Tensor:
    """(B, prefix + L, d) tokens -> (B, L / n_f, n_f d) frames, as ``tokens_to_frames`` of the
    families: time-major tokens are grouped n_f at a time; frequency-major ones (SSAST, and
    the "official" layout of the masked spectrogram model) are read as (n_f, T') and each
    frame concatenates the n_f rows' tokens of its time step.

    Written with a copy and per-band slices instead of a reshape of the strided slice:
    whether that reshape could be a view depends on the batch and the length being 1, which
    ``torch.export`` would otherwise turn into a guard excluding them.
    """
    B, S, d = tokens.shape
    patches = tokens[:, prefix:].clone(memory_format=torch.contiguous_format)
    n_t = (S - prefix) // n_f
    if time_major:
        return patches.reshape(B, n_t, n_f * d)
    return torch.cat([patches[:, f * n_t : (f + 1) * n_t] for f in range(n_f)], dim=-1)


def export_problem(model) -> str | None:
    """Why ``model`` has no graph form, naming the option, or None."""
    if model.training:
        return "the model is in training mode (drop path, masks): call model.eval() first"
    if isinstance(model, MaskedSpecModel):
        for block in model.blocks:
            if not isinstance(block, (ViLBlock, TransformerBlock, MambaBlock)):
                return f"block type {type(block).__name__} has no graph form"
        return None
    if isinstance(model, SSASTFramework):
        cfg = model.config
        if cfg.pos_adapt not in POS_ADAPTS:
            return f"pos_adapt={cfg.pos_adapt!r} has no graph form"
        if isinstance(model, (SSAMBA, SSASTOriginal)):
            return None
    return f"{type(model).__name__} (family {getattr(model.config, 'family', '?')!r}) is unknown"


class EncoderGraph(nn.Module):
    """``forward(spec)``: (B, 1, T, F) model input -> (B, frames_for(T), D) frames, as
    ``model.forward_features(spec, frame_layout)`` (final output), for any B and T.

    Raises:
        ConfigError: the model has no graph form (see :func:`export_problem`).
    """

    def __init__(self, model, frame_layout: str | None = None) -> None:
        super().__init__()
        problem = export_problem(model)
        if problem is not None:
            raise ConfigError(f"cannot export this encoder: {problem}")
        self.model = model
        try:
            self.frame_layout = resolve_frame_layout(model, frame_layout)
        except ValueError as err:
            raise ConfigError(f"cannot export this encoder: {err}") from None

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        model = self.model
        if isinstance(model, MaskedSpecModel):
            tokens = self._masked_spec(model, spec)
            time_major = self.frame_layout == "time"
        else:
            tokens = self._ssast(model, spec)
            time_major = False  # SSAST's tokens are frequency-major
        return frames_graph(tokens, model.num_prefix_tokens, model.config.grid[1], time_major)

    @staticmethod
    def _masked_spec(model: MaskedSpecModel, spec: torch.Tensor) -> torch.Tensor:
        x = model.patch_embed(spec)  # (B, n_t * n_f, d)
        n_f = model.config.grid[1]
        n_t = x.shape[1] // n_f
        pos = sincos_time_positions(model, torch.arange(n_t, device=x.device), stored=True)
        x = x + pos.reshape(1, n_t * n_f, model.embed_dim)
        cls = (model.cls_token + model.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in model.blocks:
            if isinstance(block, ViLBlock):
                x = vil_block_graph(block, x)
            elif isinstance(block, MambaBlock):
                x = mamba_block_graph(block, x)
            else:
                x = block(x)
        return model.encoder_norm(x)

    @staticmethod
    def _ssast(model: SSASTFramework, spec: torch.Tensor) -> torch.Tensor:
        image = spec.transpose(2, 3)  # (B, 1, F, T)
        x = model.patch_embed(image)  # (B, F' T', D), frequency-major
        n_f = model.config.grid[1]
        n_t = x.shape[1] // n_f
        tokens = [model.cls_token.expand(x.shape[0], -1, -1)]
        if model.config.num_cls_tokens == 2:
            tokens.append(model.dist_token.expand(x.shape[0], -1, -1))
        x = torch.cat([*tokens, x], dim=1) + ssast_positions(model, n_t)
        if not isinstance(model, SSAMBA):
            return model.run_encoder(x)
        if model.config.cls_position == "start":
            return _ssamba_encoder_graph(model, x)
        # Vim's middle cls: encoder order [p_1 .. p_k, cls, p_k+1 .. p_n] with k = n // 2
        # (SSAMBA.encoder_order), as index arithmetic on the length.
        idx = torch.arange(x.shape[1], device=x.device)
        k = (x.shape[1] - 1) // 2
        order = torch.where(idx < k, idx + 1, torch.where(idx == k, 0, idx))
        inverse = torch.where(idx == 0, k, torch.where(idx <= k, idx - 1, idx))
        return _ssamba_encoder_graph(model, x.index_select(1, order)).index_select(1, inverse)
