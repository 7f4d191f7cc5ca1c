"""``axlstm models``: list registered presets with their sizes."""

from __future__ import annotations

import argparse

from axlstm.models import create_model, list_models


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list registered model presets")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'axlstm_*'")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    print(f"{'name':<16} {'family':<8} {'dim':>5} {'depth':>5} {'encoder params':>15}")
    for name in names:
        m = create_model(name)
        c = m.config
        print(f"{name:<16} {c.family:<8} {c.embed_dim:>5} {c.depth:>5} {m.num_parameters():>15,}")
    return 0
