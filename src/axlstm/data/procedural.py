"""A procedural audio corpus: synthetic sounds generated on the fly, deterministic from a seed.

Each generator is a small named function with explicit parameters that returns a mono float32
waveform ``(N,)`` at ``sample_rate`` (16 kHz by default). :func:`random_clip` draws a sound
type and its parameters from a ``numpy.random.Generator``; :class:`ProceduralCorpus` maps
``(seed, index)`` to one clip, so the corpus needs no storage and any index can be regenerated
anywhere (another worker, another rank, a resumed run).

The same generators are meant to be reused for labelled synthetic tasks (pitch, chord quality,
rhythm, ...), so they take musical parameters rather than random state wherever possible; only
the noise-based ones take an ``rng``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SOUND_KINDS",
    "TIMBRES",
    "ProceduralCorpus",
    "adsr_envelope",
    "chord",
    "colored_noise",
    "harmonic_note",
    "mixture",
    "noise_burst",
    "percussive_hit",
    "random_clip",
    "rhythm",
    "sine_tone",
    "sweep",
]

#: Harmonic amplitude recipes (amplitude of harmonic k, k = 1, 2, ...).
TIMBRES: dict[str, str] = {
    "sine": "only the fundamental",
    "saw": "all harmonics at 1/k",
    "square": "odd harmonics at 1/k",
    "triangle": "odd harmonics at 1/k^2",
    "organ": "harmonics 1, 2, 3, 4, 6, 8 with drawbar-like weights",
    "bright": "all harmonics at 1/sqrt(k)",
}

#: Sound types :func:`random_clip` draws from, with equal probability.
SOUND_KINDS = ("tone", "note", "chord", "noise", "sweep", "rhythm", "mixture")

_NYQUIST_MARGIN = 0.95  # partials above this fraction of Nyquist are dropped (no aliasing)
_TABLE_SIZE = 4096  # one period of a harmonic waveform, read with linear interpolation


def _num_samples(duration: float, sample_rate: int) -> int:
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    return max(1, round(duration * sample_rate))


def adsr_envelope(
    n: int,
    sample_rate: int = 16000,
    attack: float = 0.01,
    decay: float = 0.1,
    sustain: float = 0.7,
    release: float = 0.1,
) -> np.ndarray:
    """Attack-decay-sustain-release envelope of ``n`` samples, ``(n,)`` float32 in [0, 1].

    Times are in seconds; phases that do not fit are shortened proportionally so the envelope
    always starts and ends at zero.
    """
    if not 0.0 <= sustain <= 1.0:
        raise ValueError(f"sustain level must be in [0, 1], got {sustain}")
    a, d, r = (max(0, round(t * sample_rate)) for t in (attack, decay, release))
    total = a + d + r
    if total > n:  # squeeze the phases into the note
        scale = n / total
        a, d, r = int(a * scale), int(d * scale), int(r * scale)
    s = n - a - d - r
    env = np.concatenate(
        [
            np.linspace(0.0, 1.0, a, endpoint=False),
            np.linspace(1.0, sustain, d, endpoint=False),
            np.full(s, sustain),
            np.linspace(sustain, 0.0, r),
        ]
    )
    return env.astype(np.float32)


def _harmonic_amplitudes(timbre: str | Sequence[float], n_max: int) -> np.ndarray:
    """Amplitude of harmonics 1..n_max for a named timbre or explicit amplitudes."""
    if not isinstance(timbre, str):
        amps = np.asarray(list(timbre)[:n_max], dtype=np.float64)
        return np.pad(amps, (0, n_max - len(amps)))
    k = np.arange(1, n_max + 1, dtype=np.float64)
    odd = (k % 2 == 1).astype(np.float64)
    if timbre == "sine":
        return (k == 1).astype(np.float64)
    if timbre == "saw":
        return 1.0 / k
    if timbre == "square":
        return odd / k
    if timbre == "triangle":
        return odd / k**2
    if timbre == "organ":
        weights = {1: 1.0, 2: 0.6, 3: 0.4, 4: 0.3, 6: 0.2, 8: 0.15}
        return np.array([weights.get(int(i), 0.0) for i in k])
    if timbre == "bright":
        return 1.0 / np.sqrt(k)
    raise ValueError(f"unknown timbre {timbre!r}; use one of {sorted(TIMBRES)} or amplitudes")


@functools.lru_cache(maxsize=512)
def _period_table(harmonics: tuple[int, ...], amps: tuple[float, ...]) -> np.ndarray:
    """One period of sum_k a_k sin(2 pi k x), sampled at ``_TABLE_SIZE + 1`` points."""
    x = np.arange(_TABLE_SIZE + 1) / _TABLE_SIZE
    return np.sin(2 * math.pi * np.outer(x, harmonics)) @ np.asarray(amps)  # (N + 1,)


def sine_tone(
    freq: float,
    duration: float = 1.0,
    sample_rate: int = 16000,
    amplitude: float = 0.5,
    phase: float = 0.0,
    fade: float = 0.005,
) -> np.ndarray:
    """A pure tone ``(N,)`` with short linear fades (no clicks at the ends)."""
    n = _num_samples(duration, sample_rate)
    t = np.arange(n) / sample_rate
    wave = amplitude * np.sin(2 * math.pi * freq * t + phase)
    return (wave * adsr_envelope(n, sample_rate, fade, 0.0, 1.0, fade)).astype(np.float32)


def harmonic_note(
    f0: float,
    timbre: str | Sequence[float] = "saw",
    duration: float = 1.0,
    sample_rate: int = 16000,
    amplitude: float = 0.5,
    attack: float = 0.01,
    decay: float = 0.15,
    sustain: float = 0.6,
    release: float = 0.1,
    inharmonicity: float = 0.0,
    vibrato_hz: float = 0.0,
    vibrato_cents: float = 0.0,
    max_harmonics: int = 40,
) -> np.ndarray:
    """A pitched note: a sum of harmonics of ``f0`` shaped by an ADSR envelope, ``(N,)``.

    Args:
        f0: fundamental frequency in Hz.
        timbre: a name from :data:`TIMBRES` or explicit harmonic amplitudes.
        inharmonicity: stretch factor B of piano-like partials, f_k = k f0 sqrt(1 + B k^2).
        vibrato_hz, vibrato_cents: sinusoidal pitch modulation rate and depth.
        max_harmonics: upper bound on the number of partials (those near Nyquist are dropped).
    """
    if f0 <= 0:
        raise ValueError(f"f0 must be positive, got {f0}")
    n = _num_samples(duration, sample_rate)
    t = np.arange(n) / sample_rate
    k = np.arange(1, max_harmonics + 1, dtype=np.float64)
    partials = k * f0 * np.sqrt(1.0 + inharmonicity * k**2)
    amps = _harmonic_amplitudes(timbre, max_harmonics)
    keep = (partials < _NYQUIST_MARGIN * sample_rate / 2) & (amps != 0)
    if not keep.any():
        raise ValueError(f"f0={f0} Hz leaves no partial below Nyquist at {sample_rate} Hz")
    # Vibrato modulates the phase of every partial in proportion to its frequency.
    if vibrato_hz > 0 and vibrato_cents > 0:
        ratio = 2.0 ** (vibrato_cents / 1200.0) - 1.0
        mod = ratio / (2 * math.pi * vibrato_hz) * (1 - np.cos(2 * math.pi * vibrato_hz * t))
    else:
        mod = np.zeros(n)
    if inharmonicity == 0.0:
        # Exactly harmonic: read one period of the waveform from a table (cost independent
        # of the number of partials).
        table = _period_table(tuple(k[keep].astype(int)), tuple(amps[keep]))
        cycles = np.mod(f0 * (t + mod), 1.0) * _TABLE_SIZE
        wave = np.interp(cycles, np.arange(_TABLE_SIZE + 1), table)
    else:
        wave = np.zeros(n)
        for f, a in zip(partials[keep], amps[keep], strict=True):
            wave += a * np.sin(2 * math.pi * f * (t + mod))
    wave /= max(np.abs(wave).max(), 1e-9)
    env = adsr_envelope(n, sample_rate, attack, decay, sustain, release)
    return (amplitude * wave * env).astype(np.float32)


def chord(
    root: float,
    intervals: Sequence[int] = (0, 4, 7),
    timbre: str | Sequence[float] = "saw",
    duration: float = 1.0,
    sample_rate: int = 16000,
    amplitude: float = 0.5,
    **note_options,
) -> np.ndarray:
    """Notes at ``root * 2**(i / 12)`` for each semitone interval, summed and peak-scaled."""
    notes = [
        harmonic_note(root * 2.0 ** (i / 12.0), timbre, duration, sample_rate, 1.0, **note_options)
        for i in intervals
    ]
    return _scale_peak(np.sum(notes, axis=0), amplitude)


def colored_noise(
    n: int, rng: np.random.Generator, color: str = "white", exponent: float | None = None
) -> np.ndarray:
    """Noise with a 1/f^exponent power spectrum, ``(n,)`` at unit peak.

    ``color`` names an exponent: white 0, pink 1, brown 2, blue -1, violet -2.
    """
    exponents = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0, "violet": -2.0}
    if exponent is None:
        if color not in exponents:
            raise ValueError(f"unknown noise color {color!r}; choose one of {sorted(exponents)}")
        exponent = exponents[color]
    white = rng.standard_normal(n)
    if exponent == 0.0:
        return _scale_peak(white, 1.0)
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0  # leave DC finite
    spec *= f ** (-exponent / 2.0)
    return _scale_peak(np.fft.irfft(spec, n), 1.0)


def noise_burst(
    duration: float,
    rng: np.random.Generator,
    color: str = "white",
    sample_rate: int = 16000,
    amplitude: float = 0.5,
    attack: float = 0.005,
    decay: float = 0.2,
    sustain: float = 0.3,
    release: float = 0.1,
) -> np.ndarray:
    """A burst of coloured noise under an ADSR envelope, ``(N,)``."""
    n = _num_samples(duration, sample_rate)
    env = adsr_envelope(n, sample_rate, attack, decay, sustain, release)
    return (amplitude * colored_noise(n, rng, color) * env).astype(np.float32)


def sweep(
    f_start: float,
    f_end: float,
    duration: float = 1.0,
    sample_rate: int = 16000,
    amplitude: float = 0.5,
    method: str = "log",
    fade: float = 0.01,
) -> np.ndarray:
    """A sine sweep (chirp) from ``f_start`` to ``f_end`` Hz, ``(N,)``; ``method`` log or linear."""
    if min(f_start, f_end) <= 0:
        raise ValueError(f"sweep frequencies must be positive, got {f_start}, {f_end}")
    n = _num_samples(duration, sample_rate)
    t = np.arange(n) / sample_rate
    T = n / sample_rate
    if method == "linear":
        phase = 2 * math.pi * (f_start * t + (f_end - f_start) * t**2 / (2 * T))
    elif method == "log":
        if f_start == f_end:
            phase = 2 * math.pi * f_start * t
        else:
            k = math.log(f_end / f_start) / T
            phase = 2 * math.pi * f_start * (np.exp(k * t) - 1.0) / k
    else:
        raise ValueError(f"unknown sweep method {method!r}; use 'log' or 'linear'")
    env = adsr_envelope(n, sample_rate, fade, 0.0, 1.0, fade)
    return (amplitude * np.sin(phase) * env).astype(np.float32)


def percussive_hit(
    kind: str, rng: np.random.Generator, sample_rate: int = 16000, amplitude: float = 0.8
) -> np.ndarray:
    """One drum-like hit: "kick", "snare", "hat" or "click", ``(N,)``."""
    if kind == "kick":  # a sine whose pitch drops fast, exponential decay
        n = _num_samples(0.35, sample_rate)
        t = np.arange(n) / sample_rate
        freq = 50.0 + 100.0 * np.exp(-t / 0.03)
        wave = np.sin(2 * math.pi * np.cumsum(freq) / sample_rate) * np.exp(-t / 0.12)
    elif kind == "snare":  # noise plus a short body tone
        n = _num_samples(0.25, sample_rate)
        t = np.arange(n) / sample_rate
        body = np.sin(2 * math.pi * 190.0 * t) * np.exp(-t / 0.05)
        wave = 0.7 * colored_noise(n, rng, "white") * np.exp(-t / 0.07) + 0.5 * body
    elif kind == "hat":  # high-passed (blue) noise, very short
        n = _num_samples(0.08, sample_rate)
        t = np.arange(n) / sample_rate
        wave = colored_noise(n, rng, "violet") * np.exp(-t / 0.015)
    elif kind == "click":
        n = _num_samples(0.02, sample_rate)
        t = np.arange(n) / sample_rate
        wave = np.sin(2 * math.pi * 2000.0 * t) * np.exp(-t / 0.003)
    else:
        raise ValueError(f"unknown hit {kind!r}; choose kick, snare, hat or click")
    return _scale_peak(wave, amplitude)


def rhythm(
    tempo_bpm: float,
    pattern: Sequence[int | str],
    duration: float,
    rng: np.random.Generator,
    sample_rate: int = 16000,
    amplitude: float = 0.6,
    steps_per_beat: int = 4,
    swing: float = 0.0,
) -> np.ndarray:
    """A looped step-sequencer pattern of percussive hits, ``(N,)``.

    Args:
        pattern: one entry per step: 0 (rest), 1 (click) or a hit name ("kick", "snare", ...).
        swing: delay of every second step, as a fraction of a step.
    """
    if tempo_bpm <= 0 or not pattern:
        raise ValueError("rhythm needs a positive tempo and a non-empty pattern")
    n = _num_samples(duration, sample_rate)
    step_s = 60.0 / tempo_bpm / steps_per_beat
    out = np.zeros(n)
    i = 0
    while True:
        start = round((i + (swing if i % 2 else 0.0)) * step_s * sample_rate)
        if start >= n:
            break
        hit = pattern[i % len(pattern)]
        if hit:
            sound = percussive_hit("click" if hit == 1 else str(hit), rng, sample_rate, 1.0)
            end = min(n, start + len(sound))
            out[start:end] += sound[: end - start]
        i += 1
    return _scale_peak(out, amplitude)


def mixture(waves: Sequence[np.ndarray], gains: Sequence[float] | None = None) -> np.ndarray:
    """Sum of waveforms (zero-padded to the longest), each scaled by its gain, ``(N,)``."""
    if not waves:
        raise ValueError("mixture needs at least one waveform")
    gains = [1.0] * len(waves) if gains is None else list(gains)
    n = max(len(w) for w in waves)
    out = np.zeros(n)
    for w, g in zip(waves, gains, strict=True):
        out[: len(w)] += g * w
    return out.astype(np.float32)


def _scale_peak(wave: np.ndarray, amplitude: float) -> np.ndarray:
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    return (wave * (amplitude / peak if peak > 0 else 0.0)).astype(np.float32)


# --------------------------------------------------------------------------- random sounds
_CHORD_SHAPES = {
    "major": (0, 4, 7),
    "minor": (0, 3, 7),
    "diminished": (0, 3, 6),
    "augmented": (0, 4, 8),
    "sus4": (0, 5, 7),
    "major7": (0, 4, 7, 11),
    "minor7": (0, 3, 7, 10),
    "dominant7": (0, 4, 7, 10),
}
_HITS = ("kick", "snare", "hat", "click")


def _random_pitch(rng: np.random.Generator, low_midi: int = 36, high_midi: int = 84) -> float:
    midi = rng.uniform(low_midi, high_midi)
    return float(440.0 * 2.0 ** ((midi - 69.0) / 12.0))


def _random_adsr(rng: np.random.Generator) -> dict[str, float]:
    return {
        "attack": float(rng.uniform(0.002, 0.1)),
        "decay": float(rng.uniform(0.02, 0.4)),
        "sustain": float(rng.uniform(0.2, 1.0)),
        "release": float(rng.uniform(0.02, 0.4)),
    }


def random_clip(
    rng: np.random.Generator,
    duration: float,
    sample_rate: int = 16000,
    kind: str | None = None,
) -> tuple[np.ndarray, str]:
    """Draw one synthetic sound of ``duration`` seconds; returns ``(wave (N,), kind)``.

    Notes and tones are placed as a short sequence of events with random onsets, so crops of a
    clip differ; a faint noise floor keeps every clip away from digital silence.
    """
    kind = kind or str(rng.choice(SOUND_KINDS))
    n = _num_samples(duration, sample_rate)
    timbre = str(rng.choice(sorted(TIMBRES)))

    def events(make, count_range=(1, 4)) -> np.ndarray:
        out = np.zeros(n)
        for _ in range(int(rng.integers(*count_range))):
            length = float(rng.uniform(0.2, max(0.25, duration)))
            sound = make(length)
            start = int(rng.integers(0, max(1, n - len(sound) // 2)))
            end = min(n, start + len(sound))
            out[start:end] += sound[: end - start]
        return out

    if kind == "tone":
        wave = events(lambda d: sine_tone(_random_pitch(rng, 40, 100), d, sample_rate))
    elif kind == "note":
        wave = events(
            lambda d: harmonic_note(
                _random_pitch(rng),
                timbre,
                d,
                sample_rate,
                vibrato_hz=float(rng.uniform(0, 7)),
                vibrato_cents=float(rng.uniform(0, 30)),
                inharmonicity=float(rng.choice([0.0, rng.uniform(0, 1e-3)])),
                **_random_adsr(rng),
            ),
            (1, 6),
        )
    elif kind == "chord":
        shape = _CHORD_SHAPES[str(rng.choice(sorted(_CHORD_SHAPES)))]
        wave = events(
            lambda d: chord(
                _random_pitch(rng, 40, 72), shape, timbre, d, sample_rate, **_random_adsr(rng)
            ),
            (1, 3),
        )
    elif kind == "noise":
        colors = ["white", "pink", "brown", "blue"]
        wave = events(
            lambda d: noise_burst(
                d, rng, str(rng.choice(colors)), sample_rate, **_random_adsr(rng)
            ),
            (1, 5),
        )
    elif kind == "sweep":
        lo, hi = sorted(rng.uniform(60.0, 7000.0, size=2))
        f0, f1 = (lo, hi) if rng.random() < 0.5 else (hi, lo)
        method = "log" if rng.random() < 0.7 else "linear"
        wave = sweep(float(f0), float(f1), duration, sample_rate, method=method).astype(np.float64)
    elif kind == "rhythm":
        steps = int(rng.choice([8, 12, 16]))
        pattern = [str(rng.choice(_HITS)) if rng.random() < 0.45 else 0 for _ in range(steps)] or [
            "kick"
        ]
        if not any(pattern):
            pattern[0] = "kick"
        wave = rhythm(
            float(rng.uniform(70, 180)),
            pattern,
            duration,
            rng,
            sample_rate,
            swing=float(rng.uniform(0, 0.3)),
        ).astype(np.float64)
    elif kind == "mixture":
        parts = [
            random_clip(rng, duration, sample_rate, str(rng.choice(SOUND_KINDS[:-1])))[0]
            for _ in range(int(rng.integers(2, 4)))
        ]
        wave = mixture(parts, rng.uniform(0.3, 1.0, size=len(parts))).astype(np.float64)
    else:
        raise ValueError(f"unknown sound kind {kind!r}; choose one of {SOUND_KINDS}")
    wave = _scale_peak(wave, float(rng.uniform(0.1, 0.9)))
    floor = 10.0 ** (rng.uniform(-70.0, -50.0) / 20.0)  # -70 to -50 dBFS of white noise
    return (wave + floor * rng.standard_normal(n)).astype(np.float32), kind


@dataclass(frozen=True)
class ProceduralCorpus:
    """A virtual corpus of ``size`` synthetic clips; clip ``i`` depends only on ``(seed, i)``.

    Attributes:
        seed: corpus identity (not the training seed: two runs with different training seeds
            can share a corpus).
        size: number of distinct clips (the "epoch" length of the corpus).
        min_seconds, max_seconds: clip durations are drawn uniformly from this range, so both
            cropping (longer than 2 s) and tiling (shorter) occur.
        sample_rate: output rate in Hz.
    """

    seed: int = 0
    size: int = 100_000
    min_seconds: float = 1.0
    max_seconds: float = 4.0
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"procedural corpus size must be positive, got {self.size}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(
                f"need 0 < min_seconds <= max_seconds, got {self.min_seconds}, {self.max_seconds}"
            )

    def __len__(self) -> int:
        return self.size

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 0x50524F43, index])  # "PROC"

    def clip(self, index: int) -> tuple[np.ndarray, str]:
        """Clip ``index``: ``(wave (N,) float32, kind)``."""
        if not 0 <= index < self.size:
            raise IndexError(f"clip index {index} outside [0, {self.size})")
        rng = self.rng(index)
        duration = float(rng.uniform(self.min_seconds, self.max_seconds))
        return random_clip(rng, duration, self.sample_rate)
