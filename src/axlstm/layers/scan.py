"""The selective scan of Mamba in pure PyTorch, with an optional CUDA fast path.

``h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t u_t) ⊗ B_t``, ``y_t = C_t · h_t`` (+ ``D ⊙ u_t``), per channel
and state (SPEC-SSAST-SSAMBA §C1), computed by :func:`selective_scan`: a step-by-step loop (the
reference, and the fastest form measured on CPU and GPU, with a memory-lean exact backward pass)
or a chunked two-level parallel scan (equal to the loop up to float rounding). When the
``mamba_ssm`` package imports and the tensors are on a GPU, its CUDA kernel can be used instead
(``impl="cuda"``, or ``"auto"``). The scan, A, Δ and the state are fp32 (fp64 for fp64
inputs), as the reference kernel keeps them. The mixers around it are
:mod:`axlstm.layers.mamba`.
"""

from __future__ import annotations

import contextlib
import functools
import logging

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

SCAN_IMPLS = ("auto", "sequential", "chunked", "cuda")


@functools.cache
def _cuda_selective_scan():
    """``mamba_ssm``'s CUDA selective scan, or None when the package does not import."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as err:  # not installed, or installed without its CUDA extension
        logger.debug("mamba_ssm fast path unavailable: %s", err)
        return None
    return selective_scan_fn


def has_cuda_scan() -> bool:
    """Whether the optional ``mamba_ssm`` CUDA selective scan can be used."""
    return torch.cuda.is_available() and _cuda_selective_scan() is not None


def _grouped(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, E, ...) -> (B, G, E // G, ...): channel e belongs to group e // (E // G)."""
    B, E = x.shape[:2]
    if E % groups:
        raise ValueError(f"{E} channels cannot be split into {groups} groups")
    return x.reshape(B, groups, E // groups, *x.shape[2:])


def scan_dtype(t: torch.Tensor) -> torch.Tensor:
    """t in the scan's accumulation dtype: fp32, or fp64 for fp64 tensors (reference checks)."""
    return t if t.dtype == torch.float64 else t.float()


def _as_groups(m: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    """B or C as (B, G, N, L) in ``acc``: (B, N, L) is one group shared by all channels."""
    return m.to(acc) if m.dim() == 4 else m.to(acc).unsqueeze(1)


def _step_size(delta, delta_bias, delta_softplus, acc: torch.dtype) -> torch.Tensor:
    dt = delta.to(acc)
    if torch.compiler.is_compiling():
        # a transposed Δ (the mixers' projection) makes AOTAutograd's traced backward view
        # a gradient with strides eager does not give it ("view size is not compatible");
        # a contiguous Δ avoids that (elementwise use only: the values are the same)
        dt = dt.contiguous()
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)  # threshold 20, as the CUDA kernel
    return dt  # (B, E, L)


#: Below this many elements per step the step loops run on one thread: waking the intra-op
#: thread pool costs far more than such a step (e.g. 280 µs against 3 µs on a busy 2-core CPU).
SMALL_STEP = 1 << 18


@contextlib.contextmanager
def _few_threads(step_numel: int, device: torch.device):
    """One intra-op thread for loops of small CPU steps; restored afterwards. Nothing under
    ``torch.compile`` (a traced graph has no thread count to set; reading it breaks the graph)."""
    if torch.compiler.is_compiling():
        yield
        return
    old = torch.get_num_threads()
    if device.type != "cpu" or step_numel >= SMALL_STEP or old == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _time_major(dt, A, B, C, u):
    """Grouped, time-major views: dt, u (L, B, G, Eg); A (G, Eg, N); B, C (L, B, G, N)."""
    Bsz, E, L = dt.shape
    G, N = B.shape[1], B.shape[2]
    dt_l = dt.reshape(Bsz, G, E // G, L).permute(3, 0, 1, 2)
    u_l = u.reshape(Bsz, G, E // G, L).permute(3, 0, 1, 2)
    return dt_l, u_l, A.reshape(G, E // G, N), B.permute(3, 0, 1, 2), C.permute(3, 0, 1, 2)


def _states(dt_l, u_l, A_g, B_l):
    """``a = exp(Δ A)`` and all states h, each (L, B, G, Eg, N); one multiply-add per step."""
    a = torch.exp(dt_l.unsqueeze(-1) * A_g)
    h = (dt_l * u_l).unsqueeze(-1) * B_l.unsqueeze(3)  # b_t, overwritten by h_t below
    with _few_threads(h[0].numel(), h.device):
        for t in range(1, h.shape[0]):
            h[t].addcmul_(a[t], h[t - 1])
    return a, h


class _SelectiveScan(torch.autograd.Function):
    """y_t = C_t · h_t with h_t = exp(Δ_t A) h_{t-1} + Δ_t u_t B_t, and its exact gradient.

    Nothing of size (L, B, E, N) is kept between the passes: the backward pass recomputes the
    states (one multiply-add per step), then runs the adjoint recurrence
    g_t = C_t ∂y_t + exp(Δ_{t+1} A) g_{t+1}, and gets every gradient from g and h by
    contractions: ∂b_t = g_t, ∂a_t = g_t h_{t-1}.
    """

    @staticmethod
    def forward(ctx, dt, A, B, C, u):
        Bsz, E, L = dt.shape
        dt_l, u_l, A_g, B_l, C_l = _time_major(dt, A, B, C, u)
        _, h = _states(dt_l, u_l, A_g, B_l)
        y = (h * C_l.unsqueeze(3)).sum(-1)
        ctx.save_for_backward(dt, A, B, C, u)
        last = h[-1].reshape(Bsz, E, -1)
        ctx.mark_non_differentiable(last)
        return y.permute(1, 2, 3, 0).reshape(Bsz, E, L), last

    @staticmethod
    def backward(ctx, grad_y, _grad_last):
        dt, A, B, C, u = ctx.saved_tensors
        Bsz, E, L = dt.shape
        G, N = B.shape[1], B.shape[2]
        dt_l, u_l, A_g, B_l, C_l = _time_major(dt, A, B, C, u)
        a, h = _states(dt_l, u_l, A_g, B_l)
        gy = grad_y.reshape(Bsz, G, E // G, L).permute(3, 0, 1, 2)  # (L, B, G, Eg)
        g = gy.unsqueeze(-1) * C_l.unsqueeze(3)  # ∂L/∂h_t through y_t, then the adjoint states
        with _few_threads(g[0].numel(), g.device):
            for t in range(L - 2, -1, -1):
                g[t].addcmul_(a[t + 1], g[t + 1])
        grad_C = (h * gy.unsqueeze(-1)).sum(3)
        du = dt_l * u_l
        grad_B = (g * du.unsqueeze(-1)).sum(3)
        grad_du = (g * B_l.unsqueeze(3)).sum(-1)
        gx = g.mul_(a)  # ∂L/∂(Δ_t A) = g_t h_{t-1} a_t  (g is not needed any more)
        gx[1:].mul_(h[:-1])
        gx[0].zero_()
        grad_dt = (gx * A_g).sum(-1) + grad_du * u_l
        grad_A = (gx * dt_l.unsqueeze(-1)).sum((0, 1)).reshape(E, N)
        grad_u = grad_du * dt_l

        def channels(x):  # (L, B, G, Eg) -> (B, E, L)
            return x.permute(1, 2, 3, 0).reshape(Bsz, E, L)

        def groups(x):  # (L, B, G, N) -> (B, G, N, L)
            return x.permute(1, 2, 3, 0)

        return channels(grad_dt), grad_A, groups(grad_B), groups(grad_C), channels(grad_u)


def scan_sequential(dt, A, B, C, u):
    """The recurrence step by step: the reference, and the fastest form measured (CPU and GPU).

    With gradients it runs as one autograd function (:class:`_SelectiveScan`) that keeps only
    its inputs for the backward pass; without, on CPU, each step discretises only its own
    token so the working set stays in cache.

    Args:
        dt: (B, E, L) step sizes (bias and softplus applied), in the accumulation dtype.
        A: (E, N); B, C: (B, G, N, L); u: (B, E, L); all in that dtype.

    Returns:
        y (B, E, L) = Σ_n C_t h_t (without the D skip), and the last state (B, E, N).
    """
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (dt, A, B, C, u))
    if not grad and dt.device.type == "cpu":
        return _scan_steps_no_grad(dt, A, B, C, u)
    return _SelectiveScan.apply(dt, A, B, C, u)


def _scan_steps_no_grad(dt, A, B, C, u):
    """:func:`scan_sequential` without autograd: each step discretises only its own token, so
    nothing of size (B, E, L, N) is allocated and the working set stays in cache."""
    Bsz, E, L = dt.shape
    G, N = B.shape[1], B.shape[2]
    A_g = A.to(dt.dtype).reshape(1, G, E // G, N)
    dt_l = dt.reshape(Bsz, G, E // G, L).permute(3, 0, 1, 2).contiguous()  # (L, B, G, Eg)
    du_l = (dt * u.to(dt.dtype)).reshape(Bsz, G, E // G, L).permute(3, 0, 1, 2).contiguous()
    B_l = B.permute(3, 0, 1, 2).unsqueeze(3).contiguous()  # (L, B, G, 1, N)
    C_l = C.permute(3, 0, 1, 2).unsqueeze(-1).contiguous()  # (L, B, G, N, 1)
    h = dt.new_zeros(Bsz, G, E // G, N)
    y = dt.new_empty(L, Bsz, G, E // G)
    with _few_threads(h.numel(), h.device):
        for t in range(L):
            a_t = torch.exp(dt_l[t].unsqueeze(-1) * A_g)
            h = torch.addcmul(du_l[t].unsqueeze(-1) * B_l[t], a_t, h)
            torch.matmul(h, C_l[t], out=y[t].unsqueeze(-1))
    return y.permute(1, 2, 3, 0).reshape(Bsz, E, L), h.reshape(Bsz, E, N)


def _shift(x: torch.Tensor, k: int, fill: float) -> torch.Tensor:
    """x shifted by k along axis -2 (the time axis of (..., T, N)), the gap filled with ``fill``."""
    pad = torch.full_like(x[..., :k, :], fill)
    return torch.cat([pad, x[..., :-k, :]], dim=-2)


def linear_scan_chunked(
    a: torch.Tensor, b: torch.Tensor, chunk_size: int = 32, h0: torch.Tensor | None = None
) -> torch.Tensor:
    """All states of h_t = a_t h_{t-1} + b_t along axis 2 of (B, E, L, N), in parallel.

    A two-level scan (SPEC-SSAST-SSAMBA §C3): (i) a Hillis-Steele scan inside every chunk of
    ``chunk_size`` steps at once, with the associative combine (a1, b1) ∘ (a2, b2) =
    (a1 a2, a2 b1 + b2), gives chunk-local states and within-chunk products of a; (ii) a short
    sequential pass carries the state across chunk boundaries; (iii) every position adds its
    carried-in state times its product of a. Only products of a ∈ (0, 1] occur, so nothing can
    overflow. Built from ``cat``/``stack`` without in-place writes, so autograd's backward stays
    linear in L.

    Args:
        a, b: (B, E, L, N).
        chunk_size: steps per chunk.
        h0: optional initial state (B, E, N).

    Returns:
        h: (B, E, L, N).
    """
    Bsz, E, L, N = a.shape
    T = max(1, min(chunk_size, L))
    n_chunks = -(-L // T)
    pad = n_chunks * T - L
    if pad:  # identity elements: a = 1, b = 0
        a = torch.cat([a, a.new_ones(Bsz, E, pad, N)], dim=2)
        b = torch.cat([b, b.new_zeros(Bsz, E, pad, N)], dim=2)
    a = a.reshape(Bsz, E, n_chunks, T, N)
    b = b.reshape(Bsz, E, n_chunks, T, N)
    k = 1
    while k < T:  # (i) inclusive scan inside each chunk, from the old values of a and b
        b = a * _shift(b, k, 0.0) + b
        a = a * _shift(a, k, 1.0)
        k *= 2
    # (ii) carry: c_{j+1} = P_j c_j + h_j, with P_j, h_j the chunk's total product and last state
    carry = torch.zeros_like(b[:, :, 0, 0]) if h0 is None else h0
    carried = []
    for p_last, h_last in zip(a[:, :, :, -1].unbind(2), b[:, :, :, -1].unbind(2), strict=True):
        carried.append(carry)
        carry = p_last * carry + h_last
    c = torch.stack(carried, dim=2).unsqueeze(3)  # (B, E, n_chunks, 1, N)
    h = b + a * c  # (iii)
    return h.reshape(Bsz, E, n_chunks * T, N)[:, :, :L]


def linear_scan_closed(log_a: torch.Tensor, b: torch.Tensor, chunk_size: int = 32) -> torch.Tensor:
    """:func:`linear_scan_chunked` (from h_0 = 0) with no loop whose trip count depends on L,
    for ``torch.compile``: one graph serves every length.

    The in-chunk scan is the same; the carry into chunk j is written in closed form,
    ``c_j = sum_{i<j} exp(sum_{i<r<j} log P_r) h_i`` with ``h_i`` the last local state and
    ``log P_r`` the total log decay of chunk r, summed from ``log_a`` (so no logarithm of an
    underflowed product is ever taken). Every chunk has ``chunk_size`` steps (the padding
    steps are identities), whatever L is. Costs (B, E, N, K, K) for K chunks besides the
    (B, E, L, N) of the chunked scan.

    Args:
        log_a: (B, E, L, N) log of the decays a (<= 0); b: (B, E, L, N).
        chunk_size: steps per chunk.

    Returns:
        h: (B, E, L, N).
    """
    Bsz, E, L, N = b.shape
    T = chunk_size
    K = (L + T - 1) // T
    pad = K * T - L
    log_a = F.pad(log_a, (0, 0, 0, pad))  # identity steps: log a = 0, b = 0
    b = F.pad(b, (0, 0, 0, pad))
    log_a = log_a.reshape(Bsz, E, K, T, N)
    a = torch.exp(log_a)
    b = b.reshape(Bsz, E, K, T, N)
    k = 1
    while k < T:  # inclusive scan inside each chunk, as in linear_scan_chunked
        b = a * _shift(b, k, 0.0) + b
        a = a * _shift(a, k, 1.0)
        k *= 2
    # cs[j, i] = sum_{i<r<=j} log P_r (a masked cumulative sum: no differences of large sums)
    x = log_a.sum(dim=3).transpose(-1, -2)  # (B, E, N, K)
    idx = torch.arange(K, device=b.device)
    after = idx[:, None] > idx[None, :]  # [r, i]: r > i
    cs = torch.cumsum(x[..., :, None].expand(*x.shape, K).masked_fill(~after, 0.0), dim=-2)
    upto = idx[:, None] >= idx[None, :]  # [j, i]: i <= j
    D = torch.exp(cs).masked_fill(~upto, 0.0)  # (B, E, N, K, K), weights <= 1
    last = b[:, :, :, -1].transpose(-1, -2)  # (B, E, N, K): each chunk's last local state
    out = (D @ last[..., None]).squeeze(-1)  # state after chunk j, (B, E, N, K)
    carry = F.pad(out[..., :-1], (1, 0)).transpose(-1, -2)  # into chunk j, (B, E, K, N)
    h = b + a * carry[:, :, :, None]
    return h.reshape(Bsz, E, K * T, N)[:, :, :L]


def scan_chunked(dt, A, B, C, u, chunk_size=32):
    """Same contract as :func:`scan_sequential`, computed with :func:`linear_scan_chunked`.

    Materialises ``a = exp(Δ A)`` and ``b = Δ u B`` for all tokens, (B, E, L, N) each, and
    autograd keeps them: few large operations, but more memory than the step loop and no
    faster on the devices measured (:func:`default_scan_impl`).
    """
    Bsz, E, L = dt.shape
    G = B.shape[1]
    acc = dt.dtype
    log_a = dt.unsqueeze(-1) * A.to(acc)[:, None, :]  # (B, E, L, N)
    du = _grouped(dt * u.to(acc), G).unsqueeze(-1)  # (B, G, Eg, L, 1)
    b = (du * B.transpose(-1, -2).unsqueeze(2)).reshape(log_a.shape)  # (B, E, L, N)
    if torch.compiler.is_compiling():
        h = linear_scan_closed(log_a, b, chunk_size)  # one graph for every length
    else:
        h = linear_scan_chunked(torch.exp(log_a), b, chunk_size)
    y = (_grouped(h, G) * C.transpose(-1, -2).unsqueeze(2)).sum(-1)  # (B, G, Eg, L)
    return y.reshape(Bsz, E, L), h[:, :, -1]


def default_scan_impl(device: torch.device) -> str:
    """What ``impl="auto"`` runs without ``mamba_ssm``: the step loop, on every device.

    Measured (forward + backward, fp32): on CPU it is about 10x faster than the chunked scan;
    on an H200 (B 16, 513 tokens, N 16) it is as fast (26 vs 27 ms at 768 channels, 111 vs
    103 ms at 3072) with 2.5x less memory, and a whole SSAMBA-Tiny step at batch 16 fits where
    the chunked scan runs out of memory.
    """
    return "sequential"


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    impl: str = "auto",
    chunk_size: int = 32,
    return_last_state: bool = False,
):
    """Selective scan with the signature of ``mamba_ssm``'s ``selective_scan_fn``.

    Args:
        u: (B, E, L) input.
        delta: (B, E, L) step size before bias and softplus.
        A: (E, N) state matrix (negative real, i.e. ``-exp(A_log)``).
        B, C: (B, N, L) shared by all channels, or (B, G, N, L) one per channel group (the E
            channels split into G equal consecutive groups).
        D: (E,) skip weight, optional.
        z: (B, E, L) gate, optional: the output is multiplied by SiLU(z).
        delta_bias: (E,) added to ``delta`` before the softplus.
        delta_softplus: apply softplus to the step size.
        impl: "sequential" (step loop, the reference), "chunked" (parallel scan), "cuda"
            (``mamba_ssm`` kernel), or "auto": the CUDA kernel for GPU tensors when it imports,
            else :func:`default_scan_impl`.
        chunk_size: chunk length of the chunked scan.
        return_last_state: also return the final state (B, E, N).

    Returns:
        y (B, E, L) in the dtype of ``u`` (and the last state, fp32, when asked).
    """
    if impl not in SCAN_IMPLS:
        raise ValueError(f"unknown scan impl {impl!r}; choose one of {SCAN_IMPLS}")
    if impl in ("auto", "cuda") and u.is_cuda and _cuda_selective_scan() is not None:
        return _cuda_selective_scan()(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
        )
    if impl == "cuda":
        raise RuntimeError("impl='cuda' needs GPU tensors and the mamba_ssm package")
    if impl == "auto":
        # Under torch.compile the step loop would be unrolled into L steps (a huge graph, fixed
        # to one length): the chunked scan in closed form is traced instead (equal to rounding).
        impl = "chunked" if torch.compiler.is_compiling() else default_scan_impl(u.device)
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    dt = _step_size(delta, delta_bias, delta_softplus, acc)
    Bg, Cg = _as_groups(B, acc), _as_groups(C, acc)
    if impl == "sequential":
        y, last = scan_sequential(dt, A, Bg, Cg, u)
    else:
        y, last = scan_chunked(dt, A, Bg, Cg, u, chunk_size)
    if D is not None:
        y = y + D.to(acc)[:, None] * u.to(acc)
    if z is not None:
        y = y * F.silu(z.to(acc))
    y = y.to(u.dtype)
    return (y, last) if return_last_state else y
