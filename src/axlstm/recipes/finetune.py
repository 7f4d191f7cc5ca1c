"""The fine-tuning recipe: presets, the labelled data, one engine run per split or fold, the
test scores, the classifier release and the report.

Layout of ``OUT`` (one run) or ``OUT/<fold>/`` (k-fold data, one per held-out fold, e.g.
``OUT/fold01/``):

- the engine's run folder: ``config.yaml``, ``run.json``, ``log.jsonl``, ``valid.jsonl``,
  ``checkpoints/``, ``plots/``; ``best.pt`` (best validation) and ``averaged.pt`` (weight
  averaging, when configured);
- ``results.json``: the scores of the final, best and averaged weights on the test split (the
  held-out fold for k-fold data; the valid split when the data has no test split);
- ``classifier/``: the classifier release (:mod:`axlstm.finetune.release`) of the weights the
  recipe selects (averaged when weight averaging is on, else the best on validation, else the
  final ones).

``OUT/labels.json`` holds the label vocabulary, ``OUT/scores.json`` and ``OUT/report.md`` the
scores (k-fold: mean and 95 % Student-t interval over the folds); the engine's own
``summary.json`` (steps, wall time, clips/s) stays in each run folder.

k-fold data follow SSAST's ESC-50 protocol: the held-out fold is both validated on during
training and reported; the reported score is that of the final weights (or the averaged ones),
never a per-fold best, so no fold's number is picked on its own test data.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from axlstm.checkpoint.files import torch_load_weights
from axlstm.core.errors import ConfigError, UsageError
from axlstm.core.fileio import atomic_write_text, check_output_dir
from axlstm.engine.checkpoint import CheckpointManager
from axlstm.engine.trainer import Trainer, TrainerCallback
from axlstm.evaluation.builtin import builtin_tasks_dir, write_builtin_tasks
from axlstm.evaluation.cache import default_cache_dir
from axlstm.evaluation.stats import mean_ci
from axlstm.finetune.config import FinetuneConfig
from axlstm.finetune.data import EvalClips
from axlstm.finetune.labels import LabelledData, LabelledItem, load_labelled, subset_training
from axlstm.finetune.release import save_classifier
from axlstm.finetune.scoring import scores_of, split_probabilities
from axlstm.finetune.task import AVERAGED_NAME, BEST_NAME, FineTuneTask
from axlstm.recipes.pretrain import read_config

__all__ = ["finetune", "list_finetune_presets", "load_finetune_config", "resolve_data"]

logger = logging.getLogger(__name__)

LABELS_NAME = "labels.json"
RESULTS_NAME = "results.json"
SCORES_NAME = "scores.json"


# ------------------------------------------------------------------------------------ presets
def _preset_files() -> dict[str, Any]:
    folder = resources.files("axlstm.recipes") / "presets" / "finetune"
    return {e.name.rsplit(".", 1)[0]: e for e in folder.iterdir() if e.name.endswith(".yaml")}


def list_finetune_presets() -> list[str]:
    """Names of the shipped fine-tuning recipes (``axlstm finetune --config NAME``)."""
    return sorted(_preset_files())


def load_finetune_config(
    name_or_path: str | Path, overrides: list[str] | None = None
) -> FinetuneConfig:
    """A fine-tuning config from a shipped preset or a YAML file, with ``key=value``
    overrides."""
    return read_config(FinetuneConfig, name_or_path, _preset_files(), overrides)


# --------------------------------------------------------------------------------------- data
def resolve_data(cfg: FinetuneConfig) -> LabelledData:
    """The labelled data ``cfg.data.source`` names (``builtin:NAME`` is written to the cache
    once, as a HEAR task folder)."""
    d = cfg.data
    source = str(d.source)
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        folder = write_builtin_tasks(builtin_tasks_dir(default_cache_dir()), names=[name])[0]
        source = str(folder)
    return load_labelled(
        source,
        label_column=d.label_column,
        split_column=d.split_column,
        label_delimiter=d.label_delimiter,
        multilabel=d.multilabel,
        valid_fraction=d.valid_fraction,
        seed=cfg.engine.seed,
        missing=d.missing,
    )


def _runs(cfg: FinetuneConfig, data: LabelledData) -> list[tuple[str, dict[str, list]]]:
    """(name, splits) of every engine run: one, or one per held-out fold; the training split
    cut to ``data.train_fraction`` / ``data.train_per_class`` where those are set."""
    d = cfg.data
    if d.train_fraction >= 1.0 and d.train_per_class is None:
        return _all_runs(cfg, data)
    seed = cfg.engine.seed if d.subset_seed is None else d.subset_seed
    runs = []
    for name, splits in _all_runs(cfg, data):
        full = splits["train"]
        train = subset_training(full, fraction=d.train_fraction, per_class=d.train_per_class,
                                seed=seed)  # fmt: skip
        logger.info(
            "%straining on %d of %d clips (data.train_fraction=%g, data.train_per_class=%s, "
            "subset seed %d)",
            f"{name}: " if name else "",
            len(train),
            len(full),
            d.train_fraction,
            d.train_per_class,
            seed,
        )
        runs.append((name, {**splits, "train": train}))
    return runs


def _all_runs(cfg: FinetuneConfig, data: LabelledData) -> list[tuple[str, dict[str, list]]]:
    """(name, splits) of every engine run, with every training clip."""
    if not data.folds:
        splits = {k: data.splits.get(k, []) for k in ("train", "valid", "test")}
        if not splits["test"] and splits["valid"]:
            logger.info(
                "%s has no test split: the valid split is scored as test, and the score reported "
                "is that of the final (or averaged) weights, not of the best on valid",
                data.source,
            )
            splits["test"] = splits["valid"]
        if not splits["test"]:
            logger.warning(
                "%s has no valid or test clips (too few for data.valid_fraction=%g): the "
                "scores reported are on the training clips",
                data.source,
                cfg.data.valid_fraction,
            )
            splits["test"] = splits["train"]
        return [("", splits)]
    wanted = data.folds if cfg.data.folds == "all" else list(cfg.data.folds)
    try:  # as the manifest wrote them ("fold1", "1") or as the data names them ("fold01")
        wanted = list(dict.fromkeys(data.fold_name(f) for f in wanted))
    except UsageError as err:
        raise ConfigError(f"data.folds: {err}") from None
    runs = []
    for fold in wanted:
        split = data.fold_split(fold)
        name = fold if fold.startswith("fold") else f"fold_{fold}"
        runs.append((name, {"train": split["train"], "valid": split["test"],
                                      "test": split["test"]}))  # fmt: skip
    return runs


def _check_labels(out: Path, data: LabelledData, resume: bool) -> None:
    path = out / LABELS_NAME
    record = {"vocabulary": data.vocabulary, "multilabel": data.multilabel}
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not resume:
            raise UsageError(
                f"{out} already holds a fine-tuning run; pass --resume to continue it or "
                "choose another --out folder"
            )
        if saved != record:
            raise UsageError(
                f"--resume: the label vocabulary of {data.source} differs from the run's "
                f"({path}); fine-tune into a new --out folder"
            )
        return
    if resume:
        raise UsageError(f"--resume: nothing to resume in {out} (no {LABELS_NAME})")
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


# ----------------------------------------------------------------------------------- the run
def finetune(
    cfg: FinetuneConfig,
    out_dir: str | Path,
    resume: bool = False,
    callback: TrainerCallback | None = None,
) -> dict[str, Any]:
    """Fine-tune, test, release; returns the summary of the scores (also ``OUT/scores.json``)."""
    out = check_output_dir(Path(out_dir), "--out")
    data = resolve_data(cfg)
    # under torchrun every rank runs this function; rank 0 alone writes the run's own files
    main = int(os.environ.get("RANK", "0") or 0) == 0
    if main:
        logger.info("labelled data: %s", data.describe())
    runs = _runs(cfg, data)  # a bad data.folds is refused before the run folder is written
    if main:
        _check_labels(out, data, resume)
    results: dict[str, dict[str, Any]] = {}
    for name, splits in runs:
        run_dir = out / name if name else out
        done = run_dir / RESULTS_NAME
        if done.is_file():
            logger.info("%s is finished; its results are kept", run_dir)
            results[name or "run"] = json.loads(done.read_text(encoding="utf-8"))
            continue
        started = CheckpointManager(run_dir / "checkpoints", cleanup=False).latest() is not None
        task = FineTuneTask(cfg, data, splits)
        trainer = Trainer(cfg, run_dir, task, resume=started, callback=callback)
        summary = trainer.fit()
        if summary.stopped_early:
            raise KeyboardInterrupt("stopped early: continue with --resume")
        if main:
            results[name or "run"] = _test_and_release(cfg, data, task, trainer.model,
                                                       splits, run_dir)  # fmt: skip
    return _summarise(out, data, results) if main else {"runs": {}, "scores": {}}


def _test_and_release(cfg, data, task, model, splits, run_dir: Path) -> dict[str, Any]:
    """Score the final, best and averaged weights on the test split; release the selected
    ones; write ``results.json``."""
    items: list[LabelledItem] = splits["test"]
    model = model.eval()
    clips = EvalClips([it.path for it in items], model.front_end_config, task.frames,
                      cache_bytes=cfg.validation.cache_gb * 2**30)  # fmt: skip
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    scores: dict[str, dict[str, float]] = {}
    scored: list[int] = []  # the readable test clips, indices into items
    for which, path in (("final", None), ("best", BEST_NAME), ("averaged", AVERAGED_NAME)):
        if path is not None:
            if not (run_dir / path).is_file():
                continue
            model.load_state_dict(torch_load_weights(run_dir / path, "weights"))
        probs, scored = split_probabilities(model, clips.chunks(), data.multilabel,
                                            cfg.validation.batch_size)  # fmt: skip
        targets = torch.from_numpy(data.targets([items[i] for i in scored]))
        scores[which] = scores_of(probs, targets, data.multilabel)
        model.load_state_dict(final)
    chosen = "averaged" if "averaged" in scores else ("best" if "best" in scores else "final")
    if chosen != "final":
        kept = AVERAGED_NAME if chosen == "averaged" else BEST_NAME
        model.load_state_dict(torch_load_weights(run_dir / kept, "weights"))
    release = run_dir / "classifier"
    if release.exists():
        shutil.rmtree(release)
    save_classifier(
        model,
        release,
        labels=list(data.vocabulary),
        multilabel=data.multilabel,
        clip_seconds=cfg.data.clip_seconds,
        provenance={"source": "axlstm finetune", "weights": chosen, "data": data.source},
    )
    # the reported score: k-fold data, and data whose test split is its valid split, report
    # the final (or averaged) weights, never a best picked on the clips it is scored on
    picked_on_test = bool(data.folds) or (
        bool(splits["valid"]) and splits["test"] == splits["valid"]
    )
    reported = "averaged" if "averaged" in scores else ("final" if picked_on_test else chosen)
    result = {
        "scores": scores,
        "reported": reported,
        "release": str(release),
        "weights_released": chosen,
        "train_clips": len(splits["train"]),
        "test_clips": len(scored),
        "test_failed": clips.failed,
        "best_step": task.best_step,
    }
    atomic_write_text(run_dir / RESULTS_NAME, json.dumps(result, indent=2) + "\n")
    return result


def _summarise(out: Path, data: LabelledData, results: dict[str, dict]) -> dict[str, Any]:
    names = sorted({k for r in results.values() for k in r["scores"][r["reported"]]})
    per_score: dict[str, Any] = {}
    for name in names:
        values = [r["scores"][r["reported"]][name] for r in results.values()
                  if name in r["scores"][r["reported"]]]  # fmt: skip
        s = mean_ci(values)
        per_score[name] = {
            "mean": s.mean,
            "ci95": None if math.isnan(s.ci95) else s.ci95,
            "n": s.n,
            "values": values,
        }
    summary = {
        "data": data.source,
        "classes": len(data.vocabulary),
        "multilabel": data.multilabel,
        "runs": results,
        "scores": per_score,
    }
    atomic_write_text(out / SCORES_NAME, json.dumps(summary, indent=2) + "\n")
    lines = ["# Fine-tuning results", "", f"Data: {data.source}", "",
             "| score | mean | 95 % CI | runs |", "|---|---|---|---|"]  # fmt: skip
    for name, s in per_score.items():
        ci = f"± {s['ci95']:.4f}" if s["ci95"] is not None else "n/a"
        lines.append(f"| {name} | {s['mean']:.4f} | {ci} | {s['n']} |")
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    return summary
