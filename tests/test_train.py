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


def _raw_trajectory(monkeypatch, model):
    """The optimiser's weights after every step of the next training run (a list of states)."""
    steps, step = [], torch.optim.Adam.step

    def recording(self, *a, **k):
        out = step(self, *a, **k)
        steps.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    return steps


def test_weight_averaging_returns_the_moving_average_of_the_optimisers_weights(walks, monkeypatch):
    data = walks(n=64, T=8)
    cfg = TrainConfig(epochs=5, batch_size=16, seed=3, patience=0)
    plain = build_model(ModelSpec("gru", data.n_channels, 6, data.n_classes), seed=0)
    steps = _raw_trajectory(monkeypatch, plain)
    train_model(plain, data, cfg)
    raw = list(steps)
    assert len(raw) == 20
    steps.clear()
    averaged = build_model(ModelSpec("gru", data.n_channels, 6, data.n_classes), seed=0)
    start = {k: v.detach().clone() for k, v in averaged.state_dict().items()}
    steps_avg = _raw_trajectory(monkeypatch, averaged)
    train_model(averaged, data, TrainConfig(**{**cfg.__dict__, "average": 0.25}))
    # averaging leaves the optimiser's path alone ...
    assert all(torch.equal(a[k], b[k]) for a, b in zip(raw, steps_avg, strict=True) for k in a)
    # ... and returns its average over a window of a quarter of the 20 steps
    expect = {k: v.clone() for k, v in start.items()}
    for t, st in enumerate(raw):
        d = min(1 - 1 / 5, t / (t + 1))
        for k in expect:
            expect[k] = d * expect[k] + (1 - d) * st[k]
    got = averaged.state_dict()
    assert all(torch.allclose(got[k], expect[k], atol=1e-6) for k in expect)
    assert not torch.allclose(got["head.weight"], raw[-1]["head.weight"])  # not the last step's


def test_weight_averaging_validates_the_average_and_keeps_its_best_epoch(walks):
    data, val = walks(n=64, T=8), walks(n=32, T=8, seed=1)
    model = build_model(ModelSpec("gru", data.n_channels, 6, data.n_classes), seed=0)
    res = train_model(model, data, TrainConfig(epochs=4, batch_size=16, seed=0, patience=0,
                                               average=0.5), val=val)
    from seqeq.train import predict_logits, score
    kept = score(val.y, predict_logits(model, val).argmax(1))
    assert kept == res.best_val == res.history[res.best_epoch - 1]["val_score"]


def test_a_blown_up_epoch_rolls_the_average_back_too(walks):
    data = walks(n=64, T=8)
    model = _Blows(data, bad_calls={6})
    res = train_model(model, data, TrainConfig(epochs=4, batch_size=16, seed=0, average=0.3))
    assert res.history[1]["recovered"] == {"times": 1, "lr_scale": 0.5} and _finite(model)
