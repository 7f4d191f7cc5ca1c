"""The probe protocol: learns separable data, is deterministic, stops early, runs the grid on
the first split and k-fold mechanics as hear-eval-kit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from axlstm.evaluation import DataSplit, ProbeConfig, ProbeData, ProbeNet, evaluate_probe
from axlstm.evaluation.probe import train_probe, training_seed


@pytest.fixture(autouse=True)
def _one_thread():
    """Small matmuls: one thread is as fast, and far faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(n_per_class: int, n_classes: int = 3, dim: int = 16, seed: int = 0, spread=0.5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[labels] + rng.normal(0.0, spread, size=(len(labels), dim))
    y = np.eye(n_classes, dtype=np.float32)[labels]
    return x.astype(np.float32), y


def test_probe_architecture_and_init():
    g = torch.Generator().manual_seed(0)
    net = ProbeNet(512, 7, hidden_dim=1024, dropout=0.25, generator=g)
    linear, norm, drop, relu = net.hidden
    assert (linear.in_features, linear.out_features) == (512, 1024)
    assert isinstance(norm, torch.nn.BatchNorm1d) and norm.num_features == 1024
    assert drop.p == 0.25 and isinstance(relu, torch.nn.ReLU)
    assert (net.projection.in_features, net.projection.out_features) == (1024, 7)
    # Xavier-normal: std = gain * sqrt(2 / (fan_in + fan_out)); gain 1, then sqrt(2) (ReLU).
    assert linear.weight.std().item() == pytest.approx((2 / (512 + 1024)) ** 0.5, rel=0.02)
    assert net.projection.weight.std().item() == pytest.approx(
        2**0.5 * (2 / (1024 + 7)) ** 0.5, rel=0.1
    )
    assert linear.bias.abs().max().item() <= 1 / 512**0.5
    lin = ProbeNet(8, 3, hidden_dim=None)
    assert isinstance(lin.hidden, torch.nn.Identity) and lin.projection.in_features == 8
    # The global RNG is not touched by building a probe.
    state = torch.random.get_rng_state()
    ProbeNet(8, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_probe_learns_separable_blobs(kind):
    xt, yt = blobs(20, seed=0)
    xv, yv = blobs(10, seed=0)
    xs, ys = blobs(10, seed=0)
    cfg = ProbeConfig(kind=kind, lr=1e-3 if kind == "linear" else 1e-4)
    net, run = train_probe(
        *map(torch.from_numpy, (xt, yt, xv, yv)),
        prediction_type="multiclass",
        scores=["top1_acc"],
        config=cfg,
        seed=0,
        x_test=torch.from_numpy(xs),
        y_test=torch.from_numpy(ys),
    )
    assert run.test_scores["top1_acc"] >= 0.95
    assert run.valid_scores["top1_acc"] >= 0.95
    assert 0 < run.best_epoch <= run.epochs <= cfg.max_epochs
    assert run.best_epoch % cfg.check_every == 0
    # Saturated validation accuracy stops training after `patience` checks without gain.
    assert run.epochs <= run.best_epoch + cfg.patience * cfg.check_every
    assert not net.training


def test_multilabel_probe():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 8)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0.5, x[:, 2] < 0], axis=1).astype(np.float32)
    t = torch.from_numpy
    _, run = train_probe(
        t(x[:60]),
        t(y[:60]),
        t(x[60:75]),
        t(y[60:75]),
        prediction_type="multilabel",
        scores=["mAP", "d_prime"],
        config=ProbeConfig(lr=1e-3, max_epochs=150),
        x_test=t(x[75:]),
        y_test=t(y[75:]),
    )
    assert run.test_scores["mAP"] > 0.85
    assert run.test_scores["d_prime"] > 1.5


def test_loss_monitoring():
    xt, yt = blobs(10, seed=2)
    t = torch.from_numpy
    _, run = train_probe(
        t(xt), t(yt), t(xt), t(yt),
        prediction_type="multiclass", scores=["top1_acc"], monitor_score=False,
        config=ProbeConfig(max_epochs=12),
    )  # fmt: skip
    assert run.valid < 0  # minus the validation loss


def _kfold_data(folds=3, per_class=6, monitor_score=True):
    x, y = blobs(per_class * folds, n_classes=2, dim=6, seed=3, spread=2.0)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    names = [f"fold{i:02d}" for i in range(folds)]
    xs = dict(zip(names, np.array_split(x, folds), strict=True))
    ys = dict(zip(names, np.array_split(y, folds), strict=True))
    splits = []
    for i in range(folds):
        test, valid = names[i], names[(i + 1) % folds]
        splits.append(
            DataSplit(tuple(n for n in names if n not in (test, valid)), (valid,), (test,))
        )
    return ProbeData(xs, ys, "multiclass", ["top1_acc"], splits, monitor_score)


def test_evaluate_probe_kfold_and_grid():
    data = _kfold_data()
    cfg = ProbeConfig(max_epochs=30, lr=1e-3)
    calls = []
    result = evaluate_probe(data, range(3), cfg, on_training=calls.append)
    # Per seed: 2 grid points on split 0, then 2 more splits with the chosen dropout.
    assert len(calls) == 3 * (2 + 2)
    assert result.seeds == [0, 1, 2]
    assert len(result.scores["top1_acc"]) == 3
    for seed_i in range(3):
        folds = result.fold_scores["top1_acc"][seed_i]
        assert len(folds) == 3
        assert result.scores["top1_acc"][seed_i] == pytest.approx(np.mean(folds))
        grid = result.grid_valid[seed_i]
        assert len(grid) == 2
        assert result.dropout[seed_i] == (0.1, 0.25)[int(np.argmax(grid))]
    assert all(0.0 <= s <= 1.0 for s in result.scores["top1_acc"])


def test_evaluate_probe_is_deterministic_and_thread_independent():
    data = _kfold_data(monitor_score=False)  # the validation loss: a continuous record
    cfg = ProbeConfig(max_epochs=12, lr=1e-3)
    a = evaluate_probe(data, [0, 1], cfg, jobs=1)
    b = evaluate_probe(data, [0, 1], cfg, jobs=2)
    assert a.scores == b.scores and a.fold_scores == b.fold_scores
    assert a.grid_valid == b.grid_valid
    c = evaluate_probe(data, [5, 6], cfg)
    assert c.grid_valid != a.grid_valid  # other seeds, other trainings


def test_seed_checks_and_training_seeds():
    data = _kfold_data()
    with pytest.raises(ValueError, match="distinct"):
        evaluate_probe(data, [0, 0])
    with pytest.raises(ValueError, match="no seeds"):
        evaluate_probe(data, [])
    seeds = {training_seed(s, f, g) for s in range(10) for f in range(5) for g in range(2)}
    assert len(seeds) == 100


def test_shuffle_option():
    # With more examples than one batch, reshuffling changes the batches and so the weights;
    # the same settings give the same weights.
    x, y = blobs(30, n_classes=2, dim=4, seed=4, spread=3.0)
    t = torch.from_numpy
    kw = dict(prediction_type="multiclass", scores=["top1_acc"], seed=0)

    def weights(shuffle):
        cfg = ProbeConfig(batch_size=16, max_epochs=3, check_every=3, shuffle=shuffle)
        net, run = train_probe(t(x), t(y), t(x), t(y), config=cfg, **kw)
        assert run.epochs == 3
        return net.projection.weight.detach().clone()

    assert torch.equal(weights(True), weights(True))
    assert torch.equal(weights(False), weights(False))
    assert not torch.equal(weights(True), weights(False))


def test_config_validation():
    with pytest.raises(ValueError, match="probe kind"):
        ProbeConfig(kind="svm")
    with pytest.raises(ValueError, match="dropout"):
        ProbeConfig(dropouts=(1.5,))
    assert ProbeConfig(kind="linear").grid() == [0.0]
    assert ProbeConfig().grid() == [0.1, 0.25]


def test_probe_device_cpu_is_the_default():
    """An explicit CPU device trains the same probe, bit for bit."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 8, generator=g)
    y = torch.nn.functional.one_hot((x[:, 0] > 0).long(), 2).float()
    config = ProbeConfig(hidden_dim=16, max_epochs=9, check_every=3, patience=2)
    kw = dict(prediction_type="multiclass", scores=["top1_acc"], config=config, seed=3)
    net_a, a = train_probe(x[:80], y[:80], x[80:], y[80:], **kw)
    net_b, b = train_probe(x[:80], y[:80], x[80:], y[80:], device="cpu", **kw)
    assert a == b
    for p, q in zip(net_a.parameters(), net_b.parameters(), strict=True):
        assert torch.equal(p, q)
