"""Does bf16 autocast train like fp32? Compare the loss curves of two pretraining runs.

The two runs are the same recipe with the same seed (so the same clips, masks and init) and a
different ``engine.precision``; ``benchmarks/gpu_check.sh`` starts them. The curves are
compared window by window (``--window`` logged records): the bf16 run is "within noise" of
the fp32 run when, in every window after the first, the two window means differ by less than
``--tolerance`` times the step-to-step noise of the fp32 losses in that window (their
standard deviation around the window's linear trend), and no logged value is non-finite.

    python benchmarks/precision_curves.py RUN_FP32 RUN_BF16 --json out.json --plot out.png
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path


def read_losses(run: Path) -> list[tuple[int, float]]:
    """(step, loss) of every record of RUN/log.jsonl (a record without a loss is skipped)."""
    out = []
    with open(Path(run) / "log.jsonl") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if "loss" in rec and "step" in rec:
                out.append((int(rec["step"]), float(rec["loss"])))
    return out


def _detrended_std(ys: list[float]) -> float:
    """Standard deviation of ys around their least-squares line (noise, not the descent)."""
    n = len(ys)
    if n < 3:
        return 0.0
    xs = range(n)
    mx, my = (n - 1) / 2, statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    resid = [y - (my + slope * (x - mx)) for x, y in zip(xs, ys, strict=True)]
    return math.sqrt(sum(r * r for r in resid) / (n - 2))


def compare(
    ref: list[tuple[int, float]], other: list[tuple[int, float]], window: int = 20,
    tolerance: float = 1.0,
) -> dict:  # fmt: skip
    """Window-by-window comparison of two loss curves logged at the same steps.

    Returns:
        {"finite": bool, "within_noise": bool, "windows": [{"steps": [first, last],
        "ref_mean", "other_mean", "diff", "noise"}...], "steps": n} (the first window, the
        warm-up's steep descent, is reported but not judged).
    """
    a, b = dict(ref), dict(other)
    steps = sorted(set(a) & set(b))
    finite = all(math.isfinite(a[s]) and math.isfinite(b[s]) for s in steps)
    windows = []
    for start in range(0, len(steps), window):
        ws = steps[start : start + window]
        if len(ws) < 3:
            break
        ra, rb = [a[s] for s in ws], [b[s] for s in ws]
        windows.append({
            "steps": [ws[0], ws[-1]],
            "ref_mean": statistics.fmean(ra),
            "other_mean": statistics.fmean(rb),
            "diff": statistics.fmean(rb) - statistics.fmean(ra),
            "noise": _detrended_std(ra),
        })  # fmt: skip
    judged = windows[1:]
    within = bool(judged) and all(abs(w["diff"]) <= tolerance * w["noise"] for w in judged)
    return {
        "finite": finite,
        "within_noise": finite and within,
        "tolerance": tolerance,
        "windows": windows,
        "steps": len(steps),
    }


def plot(ref, other, labels, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for curve, label in zip((ref, other), labels, strict=True):
        ax.plot([s for s, _ in curve], [v for _, v in curve], label=label, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ref", type=Path, help="run folder of the fp32 run")
    p.add_argument("other", type=Path, help="run folder of the bf16 run")
    p.add_argument("--window", type=int, default=20, help="logged records per window")
    p.add_argument("--tolerance", type=float, default=1.0, help="allowed |diff| / noise")
    p.add_argument("--json", type=Path, help="write the comparison here")
    p.add_argument("--plot", type=Path, help="PNG of both curves")
    args = p.parse_args(argv)
    ref, other = read_losses(args.ref), read_losses(args.other)
    result = compare(ref, other, args.window, args.tolerance)
    result["runs"] = [str(args.ref), str(args.other)]
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        plot(ref, other, [args.ref.name, args.other.name], args.plot)
    for w in result["windows"]:
        sys.stdout.write(
            f"steps {w['steps'][0]:>6}-{w['steps'][1]:<6} fp32 {w['ref_mean']:.4f}  "
            f"other {w['other_mean']:.4f}  diff {w['diff']:+.4f}  noise {w['noise']:.4f}\n"
        )
    verdict = "within noise" if result["within_noise"] else "NOT within noise"
    sys.stdout.write(f"{result['steps']} common steps, finite={result['finite']}: {verdict}\n")
    return 0 if result["within_noise"] else 1


if __name__ == "__main__":
    sys.exit(main())
