"""Shared test helpers: fixture location and deterministic torch settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


def fixture_dir(name: str) -> Path:
    """Folder of golden tensors from the official code, or skip with a clear reason."""
    path = FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"golden fixtures not found at {path} (the ../shared folder is absent)")
    return path


def load_fixture(name: str, rel: str):
    return torch.load(fixture_dir(name) / rel, map_location="cpu", weights_only=True)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    # One intra-op thread: the test models are tiny, so a second thread mostly adds wake-up
    # cost (5-10x slower on a busy 2-core machine), and results do not depend on the count.
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
