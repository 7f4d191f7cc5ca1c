"""Two-process DistributedDataParallel on CPU (gloo), launched by torchrun."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import torch

from axlstm.data import write_shards
from axlstm.engine import load_checkpoint
from axlstm.engine.metrics import read_records
from test_data import make_good_files

FAST = [
    "logging.tensorboard=false",
    "logging.plots=false",
    "engine.num_threads=1",
    "data.procedural_size=64",
    "data.procedural_seconds=[0.6, 2.5]",
    "optim.global_batch=4",
]

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from axlstm.engine import Trainer
    from axlstm.recipes import MaskedSpecTask, load_config

    out, overrides = sys.argv[1], sys.argv[2:]
    seen = []

    class Recording(MaskedSpecTask):
        def build_data(self, **kwargs):
            stream = super().build_data(**kwargs)
            advance = stream.advance

            def record(batch):
                seen.extend(batch["names"])
                advance(batch)

            stream.advance = record
            return stream

    cfg = load_config("debug", overrides)
    trainer = Trainer(cfg, out, Recording(cfg))
    trainer.fit()
    rank = os.environ["RANK"]
    state = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
    torch.save(state, f"{out}/rank{rank}.pt")
    with open(f"{out}/names{rank}.json", "w") as f:
        json.dump(seen, f)
    """
)


def torchrun(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    proc = subprocess.run(
        [*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_two_rank_gloo_training_on_shards(tmp_path):
    files = make_good_files(tmp_path / "audio", n=11)  # 12 files
    write_shards(files, tmp_path / "shards", shard_size=3)  # 4 shards: 2 per rank
    (tmp_path / "ddp_script.py").write_text(SCRIPT)
    out = tmp_path / "run"
    overrides = [
        *FAST,
        f"data.paths=[{tmp_path / 'shards'}]",
        "data.num_workers=1",
        "data.shuffle_block=4",
        "schedule.max_steps=3",  # 3 steps x 2 clips per rank = one epoch of 6 per rank
        "engine.ckpt_every=2",
    ]
    torchrun([str(tmp_path / "ddp_script.py"), str(out), *overrides], cwd=tmp_path)

    w0 = torch.load(out / "rank0.pt", weights_only=True)
    w1 = torch.load(out / "rank1.pt", weights_only=True)
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"ranks diverged at {k}"
        assert torch.equal(w0[k], ck["model"][k])
    records = read_records(out / "log.jsonl")
    assert records and all(math.isfinite(r["loss"]) for r in records)
    assert ck["world_size"] == 2 and ck["step"] == 3 and ck["samples_seen"] == 12
    assert [d["kind"] for d in ck["data"]] == ["shards", "shards"]
    assert len(ck["rng"]) == 2
    n0 = json.loads((out / "names0.json").read_text())
    n1 = json.loads((out / "names1.json").read_text())
    assert len(n0) == len(n1) == 6 and not set(n0) & set(n1)
    assert len(set(n0) | set(n1)) == 12  # each rank read its own half of the shards


def test_cli_under_torchrun(tmp_path):
    out = tmp_path / "run"
    args = ["-m", "axlstm.cli.main", "pretrain", "--config", "debug", "--out", str(out)]
    args += ["--max-steps", "2", "--set", *FAST, "logging.plots=true"]
    proc = torchrun(args, cwd=tmp_path)
    assert "trained steps 0->2" in proc.stdout
    assert proc.stdout.count("trained steps") == 1  # only rank 0 reports
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["world_size"] == 2 and ck["data"][0] == ck["data"][1]  # one global position
    assert json.loads((out / "run.json").read_text())["backend"] == "gloo"
    assert (out / "plots" / "loss.png").is_file()


def test_finetune_under_torchrun(tmp_path):
    from test_finetune import tone_task

    data = tone_task(tmp_path / "data")
    out = tmp_path / "ft"
    args = ["-m", "axlstm.cli.main", "finetune", "--config", "debug", "--data", str(data)]
    args += ["--out", str(out), "--max-steps", "3", "--set", "data.clip_seconds=0.5"]
    args += ["optim.global_batch=4", "logging.plots=false", "validation.average_from=null"]
    args += ["validation.average_to=null", "engine.num_threads=1"]
    proc = torchrun(args, cwd=tmp_path)
    assert proc.stdout.count("acc:") == 1  # only rank 0 reports
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["world_size"] == 2 and ck["step"] == 3
    assert ck["task"]["best"] is not None  # the validation ran (rank 0) and was saved
    assert (out / "classifier" / "labels.json").is_file()
    assert json.loads((out / "results.json").read_text())["scores"]["final"]["acc"] >= 0
