"""The training engine: config, schedule, optimiser groups, precision, checkpoints, resume."""

from __future__ import annotations

import itertools
import logging
import math
import os
import random
import shutil
import signal

import numpy as np
import pytest
import torch

import axlstm
from axlstm.core import UsageError
from axlstm.engine import (
    CheckpointError,
    CheckpointManager,
    ConfigError,
    NonFiniteLossError,
    WarmupCosine,
    WarmupPlateau,
    apply_overrides,
    atomic_save,
    build_optimizer,
    capture_rng,
    config_to_dict,
    load_checkpoint,
    param_groups_weight_decay,
    resolve_precision,
    restore_rng,
)
from axlstm.recipes import PretrainConfig, list_presets, load_config, pretrain

FAST = [
    "logging.tensorboard=false",
    "logging.plots=false",
    "engine.num_threads=1",
    "data.procedural_size=64",
    "data.procedural_seconds=[0.6, 2.5]",
    "optim.global_batch=4",
]


def fast_config(*overrides: str):
    return load_config("debug", [*FAST, *overrides])


# ---------------------------------------------------------------------------------- config
def test_presets_hold_the_official_recipe():
    assert {"debug", "axlstm_tiny", "axlstm_small", "axlstm_base"} <= set(list_presets())
    assert {"ssast_tiny", "ssast_small", "ssast_base"} <= set(list_presets())
    for name in ("axlstm_tiny", "axlstm_base", "ssast_small"):
        cfg = load_config(name)
        assert cfg.model.name == name
        assert cfg.optim.peak_lr() == pytest.approx(6e-4)
        assert cfg.optim.betas == (0.9, 0.95) and cfg.optim.weight_decay == 0.05
        assert cfg.schedule.resolve(None, cfg.optim.global_batch) == (200_300, 20_030, 2003)
        assert cfg.engine.precision == "fp16" and cfg.engine.seed == 0
    # Without a fixed epoch length, it follows the data: AudioSet gives 2003 steps again.
    cfg = load_config("axlstm_tiny", ["schedule.steps_per_epoch=null"])
    assert cfg.schedule.resolve(2_051_308, 1024) == (200_300, 20_030, 2003)
    debug = load_config("debug")
    assert debug.model.name == "test_axlstm" and debug.engine.device == "cpu"
    assert debug.schedule.resolve(512, 8) == (30, 3, 64)


def test_overrides_are_typed_and_checked():
    cfg = load_config(
        "debug",
        [
            "optim.base_lr=1e-4",  # YAML reads this as a string; the field type makes it float
            "optim.lr=null",
            "optim.betas=[0.8, 0.9]",
            "engine.deterministic=yes",
            "engine.precision=bf16",
            "data.paths=/data/a",
            "model.overrides.depth=4",
            "model.overrides={embed_dim: 64}",
            "schedule.max_steps=1e3",
        ],
    )
    assert cfg.optim.base_lr == 1e-4 and cfg.optim.lr is None
    assert cfg.optim.betas == (0.8, 0.9) and cfg.engine.deterministic is True
    assert cfg.data.paths == ["/data/a"] and cfg.model.overrides == {"embed_dim": 64}
    assert cfg.schedule.max_steps == 1000
    assert cfg.optim.peak_lr() == pytest.approx(1e-4 * 8 / 256)

    with pytest.raises(ConfigError, match=r"'optim.bas_lr'.*did you mean 'base_lr'"):
        apply_overrides(PretrainConfig(), ["optim.bas_lr=1"])
    with pytest.raises(ConfigError, match="unknown config key 'optimizer'"):
        apply_overrides(PretrainConfig(), ["optimizer.lr=1"])
    with pytest.raises(ConfigError, match="expected an integer"):
        apply_overrides(PretrainConfig(), ["optim.global_batch=big"])
    with pytest.raises(ConfigError, match="not one of"):
        apply_overrides(PretrainConfig(), ["engine.precision=fp8"])
    with pytest.raises(ConfigError, match="divisible"):
        apply_overrides(PretrainConfig(), ["optim.grad_accum=3"])
    with pytest.raises(ConfigError, match="registered"):
        apply_overrides(PretrainConfig(), ["model.name=axlstm_huge"])
    with pytest.raises(ConfigError, match=r"key\.sub=value"):
        apply_overrides(PretrainConfig(), ["optim.lr"])
    with pytest.raises(ConfigError, match="unknown config"):
        load_config("no_such_preset")


def test_config_round_trips_through_yaml(tmp_path):
    cfg = load_config("debug", ["model.overrides.depth=3", "optim.betas=[0.85, 0.9]"])
    from axlstm.engine import config_to_yaml

    config_to_yaml(cfg, tmp_path / "c.yaml")
    again = load_config(str(tmp_path / "c.yaml"))
    assert config_to_dict(again) == config_to_dict(cfg)


# ------------------------------------------------------------------------ optimiser, schedule
def test_warmup_cosine_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosine(opt, peak_lr=6e-4, warmup_steps=10, total_steps=110, min_lr=1e-6)
    assert sched.lr_at(0) == 0.0  # as officially, the first update uses lr 0
    assert sched.lr_at(5) == pytest.approx(3e-4)
    assert sched.lr_at(10) == pytest.approx(6e-4)
    assert sched.lr_at(60) == pytest.approx((6e-4 + 1e-6) / 2)
    assert sched.lr_at(110) == pytest.approx(1e-6)
    assert sched.apply(5) == opt.param_groups[0]["lr"]
    lrs = [sched.lr_at(s) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    # max_steps keeps the warm-up's share of the run
    cfg = load_config("axlstm_tiny", ["schedule.max_steps=1000"])
    assert cfg.schedule.resolve(None, 1024) == (1000, 100, 2003)


def test_staircase_warmup():
    """The official SSAST warm-up: the lr is reset to step / 1000 * peak every 50 steps."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosine(opt, peak_lr=1e-4, warmup_steps=1000, total_steps=5000, stair=50)
    assert [sched.lr_at(s) for s in (0, 49, 50, 99, 100, 999)] == pytest.approx(
        [0.0, 0.0, 5e-6, 5e-6, 1e-5, 9.5e-5]
    )
    assert sched.lr_at(1000) == pytest.approx(1e-4)
    assert sched.state_dict()["stair"] == 50
    linear = WarmupCosine(opt, peak_lr=1e-4, warmup_steps=1000, total_steps=5000)
    assert "stair" not in linear.state_dict()  # checkpoints of the linear warm-up unchanged


def test_plateau_schedule_follows_reduce_lr_on_plateau():
    """After the warm-up, WarmupPlateau gives the lr torch's ReduceLROnPlateau gives."""
    values = [0.1, 0.2, 0.2, 0.19, 0.2, 0.3, 0.3, 0.3, 0.29, 0.3, 0.3, 0.31, 0.31, 0.31, 0.31]
    for mode in ("max", "min"):
        p = torch.nn.Parameter(torch.zeros(1))
        ref_opt = torch.optim.SGD([p], lr=1e-3)
        ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, mode=mode, factor=0.5, patience=2)
        opt = torch.optim.SGD([p], lr=1.0)
        sched = WarmupPlateau(opt, 1e-3, 0, 10_000, mode=mode, factor=0.5, patience=2)
        for i, v in enumerate(values):
            v = v if mode == "max" else 1.0 - v  # a loss that stalls the same way
            ref.step(v)
            sched.plateau_step(v, step=10 * (i + 1))
            assert sched.apply(10 * (i + 1)) == pytest.approx(ref_opt.param_groups[0]["lr"])
        assert sched.reductions == 3
    # during the warm-up a due reduction is dropped (the official warm-up overwrites it)
    sched = WarmupPlateau(opt, 1e-3, 100, 1000, patience=0)
    for step in (20, 40, 60):
        sched.plateau_step(0.5, step)
    assert sched.reductions == 0 and sched.lr_at(100) == pytest.approx(1e-3)
    sched.plateau_step(0.5, 120)
    assert sched.reductions == 1 and sched.lr_at(120) == pytest.approx(5e-4)
    fresh = WarmupPlateau(opt, 1e-3, 100, 1000, patience=0)
    fresh.load_state_dict(sched.state_dict())
    assert fresh.progress() == sched.progress() and fresh.lr_at(500) == sched.lr_at(500)


def test_adam_with_decay_on_every_parameter():
    model = axlstm.create_model("test_ssast_orig")
    opt = build_optimizer(model, 5e-4, 5e-7, (0.95, 0.999), name="adam", decay_scope="all")
    assert type(opt) is torch.optim.Adam and len(opt.param_groups) == 1
    assert opt.param_groups[0]["weight_decay"] == 5e-7
    n_trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(opt.param_groups[0]["params"]) == n_trainable
    assert type(build_optimizer(model, 1e-4, decay_scope="all")) is torch.optim.AdamW
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(model, 1e-4, name="sgd")
    with pytest.raises(ConfigError, match=r"optim\.name"):
        load_config("debug", ["optim.name=sgd"])


def test_plateau_metric_must_be_logged(tmp_path):
    over = ["schedule.max_steps=1", "schedule.decay=plateau", "schedule.plateau_metric=acc"]
    with pytest.raises(ConfigError, match="plateau_metric='acc' is not logged"):
        pretrain(fast_config(*over), tmp_path / "run")
    over[-1] = "schedule.plateau_metric=loss"  # every model logs its loss
    over[1:1] = ["schedule.plateau_every=1", "schedule.plateau_mode=min"]
    assert pretrain(fast_config(*over), tmp_path / "run2").steps == 1


def test_weight_decay_on_weights_only():
    model = axlstm.create_model("test_axlstm")
    plain, decay = param_groups_weight_decay(model, 0.05)
    assert plain["weight_decay"] == 0.0 and decay["weight_decay"] == 0.05
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    undecayed = {names[id(p)] for p in plain["params"]}
    assert {"cls_token", "mask_token", "patch_embed.proj.weight"} <= decayed
    assert "pos_embed" not in decayed | undecayed  # frozen
    assert all(n.endswith(".bias") or model.get_parameter(n).ndim <= 1 for n in undecayed)
    assert all(not n.endswith(".bias") and model.get_parameter(n).ndim > 1 for n in decayed)
    n_trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(decay["params"]) + len(plain["params"]) == n_trainable


def test_cpu_precision_is_fp32_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        p = resolve_precision("fp16", torch.device("cpu"))
    assert p.name == "fp32" and p.dtype is None and not p.use_scaler
    assert "fp32" in caplog.text
    assert not p.grad_scaler().is_enabled()
    with pytest.raises(ValueError):
        resolve_precision("fp8", torch.device("cpu"))


# ------------------------------------------------------------------------------ checkpoints
def test_atomic_save_never_corrupts_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ck" / "last.pt"
    atomic_save({"step": 1, "w": torch.ones(3)}, path)
    good = path.read_bytes()
    real_save = torch.save

    def crash_mid_write(obj, f, *a, **k):
        f.write(b"partial bytes of a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"step": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == good
    assert os.listdir(path.parent) == ["last.pt"]  # no temp file left behind
    assert torch.load(path, weights_only=True)["step"] == 1


def test_checkpoint_manager_rotation_and_stale_temp_files(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for step in (5, 10, 100, 1000):
        mgr.save({"format": "axlstm-train", "step": step}, step)
    assert [s for s, _ in mgr.numbered()] == [100, 1000]  # numeric, not string, order
    assert torch.load(mgr.last, weights_only=True)["step"] == 1000
    newest = tmp_path / "step_000001000.pt"
    assert mgr.last.read_bytes() == newest.read_bytes()  # a copy, not a link to it
    assert not os.path.samefile(mgr.last, newest) and os.stat(mgr.last).st_nlink == 1
    assert mgr.candidates() == [newest, mgr.last, tmp_path / "step_000000100.pt"]
    # A crash after writing step_2000.pt but before copying it to last.pt: the newer file wins.
    atomic_save({"format": "axlstm-train", "step": 2000}, tmp_path / "step_000002000.pt")
    assert mgr.latest() == tmp_path / "step_000002000.pt"
    (tmp_path / ".step_000003000.pt.abc.tmp").write_bytes(b"torn")
    CheckpointManager(tmp_path, keep_last=2)
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"junk\.pt: (truncated or corrupt|not a PyTorch)"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an axlstm training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    gen = torch.Generator().manual_seed(123)
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    torch.rand(5, generator=gen)  # advance it
    state = capture_rng({"mask": gen})
    atomic_save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    torch.manual_seed(9)
    np.random.seed(9)
    random.seed(9)
    gen.manual_seed(9)
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True), {"mask": gen})
    got = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2] and torch.equal(got[3], expected[3])


# ------------------------------------------------------------------------------- the trainer
def _weights(path):
    return load_checkpoint(path)["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_from_a_mid_run_checkpoint_is_exact(tmp_path, workers):
    over = ["schedule.max_steps=6", "engine.ckpt_every=3", f"data.num_workers={workers}"]
    full = pretrain(fast_config(*over), tmp_path / "full")
    assert full.steps == 6 and math.isfinite(full.final_loss)
    # A second run that "died" after step 3: only the step-3 checkpoint survives.
    part = tmp_path / "part" / "checkpoints"
    part.mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "checkpoints" / "step_000000003.pt", part / "last.pt")
    resumed = pretrain(fast_config(*over), tmp_path / "part", resume=True)
    assert resumed.start_step == 3 and resumed.steps == 6
    _assert_same_weights(
        _weights(tmp_path / "full" / "checkpoints" / "last.pt"), _weights(part / "last.pt")
    )
    full_ck = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    part_ck = load_checkpoint(part / "last.pt")
    for a, b in zip(
        full_ck["optimizer"]["state"].values(), part_ck["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["step"], b["step"])
    assert full_ck["data"] == part_ck["data"]


def test_accumulation_and_clipping_run(tmp_path):
    cfg = fast_config("schedule.max_steps=2", "optim.grad_accum=2", "optim.clip_grad_norm=0.5")
    summary = pretrain(cfg, tmp_path / "run")
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert summary.steps == 2 and ck["micro_batches"] == 4 and ck["samples_seen"] == 8


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model = axlstm.create_model("test_axlstm")
    forward, calls = model.forward, {"n": 0}

    def poisoned(*args, **kwargs):
        out = forward(*args, **kwargs)
        calls["n"] += 1
        return out._replace(loss=out.loss * float("nan")) if calls["n"] == 5 else out

    model.forward = poisoned
    cfg = fast_config("schedule.max_steps=8", "engine.ckpt_every=2")
    with pytest.raises(NonFiniteLossError, match=r"step 5.*step_000000004|step 5.*last\.pt"):
        pretrain(cfg, tmp_path / "run", model=model)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    ck = load_checkpoint(last)
    assert ck["step"] == 4
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


def test_existing_run_needs_resume(tmp_path):
    pretrain(fast_config("schedule.max_steps=1"), tmp_path / "run")
    with pytest.raises(UsageError, match="--resume"):
        pretrain(fast_config("schedule.max_steps=1"), tmp_path / "run")
    # Resuming a finished run trains nothing and keeps its checkpoint.
    summary = pretrain(fast_config("schedule.max_steps=1"), tmp_path / "run", resume=True)
    assert summary.start_step == summary.steps == 1


def test_sigterm_stops_cleanly_with_a_checkpoint(tmp_path):
    from axlstm.engine import TrainerCallback

    class Preempt(TrainerCallback):
        def on_step(self, trainer, metrics):
            if metrics["step"] == 2:
                os.kill(os.getpid(), signal.SIGTERM)  # what a cluster scheduler sends

    cfg = fast_config("schedule.max_steps=6", "engine.ckpt_every=5")
    summary = pretrain(cfg, tmp_path / "run", callback=Preempt())
    assert summary.stopped_early and summary.steps == 3  # the step after the signal
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(
        signal.getsignal(signal.SIGTERM)
    )
    resumed = pretrain(
        fast_config("schedule.max_steps=6", "engine.ckpt_every=5"), tmp_path / "run", resume=True
    )
    assert resumed.start_step == 3 and resumed.steps == 6 and not resumed.stopped_early


@pytest.mark.parametrize("name", ["test_ssast", "test_ssam"])
def test_other_log_mel_families_pretrain_and_export(tmp_path, name):
    if name not in axlstm.list_models():
        pytest.skip(f"{name} is not registered")
    pretrain(fast_config("schedule.max_steps=1", f"model.name={name}"), tmp_path / "run")
    from axlstm.engine import export_release

    export_release(tmp_path / "run" / "checkpoints" / "last.pt", tmp_path / "rel")
    model = axlstm.load_model(tmp_path / "rel")
    for k, v in _weights(tmp_path / "run" / "checkpoints" / "last.pt").items():
        assert torch.equal(model.state_dict()[k], v)


def test_log_mel_models_with_other_bins_are_refused(tmp_path):
    """The log-mel pipeline makes 80-bin crops; Kaldi fbank models get their own inputs
    (tests/test_fbank_models_integration.py)."""
    over = ["schedule.max_steps=1", "model.overrides.img_size=[200, 64]"]
    with pytest.raises(ConfigError, match="cannot pretrain this model"):
        pretrain(fast_config(*over), tmp_path / "r")


def test_configs_written_before_data_input_still_load(tmp_path, caplog):
    from axlstm.recipes import load_config

    old = tmp_path / "config.yaml"
    old.write_text("model:\n  name: test_ssast_orig\ndata:\n  fbank:\n    crop: random\n")
    with caplog.at_level("WARNING"):
        cfg = load_config(old)
    assert cfg.data.input.crop == "random" and "data.input" in caplog.text
