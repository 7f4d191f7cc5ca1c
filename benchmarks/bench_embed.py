"""Embedding throughput: seconds of audio embedded per second, through the public API.

Each configuration embeds ``--clips`` clips of ``--seconds`` seconds of noise with
``axlstm.embedding.embed`` (front end, windowing, encoder, pooling) after one warm-up call, and
reports the median over ``--reps`` runs of wall time and of process CPU time. On a shared
machine the CPU-time figure ("audio s per CPU s") is the steadier one.

    python benchmarks/bench_embed.py
    python benchmarks/bench_embed.py --models axlstm_tiny --seconds 60 --clips 1 --windows none
    python benchmarks/bench_embed.py --device cuda --precision fp16 --models axlstm_base
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import axlstm
from axlstm.embedding import embed


def measure(name, seconds, clips, window, batch_size, device, precision, reps):
    torch.manual_seed(0)
    model = axlstm.create_model(name).to(device).eval()
    n = int(seconds * 16000)
    wave = 0.1 * torch.randn(clips, n, generator=torch.Generator().manual_seed(0))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def step():
        embed(model, wave, window=window, batch_size=batch_size, precision=precision)
        sync()

    step()  # warm-up
    walls, cpus = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    audio = clips * seconds
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {
        "model": name,
        "window": window,
        "clip_seconds": seconds,
        "clips": clips,
        "batch_size": batch_size,
        "device": device,
        "precision": precision,
        "threads": torch.get_num_threads(),
        "wall_s": wall,
        "cpu_s": cpu,
        "audio_s_per_s": audio / wall,
        "audio_s_per_cpu_s": audio / cpu,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models", nargs="+", default=["test_axlstm", "test_ssast", "axlstm_tiny", "ssast_tiny"]
    )
    p.add_argument("--windows", nargs="+", default=["official", "none"])
    p.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, device {args.device}, {args.precision}"
    )
    print(
        f"{'model':<12} {'window':<9} {'audio':>9} {'wall s':>8} {'cpu s':>8} "
        f"{'audio s/s':>10} {'audio s/cpu s':>14}"
    )
    results = []
    for name in args.models:
        for window in args.windows:
            r = measure(
                name,
                args.seconds,
                args.clips,
                window,
                args.batch_size,
                args.device,
                args.precision,
                args.reps,
            )
            results.append(r)
            audio = f"{r['clips']}x{r['clip_seconds']:g}s"
            print(
                f"{name:<12} {window:<9} {audio:>9} {r['wall_s']:8.3f} {r['cpu_s']:8.3f} "
                f"{r['audio_s_per_s']:10.1f} {r['audio_s_per_cpu_s']:14.1f}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
