"""Selective-scan implementations and whole SSAMBA/SSAM steps: time and peak memory.

    python benchmarks/bench_mamba_scan.py --device cuda
    python benchmarks/bench_mamba_scan.py --device cpu --batch 2 --tokens 251

Prints one JSON line per measurement (median of ``--reps`` after one warm-up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import axlstm
from axlstm.layers.scan import SCAN_IMPLS, has_cuda_scan, selective_scan


def timed(fn, device: str, reps: int) -> tuple[float, float]:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fn()
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")
    return statistics.median(times), peak


def bench_scan(args, impl: str, channels: int, chunk: int) -> dict:
    g = torch.Generator(device=args.device).manual_seed(0)
    B, L, N = args.batch, args.tokens, args.d_state

    def r(*shape):
        return torch.randn(*shape, device=args.device, generator=g).requires_grad_()

    u, delta, z = r(B, channels, L), r(B, channels, L), r(B, channels, L)
    Bm, Cm = r(B, 2, N, L), r(B, 2, N, L)
    A = -torch.arange(1, N + 1, device=args.device).float().expand(channels, N).contiguous()
    D, bias = r(channels), r(channels)

    def step():
        y = selective_scan(u, delta, A, Bm, Cm, D, z, bias, True, impl=impl, chunk_size=chunk)
        if args.mode == "train":
            y.sum().backward()

    with torch.set_grad_enabled(args.mode == "train"):
        seconds, peak = timed(step, args.device, args.reps)
    return dict(
        what="scan", impl=impl, chunk=chunk, channels=channels, seconds=seconds, peak_mib=peak
    )


def bench_model(args, name: str, impl: str) -> dict:
    model = axlstm.create_model(name, scan_impl=impl).to(args.device)
    spec = torch.randn(args.batch, 1, args.frames, model.config.img_size[1], device=args.device)

    def step():
        if args.mode == "train":
            model.train()
            model.zero_grad(set_to_none=True)
            model(spec).loss.backward()
        else:
            with torch.no_grad():
                model.eval().forward_features(spec)

    seconds, peak = timed(step, args.device, args.reps)
    return dict(
        what="model", model=name, impl=impl, frames=args.frames, seconds=seconds, peak_mib=peak
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--mode", choices=("train", "inference"), default="train")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--tokens", type=int, default=513)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--channels", type=int, nargs="+", default=[768, 3072])
    p.add_argument("--chunks", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--models", nargs="*", default=["ssamba_tiny"])
    p.add_argument("--frames", type=int, default=1024)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    impls = [i for i in SCAN_IMPLS if i not in ("auto", "cuda")]
    if args.device.startswith("cuda") and has_cuda_scan():
        impls.append("cuda")
    for channels in args.channels:
        for impl in impls:
            for chunk in args.chunks if impl == "chunked" else [0]:
                print(json.dumps(bench_scan(args, impl, channels, chunk)), flush=True)
    for name in args.models:
        for impl in impls:
            print(json.dumps(bench_model(args, name, impl)), flush=True)


if __name__ == "__main__":
    main()
