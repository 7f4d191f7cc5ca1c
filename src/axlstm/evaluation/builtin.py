"""Built-in evaluation tasks: labelled procedural audio written as HEAR task folders.

They let ``axlstm evaluate`` run with no download, in seconds on a CPU. Every clip is generated
by :mod:`axlstm.data.procedural` from ``(seed, task, clip index)`` alone, so a folder is the
same on every machine (for a given numpy), whatever else is generated before it.

=============== ============ ================== =============================================
task            type         split              what decides the label
=============== ============ ================== =============================================
pitch_class     multiclass   train/valid/test   pitch class (C ... B) of one harmonic note, in
                (12)                            octaves 3-5, ±20 cents, random timbre/envelope,
                                                pink noise at 5-25 dB SNR
polyphony       multiclass   train/valid/test   number (1-4) of overlapping harmonic notes of
                (4)                             distinct pitches and random timbres
timbre          multiclass   train/valid/test   harmonic recipe of one note (sine, triangle,
                (6)                             square, saw, organ, bright) at a random pitch
sound_types     multilabel   train/valid/test   which of tone, note, chord, noise, sweep,
                (6)                             rhythm are mixed in the clip (1-3 of them)
sound_events    event,       train/valid/test   timestamp task: when each of tone, note,
                multilabel                      noise, sweep sounds in a 4 s clip (1-4 events
                (4)                             of 0.2-1.0 s at random times, one label's
                                                events never overlap, other labels may)
=============== ============ ================== =============================================

``scale`` multiplies every clip count (scale 1: 64-336 clips per task, 1-4 s each; about
1130 clips in all). ``folds=k`` writes the tasks as k-fold tasks instead (``fold00`` ...,
``split_mode`` "new_split_kfold"), the same number of clips per class spread evenly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from axlstm.core.errors import OutputError, UsageError
from axlstm.core.fileio import disk_full
from axlstm.data import procedural as proc

__all__ = ["BUILTIN_TASKS", "BuiltinTask", "builtin_task_names", "write_builtin_tasks"]

logger = logging.getLogger(__name__)

#: Bump when any generator changes, so cached task folders are regenerated.
GENERATOR_VERSION = 1
_STAMP_KEY = "axlstm_builtin"
_PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_SOUND_TYPES = ("tone", "note", "chord", "noise", "sweep", "rhythm")

Maker = Callable[[np.random.Generator, int, float, int], tuple[np.ndarray, list[str]]]


@dataclass(frozen=True)
class BuiltinTask:
    """One generated task.

    Attributes:
        name: task (and folder) name.
        description: what the label means.
        prediction_type: "multiclass" or "multilabel".
        labels: the vocabulary.
        duration: clip length in seconds (HEAR's ``sample_duration``).
        counts: clips per class in train/valid/test; for multilabel tasks clips per split.
        scores: HEAR score names, primary first.
        make: ``(rng, clip index, duration, sample rate) -> (wave (N,), labels)``; for multiclass
            tasks the label must be ``labels[index % len(labels)]`` (balanced splits); for event
            tasks the labels are HEAR events ``{"label", "start", "end"}`` in ms.
        embedding_type: "scene" or "event" (a timestamp task).
    """

    name: str
    description: str
    prediction_type: str
    labels: tuple[str, ...]
    duration: float
    counts: tuple[int, int, int]
    scores: tuple[str, ...]
    make: Maker
    embedding_type: str = "scene"

    def split_sizes(self, scale: int = 1, folds: int = 0) -> dict[str, int]:
        """Clips per split at ``scale``, as train/valid/test or as ``folds`` folds."""
        per = 1 if self.prediction_type == "multilabel" else len(self.labels)
        if folds:
            each = max(1, sum(self.counts) * scale // folds)
            return {f"fold{i:02d}": each * per for i in range(folds)}
        splits = ("train", "valid", "test")
        return {s: n * per * scale for s, n in zip(splits, self.counts, strict=True)}


# ---------------------------------------------------------------------------------- helpers
def _place(sound: np.ndarray, n: int, start: int) -> np.ndarray:
    out = np.zeros(n)
    end = min(n, start + len(sound))
    out[start:end] = sound[: end - start]
    return out


def _add_noise(wave: np.ndarray, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    noise = proc.colored_noise(len(wave), rng, "pink")
    signal_rms = math.sqrt(float(np.mean(wave**2))) or 1e-9
    noise_rms = math.sqrt(float(np.mean(noise**2))) or 1e-9
    return wave + noise * signal_rms / noise_rms * 10.0 ** (-snr_db / 20.0)


def _finish(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random peak level in [0.2, 0.9]: loudness carries no label information."""
    peak = float(np.abs(wave).max()) or 1.0
    return (wave * (rng.uniform(0.2, 0.9) / peak)).astype(np.float32)


def _adsr(rng: np.random.Generator) -> dict[str, float]:
    return {
        "attack": float(rng.uniform(0.005, 0.08)),
        "decay": float(rng.uniform(0.05, 0.3)),
        "sustain": float(rng.uniform(0.3, 0.9)),
        "release": float(rng.uniform(0.03, 0.2)),
    }


def _note(rng: np.random.Generator, f0: float, timbre: str, seconds: float, sr: int):
    return proc.harmonic_note(
        f0,
        timbre,
        seconds,
        sr,
        amplitude=1.0,
        vibrato_hz=float(rng.uniform(3.0, 7.0)),
        vibrato_cents=float(rng.uniform(0.0, 15.0)),
        **_adsr(rng),
    )


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


# ------------------------------------------------------------------------------- generators
def _make_pitch(rng, index, duration, sr):
    pc = index % 12
    octave = int(rng.integers(3, 6))  # C3 (MIDI 48) .. B5 (MIDI 83)
    midi = 12 * (octave + 1) + pc + float(rng.uniform(-0.2, 0.2))
    timbre = str(rng.choice(sorted(proc.TIMBRES)))
    n = round(duration * sr)
    length = float(rng.uniform(0.6, 0.95)) * duration
    note = _note(rng, _hz(midi), timbre, length, sr)
    wave = _place(note, n, int(rng.integers(0, n - len(note) + 1)))
    return _finish(_add_noise(wave, rng, float(rng.uniform(5.0, 25.0))), rng), [_PITCH_CLASSES[pc]]


def _make_polyphony(rng, index, duration, sr):
    count = index % 4 + 1
    n = round(duration * sr)
    pitches = rng.choice(np.arange(40, 85), size=count, replace=False)
    wave = np.zeros(n)
    for midi in pitches:
        timbre = str(rng.choice(sorted(proc.TIMBRES)))
        length = float(rng.uniform(0.6, 0.85)) * duration
        start = int(rng.uniform(0.0, 0.15) * n)  # every note spans the clip's middle
        note = _note(rng, _hz(float(midi) + float(rng.uniform(-0.1, 0.1))), timbre, length, sr)
        wave += float(rng.uniform(0.5, 1.0)) * _place(note, n, start)
    return _finish(_add_noise(wave, rng, float(rng.uniform(20.0, 35.0))), rng), [str(count)]


_TIMBRE_LABELS = ("sine", "triangle", "square", "saw", "organ", "bright")


def _make_timbre(rng, index, duration, sr):
    timbre = _TIMBRE_LABELS[index % len(_TIMBRE_LABELS)]
    n = round(duration * sr)
    length = float(rng.uniform(0.5, 0.95)) * duration
    note = _note(rng, _hz(float(rng.uniform(40.0, 76.0))), timbre, length, sr)
    wave = _place(note, n, int(rng.integers(0, n - len(note) + 1)))
    return _finish(_add_noise(wave, rng, float(rng.uniform(15.0, 35.0))), rng), [timbre]


def _make_sound_types(rng, index, duration, sr):
    count = int(rng.integers(1, 4))
    kinds = sorted(rng.choice(len(_SOUND_TYPES), size=count, replace=False).tolist())
    parts = [proc.random_clip(rng, duration, sr, _SOUND_TYPES[k])[0] for k in kinds]
    gains = rng.uniform(0.4, 1.0, size=count)
    wave = proc.mixture(parts, gains).astype(np.float64)
    return _finish(wave, rng), [_SOUND_TYPES[k] for k in kinds]


_EVENT_LABELS = ("tone", "note", "noise", "sweep")


def _event_sound(rng: np.random.Generator, label: str, seconds: float, sr: int) -> np.ndarray:
    if label == "tone":
        return proc.sine_tone(_hz(float(rng.uniform(60.0, 96.0))), seconds, sr, amplitude=1.0)
    if label == "note":
        timbre = str(rng.choice(sorted(proc.TIMBRES)))
        return _note(rng, _hz(float(rng.uniform(40.0, 76.0))), timbre, seconds, sr)
    if label == "noise":
        color = str(rng.choice(["white", "pink", "brown"]))
        return proc.noise_burst(seconds, rng, color, sr, amplitude=1.0, sustain=0.6)
    low = float(rng.uniform(150.0, 600.0))
    high = low * float(rng.uniform(3.0, 8.0))
    up = bool(rng.integers(0, 2))
    return proc.sweep(low if up else high, high if up else low, seconds, sr, amplitude=1.0)


def _make_sound_events(rng, index, duration, sr):
    """1-4 events at random times; events of one label never overlap (each label's events are
    drawn one after another in time), events of different labels may."""
    n = round(duration * sr)
    wave = np.zeros(n)
    events = []
    for _ in range(int(rng.integers(1, 5))):
        label = _EVENT_LABELS[int(rng.integers(0, len(_EVENT_LABELS)))]
        seconds = float(rng.uniform(0.2, 1.0))
        latest = [e["end"] for e in events if e["label"] == label]
        earliest = (max(latest) / 1000.0 + 0.1) if latest else 0.0
        if earliest + seconds > duration:
            continue  # no room left for this label
        start = float(rng.uniform(earliest, duration - seconds))
        first = round(start * sr)
        sound = _event_sound(rng, label, seconds, sr)
        wave += float(rng.uniform(0.4, 1.0)) * _place(sound, n, first)
        start_ms = 1000.0 * first / sr
        end_ms = 1000.0 * min(n, first + len(sound)) / sr
        events.append({"label": label, "start": start_ms, "end": end_ms})
    events.sort(key=lambda e: (e["start"], e["label"]))
    return _finish(_add_noise(wave, rng, float(rng.uniform(20.0, 35.0))), rng), events


#: The built-in tasks, by name.
BUILTIN_TASKS: dict[str, BuiltinTask] = {
    t.name: t
    for t in (
        BuiltinTask(
            "pitch_class",
            "pitch class of one harmonic note in octaves 3-5 (octave-invariant)",
            "multiclass",
            _PITCH_CLASSES,
            1.0,
            (16, 6, 6),
            ("top1_acc",),
            _make_pitch,
        ),
        BuiltinTask(
            "polyphony",
            "number of overlapping harmonic notes (1-4)",
            "multiclass",
            ("1", "2", "3", "4"),
            1.5,
            (40, 12, 12),
            ("top1_acc",),
            _make_polyphony,
        ),
        BuiltinTask(
            "timbre",
            "harmonic recipe (timbre family) of one note at a random pitch",
            "multiclass",
            _TIMBRE_LABELS,
            1.0,
            (20, 8, 8),
            ("top1_acc",),
            _make_timbre,
        ),
        BuiltinTask(
            "sound_types",
            "which procedural sound types are mixed in the clip (multilabel)",
            "multilabel",
            _SOUND_TYPES,
            2.0,
            (160, 60, 60),
            ("mAP", "d_prime"),
            _make_sound_types,
        ),
        BuiltinTask(
            "sound_events",
            "onsets and offsets of tone, note, noise and sweep events in 4 s clips (timestamp)",
            "multilabel",
            _EVENT_LABELS,
            4.0,
            (40, 12, 12),
            ("event_onset_200ms_fms", "segment_1s_er"),
            _make_sound_events,
            embedding_type="event",
        ),
    )
}


def builtin_tasks_dir(cache_root: str | Path, scale: int = 1) -> Path:
    """Where the built-in tasks of ``scale`` are written under a cache root, for every command
    that uses them (``axlstm evaluate``, ``axlstm finetune --data builtin:NAME``)."""
    return Path(cache_root) / "tasks" / f"builtin-scale{scale}"


def builtin_task_names() -> list[str]:
    return list(BUILTIN_TASKS)


# ------------------------------------------------------------------------------------ writing
def _stamp(task: BuiltinTask, scale: int, seed: int, sample_rate: int, folds: int) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "task": task.name,
        "scale": scale,
        "folds": folds,
        "seed": seed,
        "sample_rate": sample_rate,
        "numpy": np.__version__,
    }


def _read_stamp(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / "task_metadata.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not (folder / ".complete").is_file():
        return None
    return meta.get(_STAMP_KEY)


def _write_task(
    task: BuiltinTask, folder: Path, scale: int, seed: int, sample_rate: int, folds: int
) -> None:
    sizes = task.split_sizes(scale, folds)
    code = zlib.crc32(task.name.encode())  # per-task stream, independent of the task order
    index = 0
    multiclass = task.prediction_type == "multiclass"
    for split, size in sizes.items():
        audio_dir = folder / str(sample_rate) / split
        audio_dir.mkdir(parents=True)
        labels: dict[str, list] = {}
        for _ in range(size):
            rng = np.random.default_rng([seed, code, index])
            wave, clip_labels = task.make(rng, index, task.duration, 16000)
            if multiclass and clip_labels != [task.labels[index % len(task.labels)]]:
                raise AssertionError(f"{task.name}: generator broke the class balance")
            if sample_rate != 16000:
                from axlstm.audio import resample

                wave = resample(wave, 16000, sample_rate)
            name = f"{index:05d}.wav"
            sf.write(audio_dir / name, np.clip(wave, -1.0, 1.0), sample_rate, subtype="PCM_16")
            labels[name] = clip_labels
            index += 1
        (folder / f"{split}.json").write_text(json.dumps(labels, indent=1) + "\n")
    with open(folder / "labelvocabulary.csv", "w", newline="", encoding="utf-8") as f:
        f.write("idx,label\n")
        for i, label in enumerate(task.labels):
            f.write(f"{i},{label}\n")
    meta = {
        "task_name": task.name,
        "version": f"axlstm-builtin-v{GENERATOR_VERSION}",
        "description": task.description,
        "embedding_type": task.embedding_type,
        "prediction_type": task.prediction_type,
        "split_mode": "new_split_kfold" if folds else "trainvaltest",
        "sample_duration": task.duration,
        "evaluation": list(task.scores),
        "splits": list(sizes),
        "default_mode": "builtin",
        "mode": "builtin",
        _STAMP_KEY: _stamp(task, scale, seed, sample_rate, folds),
    }
    if folds:
        meta["nfolds"] = folds
    (folder / "task_metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    (folder / ".complete").write_text("")


def write_builtin_tasks(
    out_dir: str | Path,
    *,
    scale: int = 1,
    seed: int = 0,
    names: Sequence[str] | None = None,
    sample_rate: int = 16000,
    folds: int = 0,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the built-in tasks as HEAR task folders ``out_dir/<name>/``; return the folders.

    A folder already written with the same settings is kept as is (nothing is regenerated).

    Args:
        out_dir: parent folder.
        scale: multiplies every clip count (>= 1).
        seed: dataset identity; another seed gives other clips with the same statistics.
        names: tasks to write (default: all of :data:`BUILTIN_TASKS`).
        sample_rate: rate of the written audio (generated at 16 kHz, resampled otherwise);
            the folder is ``<sample_rate>/<split>/`` as in HEAR.
        folds: 0 for train/valid/test tasks, else the number of folds (at least 3).
        overwrite: replace folders written with other settings instead of failing.
        progress: called with each task name before it is generated.

    Raises:
        UsageError: (a ``ValueError``) an unknown task name, a bad scale, rate or fold count,
            or a folder with other settings (and ``overwrite`` is False).
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise UsageError(f"scale must be a positive integer, got {scale!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise UsageError(f"sample_rate must be an integer, got {sample_rate!r}")
    if sample_rate < 16000 or sample_rate > 384000:
        raise UsageError(
            f"sample_rate must be 16000 to 384000 Hz (the audio is made at 16 kHz), got "
            f"{sample_rate}"
        )
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 0:
        raise UsageError(f"folds must be 0 or an integer of at least 3, got {folds!r}")
    if folds and folds < 3:
        raise UsageError(f"folds must be 0 or at least 3 (test, validation, training), got {folds}")
    names = list(names) if names else builtin_task_names()
    unknown = [n for n in names if n not in BUILTIN_TASKS]
    if unknown:
        raise UsageError(f"unknown built-in tasks {unknown}; choose from {builtin_task_names()}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folders = []
    for name in names:
        task = BUILTIN_TASKS[name]
        folder = out / name
        wanted = json.loads(json.dumps(_stamp(task, int(scale), seed, sample_rate, folds)))
        if folder.exists():
            if _read_stamp(folder) == wanted:
                logger.info("built-in task %s already written in %s", name, folder)
                folders.append(folder)
                continue
            if not overwrite:
                raise UsageError(
                    f"{folder} exists but was not written with these settings (scale {scale}, "
                    f"seed {seed}, {sample_rate} Hz, folds {folds}); remove it or pass overwrite"
                )
        if progress is not None:
            progress(name)
        tmp = out / f".{name}.{secrets.token_hex(4)}"
        tmp.mkdir(mode=0o777)  # the umask decides, as for any folder (mkdtemp makes 0700)
        try:
            try:
                _write_task(task, tmp, int(scale), seed, sample_rate, folds)
            except Exception as err:
                if isinstance(err, OutputError) or not disk_full(tmp, err):
                    raise
                raise OutputError(f"cannot write task {folder}: no space left on device") from err
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        logger.info(
            "wrote built-in task %s (%d clips) to %s",
            name,
            sum(task.split_sizes(int(scale), folds).values()),
            folder,
        )
        folders.append(folder)
    return folders
