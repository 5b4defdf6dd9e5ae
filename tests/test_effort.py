"""The effort follows the data (issue 20): schedules counted in optimiser steps, a default time
budget whose trials shorten their schedules to fit it, and a pooling front end for long series."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqeq.config import RunConfig
from seqeq.models import ModelSpec, build_model, pool_time

pytestmark = pytest.mark.real_defaults


def test_the_default_search_time_follows_the_number_of_series():
    from seqeq.search import AUTO_SEARCH_SECONDS, search_seconds, trial_seconds

    cfg = RunConfig.of()
    assert search_seconds(cfg, 50) == AUTO_SEARCH_SECONDS  # at least this, on any data
    assert search_seconds(cfg, 1000) == AUTO_SEARCH_SECONDS
    assert search_seconds(cfg, 6000) == pytest.approx(6 * AUTO_SEARCH_SECONDS)
    assert trial_seconds(cfg, 6000) == pytest.approx(1.5 * AUTO_SEARCH_SECONDS)
    assert search_seconds(RunConfig.of(timeout=42), 6000) == 42  # as given
    assert search_seconds(RunConfig.of(timeout=0), 6000) is None  # 0: no limit
    assert trial_seconds(RunConfig.of(timeout=0), 6000) is None
    assert trial_seconds(RunConfig.of(trial_timeout=7), 6000) == 7


def test_a_negative_timeout_is_refused_with_the_fix():
    from seqeq.errors import SeqeqError

    with pytest.raises(SeqeqError, match="0: no limit"):
        RunConfig.of(timeout=-1)


def test_a_schedule_that_cannot_end_in_time_is_shortened_and_still_ends_low(walks):
    """A trial with a time limit measures its second epoch and shortens its cosine schedule to
    what fits, so its learning rate still decays to the end (not cut off at its peak)."""
    from seqeq.train import TrainConfig, train_model

    data = walks(n=64, T=40, seed=0)
    model = build_model(ModelSpec("gru", data.n_channels, 8, 2), seed=0)
    model.set_normalisation(*data.channel_stats())
    lrs = []
    opt_step = torch.optim.Adam.step

    def spy(self, *a, **k):
        lrs.append(self.param_groups[0]["lr"])
        return opt_step(self, *a, **k)

    torch.optim.Adam.step = spy
    try:
        cfg = TrainConfig(lr=1e-2, batch_size=16, epochs=100_000, max_seconds=1.0, seed=0)
        res = train_model(model, data, cfg)
    finally:
        torch.optim.Adam.step = opt_step
    assert 2 <= res.schedule_epochs < 100_000
    assert res.epochs_run <= res.schedule_epochs
    assert res.history[1]["schedule_epochs"] == res.schedule_epochs
    # every step followed the shortened cosine (4 steps per epoch of 64 series at batch 16),
    # not the 100,000-epoch one, whether or not the time limit also cut the last epoch short
    total = res.schedule_epochs * 4
    for s in (len(lrs) // 2, len(lrs) - 1):
        want = 1e-2 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        assert lrs[s] == pytest.approx(want, rel=1e-6)
    if res.epochs_run == res.schedule_epochs:  # it ended on its schedule, at 5 % of the lr
        assert lrs[-1] == pytest.approx(0.05e-2, rel=0.2)


def test_the_final_retrain_repeats_a_shortened_schedule(walks, tmp_path, monkeypatch):
    """The trial's shortened schedule is what it records, and what the final retrain runs."""
    import json

    import seqeq.train
    from seqeq.api import run_on

    seen = []
    real = seqeq.train.train_model

    def spy(model, train, cfg, val=None, **kw):
        seen.append(cfg.epochs)
        return real(model, train, cfg, val=val, **kw)

    monkeypatch.setattr(seqeq.train, "train_model", spy)
    cfg = RunConfig.of(budget_kb=3, trials=1, epochs=100_000, timeout=3, trial_timeout=1.5,
                       final_seeds=1, cells=("gru",), device="cpu", opening=False, cv_folds=1)
    res = run_on(walks(n=60, T=20, seed=1), None, cfg, tmp_path / "r", html=False)
    report = json.loads(open(res.report_json).read())
    trial = report["trials"][0]
    ran = trial["epochs_run"]
    assert ran < 100_000
    # the final model runs the planned schedule as far as the search's time (3 s) allows, at
    # least what the trial ran
    assert report["best"]["train"]["planned_epochs"] == 100_000
    assert ran <= report["best"]["epochs"] == seen[-1] < 100_000


def test_the_final_schedule_is_the_planned_one_where_time_allows():
    from types import SimpleNamespace

    from seqeq.run.final import final_schedule

    def best(ran, planned, per_epoch):
        return SimpleNamespace(user_attrs={"train": {"epochs": ran, "planned_epochs": planned},
                                           "epoch_seconds": per_epoch, "best_epoch": 3})

    cfg = RunConfig.of(timeout=125)
    assert final_schedule(best(50, 300, 0.01), cfg, 125, 100, 3) == (300, 300)  # fits: all
    # 0.8 x 125 s / 3 models / (0.5 s x 1.25) = 53 epochs fit
    assert final_schedule(best(50, 300, 0.5), cfg, 125, 100, 3) == (53, 53)
    assert final_schedule(best(50, 300, 5.0), cfg, 125, 100, 3) == (50, 50)  # >= what it ran
    assert final_schedule(best(50, 300, 5.0), RunConfig.of(timeout=0), 125, 100, 3) == (300, 300)
    assert final_schedule(best(50, 300, 0.01), RunConfig.of(final_epochs="best"), 125, 100,
                          3) == (50, 3)


def test_small_data_gets_at_least_min_steps_optimiser_steps():
    from seqeq.train import DEFAULT_EPOCHS, MIN_STEPS, batch_for, schedule_epochs

    for n in (20, 40, 200, 1000, 7000):
        b = batch_for(n, 64)
        epochs = schedule_epochs(n, b)
        assert epochs >= DEFAULT_EPOCHS
        assert epochs * math.ceil(n / b) >= MIN_STEPS  # never fewer steps than this
    assert schedule_epochs(7000, 64) == DEFAULT_EPOCHS  # large data: 40 passes, as before


def test_pool_for_keeps_the_recurrence_within_its_steps():
    from seqeq.search import CONV_RECURRENT_STEPS, MAX_RECURRENT_STEPS, pool_for

    assert pool_for(128) == 1 and pool_for(MAX_RECURRENT_STEPS) == 1
    assert pool_for(1460) == 6  # ACSF1: 244 steps
    assert pool_for(1460, conv=16) == 46  # read through the filters first: 32 steps
    assert pool_for(CONV_RECURRENT_STEPS, conv=16) == 1 and pool_for(251, conv=16) == 8
    for T in (257, 427, 1460, 10_000):
        assert math.ceil(T / pool_for(T)) <= MAX_RECURRENT_STEPS
        assert math.ceil(T / pool_for(T, conv=16)) <= CONV_RECURRENT_STEPS


def test_a_trial_with_the_convolution_pools_its_filters_to_fewer_steps(walks, tmp_path):
    """The search gives a trial that reads the series through the convolution blocks of its
    filters (conv_first, :data:`CONV_RECURRENT_STEPS` of them), and one without it blocks of the
    series (up to :data:`MAX_RECURRENT_STEPS`)."""
    import json

    from seqeq.api import run_on
    from seqeq.config import RunConfig

    cfg = RunConfig.of(budget_kb=4, trials=3, epochs=1, final_seeds=1, cells=("gru",),
                       device="cpu", ensemble=1)
    res = run_on(walks(n=40, T=100, seed=2), None, cfg, tmp_path / "r", html=False)
    specs = [t["spec"] for t in json.loads(open(res.report_json).read())["trials"] if t["spec"]]
    assert specs[0]["conv"] == 16 and specs[0]["pool"] == 4  # the opening trial
    for s in specs:
        assert s["pool"] == (4 if s["conv"] else 1) and s["conv_first"]


def test_pooling_is_the_masked_block_mean_and_ignores_padding():
    x = torch.arange(1.0, 11.0).reshape(1, 10, 1).repeat(2, 1, 1)  # 1..10
    L = torch.tensor([10, 5])
    x[1, 5:] = 1e6  # padding: never read
    out, Lp = pool_time(x, L, 4)
    assert Lp.tolist() == [3, 2]
    assert out[0, :, 0].tolist() == pytest.approx([2.5, 6.5, 9.5])  # the last block: 9, 10
    assert out[1, :2, 0].tolist() == pytest.approx([2.5, 5.0])  # 5 alone: past its end unused
    assert out[1, 2, 0].item() == 0.0  # a block past the end is 0
    same, same_L = pool_time(x, L, 1)
    assert same is x and same_L is L


@pytest.mark.parametrize("cell", ["gru", "dirnn", "tarnn", "fastgrnn"])
def test_a_pooled_model_exports_with_the_same_outputs(cell, tmp_path):
    """The front end is part of the ONNX graph: the exported model pools (and masks) as the
    torch model does, for series of unequal lengths with anything in their padding."""
    from seqeq.export import export_onnx
    from seqeq.export.runtime import OnnxClassifier

    spec = ModelSpec(cell, 2, 8, 3, pool=4)
    model = build_model(spec, seed=0).eval()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 23, 2)).astype(np.float32)
    L = np.array([23, 17, 4, 9, 1, 12])
    with torch.no_grad():
        want = torch.softmax(model(torch.as_tensor(X), torch.as_tensor(L)), 1).numpy()
    for i, n in enumerate(L):
        X[i, n:] = 1e3  # whatever a caller pads with
    export_onnx(model, spec, tmp_path / "m.onnx", class_names=["a", "b", "c"],
                channel_names=["u", "v"])
    got = OnnxClassifier(tmp_path / "m.onnx").predict_proba(X, L)
    assert np.abs(got - want).max() < 1e-5


def test_a_pooled_model_saves_and_loads(tmp_path):
    from seqeq.models import load_model, save_model

    spec = ModelSpec("gru", 1, 4, 2, pool=3)
    save_model(build_model(spec, seed=0), spec, tmp_path / "m")
    model, spec2, _ = load_model(tmp_path / "m")
    assert spec2.pool == 3 and model.pool == 3


def test_the_search_reads_long_series_through_the_front_end(tmp_path, walks):
    import json

    from seqeq.api import run_on

    cfg = RunConfig.of(budget_kb=3, trials=1, epochs=2, final_seeds=1, cells=("gru",),
                       device="cpu", opening=False)
    res = run_on(walks(n=40, T=600, seed=2), None, cfg, tmp_path / "r", html=False)
    spec = json.loads(open(res.report_json).read())["best"]["spec"]
    assert spec["pool"] == (19 if spec["conv"] else 3)  # 32 blocks of filters, or 200 steps


def test_small_validation_splits_get_cross_validated_trials(walks, tmp_path):
    """With a small validation split (auto), each trial is scored on three folds that together
    validate every training series; their sizes weigh the mean, and the report says so."""
    import json
    import warnings

    import optuna

    from seqeq.api import run_on
    from seqeq.search import CV_FOLDS, cv_fold_count

    assert cv_fold_count(RunConfig.of(), 99) == CV_FOLDS
    assert cv_fold_count(RunConfig.of(), 100) == 1
    assert cv_fold_count(RunConfig.of(cv_folds=1), 10) == 1
    cfg = RunConfig.of(budget_kb=3, trials=1, epochs=50, final_seeds=1, cells=("gru",),
                       device="cpu", opening=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_on(walks(n=60, T=20, seed=1), None, cfg, tmp_path / "r", html=False)
    # each pruner step is reported once (optuna warned of, and ignored, repeated steps)
    assert not [w for w in caught if "already reported" in str(w.message)]
    report = json.loads(open(res.report_json).read())
    assert "3-fold cross-validation" in report["data"]["validation"]
    t = optuna.load_study(study_name="seqeq",
                          storage=f"sqlite:///{res.run_dir}/study.db").trials[0]
    scores = t.user_attrs["fold_scores"]
    assert len(scores) == 3 and min(scores) <= t.value <= max(scores)


def test_cv_folds_cover_the_training_data_with_every_class(walks):
    from seqeq.datasets import concat
    from seqeq.run import split_validation
    from seqeq.search import cv_splits

    data = walks(n=60, T=10, seed=0, groups=True)
    train, val, _ = split_validation(data, 0.2, 0)
    folds = cv_splits(train, val, 3, seed=0)
    assert folds[0][0] is train and folds[0][1] is val  # the search's split comes first
    n = concat(train, val).n_series
    for tr, va in folds:
        assert tr.n_series + va.n_series == n
        assert set(tr.y) == {0, 1}
        assert not set(tr.groups) & set(va.groups)  # whole groups, as the split itself
    assert cv_splits(train, val, 1, seed=0) is None


def test_the_default_ensemble_averages_three_where_each_keeps_4_kib():
    from seqeq.config import auto_ensemble

    assert RunConfig.of(budget_kb=20).final.ensemble == 3
    assert RunConfig.of(budget_kb=12).final.ensemble == 3
    assert RunConfig.of(budget_kb=11.9).final.ensemble == 1
    assert RunConfig.of(budget_kb=20, ensemble=1).final.ensemble == 1  # as asked
    assert RunConfig().final.ensemble == auto_ensemble(20.0) == 3
    cfg = RunConfig.of(budget_kb=20)
    assert cfg.flat()["ensemble"] == 3  # recorded resolved (a resume compares it)
    assert cfg.member_budget_bytes == 20 * 1024 // 3
