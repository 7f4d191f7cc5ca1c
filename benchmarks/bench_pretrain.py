"""Pretraining throughput (clips/s) and peak memory of whole training steps.

Each configuration runs the real trainer (procedural data -> log-mel -> crop, masked forward,
backward, AdamW step) in a fresh subprocess, so peak resident memory is that run's own. The
first steps are warm-up; clips/s is measured over the following ones. A second figure,
"model only", times forward + backward + AdamW on a fixed random batch, without the data
pipeline.

    python benchmarks/bench_pretrain.py --models axlstm_tiny ssast_tiny --batch 8 --threads 2
    python benchmarks/bench_pretrain.py --device cuda --precision bf16 --batch 256 --workers 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time


def measure(args: argparse.Namespace) -> dict:
    import torch

    from axlstm.engine import TrainerCallback
    from axlstm.recipes import load_config, pretrain

    if args.threads:
        torch.set_num_threads(args.threads)
    total = args.warmup + args.steps
    overrides = [
        f"model.name={args.model}",
        f"optim.global_batch={args.batch}",
        f"schedule.max_steps={total}",
        "schedule.warmup_steps=1",
        f"engine.device={args.device}",
        f"engine.precision={args.precision}",
        f"engine.num_threads={args.threads}",
        f"engine.ckpt_every={total + 1}",
        f"data.num_workers={args.workers}",
        "data.procedural_size=4096",
        "logging.tensorboard=false",
        "logging.plots=false",
        f"logging.log_every={total}",
    ]
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step(self, trainer, metrics):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    cfg = load_config("debug", overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        pretrain(cfg, run_dir, callback=Clock())
    steps = [b - a for a, b in zip(stamps[args.warmup - 1 :], stamps[args.warmup :], strict=False)]
    pipeline = args.batch / statistics.median(steps)

    # Model only: the same step on one fixed batch, no data pipeline.
    import axlstm
    from axlstm.engine import build_optimizer, resolve_precision

    dev = torch.device(args.device if args.device != "auto" else "cpu")
    precision = resolve_precision(args.precision, dev)
    model = axlstm.create_model(args.model).to(dev).train()
    opt = build_optimizer(model, 1e-4)
    spec = torch.randn(args.batch, 1, 200, 80, device=dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        with precision.autocast():
            loss = model(spec, generator=gen).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    peak = (
        torch.cuda.max_memory_allocated()
        if dev.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "model": args.model,
        "batch": args.batch,
        "device": args.device,
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "workers": args.workers,
        "steps_measured": len(steps),
        "step_s_median": round(statistics.median(steps), 4),
        "clips_per_s": round(pipeline, 2),
        "model_only_clips_per_s": round(args.batch / statistics.median(times), 2),
        "peak_mem_mib": round(peak / 2**20, 1),
        "encoder_params": axlstm.create_model(args.model).num_parameters(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["axlstm_tiny", "ssast_tiny"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=8, help="measured steps")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured first steps")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--model", help=argparse.SUPPRESS)  # one configuration, in a subprocess
    args = p.parse_args()

    if args.model:
        print(json.dumps(measure(args)))
        return
    results = []
    passthrough = [
        *("--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)),
        *("--device", args.device, "--precision", args.precision),
        *("--threads", str(args.threads), "--workers", str(args.workers)),
    ]
    for name in args.models:
        out = subprocess.run(
            [sys.executable, __file__, "--model", name, *passthrough],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load}")
    print(f"{'model':<14} {'clips/s':>8} {'model-only':>11} {'step s':>8} {'peak MiB':>9}")
    for r in results:
        print(
            f"{r['model']:<14} {r['clips_per_s']:>8.2f} {r['model_only_clips_per_s']:>11.2f} "
            f"{r['step_s_median']:>8.3f} {r['peak_mem_mib']:>9.1f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_average": load, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
