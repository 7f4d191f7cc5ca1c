"""Pretraining data: sources, the procedural corpus, crops, shards and resumable streams.

Entry points:
    build_stream(cfg, seed=..., rank=..., world=..., micro_batch=...)  batches for one rank
    ProceduralCorpus(seed, size)          synthetic clips, deterministic from (seed, index)
    write_shards(files, out_dir)          WebDataset tars of FLAC audio or log-mel arrays
    ClipProcessor                         waveform / log-mel -> normalised 2 s crop
"""

from __future__ import annotations

from axlstm.data import procedural
from axlstm.data.clips import (
    BAD_REASONS,
    BadItem,
    ClipProcessor,
    FbankClipProcessor,
    crop_or_tile,
    make_processor,
    normalize_clip,
)
from axlstm.data.config import DataConfig, FbankDataConfig
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
    "FbankClipProcessor",
    "FbankDataConfig",
    "FileSource",
    "IndexedDataset",
    "IndexedStream",
    "PathTable",
    "ProceduralCorpus",
    "ProceduralSource",
    "ShardDataset",
    "ShardStream",
    "build_stream",
    "crop_or_tile",
    "expand_shards",
    "iter_tar_samples",
    "list_inputs",
    "make_processor",
    "normalize_clip",
    "procedural",
    "read_manifest",
    "resolve_data",
    "sample_rng",
    "scan_folder",
    "write_shards",
]
