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
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info

from axlstm.data.clips import BadItem, ClipProcessor, make_processor
from axlstm.data.config import DataConfig
from axlstm.data.procedural import ProceduralCorpus
from axlstm.data.shards import decode_sample, expand_shards, iter_raw_samples, shard_counts
from axlstm.data.sources import (
    MANIFEST_EXTENSIONS,
    TRAINING_EXTENSIONS,
    FileSource,
    PathTable,
    ProceduralSource,
    read_manifest,
    scan_folder,
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
    "resolve_data",
    "sample_rng",
]

logger = logging.getLogger(__name__)

# Stream tags keep the seeded generators of different purposes independent.
_TAG_PERM, _TAG_CROP, _TAG_REPLACE, _TAG_SHARDS, _TAG_BLOCK = 1, 2, 3, 4, 5


def sample_rng(*keys: int) -> np.random.Generator:
    """A generator seeded by a tuple of non-negative integers (numpy ``SeedSequence``)."""
    return np.random.default_rng([int(k) for k in keys])


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack crops into ``spec (B, 1, T, F)``; gather names, skip events and positions."""
    batch: dict[str, Any] = {
        "spec": torch.stack([it["spec"] for it in items]),
        "skipped": [s for it in items for s in it["skipped"]],
        "names": [it["name"] for it in items],
    }
    if "index" in items[0]:
        batch["index"] = torch.tensor([it["index"] for it in items], dtype=torch.int64)
    if "position" in items[-1]:
        batch["position"] = items[-1]["position"]  # one worker made the whole batch
    return batch


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
        raise ValueError("the procedural corpus cannot be mixed with data paths")
    shard_specs = [p for p in paths if _is_shard_spec(p)]
    if shard_specs and len(shard_specs) != len(paths):
        raise ValueError(
            "cannot mix tar shards with folders or manifests in one run: "
            f"shards {shard_specs}, others {[p for p in paths if p not in shard_specs]}"
        )
    if shard_specs:
        urls = [u for spec in shard_specs for u in expand_shards(spec)]
        return "shards", urls
    tables = []
    for p in paths:
        if os.path.isdir(p):
            found = scan_folder(p, TRAINING_EXTENSIONS)
            logger.info("found %d audio files under %s", len(found), p)
            tables.append(PathTable(found))
        elif Path(p).suffix.lower() in MANIFEST_EXTENSIONS:
            listed, _ = read_manifest(p)
            logger.info("manifest %s lists %d files", p, len(listed))
            tables.append(PathTable(listed))
        elif os.path.isfile(p):
            tables.append(PathTable([p]))
        else:
            raise FileNotFoundError(f"data path not found: {p}")
    table = tables[0] if len(tables) == 1 else PathTable.concat(tables)
    return "files", FileSource(table, description=", ".join(paths))


# ------------------------------------------------------------------------------------ indexed
class IndexedDataset(Dataset):
    """Map-style dataset over *global sample numbers*: item ``g`` is the ``g``-th training
    sample of the whole run (see the module docstring), as a dict with ``spec (1, T, F)``,
    ``index``, ``name`` and the ``skipped`` events ``(reason, name)`` met on the way.

    Args:
        source: indexable source (``len`` and ``load(i, processor, rng)``).
        processor: crop maker.
        seed: data seed.
        max_attempts: draws before giving up on sample ``g``.
    """

    def __init__(self, source, processor: ClipProcessor, seed: int, max_attempts: int = 32):
        self.source = source
        self.processor = processor
        self.seed = int(seed)
        self.max_attempts = max_attempts
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.source)

    def permutation(self, epoch: int) -> np.ndarray:
        """Item order of ``epoch`` (two most recent epochs cached)."""
        perm = self._perms.get(epoch)
        if perm is None:
            perm = sample_rng(self.seed, _TAG_PERM, epoch).permutation(len(self.source))
            if len(self._perms) >= 2:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = perm
        return perm

    def item_of(self, g: int, attempt: int = 0) -> int:
        """Source item read for global sample ``g`` at replacement ``attempt``."""
        epoch, pos = divmod(g, len(self.source))
        if attempt == 0:
            return int(self.permutation(epoch)[pos])
        return int(sample_rng(self.seed, _TAG_REPLACE, g, attempt).integers(len(self.source)))

    def __getitem__(self, g: int) -> dict[str, Any]:
        skipped: list[tuple[str, str]] = []
        for attempt in range(self.max_attempts):
            item = self.item_of(g, attempt)
            rng = sample_rng(self.seed, _TAG_CROP, g, attempt)
            try:
                spec = self.source.load(item, self.processor, rng)
            except BadItem as bad:
                skipped.append((bad.reason, bad.name))
                continue
            return {"spec": spec, "index": g, "name": self.source.name(item), "skipped": skipped}
        names = ", ".join(f"{n} ({r})" for r, n in skipped[-5:])
        raise RuntimeError(
            f"{self.max_attempts} unusable items in a row for sample {g} of "
            f"{self.source.description}; the data looks mostly broken. Last ones: {names}"
        )


class MicroBatchSampler(Sampler):
    """Endless global sample numbers of one rank, one list per micro-batch, from ``start``.

    Micro-batch ``m`` of rank ``r`` is ``[m W b + r b, m W b + (r + 1) b)``.
    """

    def __init__(self, start: int, rank: int, world: int, micro_batch: int) -> None:
        self.start, self.rank, self.world, self.micro_batch = start, rank, world, micro_batch

    def __iter__(self) -> Iterator[list[int]]:
        m = self.start
        b = self.micro_batch
        while True:
            base = m * self.world * b + self.rank * b
            yield list(range(base, base + b))
            m += 1


# ------------------------------------------------------------------------------------- shards
class ShardDataset(IterableDataset):
    """Endless stream of crops from the shards of one rank, split across its workers.

    Each yielded dict has ``spec``, ``name`` (``shard.tar:key``), ``skipped`` and
    ``position = (slot, epoch, pos)``: the slot's position after this sample.

    Args:
        urls: every shard of the run (all ranks).
        positions: ``{slot: (epoch, pos)}`` to start from (missing slots start at (0, 0)).
        slot_offset: worker ``w`` plays local slot ``(w + slot_offset) % workers``.
    """

    def __init__(
        self,
        urls: Sequence[str],
        processor: ClipProcessor,
        seed: int,
        rank: int,
        world: int,
        shuffle_block: int = 256,
        positions: dict[int, tuple[int, int]] | None = None,
        slot_offset: int = 0,
        trust_pickle: bool = False,
    ) -> None:
        self.urls = list(urls)
        self.processor = processor
        self.seed = int(seed)
        self.rank, self.world = rank, world
        self.block = max(1, shuffle_block)
        self.positions = dict(positions or {})
        self.slot_offset = slot_offset
        self.trust_pickle = trust_pickle
        self.counts = shard_counts(self.urls)

    def slot_shards(self, slot: int, num_slots: int, epoch: int) -> list[str]:
        order = sample_rng(self.seed, _TAG_SHARDS, epoch).permutation(len(self.urls))
        return [self.urls[i] for i in order[slot::num_slots]]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        local = (worker + self.slot_offset) % workers
        slot, num_slots = self.rank * workers + local, self.world * workers
        if len(self.urls) < num_slots:
            raise ValueError(
                f"{len(self.urls)} shards cannot feed {self.world} rank(s) x {workers} "
                f"worker(s) = {num_slots} readers without repeating; use fewer workers or "
                "split the data into more shards (axlstm shards --shard-size)"
            )
        epoch, pos = self.positions.get(slot, (0, 0))
        pending: list[tuple[str, str]] = []

        def shard_failed(url: str, err: Exception) -> None:
            logger.warning("shard %s could not be read to the end: %s", url, err)
            pending.append(("unreadable", url))

        while True:
            shards = self.slot_shards(slot, num_slots, epoch)
            fresh_epoch, good = pos == 0, 0
            block, start = divmod(pos, self.block)
            raw = iter_raw_samples(shards, block * self.block, self.counts, shard_failed)
            while True:
                samples = list(islice(raw, self.block))
                if not samples:
                    break
                order = sample_rng(self.seed, _TAG_BLOCK, epoch, slot, block).permutation(
                    len(samples)
                )
                for k in range(start, len(samples)):
                    url, key, files = samples[order[k]]
                    pos = block * self.block + k + 1
                    name = f"{os.path.basename(url)}:{key}"
                    rng = sample_rng(self.seed, _TAG_CROP, epoch, slot, pos)
                    try:
                        spec = decode_sample(files, self.processor, rng, name, self.trust_pickle)
                    except BadItem as bad:
                        pending.append((bad.reason, bad.name or name))
                        continue
                    good += 1
                    yield {
                        "spec": spec,
                        "name": name,
                        "skipped": pending,
                        "position": (slot, epoch, pos),
                    }
                    pending = []
                block, start = block + 1, 0
            if fresh_epoch and good == 0:
                raise RuntimeError(
                    f"a full pass over the {len(shards)} shard(s) of reader {slot} gave no "
                    f"usable sample (first: {shards[0]})"
                )
            epoch, pos = epoch + 1, 0


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
        self.dataset = IndexedDataset(source, processor, seed, cfg.max_bad_attempts)
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
        return iter(DataLoader(self.dataset, batch_sampler=sampler, **opts))

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
            raise ValueError(
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
        )
        opts = _loader_options(
            self.cfg.num_workers, self.cfg.prefetch_factor, self.pin_memory, self.seed
        )
        return iter(DataLoader(dataset, batch_size=self.micro_batch, **opts))

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
