"""``axlstm embed``: embeddings of audio files, folders and manifests into .npz, .npy or Parquet.

Output layout (see docs/embeddings.md):

* ``.npz``: ``files`` (n,), ``scene`` (n, D) — (n, K, D) with several layers —, ``duration``
  (n,) seconds, ``layers`` (K,), ``failed_files`` (m,), ``failed_reasons`` (m,), ``settings``
  (a JSON string); with ``--frames`` also ``frames`` (sum T_i, D), ``timestamps`` (sum T_i,) ms
  and ``offsets`` (n + 1,): file i's frames are ``frames[offsets[i]:offsets[i + 1]]``.
* ``.npy``: ``OUT.npy`` holds ``scene``; with ``--frames`` ``OUT.frames.npy``,
  ``OUT.timestamps.npy`` and ``OUT.offsets.npy`` hold the rest; the report names the rows.
* ``.parquet``: one row per embedded file with columns ``file``, ``duration``, ``scene`` and
  with ``--frames`` ``frames`` and ``timestamps``; settings and failures in the schema metadata
  (key ``axlstm``).

Every format also gets a report ``OUT.json`` (files, failures with reasons, settings). The
exit code is 0 when at least one file was embedded, 1 when every file failed.

The output is checked for writability before any file is embedded. Finished work is kept in
``OUT.partial/`` as the run goes (see :mod:`axlstm.embedding.store`): after Ctrl-C, SIGTERM or
a crash, the same command with ``--resume`` embeds only the files not done yet.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from axlstm._version import __version__
from axlstm.cli.common import parse_device, positive_float, positive_int
from axlstm.core.errors import UsageError
from axlstm.core.fileio import atomic_write, check_output_file
from axlstm.core.interrupt import interrupts_deferred
from axlstm.embedding import (
    collect_inputs,
    front_end_config,
    iter_file_embeddings,
    layer_labels,
    model_layers,
    model_window,
    parse_layers,
    resolve_model,
)
from axlstm.embedding.store import EmbeddingStore, partial_dir
from axlstm.embedding.streaming import stream_file_embedding
from axlstm.models.compile import COMPILE_MODES, compile_encoder
from axlstm.models.streaming import StreamingEmbedder

logger = logging.getLogger(__name__)

FORMATS = (".npz", ".npy", ".parquet")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "embed",
        help="embed audio files into .npz / .npy / .parquet",
        description=(
            "Embed audio files (any format libsndfile reads, any sample rate and channel "
            "count). INPUTs are files, folders (searched recursively) or manifests (.csv with "
            "a 'path' column, .jsonl with a \"path\" key). Files that cannot be embedded are "
            "skipped and listed with their reason in the output and its OUT.json report. Exit "
            "code 0 when at least one file was embedded, 1 when all failed."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio file, folder or manifest")
    p.add_argument(
        "--model",
        required=True,
        help="release folder (see `axlstm convert`) or preset name (random weights)",
    )
    p.add_argument("--out", required=True, type=Path, help="output file: .npz, .npy or .parquet")
    p.add_argument("--frames", action="store_true", help="also store frame embeddings")
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=16,
        help="windows (whole clips with --window none) per forward pass (default 16)",
    )
    p.add_argument(
        "--layer",
        default="last",
        help="'last' (final output, default), a block index, 'all', or a list such as '3,last'",
    )
    p.add_argument(
        "--window",
        default="official",
        help=(
            "'official' (the model's windows, default: 2 s for AxLSTM, the training length "
            "for SSAST/SSAMBA), 'none' (whole clip in one pass) or frames"
        ),
    )
    p.add_argument(
        "--frame-layout",
        choices=("time", "official"),
        help="frame order (default: the model's; 'official' reproduces the official runtime)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16", "bf16"),
        default="fp32",
        help="autocast precision on CUDA (default fp32; ignored on CPU)",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help=(
            "read each file block by block through a causal AxLSTM with carried state "
            "(needs alternation='unidirectional' and a fixed-statistics front end)"
        ),
    )
    p.add_argument(
        "--block-seconds",
        type=positive_float,
        default=1.0,
        help="audio per streamed block (default 1 s)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help=(
            "run the encoder under torch.compile (needs a C++ compiler on the CPU, Triton on "
            "CUDA; the first batches of each new shape are slow while it compiles; not with "
            "--stream)"
        ),
    )
    p.add_argument(
        "--compile-mode",
        choices=COMPILE_MODES,
        default="auto",
        help="torch.compile mode (default auto: CUDA graphs on CUDA for fixed windows)",
    )
    p.add_argument(
        "--allow-truncated",
        action="store_true",
        help="embed the readable part of truncated files (with a warning) instead of failing them",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run: embed only the files not kept in OUT.partial/",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(path, write)


def _stack(results, key: str, shape: tuple[int, ...]) -> np.ndarray:
    arrays = [getattr(r, key) for r in results]
    if not arrays:
        return np.zeros((0, *shape), dtype=np.float32)
    return np.concatenate(arrays) if key != "scene" else np.stack(arrays)


def write_outputs(out: Path, ok, failed, settings: dict[str, Any], frames: bool, dim) -> list[Path]:
    """Write the embeddings and the report; return the paths written."""
    files = np.array([r.path for r in ok], dtype=str)
    scene = _stack(ok, "scene", dim).astype(np.float32)
    duration = np.array([r.duration for r in ok], dtype=np.float64)
    layers = np.array(settings["layers"], dtype=str)
    failed_files = np.array([r.path for r in failed], dtype=str)
    failed_reasons = np.array([r.error for r in failed], dtype=str)
    arrays: dict[str, np.ndarray] = {}
    if frames:
        counts = [r.frames.shape[0] for r in ok]
        arrays["frames"] = _stack(ok, "frames", dim).astype(np.float32)
        arrays["timestamps"] = _stack(ok, "timestamps", ()).astype(np.float32)
        arrays["offsets"] = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(
            np.int64
        )
    written = []
    suffix = out.suffix.lower()
    if suffix == ".npz":

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    files=files,
                    scene=scene,
                    duration=duration,
                    layers=layers,
                    failed_files=failed_files,
                    failed_reasons=failed_reasons,
                    settings=np.array(json.dumps(settings)),
                    **arrays,
                )

        atomic_write(out, write)
        written.append(out)
    elif suffix == ".npy":
        _save_npy(out, scene)
        written.append(out)
        for key, value in arrays.items():
            extra = out.with_name(f"{out.stem}.{key}.npy")
            _save_npy(extra, value)
            written.append(extra)
    elif suffix == ".parquet":
        written.append(_write_parquet(out, ok, scene, duration, arrays, settings, failed))
    report = {
        "settings": settings,
        "files": files.tolist(),
        "duration": duration.tolist(),
        "failed": [{"file": r.path, "reason": r.error} for r in failed],
        "outputs": [str(p) for p in written],
    }
    if suffix == ".npy" and frames:
        report["frames_layout"] = "file i: frames[offsets[i]:offsets[i + 1]]"
    report_path = out.with_suffix(".json")
    text = json.dumps(report, indent=2) + "\n"
    atomic_write(report_path, lambda tmp: Path(tmp).write_text(text))
    return [*written, report_path]


def _fixed_lists(values: np.ndarray, pa):
    """(n, *shape) float array as n nested fixed-size lists."""
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    for size in reversed(values.shape[1:]):
        flat = pa.FixedSizeListArray.from_arrays(flat, size)
    return flat


def _write_parquet(out: Path, ok, scene, duration, arrays, settings, failed) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {
        "file": pa.array([r.path for r in ok], type=pa.string()),
        "duration": pa.array(duration, type=pa.float64()),
        "scene": _fixed_lists(scene, pa),
    }
    if arrays:
        offsets = pa.array(arrays["offsets"].astype(np.int32))
        columns["frames"] = pa.ListArray.from_arrays(offsets, _fixed_lists(arrays["frames"], pa))
        columns["timestamps"] = pa.ListArray.from_arrays(offsets, pa.array(arrays["timestamps"]))
    meta = {"settings": settings, "failed": [{"file": r.path, "reason": r.error} for r in failed]}
    table = pa.table(columns).replace_schema_metadata({"axlstm": json.dumps(meta)})
    atomic_write(out, lambda tmp: pq.write_table(table, tmp))
    return out


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.suffix.lower() not in FORMATS:
        raise UsageError(f"--out must end in {', '.join(FORMATS)}, got {out}")
    if out.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError(
                "Parquet output needs pyarrow: pip install 'axlstm[parquet]'"
            ) from None
    check_output_file(out, "--out")  # before any work, not after it
    device = parse_device(args.device)
    model = resolve_model(args.model, device=device, frame_layout=args.frame_layout)
    front_end = front_end_config(model)  # fails early for models with another input kind
    model_window(model, args.window)
    indices, single = parse_layers(args.layer, model_layers(model))
    dim = (model.frame_dim,) if single else (len(indices), model.frame_dim)
    if args.stream:
        if not single or indices != [None]:
            raise UsageError("--stream gives the final output only: leave --layer at 'last'")
        if not model.supports_streaming:
            raise UsageError(
                "--stream needs a causal AxLSTM (alternation='unidirectional'); "
                f"{type(model).__name__} model {model.config.name!r} cannot stream"
            )
    if args.compile:
        if args.stream:
            raise UsageError("--compile applies to the windowed encoder, not to --stream")
        # whole clips have every length: one dynamic graph; fixed windows: static graphs (one
        # per batch size; CUDA graphs under mode "auto")
        whole = model_window(model, args.window) is None
        compile_encoder(model, mode=args.compile_mode, dynamic=whole)
    paths = collect_inputs(args.inputs)
    if not paths:
        raise UsageError(f"no audio files found in {', '.join(map(str, args.inputs))}")
    settings = {
        "model": str(args.model),
        "model_config": model.config.to_dict(),
        "window": f"stream ({args.block_seconds:g} s blocks)" if args.stream else args.window,
        "frame_layout": model.config.frame_layout,
        "layer": args.layer,
        "layers": layer_labels(indices),
        "precision": args.precision,
        "frames": bool(args.frames),
        "allow_truncated": bool(args.allow_truncated),
        "sample_rate": front_end.sample_rate,
        "device": str(device),
        "axlstm_version": __version__,
    }
    store = EmbeddingStore(out, settings, resume=args.resume, frames=args.frames)
    todo = [p for p in paths if p not in store.done]
    logger.info("embedding %d files with %s on %s", len(todo), args.model, device)

    if args.stream:
        embedder = StreamingEmbedder(model)
        results = (
            stream_file_embedding(embedder, p, args.block_seconds, args.allow_truncated)
            for p in todo
        )
    else:
        results = iter_file_embeddings(
            model,
            todo,
            batch_size=args.batch_size,
            window=args.window,
            layer=args.layer,
            precision=args.precision,
            allow_truncated=args.allow_truncated,
        )
    _embed_all(results, store, args, total=len(paths), done=len(paths) - len(todo))
    final = store.results(paths)
    ok = [r for r in final if r.ok]
    failed = [r for r in final if not r.ok]
    # a signal arriving now must not leave both the finished output and OUT.partial behind
    with interrupts_deferred("writing the finished output"):
        written = write_outputs(out, ok, failed, settings, args.frames, dim)
        store.remove()
    note = f", {len(failed)} failed (listed in {written[-1]})" if failed else ""
    print(f"embedded {len(ok)} of {len(paths)} files -> {out}{note}")
    return 0 if ok else 1


def _embed_all(results, store: EmbeddingStore, args, total: int, done: int) -> None:
    """Consume ``results`` into ``store`` with a progress bar; on Ctrl-C or SIGTERM keep what is
    finished and say how to continue."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar = tqdm(total=total, initial=done, unit="file", disable=args.no_progress, file=sys.stderr)
    try:
        with logging_redirect_tqdm(), bar:  # log lines do not tear the bar
            for result in results:
                if result.ok and not args.frames:  # keep only what is written
                    result.frames = result.timestamps = None
                if not result.ok:
                    logger.warning("skipped %s: %s", result.path, result.error)
                store.add(result)
                bar.update(1)
    except KeyboardInterrupt:
        store.flush()
        logger.warning(
            "interrupted: %d of %d files are done and kept in %s; run the same command with "
            "--resume to embed the rest",
            len(store.done),
            total,
            partial_dir(args.out),
        )
        raise
    store.flush()
