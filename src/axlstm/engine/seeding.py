"""Seeds of a training run: the global RNGs of each rank, and the mask generator's seed.

The masks come from a generator owned by the trainer and reseeded from
``(seed, rank, micro-batch)`` before every forward pass (:func:`mask_seed`), so they do not
depend on how a run was interrupted and resumed.
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["mask_seed", "seed_everything"]


def mask_seed(seed: int, rank: int, micro_batch: int) -> int:
    """Seed of the mask generator for one micro-batch of one rank."""
    ss = np.random.SeedSequence([seed, 0x4D41534B, rank, micro_batch])  # "MASK"
    return int(ss.generate_state(1, np.uint64)[0])


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
