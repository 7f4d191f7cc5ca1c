"""HEAR-protocol evaluation: task folders, cached embeddings, probes over seeds, statistics and
reports (docs/evaluation.md).

    from axlstm.evaluation import model_specs, prepare_tasks, run_evaluation
    tasks = prepare_tasks(["builtin"], builtin_dir="runs/tasks")
    report = run_evaluation(model_specs(["runs/release"]), tasks, "runs/eval", seeds=10)
"""

from axlstm.evaluation.builtin import BUILTIN_TASKS, builtin_task_names, write_builtin_tasks
from axlstm.evaluation.cache import EmbeddingError, default_cache_dir, task_embeddings
from axlstm.evaluation.embedders import ModelEmbedder, state_dict_sha256
from axlstm.evaluation.logmel_baseline import LOGMEL_NAME, LogMelBaseline, logmel_statistics
from axlstm.evaluation.metrics import (
    SCORES,
    chroma_accuracy,
    d_prime,
    mean_average_precision,
    top1_accuracy,
)
from axlstm.evaluation.probe import (
    ProbeConfig,
    ProbeData,
    ProbeNet,
    ProbeResult,
    evaluate_probe,
    train_probe,
)
from axlstm.evaluation.report import Outcome, Report, write_report
from axlstm.evaluation.resultlog import RESULTS_LOG, ResultLog, outcome_fingerprint
from axlstm.evaluation.runner import (
    BUILTIN,
    ModelSpec,
    TaskSpec,
    default_jobs,
    model_specs,
    prepare_tasks,
    run_evaluation,
)
from axlstm.evaluation.stats import (
    Summary,
    aggregate_over_tasks,
    mean_ci,
    normalized_scores,
    student_t_ppf,
)
from axlstm.evaluation.tasks import (
    DataSplit,
    Task,
    TaskFormatError,
    UnsupportedTaskError,
    find_tasks,
    load_task,
)

__all__ = [
    "BUILTIN",
    "BUILTIN_TASKS",
    "LOGMEL_NAME",
    "RESULTS_LOG",
    "SCORES",
    "DataSplit",
    "EmbeddingError",
    "LogMelBaseline",
    "ModelEmbedder",
    "ModelSpec",
    "Outcome",
    "ProbeConfig",
    "ProbeData",
    "ProbeNet",
    "ProbeResult",
    "Report",
    "ResultLog",
    "Summary",
    "Task",
    "TaskFormatError",
    "TaskSpec",
    "UnsupportedTaskError",
    "aggregate_over_tasks",
    "builtin_task_names",
    "chroma_accuracy",
    "d_prime",
    "default_cache_dir",
    "default_jobs",
    "evaluate_probe",
    "find_tasks",
    "load_task",
    "logmel_statistics",
    "mean_average_precision",
    "mean_ci",
    "model_specs",
    "normalized_scores",
    "outcome_fingerprint",
    "prepare_tasks",
    "run_evaluation",
    "state_dict_sha256",
    "student_t_ppf",
    "task_embeddings",
    "top1_accuracy",
    "train_probe",
    "write_builtin_tasks",
    "write_report",
]
