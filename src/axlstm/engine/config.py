"""Typed configuration: dataclass trees built from YAML mappings and ``key.sub=value`` overrides.

Values are checked and converted against the dataclass field types (``int``, ``float``,
``bool``, ``str``, ``Literal[...]``, ``X | None``, ``list[X]``, ``tuple[X, Y]``,
``dict[str, X]`` and nested dataclasses), and unknown keys are errors that name the closest
known key. Sections whose config has a ``validate()`` method are validated after every change.

The engine's own sections (optimiser, schedule, engine, logging) live here too.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "ConfigError",
    "EngineConfig",
    "LoggingConfig",
    "OptimConfig",
    "ScheduleConfig",
    "apply_overrides",
    "coerce_value",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "diff_configs",
    "set_value",
    "validate_tree",
]


class ConfigError(ValueError):
    """A configuration value or key that does not fit the typed config."""


# ------------------------------------------------------------------------------- the sections
@dataclass
class OptimConfig:
    """AdamW and its batch-size rule (SPEC §5); Adam for the original SSAST.

    Attributes:
        name: "adamw" (decoupled weight decay; AxLSTM, SSAMBA) or "adam" (decay added to the
            gradient as L2: the original SSAST, SPEC-SSAST-SSAMBA §A8).
        global_batch: clips per optimiser step over all ranks and accumulation micro-batches.
        base_lr: learning rate per 256 clips: the peak is ``base_lr * global_batch / 256``.
        lr: absolute peak learning rate; overrides the rule when set.
        min_lr: floor the cosine decays to.
        betas, eps: AdamW moments.
        weight_decay: decay strength (see ``weight_decay_scope``).
        weight_decay_scope: "weights" (weight matrices only; tensors with ndim <= 1 and biases
            get none, timm's ``param_groups_weight_decay``) or "all" (every trainable
            parameter, as the SSAST/SSAMBA optimisers over ``model.parameters()``).
        grad_accum: micro-batches per optimiser step.
        clip_grad_norm: clip the global gradient norm to this (None: no clipping, as officially).
    """

    name: Literal["adamw", "adam"] = "adamw"
    global_batch: int = 1024
    base_lr: float = 1.5e-4
    lr: float | None = None
    min_lr: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.05
    weight_decay_scope: Literal["weights", "all"] = "weights"
    grad_accum: int = 1
    clip_grad_norm: float | None = None

    def validate(self) -> None:
        if self.global_batch <= 0 or self.grad_accum <= 0:
            raise ConfigError("optim.global_batch and optim.grad_accum must be positive")
        if self.global_batch % self.grad_accum:
            raise ConfigError(
                f"optim.global_batch={self.global_batch} is not divisible by "
                f"optim.grad_accum={self.grad_accum}"
            )
        if self.base_lr < 0 or (self.lr is not None and self.lr < 0) or self.min_lr < 0:
            raise ConfigError("learning rates must be >= 0")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas must be in [0, 1), got {self.betas}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ConfigError("optim.clip_grad_norm must be positive (or null for no clipping)")
        if self.weight_decay < 0:
            raise ConfigError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")

    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else self.base_lr * self.global_batch / 256


@dataclass
class ScheduleConfig:
    """Length of training and the per-step learning-rate schedule: a warm-up, then a
    half-cosine (AxLSTM) or ReduceLROnPlateau on a logged metric (SSAST/SSAMBA).

    Attributes:
        epochs: training length in epochs.
        steps_per_epoch: optimiser steps per epoch (2003 for AudioSet at batch 1024); null
            derives it from the data size when that is known.
        warmup_epochs: linear warm-up from 0 to the peak.
        max_steps: total steps; overrides ``epochs``. The warm-up then keeps its share of
            the run (``warmup_epochs / epochs``) unless ``warmup_steps`` is given.
        warmup_steps: warm-up length in steps; overrides ``warmup_epochs``.
        warmup_stair: the warm-up lr changes every this many steps (1: a linear ramp; the
            official SSAST/SSAMBA loop resets it to ``step / 1000 * peak`` every 50 steps).
        decay: after the warm-up, "cosine" (half-cosine to ``optim.min_lr`` at the end) or
            "plateau" (the peak, multiplied by ``plateau_factor`` whenever ``plateau_metric``
            has not improved for more than ``plateau_patience`` checks; never below
            ``optim.min_lr``).
        plateau_every: steps between plateau checks (SSAST: 800 tiny, 4000 base). The metric
            is the mean of the training records over those steps: the official code measures
            MPC accuracy on the AudioSet evaluation set instead, which this trainer does not
            hold.
        plateau_metric: a metric the task logs ("acc", "nce", "mse" for SSAST/SSAMBA) or
            "loss".
        plateau_mode: "max" (accuracy) or "min" (a loss).
        plateau_factor, plateau_patience, plateau_threshold: ReduceLROnPlateau's factor (0.5),
            patience (2) and relative threshold (1e-4).
    """

    epochs: float = 100.0
    steps_per_epoch: int | None = 2003
    warmup_epochs: float = 10.0
    max_steps: int | None = None
    warmup_steps: int | None = None
    warmup_stair: int = 1
    decay: Literal["cosine", "plateau"] = "cosine"
    plateau_every: int = 4000
    plateau_metric: str = "acc"
    plateau_mode: Literal["max", "min"] = "max"
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    plateau_threshold: float = 1e-4

    def validate(self) -> None:
        if self.epochs <= 0 or self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ConfigError("need 0 <= schedule.warmup_epochs <= schedule.epochs, epochs > 0")
        if self.steps_per_epoch is not None and self.steps_per_epoch <= 0:
            raise ConfigError("schedule.steps_per_epoch must be positive (or null)")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError("schedule.max_steps must be positive (or null)")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError("schedule.warmup_steps must be >= 0 (or null)")
        if self.warmup_stair < 1 or self.plateau_every < 1 or self.plateau_patience < 0:
            raise ConfigError(
                "schedule.warmup_stair and schedule.plateau_every must be >= 1, "
                "schedule.plateau_patience >= 0"
            )
        if not 0.0 < self.plateau_factor < 1.0 or self.plateau_threshold < 0:
            raise ConfigError(
                "schedule.plateau_factor must be in (0, 1) and schedule.plateau_threshold >= 0"
            )

    def resolve(self, num_items: int | None, global_batch: int) -> tuple[int, int, int]:
        """``(total_steps, warmup_steps, steps_per_epoch)`` for this run."""
        spe = self.steps_per_epoch
        if spe is None:
            if not num_items:
                if self.max_steps is None or self.warmup_steps is None:
                    raise ConfigError(
                        "schedule.steps_per_epoch is null and the data size is unknown "
                        "(shards without index.json); set schedule.steps_per_epoch, or both "
                        "schedule.max_steps and schedule.warmup_steps"
                    )
                spe = max(1, self.max_steps)
            else:
                spe = max(1, num_items // global_batch)
        total = self.max_steps if self.max_steps is not None else round(self.epochs * spe)
        if self.warmup_steps is not None:
            warmup = self.warmup_steps
        elif self.max_steps is not None:
            warmup = round(total * self.warmup_epochs / self.epochs)
        else:
            warmup = round(self.warmup_epochs * spe)
        return max(1, total), min(warmup, total), spe


@dataclass
class EngineConfig:
    """Where and how the loop runs, and how it checkpoints.

    Attributes:
        device: "auto" (CUDA when available, one GPU per local rank), "cpu", "cuda" or
            "cuda:N" (single process).
        precision: fp32, bf16 or fp16 (CUDA autocast; fp16 with a GradScaler). On CPU the run
            always uses fp32 and says so when something else was asked.
        seed: base seed; rank r seeds its RNGs with seed + r (as officially). Masks come from
            a generator owned by the trainer, reseeded from (seed, rank, micro-batch).
        deterministic: ask PyTorch for deterministic kernels (slower on CUDA).
        num_threads: torch intra-op threads (0: PyTorch's default).
        tf32: allow TF32 matmuls and convolutions on CUDA (as officially).
        ckpt_every: steps between checkpoints (one is always written at the end).
        keep_last: numbered checkpoints kept besides ``last.pt``.
        check_finite_every: steps between loss finiteness checks (each one syncs the device).
        crash_after_step: testing hook: SIGKILL this process right after step N (and its
            checkpoint, if one is due) to rehearse a crash. Never set it in real runs.
    """

    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp16"
    seed: int = 0
    deterministic: bool = False
    num_threads: int = 0
    tf32: bool = True
    ckpt_every: int = 4006
    keep_last: int = 5
    check_finite_every: int = 1
    crash_after_step: int | None = None

    def validate(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"engine.seed must be >= 0, got {self.seed}")
        if self.ckpt_every <= 0 or self.keep_last < 1 or self.check_finite_every < 1:
            raise ConfigError(
                "engine.ckpt_every, engine.keep_last and engine.check_finite_every must be >= 1"
            )
        if self.num_threads < 0:
            raise ConfigError("engine.num_threads must be >= 0")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
            raise ConfigError(f"engine.device must be auto, cpu, cuda or cuda:N, got {dev!r}")


@dataclass
class LoggingConfig:
    """What the run records.

    Attributes:
        log_every: steps between records in log.jsonl / log.csv / TensorBoard.
        tensorboard: write TensorBoard events when the ``tensorboard`` package is installed.
        csv: also write log.csv.
        plots: write plots/loss.png and plots/reconstruction.png at the end.
        recon_clips: clips shown in the reconstruction plot.
    """

    log_every: int = 50
    tensorboard: bool = True
    csv: bool = True
    plots: bool = True
    recon_clips: int = 4

    def validate(self) -> None:
        if self.log_every < 1 or self.recon_clips < 1:
            raise ConfigError("logging.log_every and logging.recon_clips must be >= 1")


# ------------------------------------------------------------------------- typed conversion
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` converted to type ``tp``, or a :class:`ConfigError` naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        is_null = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_null and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {tp}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return config_from_dict(tp, value, key)
        raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    f = None
                if f is not None and f.is_integer():
                    return int(f)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is list:
        if isinstance(value, str):
            value = [value]  # `--set data.paths=/x` means a one-element list
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = args or (Any,)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}: {value!r}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in pairs)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: cannot convert {value!r} to {_type_name(tp)}")


def coerce_value(value: Any, tp: Any, key: str = "value") -> Any:
    """``value`` converted to type ``tp`` (a field annotation), or a :class:`ConfigError`
    naming ``key``; the conversion the config tree applies to every field."""
    return _coerce(value, tp, key)


def _unknown_key(cls: type, name: str, prefix: str) -> ConfigError:
    known = [f.name for f in dataclasses.fields(cls)]
    where = f"{prefix}.{name}" if prefix else name
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {where!r}{hint} (known: {', '.join(known)})")


def validate_tree(cfg: Any) -> None:
    """Call ``validate()`` on every dataclass in the tree that has one; wrap its errors."""
    for f in dataclasses.fields(cfg):
        sub = getattr(cfg, f.name)
        if dataclasses.is_dataclass(sub):
            validate_tree(sub)
    check = getattr(cfg, "validate", None)
    if callable(check):
        try:
            check()
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(str(err)) from err


def config_from_dict(cls: type, data: dict[str, Any] | None, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a (possibly partial) nested mapping; defaults fill gaps."""
    data = dict(data or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        if k not in names:
            raise _unknown_key(cls, str(k), prefix)
        kwargs[k] = _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k)
    obj = cls(**kwargs)
    if not prefix:
        validate_tree(obj)
    return obj


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (lists, not tuples), ready for YAML/JSON or a weights-only checkpoint."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def config_to_yaml(cfg: Any, path: str | Path | None = None) -> str:
    """The config as YAML text; also written to ``path`` when given."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)
    if path is not None:
        Path(path).write_text(text)
    return text


def parse_value(text: str) -> Any:
    """A command-line value read as YAML (``3``, ``1.5e-4``, ``true``, ``null``, ``[a, b]``,
    ``{depth: 4}``); anything YAML cannot read stays a string."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def set_value(cfg: Any, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a config tree; ``value`` is converted to the field's type.

    Dict-typed fields accept sub-keys: ``model.overrides.depth=4`` sets one entry.
    """
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"invalid config key {dotted!r}")
    obj, prefix = cfg, ""
    for i, name in enumerate(parts):
        if not dataclasses.is_dataclass(obj):
            raise ConfigError(f"{prefix} is not a section; cannot set {dotted!r}")
        if name not in {f.name for f in dataclasses.fields(obj)}:
            raise _unknown_key(type(obj), name, prefix)
        tp = _hints(type(obj))[name]
        key = f"{prefix}.{name}" if prefix else name
        rest = parts[i + 1 :]
        if not rest:
            setattr(obj, name, _coerce(value, tp, key))
            return
        current = getattr(obj, name)
        if isinstance(current, dict) and typing.get_origin(tp) is dict:
            node = current
            for sub in rest[:-1]:
                node = node.setdefault(sub, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{key}: {sub!r} is not a mapping")
            node[rest[-1]] = value
            setattr(obj, name, _coerce(current, tp, key))
            return
        obj, prefix = current, key
    raise ConfigError(f"invalid config key {dotted!r}")


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Apply ``key.sub=value`` strings in order, then validate the tree; returns ``cfg``."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, text = item.split("=", 1)
        set_value(cfg, key.strip(), parse_value(text))
    validate_tree(cfg)
    return cfg


def diff_configs(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two plain config dicts."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(diff_configs(a, b, key))
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out
