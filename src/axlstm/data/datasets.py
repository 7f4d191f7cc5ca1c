"""The datasets behind the training streams (:mod:`axlstm.data.stream`, whose module doc
describes the sample order): :class:`IndexedDataset` over global sample numbers, the
:class:`MicroBatchSampler` that hands them out per rank, the endless :class:`ShardDataset`,
and :func:`collate`.

Data that cannot be used at all (every draw unusable, a full pass over shards with no usable
sample, refused pickles) is an :class:`~axlstm.core.errors.InputError` with one line naming
the data and counting what was wrong. Inside DataLoader workers it travels as an error item
(``errors_as_items``) that :func:`raise_errors` raises in the training process, so the message
stays one line instead of a worker traceback.
"""

from __future__ import annotations

import logging
import os
import signal
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, Sampler, get_worker_info

from axlstm.core.errors import InputError
from axlstm.data.clips import BadItem, ClipProcessor
from axlstm.data.shards import decode_sample, iter_raw_samples, shard_counts

__all__ = [
    "IndexedDataset",
    "MicroBatchSampler",
    "ShardDataset",
    "collate",
    "ignore_ctrl_c_in_worker",
    "raise_errors",
    "sample_rng",
]

logger = logging.getLogger(__name__)

# Stream tags keep the seeded generators of different purposes independent.
_TAG_PERM, _TAG_CROP, _TAG_REPLACE, _TAG_SHARDS, _TAG_BLOCK = 1, 2, 3, 4, 5


def sample_rng(*keys: int) -> np.random.Generator:
    """A generator seeded by a tuple of non-negative integers (numpy ``SeedSequence``)."""
    return np.random.default_rng([int(k) for k in keys])


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack crops into ``spec (B, 1, T, F)`` (and labelled items' targets into ``target``);
    gather names, skip events and positions.

    An item that carries an ``error`` (data that cannot be used at all, found in a worker)
    makes the batch ``{"error": message}``; the stream raises it in the training process.
    """
    errors = [it["error"] for it in items if "error" in it]
    if errors:
        return {"error": errors[0]}
    batch: dict[str, Any] = {
        "spec": torch.stack([it["spec"] for it in items]),
        "skipped": [s for it in items for s in it["skipped"]],
        "names": [it["name"] for it in items],
    }
    if "target" in items[0]:  # labelled data (fine-tuning): (B, K) float targets
        batch["target"] = torch.stack([torch.as_tensor(it["target"]) for it in items])
    if "index" in items[0]:
        batch["index"] = torch.tensor([it["index"] for it in items], dtype=torch.int64)
    if "position" in items[-1]:
        batch["position"] = items[-1]["position"]  # one worker made the whole batch
    return batch


def raise_errors(batches: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The batches of a DataLoader; an error batch (see :func:`collate`) raises
    :class:`InputError` with its one-line message, in the training process."""
    for batch in batches:
        if "error" in batch:
            raise InputError(batch["error"])
        yield batch


def ignore_ctrl_c_in_worker(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C and SIGTERM to the training process: a terminal sends
    SIGINT, and ``timeout``, systemd or a cluster scheduler SIGTERM, to the whole process
    group; a worker that died of it would break the stream while the trainer finishes its step
    and writes its checkpoint. The workers still end: the loader's shutdown tells them to, and
    each exits by itself when the training process is gone (PyTorch's worker watchdog)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# ------------------------------------------------------------------------------------ indexed
class IndexedDataset(Dataset):
    """Map-style dataset over *global sample numbers*: item ``g`` is the ``g``-th training
    sample of the whole run (see the module docstring), as a dict with ``spec (1, T, F)``,
    ``index``, ``name`` and the ``skipped`` events ``(reason, name)`` met on the way.

    Args:
        source: indexable source (``len`` and ``load(i, processor, rng)``, which returns the
            crop, or a dict holding the crop as ``spec`` and more, e.g. a ``target``).
        processor: crop maker.
        seed: data seed.
        max_attempts: draws before giving up on sample ``g``.
        errors_as_items: when every draw fails, return ``{"error": message}`` instead of
            raising :class:`InputError` (for DataLoader workers: see :func:`collate`).
    """

    def __init__(
        self,
        source,
        processor: ClipProcessor,
        seed: int,
        max_attempts: int = 32,
        errors_as_items: bool = False,
    ):
        self.source = source
        self.processor = processor
        self.seed = int(seed)
        self.max_attempts = max_attempts
        self.errors_as_items = errors_as_items
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
                loaded = self.source.load(item, self.processor, rng)
            except BadItem as bad:
                skipped.append((bad.reason, bad.name))
                continue
            # a source gives the crop, or a dict of the crop ("spec") and its "target"
            fields = loaded if isinstance(loaded, dict) else {"spec": loaded}
            return {**fields, "index": g, "name": self.source.name(item), "skipped": skipped}
        message = self._unusable(g, skipped)
        if self.errors_as_items:
            return {"error": message}
        raise InputError(message)

    def _unusable(self, g: int, skipped: list[tuple[str, str]]) -> str:
        """Why sample ``g`` found no usable item: the files tried, counted by reason."""
        files = {name: reason for reason, name in skipped}
        counts = Counter(files.values())
        by_reason = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
        examples = ", ".join(f"{os.path.basename(n)} ({r})" for n, r in list(files.items())[:3])
        return (
            f"no usable clip in {self.source.description} ({len(self.source)} files): "
            f"{self.max_attempts} unusable items in a row for sample {g}, from "
            f"{len(files)} different files ({by_reason}; e.g. {examples}); the data looks "
            "mostly or entirely broken"
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
        errors_as_items: data that cannot be used at all (no usable sample in a full pass,
            refused pickles) ends the stream with ``{"error": message}`` instead of raising
            :class:`InputError` (for DataLoader workers: see :func:`collate`).
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
        errors_as_items: bool = False,
    ) -> None:
        self.errors_as_items = errors_as_items
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
        if not self.errors_as_items:
            return self._samples()
        return self._errors_as_items()

    def _errors_as_items(self) -> Iterator[dict[str, Any]]:
        try:
            yield from self._samples()
        except InputError as err:
            yield {"error": str(err)}

    def _samples(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        local = (worker + self.slot_offset) % workers
        slot, num_slots = self.rank * workers + local, self.world * workers
        if len(self.urls) < num_slots:
            raise InputError(
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
                counts = Counter(reason for reason, _ in pending)
                by_reason = ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
                raise InputError(
                    f"no usable sample in a full pass over the {len(shards)} shard(s) of "
                    f"reader {slot} (first: {shards[0]}): {len(pending)} skipped "
                    f"({by_reason or 'no samples at all'}); the data looks mostly or "
                    "entirely broken"
                )
            epoch, pos = epoch + 1, 0
