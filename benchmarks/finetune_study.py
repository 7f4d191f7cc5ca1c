"""Fine-tuning study on the built-in procedural tasks (issue 12, item 9; docs/finetuning.md,
"Measured").

One command measures, on CPU, with no download:

1. pretraining of the demo's small AxLSTM (``axlstm pretrain --config demo``: width 64,
   depth 4, 160 steps of 16 procedural clips) and its export as a release;
2. the frozen MLP probe of that release (``axlstm evaluate``: HEAR protocol, mean ± 95 %
   Student-t interval over probe seeds) on the chosen built-in tasks;
3. full fine-tuning of the same release (``axlstm finetune --config debug`` with a longer
   schedule) over several ``engine.seed`` values, and the same fine-tuning of the same
   architecture from random weights (preset ``axlstm_tiny`` with the demo's size overrides);
   mean ± 95 % Student-t interval over the seeds, and the pretrained-minus-random difference
   paired by seed; then variants of the pretrained fine-tuning (``--variants``: the head alone,
   a lower lr) and both initialisations with longer schedules (``--long-epochs``), also with
   extra settings for both (``--long-variants``, e.g. layer-wise lr decay);
4. fine-tuning throughput (clips/s, the engine's per-step figure in ``log.jsonl``, median over
   the steps after the first, then over ``--tp-repeats`` runs) of the tiny presets at 1 s and
   2 s clips.

Everything goes through the command line (each step is one ``axlstm`` command, printed before
it runs, so every figure can be reproduced by hand). Finished steps are reused: running the
script again with the same ``--out`` only recomputes what is missing. Writes
``OUT/study.json`` and prints the Markdown tables.

    python benchmarks/finetune_study.py --out runs/ftstudy
    python benchmarks/finetune_study.py --out runs/ftstudy --seeds 3 --epochs 6 --jobs 2
    python benchmarks/finetune_study.py --out runs/ftstudy --only throughput --tp-threads 1 2

Only the longer schedule, reusing an earlier study's release and probe (``--seeds 0`` and an
empty ``--variants`` skip the short runs)::

    python benchmarks/finetune_study.py --out runs/ftlong --cache runs/ftstudy/cache \
        --release runs/ftstudy/release --probe-from runs/ftstudy/probe --only finetune \
        --seeds 0 --variants --long-epochs 64 --long-seeds 3 --long-tasks timbre

Several schedules, each also with layer-wise lr decay for both initialisations::

    python benchmarks/finetune_study.py ... --long-epochs 16 32 64 \
        --long-variants llrd:optim.layer_decay=0.75

Label efficiency: only 4 labelled clips per class, for the same number of steps, and not
the whole training split again::

    python benchmarks/finetune_study.py ... --long-epochs 32 --long-per-class 4 \
        --skip-long-plain
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

AXLSTM = [sys.executable, "-m", "axlstm.cli.main"]
PRETRAIN_STEPS = 160  # the demo recipe's max_steps


def _cmd_text(cmd: list[str]) -> str:
    return shlex.join(["axlstm", *cmd[len(AXLSTM) :]])


def _run(cmd: list[str], log: Path, env: dict[str, str]) -> float:
    """Run one axlstm command (output to ``log``); return its wall time in seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ {_cmd_text(cmd)}", flush=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - start
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"exit {code}: {_cmd_text(cmd)}\n(log {log})\n{tail}")
    return wall


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _ci(values: list[float]) -> dict:
    from axlstm.evaluation.stats import mean_ci

    s = mean_ci(values)
    ci = None if s.ci95 != s.ci95 else s.ci95  # NaN with one value
    return {"mean": s.mean, "ci95": ci, "n": s.n, "values": values}


def _cell(entry: dict | None, scale: float = 100.0) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    ci = entry.get("ci95")
    tail = f" ± {ci * scale:.1f}" if ci is not None else ""
    return f"{entry['mean'] * scale:.1f}{tail}"


def _demo_overrides() -> dict:
    from axlstm.recipes import load_config

    return dict(load_config("demo", ["model.name=axlstm_tiny"]).model.overrides)


def _yaml_inline(d: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"


def _tree_digest(folder: Path) -> str:
    """SHA-256 over the relative names and bytes of a folder's audio and metadata files."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != ".axlstm_builtin.json" and not p.name.startswith("."):
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- 1. pretraining
def pretrain_and_export(out: Path, env: dict, threads: int, record: dict) -> Path:
    run, release = out / "pretrain", out / "release"
    summary = _json(run / "summary.json")
    if not (summary and summary.get("steps") == PRETRAIN_STEPS
            and (run / "checkpoints" / "last.pt").is_file()):  # fmt: skip
        cmd = [*AXLSTM, "pretrain", "--config", "demo", "--out", str(run), "--no-progress",
               "--set", f"engine.num_threads={threads}"]  # fmt: skip
        if (run / "checkpoints" / "last.pt").is_file():
            cmd.append("--resume")
        _run(cmd, out / "logs" / "pretrain.log", env)
        summary = _json(run / "summary.json")
    record["pretrain"] = {
        "command": "axlstm pretrain --config demo --out OUT/pretrain --set "
        f"engine.num_threads={threads}",
        "steps": summary["steps"],
        "wall_s": summary["wall_s"],
        "clips_per_s": summary["clips_per_s"],
        "final_loss": summary["final_loss"],
    }
    if not (release / "model.safetensors").is_file():
        _run([*AXLSTM, "export", str(run / "checkpoints" / "last.pt"), str(release)],
             out / "logs" / "export.log", env)  # fmt: skip
    return release


def count_parameters(release: Path, overrides: dict) -> dict:
    """Encoder parameters of the pretrained release and of the random-weights preset."""
    import axlstm
    from axlstm.models import create_model

    pre = axlstm.load_model(str(release))
    rnd = create_model("axlstm_tiny", **overrides)
    models = (("pretrained", pre), ("random", rnd))
    n = {k: sum(p.numel() for p in m.parameters()) for k, m in models}
    shapes = {k: {name: tuple(p.shape) for name, p in m.named_parameters()} for k, m in models}
    return {"encoder_parameters": n, "same_shapes": shapes["pretrained"] == shapes["random"]}


# ------------------------------------------------------------------------------- 2. probe
def probe(out: Path, env: dict, release: Path, tasks: list[str], seeds: int, jobs: int,
          threads: int, record: dict) -> dict:  # fmt: skip
    report = out / "probe"
    results = _json(report / "results.json")
    wall = None
    if not results or "axlstm_pretrained" not in results:
        cmd = [*AXLSTM, "evaluate", "--model", f"axlstm_pretrained={release}", "--tasks",
               "builtin:" + ",".join(tasks), "--out", str(report), "--seeds", str(seeds),
               "--jobs", str(jobs), "--threads", str(threads), "--no-charts",
               "--no-progress"]  # fmt: skip
        wall = _run(cmd, out / "logs" / "probe.log", env)
        results = _json(report / "results.json")
    record["probe"] = {
        "command": "axlstm evaluate --model axlstm_pretrained=OUT/release --tasks "
        f"builtin:{','.join(tasks)} --out OUT/probe --seeds {seeds} --jobs {jobs} "
        f"--threads {threads} --no-charts",
        "wall_s": wall,
        "results": results,
    }
    return results


# --------------------------------------------------------------------------- 3. fine-tuning
def ft_overrides(epochs: int, seed: int, threads: int) -> list[str]:
    first = epochs // 2 + 1  # weight averaging over the second half of the epochs
    return [f"engine.seed={seed}", f"engine.num_threads={threads}",
            f"validation.average_from={first}", f"validation.average_to={epochs}"]  # fmt: skip


def label_budget(task: str, per_class: int) -> list[str]:
    """``--set`` values that train on ``per_class`` labelled clips per class (seeded by
    ``engine.seed``) for as many optimiser steps as the whole training split would give: an
    epoch keeps the full data's length, so both budgets are measured in the same steps."""
    from axlstm.evaluation.builtin import BUILTIN_TASKS
    from axlstm.recipes.finetune import load_finetune_config

    batch = load_finetune_config("debug").optim.global_batch
    full = BUILTIN_TASKS[task].split_sizes()["train"]
    steps = max(1, full // batch)
    return [f"data.train_per_class={per_class}", f"schedule.steps_per_epoch={steps}"]


def ft_command(model: str, task: str, run: Path, epochs: int, seed: int, threads: int,
               model_overrides: dict | None, extra: list[str] = ()) -> list[str]:  # fmt: skip
    sets = ft_overrides(epochs, seed, threads) + list(extra)
    if model_overrides:
        sets.append(f"model.overrides={_yaml_inline(model_overrides)}")
    return [*AXLSTM, "finetune", "--config", "debug", "--model", model, "--data",
            f"builtin:{task}", "--out", str(run), "--epochs", str(epochs), "--no-progress",
            "--set", *sets]  # fmt: skip


_PARAMS = re.compile(r"fine-tuning mode (\w+): (\d+) trainable, (\d+) frozen, (\d+) unused")


def _median_rate(log_jsonl: Path, skip_first: int = 1) -> float | None:
    try:
        rows = [json.loads(x) for x in log_jsonl.read_text().splitlines() if x.strip()]
    except OSError:
        return None
    rates = [r["clips_per_s"] for r in rows[skip_first:] if r.get("clips_per_s")]
    return statistics.median(rates) if rates else None


def finetune_one(job: dict, env: dict) -> dict:
    run: Path = job["run"]
    log = job["log"]
    summary = _json(run / "scores.json")
    wall = None
    if not (summary and "scores" in summary):
        cmd = job["cmd"] + (["--resume"] if (run / "labels.json").is_file() else [])
        wall = _run(cmd, log, env)
        summary = _json(run / "scores.json")
    res = summary["runs"]["run"]
    if wall is None:  # a reused run: from its start (run.json) to its summary
        from datetime import datetime

        started = (_json(run / "run.json") or {}).get("started")
        if started:
            start = datetime.fromisoformat(started).timestamp()
            wall = (run / "scores.json").stat().st_mtime - start
    m = _PARAMS.search(log.read_text(errors="replace")) if log.is_file() else None
    return {
        "task": job["task"],
        "init": job["init"],
        "extra_sets": job["extra"],
        "epochs": job["epochs"],
        "seed": job["seed"],
        "reported": res["reported"],
        "acc": summary["scores"]["acc"]["mean"],
        "acc_final": res["scores"]["final"]["acc"],
        "acc_best": res["scores"].get("best", {}).get("acc"),
        "acc_averaged": res["scores"].get("averaged", {}).get("acc"),
        "best_step": res["best_step"],
        "train_clips": res.get("train_clips"),
        "test_clips": res["test_clips"],
        "trainable_parameters": int(m.group(2)) if m else None,
        "wall_s": round(wall, 1) if wall is not None else None,
        "median_clips_per_s": _median_rate(run / "log.jsonl"),
    }


def parse_variants(specs: list[str]) -> dict[str, list[str]]:
    """``NAME:key=value|key=value`` -> {NAME: [key=value, ...]}."""
    out = {}
    for spec in specs:
        name, _, sets = spec.partition(":")
        if not name or not sets:
            raise SystemExit(f"--variants: expected NAME:key=value[|key=value], got {spec!r}")
        out[name] = sets.split("|")
    return out


def finetune_all(out: Path, env: dict, release: Path, overrides: dict, tasks: list[str],
                 seeds: int, epochs: int, jobs: int, threads: int,
                 variants: dict[str, list[str]] | None = None, variant_seeds: int = 0,
                 long_epochs: list[int] = (), long_seeds: int = 0,
                 long_tasks: list[str] = (),
                 long_variants: dict[str, list[str]] | None = None,
                 per_class: list[int] = (), long_plain: bool = True) -> list[dict]:  # fmt: skip
    """The fine-tuning runs: pretrained and random init for every task and seed; each variant
    (extra ``--set`` values, pretrained init) for ``variant_seeds`` seeds; both inits with each
    longer schedule (``long_epochs``) on ``long_tasks`` for ``long_seeds`` seeds, as they are
    and with each of ``long_variants`` (extra ``--set`` values for both inits), and with
    ``per_class`` labelled clips per class (``kN``: :func:`label_budget`). ``long_plain=False``
    leaves out the longer schedules' runs without a variant."""
    todo = []

    def add(task, init, seed, model, mo, extra=(), n_epochs=epochs):
        run = out / "ft" / task / init / f"seed{seed}"
        todo.append({
            "task": task, "init": init, "seed": seed, "run": run, "extra": list(extra),
            "epochs": n_epochs,
            "log": out / "logs" / "ft" / f"{task}_{init}_seed{seed}.log",
            "cmd": ft_command(model, task, run, n_epochs, seed, threads, mo, extra),
        })  # fmt: skip

    for seed in range(seeds):  # seed-major: an interrupted study leaves whole seeds
        for task in tasks:
            add(task, "pretrained", seed, str(release), None)
            add(task, "random", seed, "axlstm_tiny", overrides)
    for name, extra in (variants or {}).items():
        for seed in range(variant_seeds):
            for task in tasks:
                add(task, f"pretrained+{name}", seed, str(release), None, extra)
    per_task = {name: (lambda task, e=extra: e) for name, extra in (long_variants or {}).items()}
    per_task.update({f"k{k}": (lambda task, k=k: label_budget(task, k)) for k in per_class})
    if long_plain:
        per_task = {"": lambda task: [], **per_task}
    for n_epochs in (n for n in long_epochs if n > 0):
        for name, extra_for in per_task.items():
            tag = f"-{n_epochs}ep" + (f"+{name}" if name else "")
            for seed in range(long_seeds):
                for task in long_tasks:
                    extra = extra_for(task)
                    add(task, f"pretrained{tag}", seed, str(release), None, extra, n_epochs)
                    add(task, f"random{tag}", seed, "axlstm_tiny", overrides, extra, n_epochs)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda j: finetune_one(j, env), todo))


# ---------------------------------------------------------------------------- 4. throughput
def throughput(out: Path, env: dict, presets: list[str], seconds: list[float],
               threads_list: list[int], steps: int, batch: int,
               repeats: int = 2) -> list[dict]:  # fmt: skip
    """Fine-tuning clips/s per preset, clip length and thread count: each run's median over
    its steps after the first (the engine's per-step ``clips_per_s``, ``logging.log_every=1``),
    then the median over ``repeats`` runs. Runs are sequential (nothing else of this study
    runs meanwhile); the 1-minute load average before each run is recorded."""
    import shutil

    import torch

    from axlstm.models import create_model

    rows = []
    for threads in threads_list:
        for preset in presets:
            params = sum(p.numel() for p in create_model(preset).parameters())
            for sec in seconds:
                per_run = []
                for rep in range(repeats):
                    name = f"{preset}_{sec:g}s_t{threads}" + (f"_r{rep}" if rep else "")
                    run = out / "throughput" / name
                    measured = _json(run / "measure.json")
                    if not measured:
                        if run.exists():
                            shutil.rmtree(run)
                        load = os.getloadavg()[0]
                        cmd = [*AXLSTM, "finetune", "--config", "debug", "--model", preset,
                               "--data", "builtin:timbre", "--out", str(run), "--max-steps",
                               str(steps), "--no-progress", "--set",
                               f"data.clip_seconds={sec:g}", f"optim.global_batch={batch}",
                               f"engine.num_threads={threads}", "logging.log_every=1",
                               "validation.every_epochs=1000", "validation.average_from=null",
                               "validation.average_to=null", "engine.ckpt_every=1000"]  # fmt: skip
                        wall = _run(cmd, out / "logs" / "throughput" / f"{name}.log", env)
                        measured = {
                            "median_clips_per_s": _median_rate(run / "log.jsonl", skip_first=1),
                            "wall_s": round(wall, 2),
                            "loadavg_1min_before": round(load, 2),
                        }
                        (run / "measure.json").write_text(json.dumps(measured) + "\n")
                    per_run.append(measured)
                rates = [m["median_clips_per_s"] for m in per_run if m["median_clips_per_s"]]
                rate = statistics.median(rates) if rates else None
                rows.append({
                    "preset": preset, "parameters": params, "clip_seconds": sec,
                    "batch": batch, "threads": threads, "steps": steps,
                    "median_clips_per_s": rate, "runs": per_run,
                    "s_per_step": batch / rate if rate else None,
                    "torch": torch.__version__,
                })  # fmt: skip
    return rows


# ------------------------------------------------------------------------------- the tables
def tables(study: dict) -> str:
    lines = []
    runs, probe_res = study.get("finetune", []), (study.get("probe") or {}).get("results") or {}
    if runs:
        lines += [
            "| task (test clips) | epochs | frozen MLP probe | fine-tuned, pretrained "
            "| fine-tuned, random init | pretrained minus random (paired by seed) |",
            "|---|---|---|---|---|---|",
        ]
        longer = {
            (r["init"][len("pretrained") :], r["epochs"])
            for r in runs
            if r["init"].startswith("pretrained-")
        }
        schedules = [("", study["settings"]["epochs"]), *sorted(longer, key=lambda t: t[::-1])]
        for task in study["settings"]["tasks"]:
            pr = (probe_res.get("axlstm_pretrained") or {}).get(task)
            n_probe = len(pr["scores"]) if pr and pr.get("scores") else 0
            for tag, epochs in schedules:
                by = {
                    init: sorted(
                        (r for r in runs if r["task"] == task and r["init"] == init + tag),
                        key=lambda r: r["seed"],
                    )
                    for init in ("pretrained", "random")
                }
                if not by["pretrained"] or len(by["pretrained"]) != len(by["random"]):
                    continue
                pre = _ci([r["acc"] for r in by["pretrained"]])
                rnd = _ci([r["acc"] for r in by["random"]])
                diff = _ci(
                    [
                        a["acc"] - b["acc"]
                        for a, b in zip(by["pretrained"], by["random"], strict=True)
                    ]
                )
                clips = by["pretrained"][0]["test_clips"]
                variant = f" ({tag.partition('+')[2]})" if "+" in tag else ""
                lines.append(
                    f"| {task} ({clips}) | {epochs}{variant} | {_cell(pr)} (n={n_probe}) | "
                    f"{_cell(pre)} (n={pre['n']}) | {_cell(rnd)} (n={rnd['n']}) | {_cell(diff)} |"
                )
        lines.append("")
        inits = sorted(
            {r["init"] for r in runs}, key=lambda i: (i != "pretrained", i != "random", i)
        )
        scores = ["acc", "acc_final", "acc_best"]
        lines += [
            "| task | init / variant | epochs | extra --set | reported (weights averaged) "
            "| final weights | best on valid | seeds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for task in study["settings"]["tasks"]:
            for init in inits:
                rs = [r for r in runs if r["task"] == task and r["init"] == init]
                if not rs:
                    continue
                cells = [_cell(_ci([r[k] for r in rs])) for k in scores]
                extra = " ".join(rs[0].get("extra_sets") or []) or "-"
                ep = rs[0].get("epochs", study["settings"]["epochs"])
                row = f"| {task} | {init} | {ep} | {extra} | " + " | ".join(cells)
                lines.append(f"{row} | {len(rs)} |")
        lines.append("")
    tp = study.get("throughput") or []
    if tp:
        lines += [
            "| preset | parameters | clip | batch | threads | load avg | clips/s: median (runs) "
            "| s/step |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in tp:
            rate = f"{r['median_clips_per_s']:.1f}" if r["median_clips_per_s"] else "n/a"
            each = [m["median_clips_per_s"] for m in r.get("runs", []) if m["median_clips_per_s"]]
            if len(each) > 1:
                rate += " (" + ", ".join(f"{x:.1f}" for x in each) + ")"
            loads = [m["loadavg_1min_before"] for m in r.get("runs", [])]
            load = ", ".join(f"{x:.1f}" for x in loads if x is not None) or "n/a"
            sps = f"{r['s_per_step']:.2f}" if r["s_per_step"] else "n/a"
            lines.append(
                f"| {r['preset']} | {r['parameters']:,} | {r['clip_seconds']:g} s | {r['batch']} "
                f"| {r['threads']} | {load} | {rate} | {sps} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/ftstudy"))
    p.add_argument("--cache", type=Path, help="AXLSTM_CACHE for every step (default OUT/cache)")
    p.add_argument("--tasks", nargs="+", default=["timbre", "pitch_class"])
    p.add_argument("--seeds", type=int, default=5, help="fine-tuning seeds (engine.seed 0..N-1)")
    p.add_argument("--probe-seeds", type=int, default=10)
    p.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs")
    p.add_argument("--jobs", type=int, default=2, help="fine-tuning runs in parallel")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument(
        "--variants",
        nargs="*",
        default=["frozen:model.mode=frozen", "lr1e-4:optim.lr=1e-4"],
        help="extra fine-tunings of the pretrained release, NAME:key=value[|key=value]",
    )
    p.add_argument("--variant-seeds", type=int, default=3)
    p.add_argument("--long-epochs", type=int, nargs="*", default=[24],
                   help="longer schedules (none: off)")  # fmt: skip
    p.add_argument("--long-seeds", type=int, default=3)
    p.add_argument("--long-tasks", nargs="+", default=["timbre"])
    p.add_argument("--long-variants", nargs="*", default=[],
                   help="the longer schedules also with these --set values, for both inits: "
                   "NAME:key=value[|key=value]")  # fmt: skip
    p.add_argument(
        "--long-per-class",
        type=int,
        nargs="*",
        default=[],
        help="the longer schedules also with only K labelled training clips per "
        "class (variant kK; an epoch keeps the whole split's steps), for both inits",
    )
    p.add_argument(
        "--skip-long-plain",
        action="store_true",
        help="run the longer schedules only with the variants and --long-per-class",
    )
    p.add_argument(
        "--release",
        type=Path,
        help="fine-tune this exported release instead of pretraining one into OUT/release "
        "(e.g. an earlier study's OUT/release)",
    )
    p.add_argument(
        "--probe-from",
        type=Path,
        help="reuse the probe of an earlier study (its OUT/probe folder, results.json) for the "
        "tables instead of running axlstm evaluate",
    )
    p.add_argument("--tp-presets", nargs="+", default=["test_axlstm", "axlstm_tiny", "ssast_tiny"])
    p.add_argument("--tp-seconds", nargs="+", type=float, default=[1.0, 2.0])
    p.add_argument("--tp-threads", nargs="+", type=int, default=[1])
    p.add_argument("--tp-steps", type=int, default=8)
    p.add_argument("--tp-batch", type=int, default=8)
    p.add_argument("--tp-repeats", type=int, default=2, help="throughput runs per setting")
    p.add_argument(
        "--only",
        nargs="+",
        choices=["pretrain", "probe", "finetune", "throughput"],
        help="run only these parts (pretraining is done when probe/finetune need it)",
    )
    args = p.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["AXLSTM_CACHE"] = str((args.cache or out / "cache").resolve())
    env.setdefault("PYTHONUNBUFFERED", "1")
    os.environ["AXLSTM_CACHE"] = env["AXLSTM_CACHE"]
    parts = set(args.only or ["pretrain", "probe", "finetune", "throughput"])

    import torch

    path = out / "study.json"
    study = _json(path) or {}
    study["settings"] = {
        "tasks": args.tasks, "seeds": args.seeds, "probe_seeds": args.probe_seeds,
        "epochs": args.epochs, "jobs": args.jobs, "threads": args.threads,
        "finetune_command": _cmd_text(ft_command("MODEL", "TASK", Path("OUT/ft/TASK/INIT/seedS"),
                                                 args.epochs, 0, args.threads, None)),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "python": platform.python_version()},
    }  # fmt: skip
    walls = study.setdefault("wall_s", {})
    t0 = time.perf_counter()
    if args.release:  # an existing release: no pretraining in this study
        parts.discard("pretrain")
    if args.probe_from:
        parts.discard("probe")
        results = _json(args.probe_from / "results.json")
        if not results or "axlstm_pretrained" not in results:
            raise SystemExit(f"--probe-from: no axlstm_pretrained in {args.probe_from}")
        study["probe"] = {"reused_from": str(args.probe_from.resolve()), "results": results}
    if parts & {"pretrain", "probe", "finetune"}:
        t = time.perf_counter()
        if args.release:
            release = args.release.resolve()
            if not (release / "model.safetensors").is_file():
                raise SystemExit(f"--release: no model.safetensors in {release}")
            study["pretrain"] = {"reused_release": str(release)}
        else:
            release = pretrain_and_export(out, env, args.threads, study)
        overrides = _demo_overrides()
        study["parameters"] = count_parameters(release, overrides)
        study["random_init_overrides"] = overrides
        walls["pretrain_export"] = round(time.perf_counter() - t, 1)
    if "probe" in parts:
        t = time.perf_counter()
        probe(out, env, release, args.tasks, args.probe_seeds, args.jobs, args.threads, study)
        walls["probe"] = round(time.perf_counter() - t, 1)
    if "finetune" in parts:
        t = time.perf_counter()
        study["finetune"] = finetune_all(out, env, release, overrides, args.tasks, args.seeds,
                                         args.epochs, args.jobs, args.threads,
                                         parse_variants(args.variants),
                                         args.variant_seeds, args.long_epochs,
                                         args.long_seeds, args.long_tasks,
                                         parse_variants(args.long_variants),
                                         args.long_per_class,
                                         not args.skip_long_plain)  # fmt: skip
        walls["finetune"] = round(time.perf_counter() - t, 1)
        # the probe and fine-tuning read the same built-in task folders: record their digests
        cache = Path(env["AXLSTM_CACHE"]) / "tasks" / "builtin-scale1"
        study["task_folders"] = {
            task: _tree_digest(cache / task) if (cache / task).is_dir() else None
            for task in args.tasks
        }
    if "throughput" in parts:
        t = time.perf_counter()
        study["throughput"] = throughput(out, env, args.tp_presets, args.tp_seconds,
                                         args.tp_threads, args.tp_steps, args.tp_batch,
                                         args.tp_repeats)  # fmt: skip
        walls["throughput"] = round(time.perf_counter() - t, 1)
    walls["this_invocation"] = round(time.perf_counter() - t0, 1)
    path.write_text(json.dumps(study, indent=2) + "\n")
    print()
    print(tables(study))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
