"""Shared test fixtures.

Tests run on CPU with tiny data. ``SEQEQ_DATA_DIR`` points at the staged benchmark data
(``.ci/run`` sets it to ``../shared/data``); tests that need a real file skip with the reason
when it is absent.
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


# Tests read the staged data and never touch the network.
os.environ.setdefault("SEQEQ_DATA_DIR", str(_default_data_dir()))
os.environ.setdefault("SEQEQ_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _short_default_effort(request, monkeypatch):
    """Tests train tiny data for a few epochs: the defaults that scale the effort up for small
    data (at least ``MIN_STEPS`` optimiser steps per schedule; cross-validated trials where the
    validation split is small; an ensemble where the budget allows) are turned down here, so a
    test that leaves ``epochs`` out trains 40 epochs of one model on one split, as seqeq did
    before those defaults. Tests of those defaults themselves are marked ``real_defaults`` and
    see the real values."""
    if request.node.get_closest_marker("real_defaults"):
        return
    import seqeq.config
    import seqeq.search
    import seqeq.train

    monkeypatch.setattr(seqeq.config, "AUTO_ENSEMBLE_MIN_KIB", float("inf"))
    monkeypatch.setattr(seqeq.train, "MIN_STEPS", 0)
    monkeypatch.setattr(seqeq.search, "CV_BELOW", 0)


@pytest.fixture(autouse=True)
def _no_deployment_figures(request, monkeypatch):
    """A run measures its model's microcontroller figures (a C export, a cross-compilation, two
    emulator runs: seconds); tests of runs skip that unless marked ``deployment``."""
    if request.node.get_closest_marker("deployment"):
        return
    import seqeq.export.mcu

    monkeypatch.setattr(seqeq.export.mcu, "DEPLOYMENT_FIGURES", False)


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


def make_walks(n: int = 160, T: int = 30, C: int = 2, seed: int = 0, unequal: bool = False,
               groups: bool = False):
    """A tiny two-class random-walk SeqData (step std 1.0 vs 0.1, as the ERNN toy task)."""
    import numpy as np

    from seqeq.datasets import SeqData

    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = np.cumsum(rng.normal(size=(n, T, C)) * np.where(y == 1, 1.0, 0.1)[:, None, None], axis=1)
    lengths = rng.integers(T // 2, T + 1, n) if unequal else np.full(n, T)
    for i in range(n):
        X[i, lengths[i]:] = 0
    return SeqData(X=X.astype("float32"), lengths=lengths, y=y, class_names=["calm", "wild"],
                   channel_names=[f"c{i}" for i in range(C)],
                   groups=(np.arange(n) % 6) if groups else None, name="walks")


@pytest.fixture
def walks():
    return make_walks
