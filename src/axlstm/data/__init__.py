"""Pretraining data: sources, the procedural corpus, crops, shards and resumable streams.

Entry points:
    build_stream(cfg, seed=..., rank=..., world=..., micro_batch=...)  batches for one rank
    ProceduralCorpus(seed, size)          synthetic clips, deterministic from (seed, index)
    write_shards(files, out_dir)          WebDataset tars of FLAC audio or log-mel arrays
    ClipProcessor                         waveform / features -> training input (model's front end)
"""

from __future__ import annotations

from axlstm.data import procedural
from axlstm.data.clips import (
    BAD_REASONS,
    BadItem,
    ClipProcessor,
    crop_or_tile,
    fit_length,
    make_processor,
)
from axlstm.data.config import DataConfig, InputDataConfig
from axlstm.data.procedural import ProceduralCorpus
from axlstm.data.shards import expand_shards, iter_tar_samples, list_inputs, write_shards
from axlstm.data.sources import FileSource, PathTable, ProceduralSource, read_manifest, scan_folder
from axlstm.data.stream import (
    DataStream,
    IndexedDataset,
    IndexedStream,
    ShardDataset,
    ShardStream,
    build_stream,
    resolve_data,
    sample_rng,
)

__all__ = [
    "BAD_REASONS",
    "BadItem",
    "ClipProcessor",
    "DataConfig",
    "DataStream",
    "FileSource",
    "IndexedDataset",
    "IndexedStream",
    "InputDataConfig",
    "PathTable",
    "ProceduralCorpus",
    "ProceduralSource",
    "ShardDataset",
    "ShardStream",
    "build_stream",
    "crop_or_tile",
    "expand_shards",
    "fit_length",
    "iter_tar_samples",
    "list_inputs",
    "make_processor",
    "procedural",
    "read_manifest",
    "resolve_data",
    "sample_rng",
    "scan_folder",
    "write_shards",
]
