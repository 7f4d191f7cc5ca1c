"""Probes on frozen scene embeddings, trained as the AxLSTM/SSAM copy of hear-eval-kit does
(SPEC §7.2), in plain torch.

* Network: ``Linear(D, 1024) → BatchNorm1d(1024) → Dropout(p) → ReLU → Linear(1024, C)``;
  hidden weights Xavier-normal with gain 1, output weights Xavier-normal with gain √2 (ReLU),
  biases PyTorch's default uniform(±1/sqrt(fan_in)). No input normalisation. ``kind="linear"``
  is one ``Linear(D, C)`` (Xavier-normal, gain 1).
* Loss: cross-entropy (multiclass) or BCE with logits (multilabel). Adam, lr 1e-4, batch 1024.
* Up to 500 epochs, validation after every 3rd epoch, early stopping after 20 validations
  without a strict improvement of the task's primary score (or of the validation loss when
  the task sets ``use_scoring_for_early_stopping: false``); the best validated weights are
  tested.
* Grid: dropout p ∈ {0.1, 0.25}, both trained on the first split; the one with the better
  validation value (the first on a tie) is reused for the other folds, and the first split's
  model is the one tested (as hear-eval-kit's ``task_predictions``). A linear probe has no
  dropout, so its grid is one point.
* k-fold: split i tests on fold i, validates on fold i+1 (mod k) and trains on the rest; the
  seed's score is the mean over folds.

Where this differs from hear-eval-kit, on purpose:

* **The training data are shuffled every epoch** (``shuffle=True``, the default). HEAR's kit
  means to shuffle but never does: its ``split_name == "train"`` test compares a *list* of split
  names to a string, so training batches always come in the same order (that of the embedding
  memmap, shuffled once with seed 0). ``shuffle=False`` reproduces the quirk. With at most
  1024 training examples there is one batch per epoch and the order is irrelevant.
* Every training draws its initial weights, batch order and dropout masks from its own
  ``torch.Generator``, seeded from (seed, split index, grid point), so results do not depend on
  the order or the threads trainings run in, and the global RNG is left alone. HEAR seeds the
  global RNG once per run, so its k-th training depends on the ones before it.
* A final training batch of a single example is skipped (BatchNorm cannot train on one
  example; HEAR's Lightning loop would fail on it).

Event (timestamp) tasks use the same network, loss (BCE), optimiser and early stopping on
frames; what differs is how a set of predictions is scored: ``ProbeData.make_scoring`` gives a
:class:`Scoring` per split (see :mod:`.event_probe`), which turns frame probabilities into
events and scores them, choosing the post-processing on the validation set.

Never a silent wrong score: non-finite embeddings, a training set of one class and a training
whose loss turns non-finite are errors. Parallel trainings stop within one epoch when one of
them fails or the run is interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import copy
import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from axlstm.evaluation.metrics import SCORES
from axlstm.evaluation.tasks import DataSplit

__all__ = [
    "ProbeCancelled",
    "ProbeConfig",
    "ProbeData",
    "ProbeNet",
    "ProbeResult",
    "ProbeRun",
    "SceneScoring",
    "Scoring",
    "evaluate_probe",
    "train_probe",
    "training_seed",
]

logger = logging.getLogger(__name__)

PROBE_KINDS = ("mlp", "linear")


class ProbeCancelled(Exception):  # noqa: N818 (a signal, not an error)
    """A training stopped because another one failed or the run was interrupted."""


@dataclass(frozen=True)
class ProbeConfig:
    """Probe hyper-parameters; the defaults are SPEC §7.2's.

    Attributes:
        kind: "mlp" (one hidden layer with BatchNorm, the protocol) or "linear".
        hidden_dim: width of the hidden layer.
        dropouts: the grid of dropout rates (mlp only).
        lr: Adam learning rate.
        batch_size: training batch size.
        max_epochs: upper bound on training epochs.
        check_every: epochs between validations.
        patience: validations without improvement before stopping.
        shuffle: reshuffle the training data every epoch (HEAR's kit does not; see above).
    """

    kind: str = "mlp"
    hidden_dim: int = 1024
    dropouts: tuple[float, ...] = (0.1, 0.25)
    lr: float = 1e-4
    batch_size: int = 1024
    max_epochs: int = 500
    check_every: int = 3
    patience: int = 20
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.kind not in PROBE_KINDS:
            raise ValueError(f"probe kind must be one of {PROBE_KINDS}, got {self.kind!r}")
        if self.kind == "mlp" and not self.dropouts:
            raise ValueError("the mlp probe needs at least one dropout rate")
        if any(not 0.0 <= p < 1.0 for p in self.dropouts):
            raise ValueError(f"dropout rates must be in [0, 1), got {self.dropouts}")
        for name in ("hidden_dim", "batch_size", "max_epochs", "check_every", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def grid(self) -> list[float]:
        """Dropout rates to try (``[0.0]`` for the linear probe)."""
        return list(self.dropouts) if self.kind == "mlp" else [0.0]


class _Dropout(nn.Module):
    """Inverted dropout whose masks come from a given generator (``nn.Dropout`` uses the global
    RNG, which threads would share)."""

    def __init__(self, p: float, generator: torch.Generator) -> None:
        super().__init__()
        self.p = float(p)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        # drawn where the generator lives (the CPU), so a probe on a GPU gets the same masks
        keep = torch.rand(x.shape, generator=self.generator, dtype=x.dtype) >= self.p
        return x * keep.to(x.device) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _linear(fan_in: int, fan_out: int, gain: float, generator: torch.Generator) -> nn.Linear:
    layer = nn.utils.skip_init(nn.Linear, fan_in, fan_out)  # no draw from the global RNG
    with torch.no_grad():
        nn.init.xavier_normal_(layer.weight, gain=gain, generator=generator)
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


class ProbeNet(nn.Module):
    """The probe network (see the module doc); ``forward`` returns logits (B, C)."""

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        *,
        hidden_dim: int | None = 1024,
        dropout: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        if hidden_dim:
            self.hidden: nn.Module = nn.Sequential(
                _linear(in_dim, hidden_dim, nn.init.calculate_gain("linear"), g),
                nn.BatchNorm1d(hidden_dim),
                _Dropout(dropout, g),
                nn.ReLU(),
            )
            out_in, gain = hidden_dim, nn.init.calculate_gain("relu")
        else:
            self.hidden = nn.Identity()
            out_in, gain = in_dim, nn.init.calculate_gain("linear")
        self.projection = _linear(out_in, num_classes, gain, g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.hidden(x))


class Scoring(Protocol):
    """How a probe's predictions on the validation and test sets are scored.

    ``valid(probs)`` returns the monitored value (higher is better), every score, and what was
    chosen on the validation set (e.g. the event post-processing); ``test(probs, chosen)``
    returns every score on the test set and the predictions to keep (e.g. events per file)."""

    def valid(self, probs: torch.Tensor) -> tuple[float, dict[str, float], Any]: ...

    def test(self, probs: torch.Tensor, chosen: Any) -> tuple[dict[str, float], Any]: ...


class SceneScoring:
    """The scene scores of :data:`~axlstm.evaluation.metrics.SCORES` on clip targets."""

    def __init__(
        self, names: Sequence[str], y_valid: torch.Tensor, y_test: torch.Tensor | None
    ) -> None:
        self.names = list(names)
        self.y_valid, self.y_test = y_valid, y_test

    def valid(self, probs: torch.Tensor) -> tuple[float, dict[str, float], Any]:
        scores = _all_scores(self.names, probs, self.y_valid)
        return scores[self.names[0]], scores, None

    def test(self, probs: torch.Tensor, chosen: Any) -> tuple[dict[str, float], Any]:
        assert self.y_test is not None
        return _all_scores(self.names, probs, self.y_test), None


@dataclass
class ProbeData:
    """Embeddings and targets of a task, by split.

    Attributes:
        x: ``{split: (N, D) float32}``.
        y: ``{split: (N, C) float32}`` multi-hot (one-hot for multiclass).
        prediction_type: "multiclass" or "multilabel".
        scores: score names, primary first (keys of :data:`~axlstm.evaluation.metrics.SCORES`).
        splits: the train/valid/test assignments, the grid's split first.
        monitor_score: early stopping and grid selection on the primary score (True, HEAR's
            default) or on the validation loss.
        make_scoring: for event tasks, the :class:`Scoring` of a data split (its validation and
            test splits); None scores scene targets with ``scores``.
    """

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    prediction_type: str
    scores: Sequence[str]
    splits: Sequence[DataSplit]
    monitor_score: bool = True
    make_scoring: Any = None

    def stack(self, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (N, D) and targets (N, C) of the named splits, concatenated in order."""
        x = np.concatenate([self.x[n] for n in names]).astype(np.float32, copy=False)
        y = np.concatenate([self.y[n] for n in names]).astype(np.float32, copy=False)
        return torch.from_numpy(x), torch.from_numpy(y)


@dataclass
class ProbeRun:
    """One trained probe.

    Attributes:
        valid: the monitored validation value at the best check (primary score, or minus the
            loss), used to pick the grid point.
        valid_scores: every score on the validation set at the best check.
        test_scores: every score of the best model on the test set.
        best_epoch: epoch of the best check.
        epochs: epochs trained before stopping.
        chosen: what the scoring chose on the validation set at the best check (the event
            post-processing), or None.
        test_output: the test predictions the scoring keeps (events per file), or None.
    """

    valid: float
    valid_scores: dict[str, float]
    test_scores: dict[str, float]
    best_epoch: int
    epochs: int
    chosen: Any = None
    test_output: Any = None


def training_seed(seed: int, split_index: int, grid_index: int) -> int:
    """The generator seed of one training, a function of its (seed, split, grid point)."""
    state = np.random.SeedSequence([seed, split_index, grid_index]).generate_state(2)
    return int(state[0]) << 31 ^ int(state[1])


def _targets_for_loss(y: torch.Tensor, prediction_type: str) -> torch.Tensor:
    if prediction_type == "multiclass":
        if not bool((y.sum(dim=1) == 1).all()):
            raise ValueError("multiclass targets need exactly one positive label per example")
        return y.argmax(dim=1)
    return y


def _loss(logits: torch.Tensor, target: torch.Tensor, prediction_type: str) -> torch.Tensor:
    if prediction_type == "multiclass":
        return F.cross_entropy(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def _probabilities(logits: torch.Tensor, prediction_type: str) -> torch.Tensor:
    return logits.softmax(dim=1) if prediction_type == "multiclass" else logits.sigmoid()


def _all_scores(names: Sequence[str], probs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    return {name: float(SCORES[name](probs, y)) for name in names}


def train_probe(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_valid: torch.Tensor,
    y_valid: torch.Tensor,
    *,
    prediction_type: str,
    scores: Sequence[str],
    config: ProbeConfig = ProbeConfig(),
    dropout: float = 0.1,
    seed: int = 0,
    monitor_score: bool = True,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    stop: threading.Event | None = None,
    scoring: Scoring | None = None,
    device: str | torch.device | None = None,
) -> tuple[ProbeNet, ProbeRun]:
    """Train one probe with early stopping; return the best validated network and its record.

    Args:
        x_train, y_train: (N, D) float embeddings and (N, C) multi-hot targets; likewise the
            validation (and optional test) sets.
        prediction_type: "multiclass" or "multilabel".
        scores: score names, the first monitored.
        config: hyper-parameters.
        dropout: this grid point's dropout rate.
        seed: seeds the training's own generator.
        monitor_score: monitor the primary score (else the validation loss).
        x_test, y_test: when given, every score of the best network on them is recorded.
        stop: when set (checked every epoch), :class:`ProbeCancelled` is raised.
        scoring: how predictions are scored (default: :class:`SceneScoring` of ``scores``);
            with one, the test set is scored when ``x_test`` is given.
        device: where the network trains (default: the CPU). Initial weights, batch order and
            dropout masks are drawn on the CPU whatever the device, so a GPU run differs from a
            CPU run by floating-point rounding only. Scores are computed on the CPU.

    Raises:
        ValueError: empty sets, non-finite embeddings, or a loss that turns non-finite.
    """
    if x_train.shape[0] == 0 or x_valid.shape[0] == 0:
        raise ValueError("the training and validation sets must not be empty")
    for what, x in (("training", x_train), ("validation", x_valid), ("test", x_test)):
        if x is not None and not bool(torch.isfinite(x).all()):
            raise ValueError(f"the {what} embeddings hold non-finite values (NaN or inf)")
    g = torch.Generator().manual_seed(int(seed))
    hidden = config.hidden_dim if config.kind == "mlp" else None
    net = ProbeNet(
        x_train.shape[1], y_train.shape[1], hidden_dim=hidden, dropout=dropout, generator=g
    )
    dev = torch.device(device) if device is not None else torch.device("cpu")
    net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, foreach=True)
    target = _targets_for_loss(y_train, prediction_type).to(dev)
    valid_target = _targets_for_loss(y_valid, prediction_type).to(dev)
    x_train, x_valid = x_train.to(dev), x_valid.to(dev)
    if scoring is None:
        scoring = SceneScoring(scores, y_valid, y_test)
    n = x_train.shape[0]
    best_value, best_state, best_scores, best_epoch = -math.inf, None, {}, 0
    best_chosen: Any = None
    wait, epoch = 0, 0
    for epoch in range(1, config.max_epochs + 1):
        if stop is not None and stop.is_set():
            raise ProbeCancelled("stopped")
        net.train()
        order = torch.randperm(n, generator=g) if config.shuffle else torch.arange(n)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size].to(dev)
            if idx.numel() < 2 and hidden:
                continue  # BatchNorm cannot train on a single example
            loss = _loss(net(x_train[idx]), target[idx], prediction_type)
            if not bool(torch.isfinite(loss)):
                raise ValueError(
                    f"the probe's training loss became non-finite at epoch {epoch} (embeddings "
                    "too large? their largest magnitude is "
                    f"{float(x_train.abs().max()):.3g})"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        last = epoch == config.max_epochs
        if epoch % config.check_every and not (last and best_state is None):
            continue
        net.eval()
        with torch.no_grad():
            logits = net(x_valid)
            probs = _probabilities(logits, prediction_type).cpu()
            value, valid_scores, chosen = scoring.valid(probs)
            if not monitor_score:
                value = -float(_loss(logits, valid_target, prediction_type))
        if math.isnan(value):
            value = -math.inf
        if best_state is None or value > best_value:  # strict, as Lightning with min_delta 0
            best_value, best_scores, best_epoch = value, valid_scores, epoch
            best_chosen = chosen
            best_state = copy.deepcopy(net.state_dict())
            wait = 0
        else:
            wait += 1
            if wait >= config.patience:
                break
    assert best_state is not None
    net.load_state_dict(best_state)
    net.eval()
    test_scores: dict[str, float] = {}
    output = None
    if x_test is not None and (y_test is not None or not isinstance(scoring, SceneScoring)):
        with torch.no_grad():
            probs = _probabilities(net(x_test.to(dev)), prediction_type).cpu()
        test_scores, output = scoring.test(probs, best_chosen)
    return net, ProbeRun(
        best_value, best_scores, test_scores, best_epoch, epoch, best_chosen, output
    )


@dataclass
class ProbeResult:
    """A probe protocol's outcome over seeds.

    Attributes:
        seeds: the seeds, in order.
        scores: ``{score name: [per-seed test score]}``, each the mean over the task's splits.
        fold_scores: ``{score name: [[per-split test score] per seed]}``.
        dropout: chosen dropout rate per seed (0.0 for the linear probe).
        grid_valid: per seed, the monitored validation value of each grid point.
        best_epochs: per seed, the best epoch of each split's probe.
        epochs: per seed, the epochs each split's probe trained.
        chosen: per seed, what each split's scoring chose on validation (event tasks: the
            post-processing), else empty.
        outputs: per seed, each split's kept test predictions (event tasks: events per file),
            else empty.
    """

    seeds: list[int]
    scores: dict[str, list[float]]
    fold_scores: dict[str, list[list[float]]]
    dropout: list[float]
    grid_valid: list[list[float]]
    best_epochs: list[list[int]]
    epochs: list[list[int]] = field(default_factory=list)
    chosen: list[list[Any]] = field(default_factory=list)
    outputs: list[list[Any]] = field(default_factory=list)


def _map(jobs: int, fn, items, stop: threading.Event):
    """``[fn(item) for item in items]`` in ``jobs`` threads. When one fails or the main thread
    is interrupted, ``stop`` is set, queued items are dropped and running ones end within an
    epoch, so Ctrl-C never waits for the rest of the trainings."""
    if jobs <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=jobs)
    futures = []
    try:
        futures = [pool.submit(fn, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()  # the first failure, not a later cancellation
        return [f.result() for f in futures]
    except BaseException:
        stop.set()
        for f in futures:
            f.cancel()
        raise
    finally:
        pool.shutdown(wait=True)


def evaluate_probe(
    data: ProbeData,
    seeds: Sequence[int],
    config: ProbeConfig = ProbeConfig(),
    *,
    jobs: int = 1,
    on_training: Callable[[int], None] | None = None,
    device: str | torch.device | None = None,
) -> ProbeResult:
    """Run the probe protocol (grid on the first split, then the other splits) for each seed.

    Args:
        data: the task's embeddings and targets.
        seeds: distinct probe seeds, e.g. ``range(10)``.
        config: hyper-parameters.
        jobs: trainings run in parallel threads (set torch's intra-op threads to 1 for best
            throughput when above 1); results do not depend on it.
        on_training: called with 1 after each training (progress).
        device: where the probes train (default: the CPU); see :func:`train_probe`.

    Returns:
        The per-seed scores and training records.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no seeds")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    unknown = [s for s in data.scores if s not in SCORES]
    if unknown and data.make_scoring is None:
        raise ValueError(f"unsupported scores {unknown}")
    for name, x in data.x.items():
        finite = np.isfinite(x)
        if not finite.all():
            raise ValueError(
                f"the embeddings of split {name} hold {int(finite.size - finite.sum())} "
                "non-finite values (NaN or inf)"
            )
    grid = config.grid()
    splits = list(data.splits)
    stacked = [(data.stack(s.train), data.stack(s.valid), data.stack(s.test)) for s in splits]
    scorings = [data.make_scoring(s) if data.make_scoring is not None else None for s in splits]
    for s, ((_, yt), _, _) in zip(splits, stacked, strict=True):
        if torch.unique(yt, dim=0).shape[0] < 2:
            raise ValueError(
                f"the training data ({', '.join(s.train)}) hold a single class; a probe needs "
                "at least two (a one-class task scores 100 % whatever the embedding)"
            )
    stop = threading.Event()

    def run(job: tuple[int, int, int]) -> ProbeRun:
        seed, split_index, grid_index = job
        (xt, yt), (xv, yv), (xs, ys) = stacked[split_index]
        _, record = train_probe(
            xt,
            yt,
            xv,
            yv,
            prediction_type=data.prediction_type,
            scores=data.scores,
            config=config,
            dropout=grid[grid_index],
            seed=training_seed(seed, split_index, grid_index),
            monitor_score=data.monitor_score,
            x_test=xs,
            y_test=ys,
            stop=stop,
            scoring=scorings[split_index],
            device=device,
        )
        if on_training is not None:
            on_training(1)
        return record

    first_jobs = [(seed, 0, gi) for seed in seeds for gi in range(len(grid))]
    first = dict(zip(first_jobs, _map(jobs, run, first_jobs, stop), strict=True))
    chosen = {}
    for seed in seeds:
        values = [first[(seed, 0, gi)].valid for gi in range(len(grid))]
        chosen[seed] = int(np.argmax(values))  # first best on ties
    rest_jobs = [(seed, si, chosen[seed]) for seed in seeds for si in range(1, len(splits))]
    rest = dict(zip(rest_jobs, _map(jobs, run, rest_jobs, stop), strict=True))

    result = ProbeResult(
        seeds=seeds,
        scores={name: [] for name in data.scores},
        fold_scores={name: [] for name in data.scores},
        dropout=[],
        grid_valid=[],
        best_epochs=[],
        epochs=[],
    )
    for seed in seeds:
        gi = chosen[seed]
        runs = [first[(seed, 0, gi)]] + [rest[(seed, si, gi)] for si in range(1, len(splits))]
        for name in data.scores:
            per_split = [r.test_scores[name] for r in runs]
            result.fold_scores[name].append(per_split)
            result.scores[name].append(float(np.mean(per_split)))
        result.dropout.append(grid[gi])
        result.grid_valid.append([first[(seed, 0, g)].valid for g in range(len(grid))])
        result.best_epochs.append([r.best_epoch for r in runs])
        result.epochs.append([r.epochs for r in runs])
        if data.make_scoring is not None:
            result.chosen.append([r.chosen for r in runs])
            result.outputs.append([r.test_output for r in runs])
    return result


def with_overrides(config: ProbeConfig, **changes) -> ProbeConfig:
    """``config`` with the non-None ``changes`` applied."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})
