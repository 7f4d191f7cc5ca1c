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
    rows = []
    for name in names:
        m = create_model(name)
        c = m.config
        rows.append((name, c.family, c.embed_dim, c.depth, m.num_parameters()))
    wn = max([len("name"), *(len(r[0]) for r in rows)])
    wf = max([len("family"), *(len(r[1]) for r in rows)])
    print(f"{'name':<{wn}} {'family':<{wf}} {'dim':>5} {'depth':>5} {'encoder params':>15}")
    for name, family, dim, depth, params in rows:
        print(f"{name:<{wn}} {family:<{wf}} {dim:>5} {depth:>5} {params:>15,}")
    return 0
