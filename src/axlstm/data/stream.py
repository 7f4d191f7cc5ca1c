"""Training batches with a small, serialisable position, so a resumed run sees what an
uninterrupted run would have seen.

Two kinds of stream:

**Indexed** (folders, manifests, the procedural corpus). Global sample ``g`` (counted over
all ranks) is a pure function of ``(seed, g)``: epoch ``e = g // N`` visits items in the order
of a permutation seeded by ``(seed, e)``; the crop offset comes from a generator seeded by
``(seed, g)``; a bad item is replaced by an item drawn from ``(seed, g, attempt)``. Rank ``r``
takes samples ``[m W b + r b, m W b + (r + 1) b)`` for micro-batch ``m`` (``W`` ranks, ``b``
per rank). The position is one integer, the number of global samples consumed, and does not
depend on the number of DataLoader workers.

**Shards** (WebDataset tars). Each (rank, worker) "slot" of ``S = world x workers`` slots reads
shards ``order_e[slot::S]`` of epoch ``e``'s seeded shard order, in blocks of
``shuffle_block`` samples shuffled by a generator seeded by ``(seed, e, slot, block)``. A
slot's position is ``(epoch, samples read in that epoch)``. The DataLoader returns worker
batches in strict round-robin order, so the stream's state is the position of every slot plus
which worker delivers next; on resume each worker seeks to its position (whole shards are
skipped using ``index.json`` counts) and the workers are rotated so the order continues.
Changing the number of ranks or workers breaks exactness; the stream then starts a fresh epoch
and says so.

The datasets, the sampler and the collation live in :mod:`axlstm.data.datasets`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from axlstm.audio.listing import collect_inputs
from axlstm.core.errors import ConfigError, InputError, UsageError
from axlstm.core.fileio import check_input_file
from axlstm.data.clips import ClipProcessor, make_processor
from axlstm.data.config import DataConfig
from axlstm.data.datasets import (
    IndexedDataset,
    MicroBatchSampler,
    ShardDataset,
    collate,
    ignore_ctrl_c_in_worker,
    raise_errors,
    sample_rng,
)
from axlstm.data.procedural import ProceduralCorpus
from axlstm.data.shards import expand_shards, shard_counts
from axlstm.data.sources import (
    MANIFEST_EXTENSIONS,
    TRAINING_EXTENSIONS,
    FileSource,
    PathTable,
    ProceduralSource,
)

__all__ = [
    "DataStream",
    "IndexedDataset",
    "IndexedStream",
    "MicroBatchSampler",
    "ShardDataset",
    "ShardStream",
    "build_stream",
    "collate",
    "raise_errors",
    "resolve_data",
    "sample_rng",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ sources
def _is_shard_spec(path: str) -> bool:
    if os.path.isdir(path):
        return any(f.endswith(".tar") for f in os.listdir(path))
    return path.endswith(".tar") or any(c in path for c in "*?[{")


def resolve_data(cfg: DataConfig) -> tuple[str, Any]:
    """Decide what ``cfg.paths`` name: ``("procedural", source)``, ``("files", source)`` or
    ``("shards", urls)``."""
    paths = [str(p) for p in cfg.paths]
    if not paths or paths == ["procedural"]:
        lo, hi = cfg.procedural_seconds
        corpus = ProceduralCorpus(cfg.procedural_seed, cfg.procedural_size, lo, hi)
        return "procedural", ProceduralSource(corpus)
    if "procedural" in paths:
        raise ConfigError("data.paths: the procedural corpus cannot be mixed with data paths")
    shard_specs = [p for p in paths if _is_shard_spec(p)]
    if shard_specs and len(shard_specs) != len(paths):
        raise ConfigError(
            "cannot mix tar shards with folders or manifests in one run: "
            f"shards {shard_specs}, others {[p for p in paths if p not in shard_specs]}"
        )
    if shard_specs:
        urls = [u for spec in shard_specs for u in expand_shards(spec)]
        return "shards", urls
    for p in paths:
        if not os.path.isdir(p):  # a manifest or a file: refused by kind (a pipe, a loop)
            manifest = Path(p).suffix.lower() in MANIFEST_EXTENSIONS
            check_input_file(p, "data manifest" if manifest else "data file")
    # The package's one rule for inputs (as `axlstm embed`): folders scanned, manifests read,
    # and each real file used once, under its first name, however many ways it is named.
    found = collect_inputs(paths, TRAINING_EXTENSIONS)
    if not found:
        raise UsageError(
            f"no audio or .npy feature files found in {', '.join(paths)} (0 files with the "
            f"extensions {', '.join(TRAINING_EXTENSIONS)})"
        )
    logger.info("training on %d files from %s", len(found), ", ".join(paths))
    return "files", FileSource(PathTable(found), description=", ".join(paths))


# ------------------------------------------------------------------------------------ streams
class DataStream:
    """Batches for one rank, and the position that lets a resumed run continue exactly.

    Iterate once; call :meth:`advance` with every batch the trainer consumes; save
    :meth:`state_dict` of every rank in checkpoints and pass the list back on resume.
    """

    kind = "base"
    num_items: int | None = None
    description = ""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def advance(self, batch: dict[str, Any]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError


def _loader_options(num_workers: int, prefetch: int, pin: bool, seed: int) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "num_workers": num_workers,
        "collate_fn": collate,
        "pin_memory": pin,
        # The loader draws worker base seeds from this generator, not from the global RNG,
        # so creating it never shifts the training process's random state.
        "generator": torch.Generator().manual_seed(seed),
        "worker_init_fn": ignore_ctrl_c_in_worker,
    }
    if num_workers > 0:
        opts["prefetch_factor"] = prefetch
    return opts


class IndexedStream(DataStream):
    """Stream over an indexable source; position = global samples consumed."""

    kind = "indexed"

    def __init__(
        self,
        source,
        processor: ClipProcessor,
        cfg: DataConfig,
        seed: int,
        rank: int,
        world: int,
        micro_batch: int,
        states: Sequence[dict[str, Any]] | None = None,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = IndexedDataset(
            source, processor, seed, cfg.max_bad_attempts, errors_as_items=True
        )
        self.rank, self.world, self.micro_batch = rank, world, micro_batch
        self.num_items = len(source)
        self.description = source.description
        self.cfg, self.seed, self.pin_memory = cfg, seed, pin_memory
        per_step = world * micro_batch
        self.start = 0
        if states:
            state = states[0]
            if state.get("kind") != self.kind:
                logger.warning("data position is for %s data; starting over", state.get("kind"))
            else:
                samples = int(state["samples"])
                if samples % per_step:
                    logger.warning(
                        "resumed at %d samples, not a multiple of %d per micro-batch "
                        "(ranks or batch changed); continuing from sample %d",
                        samples,
                        per_step,
                        samples // per_step * per_step,
                    )
                if state.get("num_items") not in (None, self.num_items):
                    logger.warning(
                        "the data now has %d items, the checkpoint saw %s: the sample order "
                        "differs from the interrupted run",
                        self.num_items,
                        state.get("num_items"),
                    )
                self.start = samples // per_step
        self.consumed = self.start

    def __iter__(self) -> Iterator[dict[str, Any]]:
        sampler = MicroBatchSampler(self.start, self.rank, self.world, self.micro_batch)
        opts = _loader_options(
            self.cfg.num_workers, self.cfg.prefetch_factor, self.pin_memory, self.seed
        )
        return raise_errors(iter(DataLoader(self.dataset, batch_sampler=sampler, **opts)))

    def advance(self, batch: dict[str, Any]) -> None:
        self.consumed += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "samples": self.consumed * self.world * self.micro_batch,
            "num_items": self.num_items,
        }


class ShardStream(DataStream):
    """Stream over WebDataset shards; position = every reader's (epoch, pos) + next worker."""

    kind = "shards"

    def __init__(
        self,
        urls: Sequence[str],
        processor: ClipProcessor,
        cfg: DataConfig,
        seed: int,
        rank: int,
        world: int,
        micro_batch: int,
        states: Sequence[dict[str, Any]] | None = None,
        pin_memory: bool = False,
    ) -> None:
        self.urls = list(urls)
        self.processor = processor
        self.cfg, self.seed, self.pin_memory = cfg, seed, pin_memory
        self.rank, self.world, self.micro_batch = rank, world, micro_batch
        self.workers = max(1, cfg.num_workers)
        num_slots = world * self.workers
        if len(self.urls) < num_slots:
            raise InputError(
                f"{len(self.urls)} shard(s) cannot feed {world} rank(s) x {self.workers} "
                f"DataLoader worker(s) = {num_slots} readers; use fewer workers "
                "(data.num_workers) or write more, smaller shards (axlstm shards --shard-size)"
            )
        counts = shard_counts(self.urls)
        self.num_items = sum(counts.values()) if len(counts) == len(self.urls) else None
        self.description = f"{len(self.urls)} shard(s) starting {self.urls[0]}"
        self.positions: dict[int, tuple[int, int]] = {}
        self.offset = 0
        self.batches = 0
        if states:
            self._restore(states)

    def _restore(self, states: Sequence[dict[str, Any]]) -> None:
        same = (
            len(states) == self.world
            and all(s.get("kind") == self.kind for s in states)
            and all(s.get("workers") == self.workers for s in states)
            and all(s.get("num_shards") == len(self.urls) for s in states)
        )
        if same:
            mine = states[self.rank]
            self.positions = {int(s): (int(e), int(p)) for s, e, p in mine["slots"]}
            self.offset = int(mine["next_local_slot"])
            return
        epochs = [int(e) for s in states for _, e, _ in s.get("slots", [])]
        fresh = max(epochs) + 1 if epochs else 0
        logger.warning(
            "the shard position was saved with another number of ranks, workers or shards; "
            "it cannot be continued exactly, so reading starts a fresh pass (epoch %d)",
            fresh,
        )
        first = self.rank * self.workers
        self.positions = {first + w: (fresh, 0) for w in range(self.workers)}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        dataset = ShardDataset(
            self.urls,
            self.processor,
            self.seed,
            self.rank,
            self.world,
            self.cfg.shuffle_block,
            self.positions,
            self.offset,
            self.cfg.trust_pickle,
            errors_as_items=True,
        )
        opts = _loader_options(
            self.cfg.num_workers, self.cfg.prefetch_factor, self.pin_memory, self.seed
        )
        return raise_errors(iter(DataLoader(dataset, batch_size=self.micro_batch, **opts)))

    def advance(self, batch: dict[str, Any]) -> None:
        slot, epoch, pos = batch["position"]
        self.positions[int(slot)] = (int(epoch), int(pos))
        self.batches += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "workers": self.workers,
            "world": self.world,
            "num_shards": len(self.urls),
            "next_local_slot": (self.offset + self.batches) % self.workers,
            "slots": [[s, e, p] for s, (e, p) in sorted(self.positions.items())],
        }


def build_stream(
    cfg: DataConfig,
    *,
    seed: int,
    rank: int = 0,
    world: int = 1,
    micro_batch: int,
    states: Sequence[dict[str, Any]] | None = None,
    pin_memory: bool = False,
    processor: ClipProcessor | None = None,
) -> DataStream:
    """The stream of one rank for ``cfg.paths`` (procedural when empty).

    Args:
        seed: data seed (the same on every rank).
        micro_batch: clips per batch on this rank.
        states: ``state_dict()`` of every rank from a checkpoint, to resume.
        processor: what turns a clip into a model input (default: the AxLSTM log-mel crop of
            ``cfg.crop_frames`` frames; see :func:`axlstm.data.clips.make_processor`).
    """
    kind, payload = resolve_data(cfg)
    if processor is None:
        processor = make_processor(cfg)
    if kind == "shards":
        return ShardStream(
            payload, processor, cfg, seed, rank, world, micro_batch, states, pin_memory
        )
    return IndexedStream(
        payload, processor, cfg, seed, rank, world, micro_batch, states, pin_memory
    )
