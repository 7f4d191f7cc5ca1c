"""Forward and forward+backward cost of the model presets at a given input length.

Reports the median wall time over several repetitions after warm-up, the process CPU time, and
the peak resident memory of a fresh subprocess per configuration (so runs do not share a peak).

    python benchmarks/bench_forward.py --models axlstm_tiny ssast_tiny --seconds 2 10 --batch 8
    python benchmarks/bench_forward.py --device cuda --models axlstm_base --batch 64
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

import axlstm


def measure(model_name: str, seconds: float, batch: int, mode: str, device: str, reps: int):
    torch.manual_seed(0)
    model = axlstm.create_model(model_name).to(device)
    frames = round(seconds * 100) // 4 * 4
    spec = torch.randn(batch, 1, frames, 80, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def step():
        if mode == "inference":
            model.eval()
            with torch.inference_mode():
                model.forward_features(spec)
        else:
            model.train()
            model.zero_grad(set_to_none=True)
            model(spec).loss.backward()

    step()  # warm-up
    sync()
    walls, cpus = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        sync()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    peak = (
        torch.cuda.max_memory_allocated()
        if device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "model": model_name,
        "seconds": seconds,
        "mode": mode,
        "batch": batch,
        "device": device,
        "threads": torch.get_num_threads(),
        "time_s": statistics.median(walls),
        "cpu_s": statistics.median(cpus),
        "peak_mem_bytes": int(peak),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["axlstm_tiny", "ssast_tiny"])
    p.add_argument("--seconds", nargs="+", type=float, default=[2.0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--modes", nargs="+", default=["inference", "train"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--json", help="write results here")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:  # child process: one configuration, JSON on stdout
        r = measure(
            args.models[0], args.seconds[0], args.batch, args.modes[0], args.device, args.reps
        )
        print(json.dumps(r))
        return
    results = []
    for name in args.models:
        for sec in args.seconds:
            for mode in args.modes:
                cmd = [sys.executable, __file__, "--one", "--models", name, "--seconds", str(sec)]
                cmd += ["--batch", str(args.batch), "--modes", mode, "--device", args.device]
                cmd += ["--reps", str(args.reps), "--threads", str(args.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                results.append(r)
                print(
                    f"{name:<14} {sec:>6.1f} s  {mode:<9} batch {args.batch:<3} "
                    f"{r['time_s']:8.3f} s wall  {r['cpu_s']:8.3f} s cpu  "
                    f"{r['peak_mem_bytes'] / 2**30:6.2f} GiB peak",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
