"""Model cards (issue 14, item 2): the README.md every release gets, its Hub metadata header,
the body's facts, evaluation tables from results.json, classifiers, ``axlstm card``, and that a
card never costs a release."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import yaml

import axlstm
from axlstm.cli.main import main
from axlstm.core.errors import InputError, UsageError
from axlstm.finetune.publish import write_model_card
from axlstm.finetune.release import save_classifier
from axlstm.models import AudioClassifier
from axlstm.models import card as card_module
from axlstm.models.card import card_state, load_results, select_results

FAMILY_TAGS = {
    "test_axlstm": "xlstm",
    "test_ssast": "transformer",
    "test_ssast_orig": "transformer",
    "test_ssamba": "mamba",
    "test_ssam": "mamba",
}


def header_and_body(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def read_card(folder) -> tuple[dict, str]:
    return header_and_body((folder / "README.md").read_text(encoding="utf-8"))


@pytest.fixture
def release(tmp_path):
    torch.manual_seed(0)
    model = axlstm.create_model("test_axlstm")
    return model, model.save_pretrained(tmp_path / "rel")


def write_results(path, entries: dict) -> None:
    path.write_text(json.dumps(entries), encoding="utf-8")


RESULTS = {
    "rel": {
        "esc": {"mean": 0.8123, "ci95": 0.0211, "scores": [0.8, 0.82, 0.81], "metric": "top1_acc"},
        "pitch": {"mean": None, "ci95": None, "scores": [], "error": "out of memory"},
    },
    "logmel": {
        "esc": {"mean": 0.4, "ci95": None, "scores": [0.4], "metric": "top1_acc"},
        "pitch": {"mean": 0.2, "ci95": 0.01, "scores": [0.2, 0.2], "metric": "pitch_acc"},
    },
}


# ------------------------------------------------------------------------------- encoders
@pytest.mark.parametrize("preset", sorted(FAMILY_TAGS))
def test_every_release_gets_a_card_with_the_hub_header(preset, tmp_path):
    model = axlstm.create_model(preset)
    folder = model.save_pretrained(tmp_path / preset)
    meta, body = read_card(folder)
    assert meta["library_name"] == "axlstm" and meta["license"] == "other"
    assert meta["pipeline_tag"] == "feature-extraction" and "datasets" not in meta
    assert {"audio", "self-supervised", FAMILY_TAGS[preset], preset} <= set(meta["tags"])
    assert f"`{preset}`" in body
    assert f"{model.num_parameters('encoder'):,} encoder" in body
    assert f"{model.num_parameters('all'):,} in all" in body
    fe = model.front_end_config
    assert "mono audio at 16 kHz" in body and f"{fe.n_mels} bins" in body
    assert "hf-hub:ORG/NAME" in body and "## Limits" in body
    assert axlstm.load_model(folder).config == model.config  # the release is untouched


def test_the_hub_parses_the_header(release):
    hf = pytest.importorskip("huggingface_hub")
    _, folder = release
    card = hf.ModelCard((folder / "README.md").read_text(encoding="utf-8"))
    data = card.data.to_dict()
    assert data["library_name"] == "axlstm" and data["pipeline_tag"] == "feature-extraction"
    assert "## Use" in card.text


def test_front_end_facts(tmp_path):
    _, body = read_card(axlstm.create_model("test_axlstm").save_pretrained(tmp_path / "a"))
    assert "hop 160 samples = 10 ms" in body and "per clip" in body
    assert "one 160-dimensional frame every 40 ms" in body
    _, body = read_card(axlstm.create_model("test_ssast_orig").save_pretrained(tmp_path / "b"))
    assert "Kaldi filterbank (128 bins, 25 ms frames every 10 ms)" in body
    assert "fixed input length: 128 frames (1.28 s)" in body and "fixed statistics" in body


def test_pretraining_provenance_licence_and_datasets(tmp_path):
    model = axlstm.create_model("test_ssam")
    train = {
        "model": {"name": "test_ssam"},
        "data": {"paths": ["/data/audioset_shards"]},
        "optim": {"global_batch": 1024, "base_lr": 1.5e-4},
        "schedule": {"epochs": 100, "steps_per_epoch": 2003},
        "engine": {"precision": "fp16", "seed": 0},
    }
    folder = model.save_pretrained(
        tmp_path / "r",
        source="axlstm pretrain",
        run_dir="/runs/ssam",
        step=200300,
        samples_seen=205_107_200,
        train_config=train,
        license="apache-2.0",
        datasets=["agkphysics/AudioSet"],
        note="made for a test",
    )
    meta, body = read_card(folder)
    assert meta["license"] == "apache-2.0" and meta["datasets"] == ["agkphysics/AudioSet"]
    assert "Pretrained with `axlstm pretrain` for 200,300 steps (205,107,200" in body
    assert "`/data/audioset_shards`" in body and "global batch 1024" in body
    assert "- note: `made for a test`" in body
    assert "random" not in body.lower() and "Licence: not recorded" not in body


def test_random_and_unknown_weights_are_said(tmp_path):
    model = axlstm.create_model("test_axlstm")
    _, body = read_card(model.save_pretrained(tmp_path / "a", source="random initialisation"))
    assert "**These weights are random (not trained)**" in body
    _, body = read_card(model.save_pretrained(tmp_path / "b"))
    assert "No provenance is recorded" in body and "random weights" in body
    _, body = read_card(
        model.save_pretrained(
            tmp_path / "c", official_checkpoint="axlstm_tiny.pth", converted_from_arch="axlstm_tiny"
        )
    )
    assert "Converted with `axlstm convert` from the official checkpoint" in body
    assert "original authors'" in body


# -------------------------------------------------------------------------------- results
def test_results_table_and_it_survives_regeneration(release, tmp_path):
    _, folder = release
    write_results(tmp_path / "results.json", RESULTS)
    write_model_card(folder, tmp_path / "results.json")
    _, body = read_card(folder)
    assert "| task | metric | score | seeds | log-mel baseline |" in body
    assert "| esc | top1_acc | 0.812 ± 0.021 | 3 | 0.400 |" in body
    assert "| pitch | ? | failed (out of memory) | 0 | 0.200 ± 0.010 |" in body
    assert "Evaluated only on the 2 task(s) above" in body
    assert card_state(folder)["results"]["label"] == "rel"
    write_model_card(folder, license="mit", repo_id="org/name")  # results kept
    meta, body = read_card(folder)
    assert meta["license"] == "mit" and "0.812 ± 0.021" in body
    assert 'axlstm.load_model("hf-hub:org/name")' in body and "# name" in body
    axlstm.load_model(folder).save_pretrained(folder)  # a re-save keeps them too
    meta, body = read_card(folder)
    assert meta["license"] == "mit" and "0.812 ± 0.021" in body


def test_results_need_a_model_label_when_ambiguous(release, tmp_path):
    _, folder = release
    results = {"a": RESULTS["rel"], "b": RESULTS["rel"], "logmel": RESULTS["logmel"]}
    write_results(tmp_path / "r.json", results)
    with pytest.raises(InputError, match=r"holds 2 models \('a', 'b'\)"):
        write_model_card(folder, tmp_path / "r.json")
    with pytest.raises(InputError, match="no model labelled 'c'"):
        write_model_card(folder, tmp_path / "r.json", results_model="c")
    write_model_card(folder, tmp_path / "r.json", results_model="b")
    assert card_state(folder)["results"]["label"] == "b"
    hub = {"hf-hub:org/name": RESULTS["rel"], "b": RESULTS["rel"]}  # as evaluate labels it
    write_results(tmp_path / "h.json", hub)
    write_model_card(folder, tmp_path / "h.json", repo_id="org/name")
    assert card_state(folder)["results"]["label"] == "hf-hub:org/name"
    only = select_results({"x": RESULTS["rel"], "logmel": RESULTS["logmel"]})
    assert only["label"] == "x" and only["baseline"]["esc"]["mean"] == 0.4


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[]", "not the results.json"),
        ('{"m": {"t": {"ci95": 1}}}', "needs 'mean'"),
        ('{"m": {"t": {"mean": "high", "ci95": null}}}', "finite numbers or null"),
        ('{"m": {"t": {"mean": 1, "ci95": null, "scores": 3}}}', "'scores' must be a list"),
        ('{"m": ', "invalid JSON"),
    ],
)
def test_bad_results_are_refused(text, match, tmp_path):
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(InputError, match=match) as err:
        load_results(path)
    assert str(path) in str(err.value)


# ----------------------------------------------------------------------------- classifier
def test_classifier_release_gets_a_classifier_card(tmp_path):
    torch.manual_seed(1)
    clf = AudioClassifier(axlstm.create_model("test_axlstm"), 3).eval()
    folder = save_classifier(
        clf,
        tmp_path / "clf",
        labels=["dog", "cat", "bird"],
        multilabel=False,
        clip_seconds=0.5,
        provenance={"source": "axlstm finetune", "data": "esc50", "weights": "averaged"},
    )
    meta, body = read_card(folder)
    assert meta["pipeline_tag"] == "audio-classification"
    assert "audio-classification" in meta["tags"] and "xlstm" in meta["tags"]
    assert "3 labels, a softmax: `dog`, `cat`, `bird`." in body
    assert "windows of 51 frames (hop 25)" in body and "Fine-tuned with `axlstm finetune`" in body
    assert 'axlstm.load_classifier("hf-hub:ORG/NAME")' in body
    assert "axlstm predict clip.wav --model hf-hub:ORG/NAME" in body
    head = 2 * 32 + 32 * 3 + 3
    assert f"{head:,} parameters" in body
    before = (folder / "README.md").read_text()
    write_model_card(folder)  # regenerated from the folder alone: the same card
    assert (folder / "README.md").read_text() == before


# -------------------------------------------------------------------------------- the CLI
def test_card_cli(release, tmp_path, capsys):
    _, folder = release
    write_results(tmp_path / "results.json", RESULTS)
    args = ["card", str(folder), "--results", str(tmp_path / "results.json")]
    args += ["--license", "mit", "--dataset", "org/data", "--repo", "org/name", "--revision", "v1"]
    assert main(args) == 0
    assert f"wrote {folder / 'README.md'}" in capsys.readouterr().out
    meta, body = read_card(folder)
    assert meta["license"] == "mit" and meta["datasets"] == ["org/data"]
    assert "hf-hub:org/name@v1" in body and "0.812 ± 0.021" in body


def test_card_cli_errors(release, tmp_path, capsys):
    _, folder = release
    assert main(["card", str(tmp_path / "nowhere")]) == 1
    assert "axlstm card: error:" in capsys.readouterr().err
    assert main(["card", str(folder), "--revision", "v1"]) == 2
    assert main(["card", str(folder), "--repo", "no-slash"]) == 2
    (tmp_path / "bad.json").write_text("{")
    assert main(["card", str(folder), "--results", str(tmp_path / "bad.json")]) == 1
    assert "bad.json: invalid JSON" in capsys.readouterr().err


def test_hand_written_readme_is_kept(release, capsys):
    model, folder = release
    (folder / "README.md").write_text("# my own card\n")
    model.save_pretrained(folder)  # saving again keeps it
    assert (folder / "README.md").read_text() == "# my own card\n"
    with pytest.raises(UsageError, match="not written by axlstm"):
        write_model_card(folder)
    assert main(["card", str(folder)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["card", str(folder), "--force"]) == 0
    assert read_card(folder)[0]["library_name"] == "axlstm"


def test_a_failing_card_never_costs_the_release(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("card trouble")

    monkeypatch.setattr(card_module, "render_card", broken)
    model = axlstm.create_model("test_ssast")
    with caplog.at_level(logging.WARNING, logger="axlstm.models.card"):
        folder = model.save_pretrained(tmp_path / "r")
    assert "no model card written" in caplog.text and "card trouble" in caplog.text
    assert not (folder / "README.md").exists()
    assert axlstm.load_model(folder).config == model.config
