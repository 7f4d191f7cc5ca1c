"""The training engine: one loop that owns distribution, precision, checkpoints and logging.

Entry points:
    Trainer(cfg, run_dir, task, resume=...).fit()   train a task (see axlstm.recipes)
    setup_distributed(device)                       torchrun environment -> process group
    CheckpointManager / load_checkpoint             atomic, weights-only training checkpoints
    export_release(checkpoint, out_dir)             training checkpoint -> release folder
"""

from __future__ import annotations

from axlstm.engine.checkpoint import (
    CheckpointError,
    CheckpointManager,
    atomic_save,
    capture_rng,
    export_release,
    load_checkpoint,
    restore_rng,
)
from axlstm.engine.config import (
    ConfigError,
    EngineConfig,
    LoggingConfig,
    OptimConfig,
    ScheduleConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
)
from axlstm.engine.distributed import DistInfo, setup_distributed, teardown_distributed
from axlstm.engine.optim import (
    WarmupCosine,
    WarmupPlateau,
    build_optimizer,
    param_groups_weight_decay,
)
from axlstm.engine.precision import Precision, resolve_precision
from axlstm.engine.trainer import (
    NonFiniteLossError,
    Trainer,
    TrainerCallback,
    TrainSummary,
    TrainTask,
)

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "ConfigError",
    "DistInfo",
    "EngineConfig",
    "LoggingConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "Precision",
    "ScheduleConfig",
    "TrainSummary",
    "TrainTask",
    "Trainer",
    "TrainerCallback",
    "WarmupCosine",
    "WarmupPlateau",
    "apply_overrides",
    "atomic_save",
    "build_optimizer",
    "capture_rng",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "export_release",
    "load_checkpoint",
    "param_groups_weight_decay",
    "resolve_precision",
    "restore_rng",
    "setup_distributed",
    "teardown_distributed",
]
