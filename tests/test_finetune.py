"""Fine-tuning on the engine: the debug recipe end to end, exact resume, k-fold runs, the
training modes and learning-rate layout, the losses, the step schedule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from axlstm.cli.main import main
from axlstm.core.errors import ConfigError, UsageError
from axlstm.engine.optim import WarmupStep
from axlstm.engine.trainer import TrainerCallback
from axlstm.finetune.classify import build_classifier, param_groups, set_trainable
from axlstm.finetune.config import FinetuneModelConfig
from axlstm.finetune.labels import load_labelled
from axlstm.finetune.release import load_classifier
from axlstm.finetune.task import FineTuneTask
from axlstm.models import create_model
from axlstm.recipes.finetune import finetune, load_finetune_config

SR = 16000


def tone_task(root: Path, folds: int = 0, per_class: int = 6) -> Path:
    """A manifest of two classes (low and high tones), with folds or train/valid/test."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["path,label,split"]
    for label, f0 in (("low", 300.0), ("high", 2500.0)):
        for i in range(per_class):
            t = np.arange(int(0.6 * SR)) / SR
            wave = 0.3 * np.sin(2 * np.pi * f0 * (1 + 0.05 * rng.random()) * t)
            wave += 0.01 * rng.standard_normal(t.size)
            name = f"{label}_{i}.wav"
            sf.write(root / name, wave.astype(np.float32), SR)
            if folds:
                split = f"fold{i % folds + 1}"
            else:
                split = ("train", "train", "train", "train", "valid", "test")[i % 6]
            rows.append(f"{name},{label},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def cfg_for(data: Path, *overrides: str):
    base = [
        f"data.source={data}",
        "data.clip_seconds=0.5",
        "optim.global_batch=4",
        "schedule.epochs=3",
        "validation.average_from=null",
        "validation.average_to=null",
    ]
    return load_finetune_config("debug", [*base, *overrides])


class StopAt(TrainerCallback):
    """Asks the trainer to stop (as Ctrl-C does) once it reaches ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, trainer, metrics) -> None:
        if trainer.step == self.step:
            trainer._stop_requested = True


def test_debug_recipe_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AXLSTM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["finetune", "--config", "debug", "--out", str(out), "--max-steps", "8"]) == 0
    printed = capsys.readouterr().out
    assert "acc:" in printed and "report:" in printed
    written = ["results.json", "scores.json", "report.md", "labels.json", "valid.jsonl"]
    written += ["valid.csv", "best.pt", "plots/validation.png", "classifier/labels.json"]
    for name in written:
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    assert set(results["scores"]) >= {"final", "best"}
    assert 0.0 <= results["scores"]["final"]["acc"] <= 1.0
    clf = load_classifier(out / "classifier")
    assert len(clf.labels) == 6  # the timbre task
    # a finished run is not overwritten; --resume of a finished run keeps its results
    assert main(["finetune", "--config", "debug", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    before = (out / "results.json").read_bytes()
    assert main(["finetune", "--config", "debug", "--out", str(out), "--resume"]) == 0
    assert (out / "results.json").read_bytes() == before
    assert "acc:" in capsys.readouterr().out  # the kept scores are reported again


def test_interrupted_run_resumes_exactly(tmp_path):
    data = tone_task(tmp_path / "data")
    cfg = cfg_for(data)
    whole = finetune(cfg, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, tmp_path / "cut", callback=StopAt(3))
    resumed = finetune(cfg, tmp_path / "cut", resume=True)
    assert resumed["runs"]["run"]["scores"] == whole["runs"]["run"]["scores"]
    a = torch.load(tmp_path / "whole" / "best.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "best.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_checks(tmp_path):
    data = tone_task(tmp_path / "data")
    with pytest.raises(UsageError, match="nothing to resume"):
        finetune(cfg_for(data), tmp_path / "none", resume=True)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg_for(data), tmp_path / "run", callback=StopAt(1))
    other = tone_task(tmp_path / "other")
    text = other.read_text().replace(",low,", ",quiet,")
    other.write_text(text)
    with pytest.raises(UsageError, match="vocabulary"):
        finetune(cfg_for(other), tmp_path / "run", resume=True)


def test_k_fold_runs_report_mean_and_interval(tmp_path):
    data = tone_task(tmp_path / "data", folds=3)
    summary = finetune(cfg_for(data, "schedule.epochs=1"), tmp_path / "kfold")
    assert sorted(summary["runs"]) == ["fold01", "fold02", "fold03"]
    acc = summary["scores"]["acc"]
    assert acc["n"] == 3 and len(acc["values"]) == 3
    assert acc["mean"] == pytest.approx(np.mean(acc["values"]))
    assert acc["ci95"] is not None and acc["ci95"] >= 0
    for fold in ("fold01", "fold02", "fold03"):
        result = json.loads((tmp_path / "kfold" / fold / "results.json").read_text())
        assert result["reported"] == "final"  # never a best picked on the held-out fold
    # some folds, named as the manifest writes them or as the run does
    some = finetune(cfg_for(data, "schedule.max_steps=1", "data.folds=[1, fold03, '3']"),
                    tmp_path / "some")  # fmt: skip
    assert sorted(some["runs"]) == ["fold01", "fold03"]
    with pytest.raises(ConfigError, match=r"data\.folds: unknown fold 'fold7'"):
        finetune(cfg_for(data, "data.folds=[fold7]"), tmp_path / "bad")
    assert not (tmp_path / "bad" / "labels.json").exists()  # nothing to --resume was started


def test_training_subsets_for_label_efficiency(tmp_path, caplog):
    data = tone_task(tmp_path / "data", per_class=12)  # 8 training clips per class
    caplog.set_level("INFO", logger="axlstm.recipes.finetune")
    cfg = cfg_for(data, "schedule.max_steps=1", "data.train_per_class=2")
    summary = finetune(cfg, tmp_path / "two")
    run = summary["runs"]["run"]
    assert run["train_clips"] == 4 and run["test_clips"] == 4  # the test split untouched
    assert "training on 4 of 16 clips" in caplog.text
    # the subset follows engine.seed unless data.subset_seed fixes it; k-fold cuts each fold
    folds = tone_task(tmp_path / "folds", folds=2, per_class=8)
    cfg = cfg_for(folds, "schedule.max_steps=1", "data.train_fraction=0.5")
    summary = finetune(cfg, tmp_path / "kfold")
    assert [r["train_clips"] for r in summary["runs"].values()] == [4, 4]
    for bad in ("data.train_fraction=0", "data.train_fraction=1.5", "data.train_per_class=0",
                "data.train_per_class=2.5"):  # fmt: skip
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            cfg_for(data, bad)


@pytest.mark.parametrize("mode", ["full", "last_k", "frozen"])
def test_modes_train_what_they_say(mode):
    encoder = create_model("test_axlstm")
    cfg = FinetuneModelConfig(source="test_axlstm", mode=mode, last_k=1)
    model = build_classifier(cfg, encoder, 3, 50)
    set_trainable(model, mode, 1, torch.zeros(1, 1, 50, 80))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("mlp_head.")} == {
        "mlp_head.0.weight", "mlp_head.0.bias", "mlp_head.1.weight", "mlp_head.1.bias"
    }  # fmt: skip
    assert not any("pred" in n or "mask_token" in n for n in trainable)  # unused: never
    blocks = {n.split(".")[2] for n in trainable if n.startswith("encoder.blocks.")}
    expected = {"full": {"0", "1"}, "last_k": {"1"}, "frozen": set()}[mode]
    assert blocks == expected
    assert ("encoder.patch_embed.proj.weight" in trainable) == (mode == "full")


def test_param_groups_scale_layers_and_head():
    model = build_classifier(
        FinetuneModelConfig(source="test_axlstm"), create_model("test_axlstm"), 3, 50
    )
    set_trainable(model, "full", 1, torch.zeros(1, 1, 50, 80))
    groups = param_groups(model, 0.05, head_lr_mult=3.0, layer_decay=0.5)
    scale = {id(p): (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    L = model.encoder.num_layers  # 2: embeddings 0.5**3, block 0 0.5**2, block 1 0.5
    assert scale[id(named["encoder.patch_embed.proj.weight"])] == (0.5 ** (L + 1), 0.05)
    assert scale[id(named["encoder.patch_embed.proj.bias"])] == (0.5 ** (L + 1), 0.0)
    block0 = next(n for n in named if n.startswith("encoder.blocks.0.") and named[n].ndim > 1)
    assert scale[id(named[block0])] == (0.5**L, 0.05)
    assert scale[id(named["mlp_head.1.weight"])] == (3.0, 0.05)


def test_ssamba_layers_are_pairs_of_blocks_for_last_k_and_layer_decay():
    encoder = create_model("test_ssamba", depth=8)  # 8 Vim blocks, 4 layers (pairs)
    model = build_classifier(FinetuneModelConfig(source="test_ssamba"), encoder, 3, 64)
    assert model.encoder.num_layers == 4
    example = torch.zeros(1, 1, 64, 128)
    set_trainable(model, "last_k", 1, example)
    trained = {n.split(".")[2] for n, p in model.named_parameters()
               if p.requires_grad and n.startswith("encoder.layers.")}  # fmt: skip
    assert trained == {"6", "7"}  # the last pair, nothing before it
    with pytest.raises(ConfigError, match="4 layers"):
        set_trainable(model, "last_k", 5, example)
    set_trainable(model, "full", 1, example)
    groups = param_groups(model, 0.05, head_lr_mult=1.0, layer_decay=0.5)
    assert max(g["lr_scale"] for g in groups) == 1.0  # never above the peak
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    for block in range(8):  # layer i = blocks 2i and 2i+1: depth i + 1 of L + 1 = 5
        w = next(n for n in named if n.startswith(f"encoder.layers.{block}."))
        assert scale[id(named[w])] == 0.5 ** (4 - block // 2), w


def test_step_schedule_is_multistep_by_epoch():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupStep(opt, 1.0, 0, 100, steps_per_epoch=10, start=2, every=2, factor=0.5)
    lrs = [sched.lr_at(s) for s in (0, 19, 20, 39, 40, 60)]
    # epochs 0-1 at the peak, 2-3 halved, 4-5 quartered, 6 an eighth (MultiStepLR at 2, 4, 6)
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]


def test_losses(tmp_path):
    data = tone_task(tmp_path / "data")
    labelled = load_labelled(str(data))
    splits = {"train": labelled.splits["train"], "valid": []}
    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5]])

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return logits

    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    spec, g = torch.zeros(2, 1, 4, 4), torch.Generator().manual_seed(0)
    no_aug = ["augment.mixup=0", "augment.shift=0"]

    def loss(*sets):
        task = FineTuneTask(cfg_for(data, *no_aug, *sets), labelled, splits)
        return float(task.training_loss(Fixed(), spec, g, y))

    logp = torch.log_softmax(logits, dim=1)
    assert loss("loss.kind=ce") == pytest.approx(float(-(y * logp).sum(1).mean()))
    smooth = 0.9 * y + 0.1 / 2  # (1 - e) y + e / K
    assert loss("loss.kind=ce", "loss.label_smoothing=0.1") == pytest.approx(
        float(-(smooth * logp).sum(1).mean())
    )
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    assert loss("loss.kind=bce") == pytest.approx(float(bce))
    with pytest.raises(ConfigError, match="label_smoothing"):
        cfg_for(data, "loss.kind=bce", "loss.label_smoothing=0.1")


def test_weight_averaging_and_data_without_a_test_split(tmp_path, monkeypatch):
    data = tone_task(tmp_path / "data")  # 8 training clips: 2 steps per epoch at batch 4
    data.write_text(data.read_text().replace(",test\n", ",valid\n"))
    seen = []
    accumulate = FineTuneTask._accumulate

    def record(self, model, run_dir):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        accumulate(self, model, run_dir)

    monkeypatch.setattr(FineTuneTask, "_accumulate", record)
    sets = ("validation.average_from=2", "validation.average_to=3")
    summary = finetune(cfg_for(data, *sets), tmp_path / "avg")
    run = summary["runs"]["run"]
    assert len(seen) == 2  # validations at the ends of epochs 2 and 3 of 3
    averaged = torch.load(tmp_path / "avg" / "averaged.pt", weights_only=True)
    for k, v in averaged.items():
        mean = (seen[0][k].double() + seen[1][k].double()) / 2
        assert torch.equal(v, mean.to(v.dtype)), k
    assert run["reported"] == "averaged" and run["weights_released"] == "averaged"
    # no test split: the valid clips are scored, and a best picked on them is never reported
    plain = finetune(cfg_for(data), tmp_path / "plain")["runs"]["run"]
    assert "best" in plain["scores"] and plain["weights_released"] == "best"
    assert plain["reported"] == "final"
    assert plain["test_clips"] == 4  # the valid split (2 valid + 2 former test clips)


@pytest.mark.parametrize("family", ["test_ssast_orig", "test_ssamba", "test_ssast", "test_ssam"])
def test_every_family_fine_tunes_and_releases(tmp_path, family):
    data = tone_task(tmp_path / "data")
    cfg = cfg_for(data, f"model.source={family}", "model.fstride=10", "model.tstride=10",
                  "schedule.max_steps=2")  # fmt: skip
    summary = finetune(cfg, tmp_path / "run")
    assert 0.0 <= summary["scores"]["acc"]["mean"] <= 1.0
    clf = load_classifier(tmp_path / "run" / "classifier")
    assert clf.labels == ["high", "low"]


def test_the_release_predicts_what_the_run_scored(tmp_path):
    import axlstm

    data = tone_task(tmp_path / "data", per_class=12)
    cfg = cfg_for(data, "data.clip_seconds=0.25", "schedule.epochs=2")
    finetune(cfg, tmp_path / "run")
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    clf = axlstm.load_classifier(tmp_path / "run" / "classifier")
    rows = [r.split(",") for r in data.read_text().splitlines()[1:]]
    test = [(str(data.parent / r[0]), r[1]) for r in rows if r[2] == "test"]
    preds = clf.predict([p for p, _ in test], top_k=1)
    acc = np.mean([p.labels[0] == label for p, (_, label) in zip(preds, test, strict=True)])
    # 0.6 s clips, 0.25 s windows: several half-overlapping windows per clip, as in scoring
    assert acc == pytest.approx(result["scores"][result["weights_released"]]["acc"])


def test_export_of_a_fine_tuning_checkpoint_points_at_the_release(tmp_path, capsys):
    data = tone_task(tmp_path / "data")
    finetune(cfg_for(data, "schedule.max_steps=1"), tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    assert main(["export", str(ckpt), str(tmp_path / "out")]) == 1
    assert "RUN/classifier" in capsys.readouterr().err


def test_evaluation_reads_a_split_in_chunks_and_keeps_it_only_when_it_fits(tmp_path, monkeypatch):
    import axlstm.finetune.data as fdata
    from axlstm.finetune.data import EvalClips, clip_windows
    from axlstm.finetune.scoring import score_clips, split_probabilities

    data = tone_task(tmp_path / "data")
    paths = [it.path for it in load_labelled(str(data)).splits["train"]]
    paths.insert(3, str(tmp_path / "absent.wav"))  # counted, not fatal
    model = build_classifier(FinetuneModelConfig(source="test_axlstm"),
                             create_model("test_axlstm"), 2, 50).eval()  # fmt: skip
    fe, frames = model.front_end_config, 50
    whole = clip_windows(paths, fe, frames)
    targets = torch.zeros(len(whole.kept), 2)
    targets[:, 0] = 1
    reads = []
    real = fdata.clip_windows
    monkeypatch.setattr(
        fdata, "clip_windows", lambda p, *a, **k: reads.append(len(p)) or real(p, *a, **k)
    )
    for budget, cached in ((2**30, True), (0, False)):
        reads.clear()
        clips = EvalClips(paths, fe, frames, chunk_clips=3, cache_bytes=budget)
        for _ in range(2):  # two validations
            probs, kept = split_probabilities(model, clips.chunks(), multilabel=False)
            assert kept == whole.kept  # indices into the whole list, the absent file left out
            ref, ref_probs = score_clips(model, whole, targets, multilabel=False)
            # the same windows in other batches: a GEMM may sum in another order for another
            # batch size, so float32 rounding (not exact equality) is what is promised
            torch.testing.assert_close(probs, ref_probs, rtol=1e-5, atol=1e-6)
        assert list(clips.failed) == [str(tmp_path / "absent.wav")]
        assert clips.cached == cached
        assert reads == [3, 3, 3] * (1 if cached else 2)  # 9 paths in chunks of 3


def test_finetune_starts_from_a_release_folder(tmp_path):
    """``--model RELEASE``: the encoder fine-tuned is the release's, weight for weight (the
    frozen mode keeps it unchanged through training, so the released classifier shows it)."""
    import axlstm

    release = tmp_path / "release"
    create_model("test_axlstm").save_pretrained(release)
    data = tone_task(tmp_path / "data")
    out = tmp_path / "run"
    args = ["finetune", "--config", "debug", "--model", str(release), "--data", str(data),
            "--out", str(out), "--max-steps", "2", "--no-progress", "--set", "model.mode=frozen",
            "data.clip_seconds=0.5", "optim.global_batch=4"]  # fmt: skip
    assert main(args) == 0
    clf = axlstm.load_classifier(out / "classifier")
    encoder = clf.model.encoder.state_dict()
    saved = axlstm.load_model(release).state_dict()
    shared = [k for k in encoder if k in saved]
    assert len(shared) > 10 and all(torch.equal(encoder[k], saved[k]) for k in shared)


def test_balanced_sampling_draws_rare_classes_as_often_as_common_ones(tmp_path):
    from axlstm.finetune.data import LabelledSource

    labelled = load_labelled(str(tone_task(tmp_path / "data", per_class=12)))
    train = labelled.splits["train"]  # 8 low, 8 high
    low = [it for it in train if labelled.vocabulary[it.labels[0]] == "low"]
    high = [it for it in train if labelled.vocabulary[it.labels[0]] == "high"]
    items = low + high[:1]  # 8 to 1

    class Spec:  # the processor's interface, without features
        sample_rate = SR

        def from_wave(self, wave, rng, path):
            return torch.zeros(1)

    def rare_share(balanced: bool) -> float:
        source = LabelledSource(items, labelled.targets(items), balanced=balanced)
        rng = np.random.default_rng(0)
        drawn = [source.load(i % len(items), Spec(), rng)["target"] for i in range(360)]
        return float(np.mean([float(t[labelled.vocabulary.index("high")]) for t in drawn]))

    assert rare_share(False) == pytest.approx(1 / 9)  # each item in turn
    assert 0.4 < rare_share(True) < 0.6  # both classes weigh the same: about 1/2 each
