"""ONNX Runtime vs PyTorch eager on CPU: latency of the exported encoders and of the streaming step.

For each model the encoder is exported from the waveform (``axlstm.deploy.export_onnx``, the
graph ``axlstm export-onnx`` writes), then one clip of noise of each length is embedded whole
(front end + encoder) by ONNX Runtime and by PyTorch eager (``front_end`` + ``forward_features``
under ``torch.inference_mode``), with one intra-op thread and with all of them; the median of
``--reps`` runs after a warm-up is reported. The streaming step of a causal AxLSTM (the tiny
preset, ``alternation="unidirectional"``, fixed normalisation statistics) is timed per 40 ms
chunk: ``OnnxStreamer.push`` against ``StreamingEmbedder.push``. Weights are random: latency
does not depend on them.

    python benchmarks/bench_deploy.py                      # the tiny presets, 2 s and 60 s
    python benchmarks/bench_deploy.py --models axlstm_tiny --seconds 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import axlstm
from axlstm.deploy import (
    DEFAULT_OPSET,
    OnnxStreamer,
    export_onnx,
    export_streaming_onnx,
    onnx_session,
    onnxruntime_module,
)
from axlstm.models.streaming import StreamingEmbedder

FIXED = dict(norm_mean=-5.0, norm_std=4.0)


def median_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_encoder(name: str, seconds: list[float], reps: int, folder: Path) -> list[dict]:
    torch.manual_seed(0)
    model = axlstm.create_model(name).eval()
    path = folder / f"{name}.onnx"
    t0 = time.perf_counter()
    export_onnx(model, path, from_waveform=True)
    export_s = time.perf_counter() - t0
    size_mb = path.stat().st_size / 2**20
    front_end = model.front_end_config.whole_clip().build()
    rows = []
    for sec in seconds:
        wave = 0.1 * torch.randn(1, int(sec * 16000), generator=torch.Generator().manual_seed(0))
        x = wave.numpy()
        row = {"model": name, "seconds": sec, "onnx_mb": size_mb, "export_s": export_s}
        for threads in (1, os.cpu_count()):
            torch.set_num_threads(threads)

            def eager(wave=wave):
                with torch.inference_mode():
                    model.forward_features(front_end(wave))

            session = onnx_session(path, threads=threads)
            row[f"torch_{threads}t_s"] = median_time(eager, reps)
            row[f"onnx_{threads}t_s"] = median_time(
                lambda s=session, x=x: s.run(None, {"wave": x}), reps
            )
        with torch.inference_mode():
            ref = model.forward_features(front_end(wave)).numpy()
        got = session.run(None, {"wave": x})[0]
        row["max_rel_dev"] = float(np.abs(got - ref).max() / np.abs(ref).max())
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def bench_streaming(name: str, chunks: int, folder: Path) -> dict:
    torch.manual_seed(0)
    model = axlstm.create_model(name, alternation="unidirectional", front_end=FIXED).eval()
    path = folder / f"{name}_stream.onnx"
    t0 = time.perf_counter()
    export_streaming_onnx(model, path, from_waveform=True)
    export_s = time.perf_counter() - t0
    step = 640  # 40 ms at 16 kHz: one time patch (4 frames of 10 ms)
    wave = 0.1 * torch.randn(1, step * (chunks + 10), generator=torch.Generator().manual_seed(0))
    row = {
        "model": name,
        "stream_onnx_mb": path.stat().st_size / 2**20,
        "stream_export_s": export_s,
    }
    for threads in (1, os.cpu_count()):
        torch.set_num_threads(threads)
        for kind in ("torch", "onnx"):
            if kind == "torch":
                stream = StreamingEmbedder(model)

                def push(c, stream=stream):
                    with torch.inference_mode():
                        return stream.push(c)

                parts = [wave[:, i : i + step] for i in range(0, wave.shape[1], step)]
            else:
                stream = OnnxStreamer(path, threads=threads)
                push = stream.push
                parts = [wave[:, i : i + step].numpy() for i in range(0, wave.shape[1], step)]
                row["state_bytes"] = stream.state_bytes
            for c in parts[:10]:  # warm-up: the first chunks fill the front end's padding
                push(c)
            times = []
            for c in parts[10:]:
                t0 = time.perf_counter()
                push(c)
                times.append(time.perf_counter() - t0)
            row[f"stream_{kind}_{threads}t_ms"] = 1000 * statistics.median(times)
            row[f"stream_{kind}_{threads}t_p95_ms"] = 1000 * float(np.percentile(times, 95))
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict], stream: dict | None) -> str:
    n = os.cpu_count()
    lines = [
        f"| model | audio | PyTorch 1 thread | ONNX RT 1 thread | PyTorch {n} threads | "
        f"ONNX RT {n} threads | .onnx size | max rel. dev. |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['seconds']:g} s | {1000 * r['torch_1t_s']:.0f} ms | "
            f"{1000 * r['onnx_1t_s']:.0f} ms | {1000 * r[f'torch_{n}t_s']:.0f} ms | "
            f"{1000 * r[f'onnx_{n}t_s']:.0f} ms | {r['onnx_mb']:.1f} MiB | "
            f"{r['max_rel_dev']:.1e} |"
        )
    if stream:
        lines += [
            "",
            f"| streaming step ({stream['model']}, causal) | PyTorch 1 thread | ONNX RT 1 "
            f"thread | PyTorch {n} threads | ONNX RT {n} threads | .onnx size | state |",
            "|---|---|---|---|---|---|---|",
            f"| per 40 ms chunk, median (p95) | {stream['stream_torch_1t_ms']:.1f} "
            f"({stream['stream_torch_1t_p95_ms']:.1f}) ms | {stream['stream_onnx_1t_ms']:.1f} "
            f"({stream['stream_onnx_1t_p95_ms']:.1f}) ms | "
            f"{stream[f'stream_torch_{n}t_ms']:.1f} ({stream[f'stream_torch_{n}t_p95_ms']:.1f})"
            f" ms | {stream[f'stream_onnx_{n}t_ms']:.1f} "
            f"({stream[f'stream_onnx_{n}t_p95_ms']:.1f}) ms | "
            f"{stream['stream_onnx_mb']:.1f} MiB | {stream['state_bytes'] / 2**20:.2f} MiB |",
        ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["axlstm_tiny", "ssast_tiny", "ssamba_tiny"])
    p.add_argument("--seconds", nargs="+", type=float, default=[2.0, 60.0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--stream-model", default="axlstm_tiny", help="'' to skip streaming")
    p.add_argument("--chunks", type=int, default=200, help="40 ms chunks timed")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    ort = onnxruntime_module()
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "opset": DEFAULT_OPSET,
    }
    print(json.dumps(machine))
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            r for m in args.models for r in bench_encoder(m, args.seconds, args.reps, Path(tmp))
        ]
        stream = (
            bench_streaming(args.stream_model, args.chunks, Path(tmp))
            if args.stream_model
            else None
        )
    print(table(rows, stream))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine, "encoders": rows, "streaming": stream}, indent=1)
        )


if __name__ == "__main__":
    main()
