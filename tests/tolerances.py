"""Tolerances derived from the computation, not tuned on one machine.

Two float32 computations of the same quantity (two algorithms, two CPUs' kernel sets, BLAS
blockings or thread counts) differ by rounding that scales with the *magnitude* of what is
summed, not with each element: an element much smaller than its neighbours, or a gradient
entry produced by cancellation in a long reduction, can carry an error of a few ulps of the
tensor's largest entries. So a comparison of two fp32 paths bounds the max abs error by a
multiple of eps32 times the tensor's scale (its max |value|), and the multiple is stated where
it is used (reduction length, condition). A wrong formula errs by the order of the scale itself,
so bounds of a few hundred ulps of the scale (~1e-5 relative) still catch real bugs.
"""

from __future__ import annotations

import torch

EPS32 = torch.finfo(torch.float32).eps  # 1.19e-7
EPS64 = torch.finfo(torch.float64).eps  # 2.2e-16


def assert_close_rel(actual, expected, rel: float, floor: float = 0.0, what: str = "") -> None:
    """max |actual - expected| <= rel * max |expected| + floor, computed in float64.

    ``rel`` is relative to the scale of the whole compared tensor (see the module docstring);
    ``floor`` is an absolute allowance for tensors whose scale may be (near) zero.
    """
    a = torch.as_tensor(actual).detach().cpu().double()
    e = torch.as_tensor(expected).detach().cpu().double()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    if not e.numel():
        return
    assert torch.isfinite(a).all(), f"{what}: non-finite values"
    err = (a - e).abs().max().item()
    scale = e.abs().max().item()
    bound = rel * scale + floor
    assert err <= bound, (
        f"{what}: max abs error {err:.3g} > bound {bound:.3g} "
        f"(= {rel:g} x scale {scale:.3g} + {floor:g}); "
        f"error / scale = {err / max(scale, 1e-300):.3g}"
    )


def log_mel_rounding(logmel64: torch.Tensor) -> torch.Tensor:
    """Per-element float32 rounding scale of a log mel/fbank, from its float64 recomputation.

    FFT rounding is spread over all bins at ~eps * the frame's amplitude, so a bin with energy
    E in a frame of total (mel) energy S gets a relative energy error ~eps * sqrt(S / E), i.e.
    that much absolute error after the log; the log itself adds ~eps * |value|. Returns
    eps32 * (|value| + sqrt(S / E)) for a (..., T, M) natural-log tensor. Near-silent bins
    (E ~ 1e-11 S) are ill-conditioned and legitimately differ by ~1e-3 between machines; a
    well-conditioned bin is held to ~1e-5.
    """
    v = logmel64.double()
    energy = v.exp()
    cond = energy.sum(-1, keepdim=True) / energy  # frame energy over bin energy
    return EPS32 * (v.abs() + cond.sqrt())


def axlstm_log_mel_rounding(wave: torch.Tensor) -> torch.Tensor:
    """Per-element float32 rounding scale of the unnormalised AxLSTM log-mel of ``wave``.

    On top of :func:`log_mel_rounding` (FFT and log), the fp32 filterbank differs between CPU
    kernel sets: its triangle corners (up to ~8 kHz) round to ~eps * corner Hz, which moves
    every weight of a triangle by ~eps * corner / width; in a narrow low band whose energy sits
    on a small edge weight that is a large relative change. That term is measured exactly by
    recomputing in float64 with those weight perturbations added. Returns a (B, 1, T, M) tensor.
    """
    from axlstm.audio import FrontEndConfig, LogMelFrontEnd
    from axlstm.audio.features import hz_to_mel, mel_filterbank, mel_to_hz

    cfg, f64 = FrontEndConfig(), torch.float64
    n_freqs = cfg.n_fft // 2 + 1
    front = LogMelFrontEnd(cfg).double()
    fb = mel_filterbank(n_freqs, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sample_rate, dtype=f64)
    mels = torch.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2, dtype=f64)
    corners = mel_to_hz(mels)
    widths = corners.diff()
    dw = EPS32 * corners[2:] / torch.minimum(widths[:-1], widths[1:])  # (M,)
    bins = torch.linspace(0, cfg.sample_rate // 2, n_freqs, dtype=f64)[:, None]
    slack = 4 * EPS32 * corners  # a bin within rounding of an outer corner may get a weight
    support = (bins >= (corners - slack)[None, :-2]) & (bins <= (corners + slack)[None, 2:])
    front.filterbank = fb
    exact = front(wave.double(), normalize=False)
    front.filterbank = fb + support * dw
    perturbed = front(wave.double(), normalize=False)
    return log_mel_rounding(exact) + (perturbed - exact).abs()


def assert_log_mel_matches_fixture(got, expected, wave, normalized: bool, what: str = "") -> None:
    """An fp32 AxLSTM log-mel against the official fp32 one: two independent roundings, each
    measured within 1.2 x :func:`axlstm_log_mel_rounding` (this CPU under several kernel sets),
    so 8 x that per element (~1e-4 in a typical bin, up to ~6e-3 in the few bins that hang on
    an edge weight of the filterbank); per-clip standardisation divides it by the clip's std.
    ``got``/``expected`` are (B, 1, T, M) like ``log_mel`` returns."""
    bound = 8 * axlstm_log_mel_rounding(wave)
    if normalized:
        raw = _raw_log_mel64(wave)
        bound = bound / raw.flatten(1).std(1).view(-1, 1, 1, 1)
    diff = (got.double() - expected.double()).abs()
    ratio = (diff / bound).max().item()
    assert ratio <= 1, f"{what}: max |diff| / bound = {ratio:.3g} (max diff {diff.max():.3g})"


def _raw_log_mel64(wave: torch.Tensor) -> torch.Tensor:
    from axlstm.audio import log_mel

    return log_mel(wave.double(), normalize=False)
