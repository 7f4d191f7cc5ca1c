"""Event (timestamp) tasks: reading them, frame targets, the event scoring of a probe, the
frames the evaluation uses (those of the HEAR module), and the whole path through
``axlstm evaluate`` on the built-in procedural event task."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from axlstm import hear
from axlstm.evaluation import ProbeConfig, evaluate_probe, load_task, write_builtin_tasks
from axlstm.evaluation.cache import EmbeddingError, FrameSet, task_frames
from axlstm.evaluation.event_probe import (
    EventScoring,
    event_probe_data,
    frame_targets,
    reference_events,
)
from axlstm.evaluation.postprocess import PostProcessing
from axlstm.evaluation.runner import (
    ModelSpec,
    load_embedder,
    model_specs,
    prepare_tasks,
    run_evaluation,
)
from axlstm.evaluation.sed import score_events
from axlstm.evaluation.tasks import TaskFormatError

TINY = ProbeConfig(hidden_dim=32, max_epochs=6, check_every=3, patience=2)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_event_task(root, entries_by_split, *, meta=None, seconds=1.0, labels=("a", "b")):
    """A HEAR event task whose clips are noise of ``seconds`` s; ``entries_by_split`` gives
    ``{split: {file: [events]}}``."""
    root.mkdir(parents=True)
    info = {
        "task_name": root.name,
        "embedding_type": "event",
        "prediction_type": "multilabel",
        "split_mode": "trainvaltest",
        "evaluation": ["event_onset_200ms_fms", "segment_1s_er"],
    }
    info.update(meta or {})
    (root / "task_metadata.json").write_text(json.dumps(info))
    (root / "labelvocabulary.csv").write_text(
        "idx,label\n" + "".join(f"{i},{x}\n" for i, x in enumerate(labels))
    )
    rng = np.random.default_rng(0)
    for split, entries in entries_by_split.items():
        folder = root / "16000" / split
        folder.mkdir(parents=True)
        for name in entries:
            sf.write(folder / name, 0.1 * rng.standard_normal(int(seconds * 16000)), 16000)
        (root / f"{split}.json").write_text(json.dumps(entries))
    return root


def ev(label, start, end):
    return {"label": label, "start": start, "end": end}


SIMPLE = {
    "train": {"t0.wav": [ev("a", 100, 400)], "t1.wav": [ev("b", 0, 900)]},
    "valid": {"v0.wav": [ev("a", 200, 300)]},
    "test": {"s0.wav": [], "s1.wav": [ev("b", 500, 800)]},
}


# ------------------------------------------------------------------------------------- reading
def test_overlapping_events_of_one_label_are_merged(tmp_path, caplog):
    entries = {k: dict(v) for k, v in SIMPLE.items()}
    entries["train"]["t0.wav"] = [ev("a", 100, 400), ev("b", 150, 250), ev("a", 300, 600)]
    task = load_task(write_event_task(tmp_path / "t", entries))
    assert task.is_event and task.scores == ["event_onset_200ms_fms", "segment_1s_er"]
    with caplog.at_level("WARNING"):
        events = task.events("train")
    assert events["t0.wav"] == [(100.0, 600.0, "a"), (150.0, 250.0, "b")]
    assert "1 events overlap" in caplog.text
    assert task.postprocessing() == [PostProcessing(250.0, 125.0), PostProcessing(250.0, 250.0)]


def test_a_maestro_like_task_gives_its_grid_and_monitors_the_loss(tmp_path):
    """hear-preprocess writes the grid under evaluation_params (MAESTRO: 150 ms x 50 ms) and
    MAESTRO stops early on the validation loss."""
    meta = {
        "evaluation": ["event_onset_50ms_fms", "event_onset_offset_50ms_20perc_fms"],
        "use_scoring_for_early_stopping": False,
        "evaluation_params": {
            "event_postprocessing_grid": {"median_filter_ms": [150], "min_duration": [50]}
        },
    }
    task = load_task(write_event_task(tmp_path / "m", SIMPLE, meta=meta))
    assert task.postprocessing() == [PostProcessing(150.0, 50.0)]
    assert not task.monitor_score and task.primary_score == "event_onset_50ms_fms"
    embedder, _ = load_embedder(ModelSpec("logmel", "logmel"))
    frames, _ = task_frames(embedder, task)
    result = evaluate_probe(event_probe_data(task, frames), [0, 1], TINY)
    assert result.chosen == [[PostProcessing(150.0, 50.0)]] * 2
    # monitored on the loss: the best check's value is minus the validation loss
    assert all(v < 0 for row in result.grid_valid for v in row)
    assert set(result.scores) == {"event_onset_50ms_fms", "event_onset_offset_50ms_20perc_fms"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e, m: e["train"].update({"t0.wav": [ev("a", -5, 10)]}), "negative time"),
        (lambda e, m: e["train"].update({"t0.wav": [ev("c", 0, 10)]}), r"\['c'\] are not in"),
        (lambda e, m: e["train"].update({"t0.wav": [ev("a", 30, 10)]}), "ends before it starts"),
        (lambda e, m: e.update({"valid": {}}), "the split is empty"),
        (lambda e, m: e.update({"train": {"t0.wav": [], "t1.wav": []}}), "hold no event"),
        (lambda e, m: m.update({"evaluation": ["segment_1s_er"]}), "one to minimise"),
        (lambda e, m: m.update({"evaluation": ["top1_acc"]}), "unknown scores"),
        (
            lambda e, m: m.update(
                {"evaluation_params": {"event_postprocessing_grid": {"median_filter_ms": [-1]}}}
            ),
            "event_postprocessing_grid",
        ),
    ],
)
def test_bad_event_tasks_name_the_file(tmp_path, change, message):
    entries = {k: dict(v) for k, v in SIMPLE.items()}
    meta: dict = {}
    change(entries, meta)
    with pytest.raises(TaskFormatError, match=message):
        load_task(write_event_task(tmp_path / "t", entries, meta=meta))


def frames_of(task, split, hop_ms=40.0, dim=3):
    """A FrameSet with frames every ``hop_ms`` from 15 ms, as AxLSTM's, for ``split``."""
    files = task.files(split)
    counts, stamps = [], []
    for name in files:
        seconds = sf.info(str(task.audio_path(split, name))).duration
        ts = np.arange(15.0, 1000.0 * seconds, hop_ms)
        counts.append(len(ts))
        stamps.append(ts)
    total = sum(counts)
    return FrameSet(
        files,
        np.zeros((total, dim), np.float32),
        np.concatenate(stamps),
        np.array(counts),
        np.array([sf.info(str(task.audio_path(split, n))).duration for n in files]),
    )


def test_frame_targets_include_both_ends_and_events_are_cut_at_the_clip_end(tmp_path):
    entries = {k: dict(v) for k, v in SIMPLE.items()}
    entries["train"]["t0.wav"] = [ev("a", 55, 135), ev("b", 900, 1500)]  # ends after 1 s
    task = load_task(write_event_task(tmp_path / "t", entries))
    frames = frames_of(task, "train")
    refs = reference_events(task, "train", frames)
    assert refs["t0.wav"] == [(55.0, 135.0, "a"), (900.0, 1000.0, "b")]
    y = frame_targets(task.labels, frames, refs)
    t0 = frames.file_slices()[0]
    ts, y0 = frames.timestamps[t0], y[t0]
    assert ts[1] == 55.0 and ts[3] == 135.0  # frames at 55 and 135 ms: both ends inside
    assert y0[:, 0].nonzero()[0].tolist() == [1, 2, 3]
    assert y0[:, 1].nonzero()[0].tolist() == [i for i, t in enumerate(ts) if t >= 900]


def test_an_event_after_the_clip_end_is_an_error_naming_the_file(tmp_path):
    entries = {k: dict(v) for k, v in SIMPLE.items()}
    entries["test"]["s1.wav"] = [ev("b", 1200, 1500)]
    task = load_task(write_event_task(tmp_path / "t", entries))
    with pytest.raises(TaskFormatError, match=r"s1\.wav: the event 'b' at 1200-1500 ms starts"):
        reference_events(task, "test", frames_of(task, "test"))


def test_event_scoring_chooses_the_post_processing_on_validation(tmp_path):
    """Validation: a 2-frame blip of 'a' at 200-240 ms; the grid's 0 ms minimum duration keeps
    it (F = 1), 125 ms drops it (F = NaN -> 0): the first point is chosen and tested."""
    task = load_task(write_event_task(tmp_path / "t", SIMPLE))
    valid, test = frames_of(task, "valid"), frames_of(task, "test")
    grid = [PostProcessing(0.0, 0.0), PostProcessing(0.0, 125.0)]
    scoring = EventScoring(
        task.scores,
        task.labels,
        grid,
        valid,
        reference_events(task, "valid", valid),
        test,
        reference_events(task, "test", test),
    )
    probs = np.zeros((valid.x.shape[0], 2), np.float32)
    probs[[5, 6], 0] = 0.9  # frames at 215 and 255 ms: an event 215-255 ms, onset 15 ms late
    value, scores, chosen = scoring.valid(torch.from_numpy(probs))
    assert (value, chosen) == (1.0, grid[0]) and scores["event_onset_200ms_fms"] == 1.0
    test_probs = np.zeros((test.x.shape[0], 2), np.float32)
    s1 = test.file_slices()[1]
    test_probs[s1.start + 13 : s1.start + 21, 1] = 0.8  # 535-815 ms on s1
    scores, events = scoring.test(torch.from_numpy(test_probs), chosen)
    assert events == {"s0.wav": [], "s1.wav": [(535.0, 815.0, "b")]}
    assert scores["event_onset_200ms_fms"] == 1.0
    assert scores["segment_1s_er"] == 0.0


# ----------------------------------------------------------------- frames and the whole path
@pytest.fixture(scope="module")
def builtin_events(tmp_path_factory):
    return write_builtin_tasks(tmp_path_factory.mktemp("tasks"), names=["sound_events"])[0]


@pytest.mark.parametrize("preset", ["test_axlstm", "test_ssamba"])
def test_evaluation_frames_are_the_hear_modules_timestamp_embeddings(builtin_events, preset):
    task = load_task(builtin_events)
    embedder, _ = load_embedder(ModelSpec(preset, preset))
    frames, cached = task_frames(embedder, task)
    assert not cached
    fs = frames["test"]
    model = hear.load_model(preset)
    model.encoder.load_state_dict(embedder.model.state_dict())
    for i in (0, 5):
        wave, rate = sf.read(str(task.audio_path("test", fs.files[i])), dtype="float32")
        emb, ts = hear.get_timestamp_embeddings(torch.from_numpy(wave)[None], model)
        part = fs.file_slices()[i]
        assert np.diff(fs.timestamps[part]).max() <= 50.0  # 40 ms for every family
        np.testing.assert_array_equal(fs.timestamps[part], ts[0].numpy())
        torch.testing.assert_close(torch.from_numpy(fs.x[part]), emb[0], rtol=1e-5, atol=1e-6)


def test_evaluate_scores_the_builtin_event_task_and_writes_rescorable_events(
    builtin_events, tmp_path
):
    tasks = prepare_tasks([str(builtin_events)])
    assert tasks[0].task is not None and tasks[0].task.is_event
    report = run_evaluation(
        model_specs(["test_axlstm"]),
        tasks,
        tmp_path / "report",
        seeds=2,
        probe=TINY,
        cache_dir=tmp_path / "cache",
        charts=False,
    )
    for model in ("test_axlstm", "logmel"):
        outcome = report.outcomes[model]["sound_events"]
        assert outcome.ok and outcome.metric == "event_onset_200ms_fms"
        assert all(0.0 <= s <= 1.0 for s in outcome.scores)
        assert len(outcome.extra["secondary"]["segment_1s_er"]) == 2
        # the written events re-score to the reported test score, exactly
        task = tasks[0].task
        for seed, score in enumerate(outcome.scores):
            path = tmp_path / "report" / outcome.extra["events"] / f"seed{seed}.json"
            written = json.loads(path.read_text())
            assert sorted(written["files"]) == sorted(task.files("test"))
            frames_ref = {
                name: [(a, min(b, 4000.0), lab) for a, b, lab in evs]
                for name, evs in task.events("test").items()
            }
            rescored = score_events("event_onset_200ms_fms", frames_ref, written["files"])
            assert (0.0 if math.isnan(rescored) else rescored) == score
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert results["logmel"]["sound_events"]["metric"] == "event_onset_200ms_fms"
    assert "event_onset_200ms_fms" in (tmp_path / "report" / "report.md").read_text()


def test_kfold_event_task_probes_every_fold(tmp_path):
    folder = write_builtin_tasks(tmp_path, names=["sound_events"], folds=3)[0]
    task = load_task(folder)
    embedder, _ = load_embedder(ModelSpec("logmel", "logmel"))
    frames, _ = task_frames(embedder, task)
    data = event_probe_data(task, frames)
    result = evaluate_probe(data, [0], TINY)
    assert len(result.fold_scores["event_onset_200ms_fms"][0]) == 3
    tested = {name for events in result.outputs[0] for name in events}
    assert tested == {n for s in task.splits for n in task.files(s)}  # each file tested once


def test_a_clip_too_short_for_the_front_end_is_named(tmp_path):
    entries = {k: dict(v) for k, v in SIMPLE.items()}
    root = write_event_task(tmp_path / "t", entries)
    sf.write(root / "16000" / "test" / "s0.wav", np.zeros(100), 16000)
    task = load_task(root)
    embedder, _ = load_embedder(ModelSpec("test_axlstm", "test_axlstm"))
    with pytest.raises(EmbeddingError, match=r"1 of 5 files .*/s0\.wav: too short: 100 samples"):
        task_frames(embedder, task)
