"""Distillation for mixup (seqeq.distill): the teacher, the pool of labelled blends, and the
search and final models training on it where ``distill`` is on."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from seqeq.config import RunConfig
from seqeq.errors import SeqeqError

needs_aeon = pytest.mark.skipif(importlib.util.find_spec("aeon") is None,
                                reason="distillation's teacher is aeon's MiniRocket (install "
                                       "the test or bench extra)")


def _three_classes(n=30, T=20, seed=0, classes=3):
    """Series whose class is their mean level; class 2 may be left out (``classes=2``)."""
    from seqeq.datasets import SeqData

    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = (rng.normal(size=(n, T, 1)) * 0.3 + 2.0 * y[:, None, None]).astype("float32")
    return SeqData(X=X, lengths=np.full(n, T), y=y, class_names=["a", "b", "c"],
                   channel_names=["v"], name="levels")


@needs_aeon
def test_the_pool_is_blends_of_training_series_with_the_teachers_probabilities(walks):
    from seqeq.distill import POOL_MIN, soft_mixes

    data = walks(n=24, T=12, unequal=True)
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    pool = soft_mixes(data, 0.5, seed=1)
    assert torch.equal(torch.rand(3), before)  # the caller's random stream is left as it was
    assert len(pool) == POOL_MIN and pool.x.shape == (POOL_MIN, 12, 2)
    assert pool.probs.shape == (POOL_MIN, 2)
    torch.testing.assert_close(pool.probs.sum(1), torch.ones(POOL_MIN))
    assert (pool.lengths >= 6).all() and (pool.lengths <= 12).all()
    t = torch.arange(12)[None, :, None]
    assert (pool.x.masked_select(t >= pool.lengths[:, None, None]) == 0).all()  # padding: zero
    again = soft_mixes(data, 0.5, seed=1)  # the same seed draws the same pool
    assert torch.equal(again.x, pool.x) and torch.equal(again.probs, pool.probs)
    assert not torch.equal(soft_mixes(data, 0.5, seed=2).x, pool.x)
    xm, Lm, p = pool.draw(5, torch.Generator().manual_seed(0), "cpu")
    assert xm.shape == (5, int(Lm.max()), 2) and p.shape == (5, 2)


@needs_aeon
def test_the_teacher_learns_the_training_series_and_gives_an_absent_class_nothing():
    from seqeq.distill import Teacher

    train = _three_classes(classes=2)  # class "c" is named but has no training series
    teacher = Teacher(train)
    test = _three_classes(n=12, seed=1, classes=2)
    p = teacher.probs(np.asarray(test.X))
    assert p.shape == (12, 3) and (p[:, 2] == 0).all()
    assert (p.argmax(1) == test.y).mean() == 1.0


def test_training_on_the_pool_follows_the_teacher_not_the_labels(walks):
    """The pool's probabilities are what the mixed half of each step learns: a pool that says
    every blend is class 0 pulls the model's predictions on blends towards class 0."""
    from seqeq.distill import SoftMixes
    from seqeq.models import ModelSpec, build_model
    from seqeq.train import TrainConfig, predict_logits, train_model

    data = walks(n=40, T=10)
    x = torch.as_tensor(np.asarray(data.X))[:32]
    pool = SoftMixes(x=x, lengths=torch.full((32,), 10),
                     probs=torch.tensor([[1.0, 0.0]]).repeat(32, 1))
    votes = {}
    for soft in (None, pool):
        model = build_model(ModelSpec("gru", 2, 8, 2), seed=0)
        train_model(model, data, TrainConfig(epochs=12, batch_size=8, seed=0, mixup=0.5),
                    soft=soft)
        votes[soft is None] = (predict_logits(model, data).argmax(1) == 0).mean()
    assert votes[False] > 0.9 > votes[True]


@needs_aeon
def test_a_run_with_distill_trains_its_trials_and_final_models_on_pools(tmp_path, walks,
                                                                        monkeypatch):
    import seqeq.distill
    import seqeq.search
    from seqeq.api import run_on

    drawn = []
    real = seqeq.distill.soft_mixes

    def spy(train, alpha, seed=0):
        drawn.append((train.n_series, alpha))
        return real(train, alpha, seed)

    monkeypatch.setattr(seqeq.search, "soft_mixes", spy)
    cfg = RunConfig.of(budget_kb=3, trials=2, epochs=1, final_seeds=2, cells=("gru",),
                       device="cpu", mixup=0.4, distill=True, average=0.2)
    data = walks(n=60, T=10, seed=3)
    res = run_on(data, None, cfg, tmp_path / "r")
    # one pool for the search's training split (its trials share it), one for the final models'
    # training + validation data (their seeds share it)
    assert [a for _, a in drawn] == [0.4, 0.4] and drawn[0][0] < drawn[1][0] == data.n_series
    report = json.loads(open(res.report_json).read())
    assert report["best"]["train"]["distill"] is True
    assert report["best"]["train"]["average"] == 0.2
    html = open(res.report_html).read()
    assert "MiniRocket teacher" in html and "weights averaged over the last 0.2" in html


def test_no_pool_without_mixup(tmp_path, walks, monkeypatch):
    import seqeq.search
    from seqeq.api import run_on

    def never(*a, **k):
        raise AssertionError("a pool was drawn for a run without mixup")

    monkeypatch.setattr(seqeq.search, "soft_mixes", never)
    cfg = RunConfig.of(budget_kb=3, trials=1, epochs=1, final_seeds=1, cells=("gru",),
                       device="cpu", mixup=0.0, distill=True)
    res = run_on(walks(n=40, T=8), None, cfg, tmp_path / "r")
    assert json.loads(open(res.report_json).read())["best"]["train"]["distill"] is False


def test_bad_average_and_distill_are_named(tmp_path):
    from typer.testing import CliRunner

    from seqeq.cli import app

    with pytest.raises(SeqeqError, match="average=1.5 is not a share of the schedule"):
        RunConfig.of(average=1.5)
    with pytest.raises(SeqeqError, match="distill='yes' is not on or off") as e:
        RunConfig.of(distill="yes")
    assert "distill=True" in e.value.fix
    out = CliRunner().invoke(app, ["bench", "har2", "--average", "1.5", "--out",
                                   str(tmp_path / "r")])
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert "--average 1.5 is not a share of the schedule in 0..1" in out.output


def test_resuming_a_run_recorded_before_them_keeps_averaging_distillation_and_warping_off(
        tmp_path):
    from seqeq.errors import cli_names
    from seqeq.run.rundir import _check_resume_matches

    cfg = RunConfig.of(budget_kb=4)
    old = {k: v for k, v in cfg.flat().items() if k not in ("average", "distill", "time_warp")}
    (tmp_path / "run.json").write_text(json.dumps({"search": old}))
    _check_resume_matches(tmp_path, cfg)  # the defaults are how old runs trained
    with cli_names(), pytest.raises(SeqeqError) as e:
        _check_resume_matches(tmp_path, RunConfig.of(budget_kb=4, distill=True))
    assert "with --distill but the run" in e.value.problem and "used --no-distill" in \
        e.value.problem and "Resume with --no-distill" in e.value.fix
    with pytest.raises(SeqeqError, match="average"):
        _check_resume_matches(tmp_path, RunConfig.of(budget_kb=4, average=0.1))
    with pytest.raises(SeqeqError, match="time_warp"):
        _check_resume_matches(tmp_path, RunConfig.of(budget_kb=4, time_warp=0.1))


def test_distillation_without_aeon_is_a_clear_error(walks, monkeypatch):
    import sys

    from seqeq.distill import soft_mixes
    from seqeq.errors import cli_names

    # a None entry makes the import fail as it does where aeon is not installed
    monkeypatch.setitem(sys.modules, "aeon.transformations.collection.convolution_based", None)
    with cli_names(), pytest.raises(SeqeqError) as e:
        soft_mixes(walks(n=8, T=10), 0.5)
    assert "--distill needs aeon" in e.value.problem and "pip install" in e.value.fix
