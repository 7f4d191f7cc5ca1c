"""What a recipe sees of the trainer: the task protocol it implements, the summary
:meth:`axlstm.engine.trainer.Trainer.fit` returns, and the error a diverging run raises.

The progress hooks (:class:`axlstm.engine.trainer.TrainerCallback`) live with the trainer,
since each hook is handed the trainer itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from axlstm.data.stream import DataStream

__all__ = ["NonFiniteLossError", "TrainSummary", "TrainTask"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped before applying that update."""


class TrainTask(Protocol):
    """What the trainer needs from a recipe.

    Optional members, used when present:

    - ``metric_names(model) -> list[str]``: metrics ``training_loss`` returns beside the loss;
    - ``validate_every: int`` and ``validate(model, step, run_dir) -> dict[str, float]``: a
      validation every that many steps and at the end (rank 0, model in eval mode, no
      gradients), logged as ``valid/NAME``; it runs before a checkpoint of the same step is
      written;
    - ``param_groups(model) -> list[dict]``: the optimiser's parameter groups (``params``,
      ``weight_decay``, ``lr_scale``) instead of the engine's decay rule;
    - ``state_dict() -> dict`` and ``load_state_dict(state)``: the task's own progress (e.g.
      the best validation score, weight averages), saved in every checkpoint and restored
      on resume; tensors and plain values only.
    """

    def build_model(self) -> nn.Module: ...

    def model_config(self, model: nn.Module) -> dict[str, Any]: ...

    def model_class(self, model: nn.Module) -> str: ...

    def build_data(
        self,
        *,
        seed: int,
        rank: int,
        world: int,
        micro_batch: int,
        states: list[dict[str, Any]] | None,
        pin_memory: bool,
        model: nn.Module,
    ) -> DataStream: ...

    def training_loss(
        self,
        model: nn.Module,
        spec: torch.Tensor,
        generator: torch.Generator,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of a batch; or ``(loss, metrics)`` with scalar tensors named by
        ``metric_names`` (optional method), which are averaged and logged like the loss.
        Labelled data (items with a ``target``) pass the batch's ``(B, K)`` targets."""
        ...

    def finish(self, model: nn.Module, spec: torch.Tensor | None, run_dir: Path) -> None: ...


@dataclass
class TrainSummary:
    """The outcome of :meth:`Trainer.fit`."""

    run_dir: str
    start_step: int
    steps: int
    total_steps: int
    final_loss: float | None
    wall_s: float
    clips_per_s: float | None
    skipped: dict[str, int] = field(default_factory=dict)
    last_checkpoint: str | None = None
    stopped_early: bool = False
