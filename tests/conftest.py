"""Shared test fixtures.

Tests run on CPU with tiny data. ``SEQEQ_DATA_DIR`` points at the staged benchmark data
(``.ci/run`` sets it to ``../shared/data``); tests that need a real file skip with the reason when it
is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


def _default_data_dir() -> Path:
    env = os.environ.get("SEQEQ_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _default_data_dir()


@pytest.fixture(scope="session")
def staged(data_dir):
    """Return a function giving the path of a staged file, skipping if it is absent."""

    def get(rel: str) -> Path:
        p = data_dir / rel
        if not p.is_file():
            pytest.skip(f"staged data {rel} not found in {data_dir} (set SEQEQ_DATA_DIR)")
        return p

    return get
