"""Cost of HEAR timestamp embeddings of long clips: time and peak memory against clip length.

Each (preset, window, length) runs in a fresh process, so the peak resident memory (the
process's ``ru_maxrss``) is that of one call of ``axlstm.hear.get_timestamp_embeddings`` on
one clip of noise, model and interpreter included; the time is the call's wall time after
one warm-up call on 2 s of audio.

    python benchmarks/bench_timestamps.py --minutes 1 5 10 --threads 2 > timestamps.md
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

PRESETS = ("axlstm_tiny", "ssast_tiny", "ssamba_tiny", "ssast_orig_tiny_patch")


def _one(preset: str, window: str, minutes: float, threads: int) -> dict:
    import torch

    from axlstm import hear

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = hear.load_model(preset, window=window)
    hear.get_timestamp_embeddings(torch.rand(1, 32000) - 0.5, model)
    audio = torch.rand(1, int(minutes * 60 * 16000)) - 0.5
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "preset": preset,
        "window": window,
        "minutes": minutes,
        "seconds": round(seconds, 2),
        "peak_mb": round(peak / 1024),
        "before_mb": round(before / 1024),
        "frames": int(emb.shape[1]),
        "dim": int(emb.shape[2]),
        "hop_ms": float(ts[0, 1] - ts[0, 0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--minutes", nargs="+", type=float, default=[1.0, 5.0, 10.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--windows", nargs="+", default=["official"])
    parser.add_argument("--child", nargs=3, metavar=("PRESET", "WINDOW", "MINUTES"))
    args = parser.parse_args()
    if args.child:
        preset, window, minutes = args.child
        print(json.dumps(_one(preset, window, float(minutes), args.threads)))
        return
    print("| preset | window | clip | frames x dim | hop | time | peak memory |")
    print("|---|---|---|---|---|---|---|")
    for preset in args.presets:
        for window in args.windows:
            for minutes in args.minutes:
                out = subprocess.run(
                    [
                        *(sys.executable, __file__, "--threads", str(args.threads), "--child"),
                        *(preset, window, str(minutes)),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(
                    f"| {preset} | {window} | {minutes:g} min | {r['frames']} x {r['dim']} | "
                    f"{r['hop_ms']:g} ms | {r['seconds']:.1f} s | {r['peak_mb']} MB |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
