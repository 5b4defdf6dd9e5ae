"""The training loop's guard against blow-ups: roll back the epoch, halve the rate, go on."""

from __future__ import annotations

import torch
from torch import nn

from seqeq.models import ModelSpec, build_model
from seqeq.train import MAX_RECOVERIES, TrainConfig, train_model


class _Blows(nn.Module):
    """A real classifier whose output turns NaN on the listed forward calls."""

    def __init__(self, data, bad_calls):
        super().__init__()
        self.inner = build_model(ModelSpec("gru", data.n_channels, 6, data.n_classes), seed=0)
        self.bad, self.calls = set(bad_calls), 0

    def forward(self, x, lengths=None):
        self.calls += 1
        out = self.inner(x, lengths)
        return out * float("nan") if self.calls in self.bad else out


def _finite(model):
    return all(torch.isfinite(p).all() for p in model.parameters())


def test_a_blown_up_epoch_is_rolled_back_at_half_the_learning_rate(walks):
    data = walks(n=64, T=8)
    model = _Blows(data, bad_calls={6})  # epoch 2 (4 batches of 16 per epoch), batch 2
    res = train_model(model, data, TrainConfig(epochs=4, batch_size=16, seed=0))
    h = res.history
    assert [r.get("recovered") for r in h] == [None, {"times": 1, "lr_scale": 0.5}, None, None]
    assert res.epochs_run == 4 and not any(r.get("diverged") for r in h)
    assert _finite(model) and all(r["train_loss"] == r["train_loss"] for r in h)


def test_training_that_keeps_blowing_up_stops_with_its_last_finite_weights(walks):
    data = walks(n=32, T=8)
    model = _Blows(data, bad_calls=range(1, 1000))
    start = [p.detach().clone() for p in model.parameters()]
    res = train_model(model, data, TrainConfig(epochs=10, batch_size=16, seed=0))
    assert res.epochs_run == MAX_RECOVERIES + 1 and res.history[-1]["diverged"]
    assert all(torch.equal(a, b) for a, b in zip(start, model.parameters(), strict=True))
