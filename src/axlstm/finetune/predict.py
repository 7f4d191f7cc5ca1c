"""Labels for audio of any length: a fine-tuned classifier run over windows of its clip length.

A :class:`Classifier` is an :class:`~axlstm.models.AudioClassifier` with its label vocabulary
and the clip length it was fine-tuned at (:func:`axlstm.finetune.load_classifier` reads one
from a classifier release). For each clip:

1. The model input of the whole clip is computed with the encoder's own front end (mono, the
   model's rate, the log-mel standardised over the whole clip or the fbank with its fixed
   statistics), as :func:`axlstm.embed` does.
2. **Windows.** With a window of ``L`` input frames (``window_frames``: the fixed input length
   of the original SSAST and SSAMBA, else the frames of ``clip_seconds`` of audio, as training
   crops are cut) and hop ``H = L // 2``:

   * a clip of at most ``L`` frames is run **in one pass**, as training crops are: the whole
     clip, padded to ``L`` frames the way the front end pads short training crops (the
     log-mel: the clip repeated; the fbank: padding frames, as SSAST's one fixed-length crop);
   * a longer clip gets windows starting at ``0, H, 2H, ...`` while they fit; when frames are
     left at the end, one last window ends on the clip's last frame (it starts at ``T - L``).
     Every window is a full window of real audio: nothing is padded, nothing is dropped, and
     every frame is seen at least once;
   * without a clip length (``clip_seconds=None`` and no fixed input), every clip is one pass
     over the whole clip, unpadded.

3. **Scores.** Logits per window; probabilities = softmax over the classes (multiclass) or a
   sigmoid per class (multilabel); the clip's score for each class = the **mean of its window
   probabilities**. Top-k = the k highest clip scores (ties: class order).
4. **Timeline** (``timeline=True``): the probabilities of every window with its start and end
   in seconds. Window ``i`` starting at input frame ``s`` covers ``s * hop / rate`` to
   ``(s + L) * hop / rate`` seconds, the end clipped to the clip's duration; a one-pass clip
   covers ``0`` to its duration.

Files are read one by one (any format, rate and channel count) and their windows grouped into
forward passes of about ``batch_size`` windows. A file that cannot be read, is too short for the
front end, fails in the model or gets non-finite scores is returned with its reason and the
others go on (when a group fails, its files are retried one by one).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from axlstm.audio import FrontEndSpec, load_audio
from axlstm.core.errors import AxlstmError
from axlstm.embedding import check_clip, front_end_config
from axlstm.finetune.data import cut_windows, window_starts
from axlstm.models import AudioClassifier

__all__ = [
    "AGGREGATION",
    "NON_FINITE",
    "Classifier",
    "Prediction",
    "iter_file_predictions",
    "window_starts",
]

logger = logging.getLogger(__name__)

#: How window scores become a clip score (the only rule so far).
AGGREGATION = "mean"
#: The reason given for a file whose scores hold NaN or inf.
NON_FINITE = "the model gave non-finite scores (NaN or inf) for this file"
#: Files held before a forward pass at most, whatever their windows.
_MAX_PENDING = 64


@dataclass
class Prediction:
    """The labels of one clip, or why it failed.

    Attributes:
        file: the file as named (``"clip i"`` for arrays).
        duration: seconds of audio; None on failure.
        labels: the top-k labels, best first.
        scores: their clip scores (probabilities in [0, 1]).
        probabilities: (C,) clip score of every class, in vocabulary order.
        timeline: with ``timeline=True``, one dict per window: ``start`` and ``end`` (seconds),
            ``labels`` and ``scores`` (the window's top k).
        window_probabilities: with ``timeline=True``, (W, C) probabilities of every window.
        error: why the clip failed; None on success.
    """

    file: str
    duration: float | None = None
    labels: list[str] | None = None
    scores: list[float] | None = None
    probabilities: np.ndarray | None = None
    timeline: list[dict[str, Any]] | None = None
    window_probabilities: np.ndarray | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``axlstm predict`` writes (one line of a .jsonl)."""
        if not self.ok:
            return {"file": self.file, "error": self.error}
        out = {
            "file": self.file,
            "duration": self.duration,
            "labels": self.labels,
            "scores": self.scores,
        }
        if self.timeline is not None:
            out["timeline"] = self.timeline
        return out


@dataclass
class _Clip:
    """One clip ready for the model: its input pieces and where they sit in time."""

    name: str
    pieces: list[torch.Tensor]  # (L_i, F) model inputs
    spans: list[tuple[float, float]]  # seconds
    duration: float


def _reason(err: BaseException) -> str:
    if isinstance(err, (AxlstmError, ValueError, FileNotFoundError)):
        return str(err)
    return f"{type(err).__name__}: {err}"


class Classifier:
    """A fine-tuned classifier with its labels, ready to label audio (see the module doc).

    Args:
        model: the :class:`~axlstm.models.AudioClassifier` (it is put in eval mode).
        labels: the vocabulary, in class order.
        multilabel: sigmoid per class (True) or softmax over the classes (False).
        clip_seconds: the clip length the model was fine-tuned at (None: unknown).
        window_frames: window length in input frames (None: every clip in one pass).
        hop_frames: frames between window starts (default ``window_frames // 2``).
        config: the classifier release's settings (pooling, provenance, ...), for reference.
    """

    def __init__(
        self,
        model: AudioClassifier,
        labels: Sequence[str],
        *,
        multilabel: bool,
        clip_seconds: float | None = None,
        window_frames: int | None = None,
        hop_frames: int | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        if len(labels) != model.num_classes:
            raise ValueError(f"{len(labels)} labels for a head of {model.num_classes} classes")
        if window_frames is not None and window_frames < 1:
            raise ValueError(f"window_frames must be positive, got {window_frames}")
        self.model = model.eval()
        self.labels = list(labels)
        self.multilabel = bool(multilabel)
        self.clip_seconds = clip_seconds
        self.window_frames = window_frames
        if hop_frames is None and window_frames is not None:
            hop_frames = max(1, window_frames // 2)
        if hop_frames is not None and hop_frames < 1:
            raise ValueError(f"hop_frames must be positive, got {hop_frames}")
        self.hop_frames = hop_frames
        self.config = dict(config or {})
        self.front_end: FrontEndSpec = front_end_config(model.encoder)
        self._features = None  # the whole-clip front end module, built on first use

    def __repr__(self) -> str:
        kind = "multilabel" if self.multilabel else "multiclass"
        return (
            f"Classifier({type(self.model.encoder).__name__}, {len(self.labels)} classes, "
            f"{kind}, clip_seconds={self.clip_seconds}, window_frames={self.window_frames})"
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> Classifier:
        """Move the model (and the front end) to ``device``; returns self."""
        self.model.to(device)
        self._features = None
        return self

    # ------------------------------------------------------------------------------ pieces
    def _spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """(N,) mono wave at the model's rate -> (T, F) model input of the whole clip."""
        if self._features is None:
            self._features = self.front_end.whole_clip().build().to(self.device).eval()
        with torch.no_grad():
            return self._features(wave.to(self.device)[None])[0, 0]

    def _clip(self, wave: torch.Tensor, name: str) -> _Clip:
        """Cut a checked (N,) wave at the model's rate into model inputs."""
        fe = self.front_end
        rate, hop_s = fe.sample_rate, fe.hop_samples
        duration = int(wave.shape[-1]) / rate
        spec = self._spectrogram(wave)
        L = self.window_frames
        pieces, starts = cut_windows(spec, L, fe, self.hop_frames)
        if L is None or (len(pieces) == 1 and spec.shape[0] <= L):  # one pass, as in training
            return _Clip(name, pieces, [(0.0, duration)], duration)
        spans = [(s * hop_s / rate, min((s + L) * hop_s / rate, duration)) for s in starts]
        return _Clip(name, pieces, spans, duration)

    def _window_probabilities(self, clips: list[_Clip], batch_size: int) -> list[torch.Tensor]:
        """(W_i, C) float32 probabilities of every clip's windows; equal-length windows of all
        clips share forward passes of at most ``batch_size``."""
        flat = [(i, p) for i, c in enumerate(clips) for p in c.pieces]
        out: list[torch.Tensor | None] = [None] * len(flat)
        groups: dict[int, list[int]] = {}
        for j, (_, piece) in enumerate(flat):
            groups.setdefault(piece.shape[0], []).append(j)
        param = next(self.model.parameters())
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for idx in groups.values():
                    for s in range(0, len(idx), batch_size):
                        chunk = idx[s : s + batch_size]
                        x = torch.stack([flat[j][1] for j in chunk]).unsqueeze(1)
                        logits = self.model(x.to(device=param.device, dtype=param.dtype)).float()
                        if self.multilabel:
                            probs = torch.sigmoid(logits)
                        else:
                            probs = torch.softmax(logits, dim=-1)
                        for k, j in enumerate(chunk):
                            out[j] = probs[k]
        finally:
            self.model.train(was_training)
        per_clip: list[list[torch.Tensor]] = [[] for _ in clips]
        for (i, _), p in zip(flat, out, strict=True):
            per_clip[i].append(p)  # type: ignore[arg-type]
        return [torch.stack(p).cpu() for p in per_clip]

    def _top(self, probs: np.ndarray, k: int) -> tuple[list[str], list[float]]:
        order = np.argsort(-probs, kind="stable")[:k]
        return [self.labels[c] for c in order], [float(probs[c]) for c in order]

    def _result(self, clip: _Clip, windows: torch.Tensor, top_k: int, timeline: bool):
        w = windows.numpy()
        if not np.isfinite(w).all():
            return Prediction(clip.name, error=NON_FINITE)
        probs = w.mean(axis=0)  # the clip score: mean of the window probabilities
        labels, scores = self._top(probs, top_k)
        result = Prediction(clip.name, clip.duration, labels, scores, probs)
        if timeline:
            result.window_probabilities = w
            result.timeline = []
            for (start, end), row in zip(clip.spans, w, strict=True):
                lab, sc = self._top(row, top_k)
                result.timeline.append({"start": start, "end": end, "labels": lab, "scores": sc})
        return result

    def _run(self, clips: list[_Clip], top_k: int, timeline: bool, batch_size: int):
        windows = self._window_probabilities(clips, batch_size)
        return [self._result(c, w, top_k, timeline) for c, w in zip(clips, windows, strict=True)]

    def _check_options(self, top_k: int, batch_size: int) -> int:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return min(top_k, len(self.labels))

    # --------------------------------------------------------------------------------- api
    def predict(
        self,
        inputs: Any,
        *,
        sample_rate: float | None = None,
        top_k: int = 5,
        timeline: bool = False,
        batch_size: int = 16,
        allow_truncated: bool = False,
    ) -> list[Prediction]:
        """Labels of audio files or waveforms, one :class:`Prediction` per clip, in order.

        Args:
            inputs: a path or a list of paths (any format libsndfile reads); or waveforms:
                (N,) one mono clip, (B, N) mono clips, (B, C, N) multi-channel clips, or a
                list of (N,) / (C, N) arrays or tensors of any lengths.
            sample_rate: the waveforms' rate (default: the model's, 16 kHz); files carry theirs.
            top_k: labels per clip (and per window); at most the number of classes.
            timeline: also give the scores of every window with its times.
            batch_size: windows per forward pass (speed and memory, not results).
            allow_truncated: label the readable part of truncated files instead of failing.

        Returns:
            A list of :class:`Prediction`. A file that fails is returned with ``error`` set;
            a waveform that cannot be used (empty, NaN, too short) raises ``AudioError``.
        """
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        if isinstance(inputs, (list, tuple)) and inputs:
            is_path = [isinstance(x, (str, os.PathLike)) for x in inputs]
            if all(is_path):
                return list(
                    iter_file_predictions(
                        self,
                        [os.fspath(x) for x in inputs],
                        top_k=top_k,
                        timeline=timeline,
                        batch_size=batch_size,
                        allow_truncated=allow_truncated,
                    )
                )
            if any(is_path):
                raise TypeError("inputs mix paths and waveforms; pass one kind")
        k = self._check_options(top_k, batch_size)
        fe = self.front_end
        rate = fe.sample_rate if sample_rate is None else sample_rate
        clips = [
            self._clip(check_clip(w, rate, f"clip {i}", fe), f"clip {i}")
            for i, w in enumerate(_waveforms(inputs))
        ]
        return self._run(clips, k, timeline, batch_size)


def _waveforms(inputs: Any) -> list[torch.Tensor]:
    """Waveform input as a list of (N,) or (C, N) float tensors."""

    def tensor(x: Any, name: str) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"{name}: expected a path, a numpy array or a torch tensor, got {type(x).__name__}"
            )
        if not x.is_floating_point():
            raise TypeError(
                f"{name}: expected floating-point samples in [-1, 1], got dtype {x.dtype}"
            )
        return x

    if isinstance(inputs, (list, tuple)):
        clips = [tensor(x, f"clip {i}") for i, x in enumerate(inputs)]
        if not clips:
            raise ValueError("no clips to label")
        for i, c in enumerate(clips):
            if c.dim() not in (1, 2):
                raise ValueError(f"clip {i}: expected (N,) or (C, N), got {tuple(c.shape)}")
        return clips
    wave = tensor(inputs, "inputs")
    if wave.dim() == 1:
        return [wave]
    if wave.dim() in (2, 3):
        return list(wave.unbind(0))
    raise ValueError(f"expected (N,), (B, N) or (B, C, N) audio, got shape {tuple(wave.shape)}")


def iter_file_predictions(
    classifier: Classifier,
    paths: Sequence[str],
    *,
    top_k: int = 5,
    timeline: bool = False,
    batch_size: int = 16,
    allow_truncated: bool = False,
) -> Iterator[Prediction]:
    """Label audio files, yielding one :class:`Prediction` per path, in order; a file that
    fails is yielded with its reason (see the module doc). Arguments as
    :meth:`Classifier.predict`."""
    k = classifier._check_options(top_k, batch_size)
    fe = classifier.front_end
    pending: list[_Clip | Prediction] = []
    load = 0

    def flush() -> Iterator[Prediction]:
        good = [i for i, c in enumerate(pending) if isinstance(c, _Clip)]
        results: dict[int, Prediction] = {}
        if good:
            try:
                group = classifier._run([pending[i] for i in good], k, timeline, batch_size)
                results = dict(zip(good, group, strict=True))
            except Exception as err:  # find the culprit: one file at a time
                logger.debug("group of %d failed (%s); retrying one by one", len(good), err)
                for i in good:
                    clip = pending[i]
                    try:
                        results[i] = classifier._run([clip], k, timeline, batch_size)[0]
                    except Exception as one_err:
                        results[i] = Prediction(clip.name, error=_reason(one_err))
        for i, item in enumerate(pending):
            yield results[i] if isinstance(item, _Clip) else item

    for path in paths:
        path = str(path)
        try:
            wave = load_audio(path, fe.sample_rate, allow_truncated=allow_truncated)
            wave = check_clip(wave, fe.sample_rate, path, fe)
            clip = classifier._clip(wave, path)
            pending.append(clip)
            load += len(clip.pieces)
        except Exception as err:
            pending.append(Prediction(path, error=_reason(err)))
        if load >= batch_size or len(pending) >= max(batch_size, _MAX_PENDING):
            yield from flush()
            pending, load = [], 0
    if pending:
        yield from flush()
