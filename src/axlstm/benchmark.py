"""Cost of models against input length: time per pass and peak memory, on CPU or GPU.

Each configuration runs ``warmup`` untimed passes and then ``reps`` timed ones; the median is
reported with every individual time. On CPU each configuration runs in a fresh subprocess by
default, so that the peak resident memory (``ru_maxrss``) of one configuration is not hidden by
an earlier, larger one; on CUDA the peak is ``torch.cuda.max_memory_allocated``.

"inference" is one ``forward_features`` pass over the whole input (no 2 s windowing) under
``torch.inference_mode``; "train" is one pretraining step: the masked forward, the loss and the
backward pass (no optimizer step); for the original SSAST and SSAMBA that is the joint MPC + MPG
loss of two masked passes.

Inputs are random spectrograms of the model's own shape (``model.example_input``): 80 log-mel
bins for AxLSTM, 128 Kaldi fbank bins for SSAST/SSAMBA, 100 frames per second for both.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from axlstm.core.errors import AxlstmError, UsageError
from axlstm.embedding import resolve_model

logger = logging.getLogger(__name__)

MODES = ("inference", "train")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
FRAMES_PER_SECOND = 100  # 10 ms hop of the log-mel front end


def _rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure(
    model: str,
    seconds: float,
    mode: str = "inference",
    batch: int = 1,
    device: str = "cpu",
    reps: int = 3,
    warmup: int = 1,
    threads: int | None = None,
    seed: int = 0,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Time one configuration in this process.

    Args:
        model: preset name or release folder (random weights are as fast as trained ones).
        seconds: input length in seconds of audio (100 spectrogram frames per second, rounded
            down to whole patches).
        mode: "inference" or "train".
        batch: clips per pass.
        device: "cpu", "cuda", "cuda:1", ...
        reps: timed repetitions (the median is reported).
        warmup: untimed passes first.
        threads: torch intra-op threads on CPU (torch's default when None).
        seed: RNG seed for the weights' init and the input.
        precision: "fp32", or "bf16"/"fp16" autocast (CUDA only: on CPU bf16 matmuls are
            about 200x slower than fp32 on AVX2 machines, so they are refused).
    """
    check_settings([seconds], [mode], batch, reps, warmup, threads, precision, device)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    dev = torch.device(device)
    net = resolve_model(model, device=dev)
    pt = net.frame_span
    frames = max(pt, round(seconds * FRAMES_PER_SECOND) // pt * pt)
    spec = net.example_input(batch, frames).to(dev)  # (B, C, T, the model's bins)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    autocast_dtype = PRECISIONS[precision]

    def step() -> None:
        with torch.autocast("cuda", dtype=autocast_dtype, enabled=autocast_dtype is not None):
            run_step()

    def run_step() -> None:
        if mode == "inference":
            net.eval()
            with torch.inference_mode():
                net.forward_features(spec)
        else:
            net.train()
            net.zero_grad(set_to_none=True)
            net.pretrain_step(spec).loss.backward()

    baseline = torch.cuda.memory_allocated(dev) if cuda else _rss_peak_bytes()
    for _ in range(warmup):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times, cpu_times = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        sync()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    peak = torch.cuda.max_memory_allocated(dev) if cuda else _rss_peak_bytes()
    return {
        "model": model,
        "seconds": float(seconds),
        "mode": mode,
        "batch": batch,
        "device": str(dev),
        "precision": precision,
        "time_s": statistics.median(times),
        "times_s": times,
        "cpu_time_s": statistics.median(cpu_times),
        "peak_mem_bytes": int(peak),
        "baseline_mem_bytes": int(baseline),
        "mem_kind": "cuda_max_allocated" if cuda else "process_peak_rss",
        "frames": frames,
        "tokens": net.num_tokens(frames),
        "encoder_params": net.num_parameters("encoder"),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(dev) if cuda else None,
        "mlstm_backend": net.config.to_dict().get("mlstm_backend"),
        "reps": reps,
        "warmup": warmup,
    }


def check_settings(
    seconds: Sequence[float],
    modes: Sequence[str],
    batch: int,
    reps: int,
    warmup: int,
    threads: int | None,
    precision: str,
    device: str,
) -> None:
    """Refuse settings that describe no possible run (before any is measured).

    Raises:
        UsageError: naming the setting and the value.
    """
    bad = [s for s in seconds if not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0)]
    if bad or not seconds:
        raise UsageError(f"seconds must be positive and finite, got {list(seconds)}")
    for name, value, low in (("batch", batch, 1), ("reps", reps, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UsageError(f"threads must be an integer >= 1, got {threads!r}")
    for mode in modes:
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r}; choose one of {MODES}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {tuple(PRECISIONS)}")
    if precision != "fp32" and not str(device).startswith("cuda"):
        raise UsageError(f"precision {precision!r} is only measured on CUDA devices")


def measure_isolated(**kwargs: Any) -> dict[str, Any]:
    """:func:`measure` in a fresh Python process, so its peak memory is its own."""
    cmd = [sys.executable, "-m", "axlstm.benchmark", json.dumps(kwargs)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["no message"]
        logger.debug("benchmark subprocess stderr:\n%s", proc.stderr)
        raise AxlstmError(
            f"benchmark of {kwargs['model']} ({kwargs['mode']}, {kwargs['seconds']:g} s) failed "
            f"in its process (exit {proc.returncode}): {lines[-1]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(
    models: Sequence[str],
    seconds: Sequence[float],
    modes: Sequence[str] = ("inference",),
    batch: int = 1,
    device: str = "cpu",
    reps: int = 3,
    warmup: int = 1,
    threads: int | None = None,
    precision: str = "fp32",
    isolate: bool | None = None,
    on_result=None,
) -> list[dict[str, Any]]:
    """Every (model, seconds, mode) combination; ``on_result(result)`` is called after each.

    The settings and every model name are checked before the first measurement.

    Raises:
        UsageError: a setting that describes no possible run.
        ConfigError: a model that is neither a preset nor a release folder.
    """
    check_settings(seconds, modes, batch, reps, warmup, threads, precision, device)
    for model in models:
        resolve_model(model)  # an unknown name or a broken release fails here, not mid-way
    isolate = (not str(device).startswith("cuda")) if isolate is None else isolate
    results = []
    for model in models:
        for mode in modes:
            for sec in seconds:
                kwargs = dict(
                    model=str(model), seconds=float(sec), mode=mode, batch=batch, device=device,
                    reps=reps, warmup=warmup, threads=threads, precision=precision,
                )  # fmt: skip
                logger.info("benchmark %s", kwargs)
                result = measure_isolated(**kwargs) if isolate else measure(**kwargs)
                results.append(result)
                if on_result is not None:
                    on_result(result)
    return results


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """One row per result; "added" memory is the peak minus the process's memory before the
    first pass (on CPU that removes the ~0.2-0.3 GiB of the Python process and torch itself)."""
    head = (
        "| model | mode | seconds | batch | device | time (s, median) | peak memory (GiB) "
        "| added memory (GiB) |"
    )
    rows = [head, "|---|---|---|---|---|---|---|---|"]
    for r in results:
        added = (r["peak_mem_bytes"] - r["baseline_mem_bytes"]) / 2**30
        rows.append(
            f"| {r['model']} | {r['mode']} | {r['seconds']:g} | {r['batch']} | {r['device']} "
            f"| {r['time_s']:.3f} | {r['peak_mem_bytes'] / 2**30:.2f} | {added:.2f} |"
        )
    return "\n".join(rows) + "\n"


def write_reports(results: Sequence[dict[str, Any]], json_path=None, md_path=None, csv_path=None,
                  png_path=None) -> None:  # fmt: skip
    """Write the results as JSON (a list of objects), Markdown, CSV and a PNG plot."""
    if json_path:
        Path(json_path).write_text(json.dumps(list(results), indent=2) + "\n")
    if md_path:
        Path(md_path).write_text(markdown_table(results))
    if csv_path:
        keys = [k for k in results[0] if k != "times_s"] if results else []
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(results)
    if png_path and results:
        plot_cost(results, png_path)


def plot_cost(results: Sequence[dict[str, Any]], path) -> None:
    """Time and peak memory against input length, log-log, one line per model and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["model"], r["mode"]), []).append(r)
    for (model, mode), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seconds"])
        xs = [r["seconds"] for r in rs]
        label = f"{Path(model).name} ({mode})"
        ax_t.plot(xs, [r["time_s"] for r in rs], marker="o", label=label)
        ax_m.plot(xs, [r["peak_mem_bytes"] / 2**30 for r in rs], marker="o", label=label)
    r0 = results[0]
    for ax, ylabel in ((ax_t, "time per pass (s, median)"), (ax_m, "peak memory (GiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("input length (s of audio)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.suptitle(f"cost vs length: batch {r0['batch']}, {r0['device']}, {r0['threads']} threads")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":  # the isolated child: one configuration, JSON on stdout
    print(json.dumps(measure(**json.loads(sys.argv[1]))))
