"""The sequence model: padding never changes a prediction; save/load round-trips exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqeq.cells import get_cell_class, list_cells
from seqeq.datasets import SeqData
from seqeq.models import ModelSpec, build_model, load_model, save_model
from seqeq.train import predict_logits


def _spec(cell: str) -> ModelSpec:
    hp = get_cell_class(cell).example_hparams()[0] if hasattr(
        get_cell_class(cell), "example_hparams") else {}
    return ModelSpec(cell, 3, 6, 4, hp)


@pytest.mark.parametrize("cell", list_cells())
def test_padding_never_changes_a_prediction(cell):
    """Through the whole model (normalisation, batching by length): series padded with garbage
    to any length give the same logits as alone."""
    torch.manual_seed(0)
    model = build_model(_spec(cell))
    model.set_normalisation(np.array([1.0, -2.0, 0.5]), np.array([2.0, 0.5, 3.0]))
    rng = np.random.default_rng(0)
    lengths = np.array([9, 4, 1, 7, 9])
    X = rng.normal(size=(5, 9, 3)).astype(np.float32)
    alone = [predict_logits(model, SeqData(X=X[i:i + 1, : lengths[i]], lengths=lengths[i:i + 1],
                                           y=None, class_names=[], channel_names=[]))
             for i in range(5)]
    garbage = X.copy()
    for i, n in enumerate(lengths):
        garbage[i, n:] = rng.normal(scale=100.0, size=(9 - n, 3))
    garbage = np.concatenate([garbage, np.full((5, 6, 3), 1e3, np.float32)], axis=1)  # longer pad
    batched = predict_logits(model, SeqData(X=garbage, lengths=lengths, y=None, class_names=[],
                                            channel_names=[]))
    assert np.abs(np.concatenate(alone) - batched).max() < 1e-5


@pytest.mark.parametrize("cell", list_cells())
def test_save_load_round_trip(tmp_path, cell):
    torch.manual_seed(1)
    spec = _spec(cell)
    model = build_model(spec)
    model.set_normalisation(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))
    save_model(model, spec, tmp_path / "m", extra={"class_names": list("abcd")})
    loaded, spec2, meta = load_model(tmp_path / "m")
    assert spec2 == spec and meta["class_names"] == list("abcd")
    x = torch.randn(2, 5, 3)
    assert torch.equal(model.eval()(x), loaded(x))


def test_seeded_build_ignores_and_keeps_the_global_generator():
    """A trial's model (and a final retrain's) starts from its own seed: the same weights whatever
    the process did before, and the global generator is left as it was. (Without this, a search's
    first trials depended on what ran earlier in the same process.)"""
    spec = ModelSpec("irnn", 3, 8, 2, {"K": 2, "u_kind": "permdiag"})
    torch.manual_seed(1)
    a = build_model(spec, seed=3)
    torch.rand(7)
    state = torch.get_rng_state()
    b = build_model(spec, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    c = build_model(spec, seed=4)
    assert any(not torch.equal(v, w) for v, w in zip(a.parameters(), c.parameters(), strict=True))
