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


# Dense peak throughput (TFLOP/s) by GPU name and math mode, from the vendors' data sheets
# (SXM parts); "fp32" is the non-tensor-core rate, used when TF32 is off (torch's default).
PEAK_TFLOPS = {
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
}


def peak_tflops(gpu_name: str | None, precision: str) -> float | None:
    """The GPU's dense peak for this precision (fp32 means TF32 when torch allows it), or None
    for a GPU not in :data:`PEAK_TFLOPS` (pass ``--peak-tflops`` then)."""
    if not gpu_name:
        return None
    for name, peaks in PEAK_TFLOPS.items():
        if name in gpu_name:
            if precision == "fp32" and torch.backends.cuda.matmul.allow_tf32:
                return peaks["tf32"]
            return peaks[precision]
    return None


def count_flops(fn) -> int:
    """Floating-point operations of one call of ``fn`` as torch's FLOP counter counts them:
    matmuls, convolutions and attention (2 per multiply-add), not elementwise work."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _timed(step, reps: int, sync) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of ``reps`` calls of ``step``, each ended by
    ``sync`` (a device synchronisation, or nothing on CPU)."""
    times, cpu_times = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        sync()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    return times, cpu_times


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
    flops: bool = False,
    peak: float | None = None,
    compile: str | None = None,
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
        flops: also count the pass's FLOPs (one extra untimed pass) and report the achieved
            TFLOP/s and, where the GPU's peak is known (or ``peak`` TFLOP/s is given), the model
            FLOP utilisation (MFU).
        peak: the device's peak TFLOP/s for this precision, overriding :data:`PEAK_TFLOPS`.
        compile: a torch.compile mode ("auto", "default", "reduce-overhead", ...) to run the
            encoder (inference) or the whole pretraining step (train) compiled, with a static
            shape; None runs eagerly. The compile happens in the warm-up passes (at least one),
            and its time is reported as ``compile_s``.
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
    eager_features, train_step = net.forward_features, None
    if compile is not None:
        from axlstm.models.compile import compile_encoder, compile_pretraining

        if mode == "inference":
            compile_encoder(net, mode=compile, dynamic=False)
        else:
            train_step = compile_pretraining(net, mode=compile, dynamic=False)
        warmup = max(warmup, 1)

    def step() -> None:
        with torch.autocast("cuda", dtype=autocast_dtype, enabled=autocast_dtype is not None):
            run_step()

    def run_step(features=None) -> None:
        if mode == "inference":
            net.eval()
            with torch.inference_mode():
                (features or net.forward_features)(spec)
        else:
            net.train()
            net.zero_grad(set_to_none=True)
            out = train_step(spec) if train_step is not None and features is None else None
            loss = out.loss if out is not None else net.pretrain_step(spec).loss
            loss.backward()

    baseline = torch.cuda.memory_allocated(dev) if cuda else _rss_peak_bytes()
    t_compile = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    t_compile = time.perf_counter() - t_compile
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times, cpu_times = _timed(step, reps, sync)
    peak_mem = torch.cuda.max_memory_allocated(dev) if cuda else _rss_peak_bytes()
    median = statistics.median(times)
    gpu = torch.cuda.get_device_name(dev) if cuda else None
    extra: dict[str, Any] = {}
    if compile is not None:
        extra["compile_s"] = t_compile  # the warm-up passes, compiling included
    if flops:  # counted on the eager graph: the same operations, and a compiled one hides them

        def eager_step() -> None:
            with torch.autocast("cuda", dtype=autocast_dtype, enabled=autocast_dtype is not None):
                run_step(eager_features)

        n = count_flops(eager_step)
        achieved = n / median / 1e12
        top = peak if peak is not None else peak_tflops(gpu, precision)
        extra |= {
            "flops": n,
            "tflops_per_s": achieved,
            "peak_tflops": top,
            "mfu": achieved / top if top else None,
        }
    return {
        "model": model,
        "seconds": float(seconds),
        "mode": mode,
        "batch": batch,
        "device": str(dev),
        "precision": precision,
        "time_s": median,
        "clips_per_s": batch / median,
        "times_s": times,
        "cpu_time_s": statistics.median(cpu_times),
        "peak_mem_bytes": int(peak_mem),
        "baseline_mem_bytes": int(baseline),
        "mem_kind": "cuda_max_allocated" if cuda else "process_peak_rss",
        "frames": frames,
        "tokens": net.num_tokens(frames),
        "encoder_params": net.num_parameters("encoder"),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "gpu": gpu,
        "mlstm_backend": net.config.to_dict().get("mlstm_backend"),
        "compile": compile,
        "reps": reps,
        "warmup": warmup,
        **extra,
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
    flops: bool = False,
    peak: float | None = None,
    compile: str | None = None,
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
                    flops=flops, peak=peak, compile=compile,
                )  # fmt: skip
                logger.info("benchmark %s", kwargs)
                result = measure_isolated(**kwargs) if isolate else measure(**kwargs)
                results.append(result)
                if on_result is not None:
                    on_result(result)
    return results


FORM_LENGTHS = (64, 128, 192, 256, 384, 512, 1024, 2048)
PARALLEL_MAX_LENGTH = 2048  # (S, S) per head: beyond this the quadratic form only wastes memory


def measure_forms(
    model: str = "axlstm_tiny",
    lengths: Sequence[int] = FORM_LENGTHS,
    batch: int = 8,
    device: str = "cpu",
    precision: str = "fp32",
    grads: Sequence[bool] = (False, True),
    reps: int = 3,
    warmup: int = 1,
    threads: int | None = None,
    forms: Sequence[str] | None = None,
    seed: int = 0,
    on_result=None,
) -> list[dict[str, Any]]:
    """Time each exact mLSTM form at each sequence length, the table "auto" chooses from.

    The inputs have the shape the model's ViL layers give the mLSTM (batch x heads sequences
    of the head width) and gate preactivations of the scale its init gives (forget-gate
    biases 3-6, input gates near 0). ``grads`` False times a forward pass under
    ``torch.inference_mode``; True a forward and backward pass.

    Returns:
        one result per (grad, length, form): device, dtype, grad, tokens, form, time_s
        (``None`` where the form failed, e.g. out of memory, with the error), for
        :func:`axlstm.layers.mlstm_forms.derive_rows`.
    """
    from axlstm.layers import mlstm as forms_mod

    check_settings([1.0], ["inference"], batch, reps, warmup, threads, precision, device)
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    cfg = resolve_model(model).config
    if cfg.family != "axlstm":
        raise UsageError(f"--forms times the mLSTM of an AxLSTM model; {model} is {cfg.family}")
    NH = cfg.mlstm_heads
    DH = cfg.expansion * cfg.embed_dim // NH
    dtype = PRECISIONS[precision] or torch.float32
    if forms is None:
        forms = forms_mod.available_forms(torch.empty(0, device=dev))
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    gen = torch.Generator().manual_seed(seed)
    results = []
    for grad in grads:
        for S in lengths:
            q, k, v = (torch.randn(batch, NH, S, DH, generator=gen) for _ in range(3))
            ig = 0.1 * torch.randn(batch, NH, S, generator=gen)
            fg = torch.linspace(3.0, 6.0, NH)[None, :, None] + 0.5 * torch.randn(
                batch, NH, S, generator=gen
            )
            inputs = [x.to(dev, dtype).requires_grad_(grad) for x in (q, k, v, ig, fg)]
            for form in forms:
                entry = {
                    "model": model, "device": str(dev), "dtype": str(dtype).removeprefix("torch."),
                    "grad": grad, "tokens": S, "form": form, "batch": batch, "heads": NH,
                    "head_dim": DH, "chunk_size": cfg.mlstm_chunk_size, "time_s": None,
                    "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(dev) if cuda else None,
                }  # fmt: skip
                if form == "parallel" and S > PARALLEL_MAX_LENGTH:
                    entry["error"] = f"not run above {PARALLEL_MAX_LENGTH} tokens"
                    results.append(entry)
                    if on_result is not None:
                        on_result(entry)
                    continue

                def once(inputs=inputs, form=form, grad=grad) -> None:
                    with torch.inference_mode(not grad):
                        h = forms_mod.mlstm(*inputs, backend=form, chunk_size=cfg.mlstm_chunk_size)
                        if grad:
                            h.float().square().mean().backward()

                try:
                    for _ in range(warmup):
                        once()
                    sync()
                    times, _ = _timed(once, reps, sync)
                    entry["time_s"] = statistics.median(times)
                    entry["times_s"] = times
                except (RuntimeError, MemoryError) as e:  # out of memory, a missing kernel
                    entry["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                    if cuda:
                        torch.cuda.empty_cache()
                for x in inputs:
                    x.grad = None
                results.append(entry)
                if on_result is not None:
                    on_result(entry)
    return results


def forms_markdown(results: Sequence[dict[str, Any]]) -> str:
    """Milliseconds per form at each length, the winner marked, one table per pass kind."""
    from axlstm.layers.mlstm_forms import derive_rows

    out = []
    for row in derive_rows(results):
        forms = list(row["times"])
        kind = "forward + backward" if row["grad"] else "forward"
        out.append(f"{row['device']}, {row['dtype']}, {kind}:\n")
        out.append("| tokens | " + " | ".join(f"{f} (ms)" for f in forms) + " | fastest |")
        out.append("|---|" + "---|" * (len(forms) + 1))
        for i, n in enumerate(row["lengths"]):
            ts = {f: row["times"][f][i] for f in forms}
            cells = ["-" if t is None else f"{1e3 * t:.2f}" for t in ts.values()]
            done = {f: t for f, t in ts.items() if t is not None}
            best = min(done, key=done.get) if done else "-"
            out.append(f"| {n} | " + " | ".join(cells) + f" | {best} |")
        out.append("")
    return "\n".join(out) + "\n"


def write_form_table(results: Sequence[dict[str, Any]], path) -> None:
    """Write (or update: rows with the same key are replaced) a form table JSON for
    ``AXLSTM_MLSTM_FORMS`` / :func:`axlstm.layers.mlstm_forms.set_form_table`."""
    from axlstm.layers.mlstm_forms import TABLE_FORMAT, derive_rows, read_table

    path = Path(path)
    rows = read_table(path) if path.exists() else {}
    measured = {
        "by": "axlstm benchmark --forms",
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.processor() or platform.machine(),
    }
    for row in derive_rows(results):
        r0 = next(r for r in results if str(r["device"]).split(":")[0] == row["device"])
        row["measured"] = {
            **measured, "gpu": r0.get("gpu"), "torch": r0.get("torch"),
            "threads": r0.get("threads"), "shape": [r0["batch"], r0["heads"], r0["head_dim"]],
            "chunk_size": r0.get("chunk_size"),
        }  # fmt: skip
        rows[(row["device"], row["dtype"], row["grad"])] = row
    path.write_text(json.dumps({"format": TABLE_FORMAT, "rows": list(rows.values())}, indent=1))


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """One row per result; "added" memory is the peak minus the process's memory before the
    first pass (on CPU that removes the ~0.2-0.3 GiB of the Python process and torch itself)."""
    head = (
        "| model | mode | seconds | batch | device | precision | time (s, median) | clips/s "
        "| peak memory (GiB) | added memory (GiB) | TFLOP/s | MFU |"
    )
    rows = [head, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        added = (r["peak_mem_bytes"] - r["baseline_mem_bytes"]) / 2**30
        tflops = f"{r['tflops_per_s']:.3g}" if r.get("tflops_per_s") is not None else "-"
        mfu = f"{100 * r['mfu']:.1f} %" if r.get("mfu") is not None else "-"
        clips = r.get("clips_per_s", r["batch"] / r["time_s"])
        rows.append(
            f"| {r['model']} | {r['mode']} | {r['seconds']:g} | {r['batch']} | {r['device']} "
            f"| {r.get('precision', 'fp32')} | {r['time_s']:.3f} | {clips:.1f} "
            f"| {r['peak_mem_bytes'] / 2**30:.2f} | {added:.2f} | {tflops} | {mfu} |"
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
