"""The search: budget-shaped spaces, protocol, determinism, resume."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from seqeq.config import RunConfig
from seqeq.errors import SeqeqError
from seqeq.models import build_model, spec_size_bytes
from seqeq.search import candidate_cells
from seqeq.search_spaces import list_families, smallest_size, suggest_spec


@pytest.mark.parametrize("budget_kb", [0.5, 2, 8, 20])
def test_suggested_specs_always_fit_the_budget(budget_kb):
    budget = int(budget_kb * 1024)
    cells = candidate_cells(RunConfig.of(budget_kb=budget_kb), 9, 6)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        cell = trial.suggest_categorical("cell", cells)
        spec = suggest_spec(trial, cell, 9, 6, budget)
        size = spec_size_bytes(spec)
        assert size <= budget
        # the formula is exact: the built model has exactly that many parameters
        model = build_model(spec)
        assert size == 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)
        seen.add(cell)
        study.tell(trial, 0.0)
    assert len(seen) > 1


def test_hidden_size_upper_bound_follows_the_budget():
    """size_frac=1 gives the largest D that fits; one more unit would not fit."""
    from seqeq.models import ModelSpec

    for cell in list_families():
        trial = optuna.trial.FixedTrial({"size_frac": 1.0, **_min_params(cell)})
        spec = suggest_spec(trial, cell, 9, 2, 8 * 1024)
        bigger = ModelSpec(spec.cell, 9, spec.hidden_size + 1, 2, spec.cell_kwargs)
        assert spec_size_bytes(spec) <= 8 * 1024 < spec_size_bytes(bigger), cell


def _min_params(cell):
    from seqeq.search_spaces import get_family

    out = {}
    for dim in get_family(cell).dims:
        out[f"{cell}.{dim.name}"] = dim.minimal()
    return out


def test_budget_too_small_names_the_smallest_feasible_size():
    size, _ = smallest_size(list_families(), 9, 2)
    with pytest.raises(SeqeqError, match=r"smallest feasible model .* needs .* KiB"):
        candidate_cells(RunConfig.of(budget_kb=(size - 1) / 1024), 9, 2)
    assert candidate_cells(RunConfig.of(budget_kb=size / 1024), 9, 2)


def test_unknown_cell_is_a_clear_error():
    with pytest.raises(SeqeqError, match="unknown cell"):
        candidate_cells(RunConfig.of(cells=("nope",)), 9, 2)


def _run(tmp_path, walks, name, **kw):
    from seqeq.api import run_on

    data = walks(n=120, T=20, seed=3)
    test = walks(n=40, T=20, seed=4)
    cfg = RunConfig.of(**{"budget_kb": 3, "trials": 3, "epochs": 2, "final_seeds": 1,
                          "cells": ("gru", "irnn"), "device": "cpu", **kw})
    return run_on(data, test, cfg, tmp_path / name)


@pytest.mark.slow
def test_same_seed_gives_the_same_trials_and_result(tmp_path, walks):
    a = _run(tmp_path, walks, "a", seed=5)
    b = _run(tmp_path, walks, "b", seed=5)
    import json

    ta = [(t["params"], t["val_score"]) for t in json.loads(open(a.report_json).read())["trials"]]
    tb = [(t["params"], t["val_score"]) for t in json.loads(open(b.report_json).read())["trials"]]
    assert ta == tb
    assert a.test_scores == b.test_scores
    assert a.best_spec == b.best_spec


@pytest.mark.slow
def test_test_data_never_reaches_the_search(tmp_path, walks, monkeypatch):
    """Spy on the training loop: the search and the final retrain never see a test series."""
    import seqeq.search
    import seqeq.train

    seen = []
    real = seqeq.train.train_model

    def spy(model, train, cfg, val=None, **kw):
        seen.append(train.X.copy())
        if val is not None:
            seen.append(val.X.copy())
        return real(model, train, cfg, val=val, **kw)

    monkeypatch.setattr(seqeq.search, "train_model", spy)  # the search's trials
    monkeypatch.setattr(seqeq.train, "train_model", spy)  # the final retrain
    from seqeq.api import run_on

    data = walks(n=120, T=20, seed=3)
    test = walks(n=40, T=20, seed=99)
    run_on(data, test, RunConfig.of(budget_kb=3, trials=2, epochs=1, final_seeds=1,
                                    cells=("gru",), device="cpu"), tmp_path / "r")
    assert len(seen) >= 3  # two trials (train + val each) and one final retrain
    test_rows = {r.tobytes() for r in test.X}
    for X in seen:
        assert not ({r.tobytes() for r in X} & test_rows)


@pytest.mark.parametrize("policy", ["all", "best"])
def test_final_retrain_length_follows_final_epochs(tmp_path, walks, monkeypatch, policy):
    """--final-epochs all: the best trial's whole schedule; best: up to its best epoch."""
    import json

    import seqeq.train

    finals = []
    real = seqeq.train.train_model

    def spy(model, train, cfg, val=None, **kw):
        res = real(model, train, cfg, val=val, **kw)
        finals.append((cfg.epochs, res.epochs_run))
        return res

    monkeypatch.setattr(seqeq.train, "train_model", spy)  # the final retrain only
    from seqeq.api import run_on

    cfg = RunConfig.of(budget_kb=3, trials=2, epochs=5, patience=0, final_seeds=2, seed=4,
                       cells=("gru",), device="cpu", final_epochs=policy,
                       opening=False)  # the seeded trials below were drawn by the sampler
    res = run_on(walks(n=120, T=20, seed=3), walks(n=40, T=20, seed=4), cfg, tmp_path / "r")
    report = json.loads(open(res.report_json).read())
    best = next(t for t in report["trials"] if t["number"] == report["best"]["trial"])
    assert best["best_epoch"] < 5  # (seeded: the policies differ here)
    want = 5 if policy == "all" else best["best_epoch"]
    assert finals == [(5, want)] * 2  # same schedule (5 epochs) either way
    assert report["best"]["epochs"] == want and report["search"]["final_epochs"] == policy


def test_unknown_final_epochs_is_a_clear_error():
    with pytest.raises(SeqeqError, match="unknown final_epochs"):  # the Python API's name
        RunConfig.of(final_epochs="last")


def test_grouped_validation_holds_out_whole_groups(walks):
    from seqeq.api import split_validation

    data = walks(n=120, groups=True)
    tr, va, how = split_validation(data, 0.2, seed=0)
    assert "grouped" in how
    assert not set(np.unique(tr.groups)) & set(np.unique(va.groups))
    assert 0.1 <= va.n_series / data.n_series <= 0.4


def test_group_col_holds_out_whole_groups_for_test_too(tmp_path, walks):
    from seqeq.api import load_data
    from seqeq.config import DataConfig
    from seqeq.datasets import save_file

    data = walks(n=180, T=12, groups=True)
    save_file(data, tmp_path / "d.csv", "long")
    train, test, info = load_data(DataConfig(path=str(tmp_path / "d.csv"), group_col="group"))
    assert "grouped" in info["test"]
    assert not set(np.unique(train.groups)) & set(np.unique(test.groups))
    assert set(np.unique(test.y)) == {0, 1}


@pytest.mark.parametrize("policy", ["all", "best"])
def test_trials_are_scored_where_the_final_model_will_be(tmp_path, walks, policy):
    """--final-epochs all: a trial runs its whole schedule and scores the mean of its last
    epochs (one in ten); best: its best epoch, and early stopping may cut it short."""
    import json

    from seqeq.search import tail_epochs, trial_value

    assert [tail_epochs(e) for e in (1, 4, 25, 40)] == [1, 1, 2, 4]
    cfg = RunConfig.of(epochs=20, final_epochs=policy)
    curve = [0.5] * 10 + [0.9] + [0.6] * 6 + [0.7, 0.7, 0.8]
    assert trial_value(curve, 0.9, cfg) == pytest.approx(0.9 if policy == "best" else 0.75)

    res = _run(tmp_path, walks, "r", epochs=12, patience=1, pruner="none", final_epochs=policy)
    trials = json.loads(open(res.report_json).read())["trials"]
    done = [t for t in trials if t["state"] == "complete"]
    for t in done:
        c = t["val_curve"]
        want = np.mean(c[-1:]) if policy == "all" else max(c)
        assert t["val_score"] == pytest.approx(want)
    if policy == "all":
        assert all(t["epochs_run"] == 12 for t in done)
    else:
        assert any(t["epochs_run"] < 12 for t in done)  # patience 1 stopped some


def test_the_median_pruner_waits_a_fifth_of_the_schedule(tmp_path):
    from seqeq.search import make_study, progress_step

    # trials report percent of their own schedule, whatever its epochs
    assert [progress_step(e, 40) for e in (1, 8, 9, 40)] == [3, 20, 23, 100]
    assert [progress_step(e, 1000) for e in (1, 10, 200, 1000)] == [1, 1, 20, 100]
    study = make_study(RunConfig.of(epochs=40), tmp_path, load_if_exists=False)
    assert study.pruner._n_warmup_steps == 20


@pytest.mark.real_defaults
def test_the_schedule_is_counted_in_optimiser_steps():
    from seqeq.train import MIN_STEPS, batch_for, schedule_epochs

    # a small set gets batches of a quarter of it at most, a large one what was asked
    assert [batch_for(n, 64) for n in (10, 40, 64, 216, 5881)] == [16, 16, 16, 32, 64]
    assert batch_for(5881, 256) == 256
    # 40 epochs, or more where those are fewer than MIN_STEPS steps; a number given is kept
    assert schedule_epochs(32, 16) == MIN_STEPS // 2
    assert schedule_epochs(5881, 64) == 40
    assert schedule_epochs(32, 16, epochs=12) == 12


def test_ties_go_to_the_smaller_model_then_the_earlier_trial():
    from types import SimpleNamespace

    from seqeq.search import rank_key

    def t(n, v, size):
        return SimpleNamespace(number=n, value=v, user_attrs={"size_bytes": size})

    trials = [t(0, 0.99, 3000), t(1, 0.99, 1200), t(2, 0.98, 100), t(3, 0.99, 1200)]
    assert max(trials, key=rank_key).number == 1


def test_ties_on_the_score_go_to_the_lower_validation_loss_first():
    from types import SimpleNamespace

    from seqeq.search import rank_key

    def t(n, v, size, loss=None):
        ua = {"size_bytes": size} | ({} if loss is None else {"val_loss": loss})
        return SimpleNamespace(number=n, value=v, user_attrs=ua)

    trials = [t(0, 1.0, 20000, 0.05), t(1, 1.0, 4000, 0.40), t(2, 0.9, 100, 0.01),
              t(3, 1.0, 900)]  # (no loss recorded: ranks below any that has one)
    assert max(trials, key=rank_key).number == 0


def test_trials_record_their_validation_loss(walks, tmp_path):
    import json

    from seqeq.api import run_on

    cfg = RunConfig.of(budget_kb=3, trials=1, epochs=3, final_seeds=1, cells=("gru",),
                       device="cpu", opening=False)
    res = run_on(walks(n=60, T=20, seed=1), None, cfg, tmp_path / "r", html=False)
    import optuna

    study = optuna.load_study(study_name="seqeq", storage=f"sqlite:///{res.run_dir}/study.db")
    loss = study.trials[0].user_attrs["val_loss"]
    assert 0 < loss < 5
    assert json.loads(open(res.report_json).read())["trials"][0]["state"] == "complete"


def test_opening_trials_are_budget_filling_portfolio_configurations():
    from seqeq.search_spaces.portfolio import PORTFOLIO, opening_count, opening_trials

    cells = list_families()
    ops = opening_trials(cells, 9, 2, budget=6000, bpp=1, trials=16, rotate=True)
    assert opening_count(16) == 3 and opening_count(2) == 1
    assert [p["cell"] for p in ops] == [c for c, _ in PORTFOLIO][:3]
    assert all(p["size_frac"] == 1.0 and p["rotate_deg"] == 30 for p in ops)
    assert ops[1]["tarnn.u_kind"] == "dense"  # the family's measured settings, when they fit
    # only the portfolio's families among --cells, in portfolio order; no rotation unless searched
    ops = opening_trials(["irnn", "fastgrnn", "gru"], 9, 2, 6000, 1, trials=100, rotate=False)
    assert [p["cell"] for p in ops] == ["gru", "fastgrnn"]
    assert not any("rotate_deg" in p for p in ops)
    assert opening_trials(["irnn", "srnn"], 9, 2, 6000, 1, trials=16, rotate=True) == []
    # settings that do not fit the budget are left to the sampler: dense TARNN weights need room
    tiny = opening_trials(["tarnn"], 9, 2, budget=170, bpp=1, trials=16, rotate=False)
    assert tiny == [{"cell": "tarnn", "size_frac": 1.0, "lr": 0.01, "batch_size": 64,
                     "conv": 0}]
    # data of up to three channels opens with the convolution front end
    assert all(p["conv"] == 16 for p in opening_trials(cells, 1, 2, 6000, 1, 16, False))
    assert all(p["conv"] == 0 for p in ops)


def _opened_search(tmp_path, walks, **kw):
    from seqeq.api import split_validation
    from seqeq.search import SearchContext, make_study, open_study

    data = walks(n=48, T=8, groups=True)
    train, val, _ = split_validation(data, 0.2, 0)
    cfg = RunConfig.of(budget_kb=3, trials=5, epochs=2, device="cpu", **kw)
    ctx = SearchContext(train=train, val=val, cfg=cfg, device="cpu",
                        cells=["gru", "irnn", "fastgrnn"])
    study = make_study(cfg, tmp_path, load_if_exists=False)
    return ctx, study, open_study(ctx, study)


def test_a_fresh_search_opens_with_its_portfolio_trials_then_samples(tmp_path, walks):
    from seqeq.search import open_study, run_search, trial_records

    ctx, study, queued = _opened_search(tmp_path, walks)
    assert queued == 1  # a fifth of 5 trials
    run_search(ctx, study)
    recs = trial_records(study)
    assert recs[0]["opening"] and recs[0]["cell"] == "gru"
    assert recs[0]["params"]["size_frac"] == 1.0 and recs[0]["params"]["lr"] == 0.01
    # the largest GRU that fits the budget beside the front end (2 channels: 16 filters)
    from seqeq.models import conv_param_count
    from seqeq.search_spaces._space import _max_d, get_family

    d, C = ctx.train.n_channels, ctx.train.n_classes
    assert recs[0]["spec"]["conv"] == 16
    left = ctx.cfg.member_budget_bytes - 4 * conv_param_count(d, 16)
    assert recs[0]["spec"]["hidden_size"] == _max_d(get_family("gru"), 16, C, {}, left, 4)
    assert not any(r["opening"] for r in recs[1:])
    assert len(recs) == 5
    assert open_study(ctx, study) == 0  # a study with trials (resumed, shared) is not reopened


def test_no_opening_leaves_the_first_trial_to_the_sampler(tmp_path, walks):
    _, study, queued = _opened_search(tmp_path, walks, opening=False)
    assert queued == 0 and not study.get_trials()


def test_every_registered_cell_has_one_search_family_and_every_family_a_cell():
    """A cell registered without a family would silently never be searched (issue 19)."""
    from seqeq.cells import list_cells
    from seqeq.search_spaces import list_families
    from seqeq.search_spaces._space import Family, register_family

    assert sorted(list_families()) == sorted(list_cells())
    with pytest.raises(ValueError, match="not registered"):
        register_family(lambda: Family("nosuchcell", ()))
    with pytest.raises(ValueError, match="already has a search family"):
        register_family(lambda: Family("gru", ()))
