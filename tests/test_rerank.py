"""``--rerank``: the best trials re-scored on cross-validation folds before the final retrain."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from seqeq.config import RunConfig
from seqeq.errors import SeqeqError
from seqeq.rerank import RERANK_FILE, rerank, rerank_candidates, rerank_folds


def _split(data, groups: bool):
    from seqeq.api import split_validation

    return split_validation(data, 0.2, seed=0)[:2]


@pytest.mark.parametrize("grouped", [True, False])
def test_folds_cover_every_series_once_and_keep_groups_whole(walks, grouped):
    train, val = _split(walks(n=96, T=8, groups=grouped), grouped)
    held = rerank_folds(train, val, folds=3, seed=0)
    n = train.n_series + val.n_series
    assert len(held) == 3
    assert np.array_equal(held[0], np.arange(train.n_series, n))  # fold 0: the validation split
    assert np.array_equal(np.sort(np.concatenate(held)), np.arange(n))  # a partition
    for h in held[1:]:
        assert 0 < len(h) < train.n_series
        assert set(np.unique(train.y[h])) == {0, 1}  # stratified: both classes in every fold
    if grouped:
        from seqeq.datasets import concat

        g = concat(train, val).groups
        owners = [set(g[h]) for h in held]
        assert all(not (a & b) for i, a in enumerate(owners) for b in owners[i + 1:])


def test_folds_that_cannot_be_made_are_a_user_error(walks):
    train, val = _split(walks(n=48, T=8, groups=True), True)  # 6 groups, some held for validation
    with pytest.raises(SeqeqError, match="rerank_folds=9 needs 8 groups"):
        rerank_folds(train, val, folds=9, seed=0)


@pytest.mark.parametrize("kw,msg", [({"rerank": 1}, "rerank must be 0"),
                                    ({"rerank": 21}, "rerank must be 0"),
                                    ({"rerank": 2, "rerank_folds": 2}, "rerank_folds must be")])
def test_config_bounds(kw, msg):
    with pytest.raises(SeqeqError, match=msg):
        RunConfig.of(**kw)


def _study_with(values: list[float], specs: list[dict]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for v, spec in zip(values, specs, strict=True):
        study.add_trial(optuna.trial.create_trial(
            params={"cell": spec["cell"]},
            distributions={"cell": optuna.distributions.CategoricalDistribution(["gru", "irnn"])},
            value=v, user_attrs={"spec": spec, "size_bytes": 100, "train": {"lr": 0.01}}))
    return study


def test_candidates_are_the_best_distinct_configurations():
    a, b, c = ({"cell": "gru", "hidden_size": h} for h in (4, 5, 6))
    study = _study_with([0.7, 0.9, 0.9, 0.8, 0.6], [a, b, b, c, a])  # trial 2 repeats trial 1
    assert [t.number for t in rerank_candidates(study, 3)] == [1, 3, 0]
    assert [t.number for t in rerank_candidates(study, 10)] == [1, 3, 0]


def test_candidates_are_each_familys_best_before_a_familys_runners_up():
    g1, g2, g3 = ({"cell": "gru", "hidden_size": h} for h in (4, 5, 6))
    i1, i2 = ({"cell": "irnn", "hidden_size": h} for h in (4, 5))
    study = _study_with([0.95, 0.94, 0.93, 0.80, 0.70], [g1, g2, g3, i1, i2])
    # the irnn leader (trial 3) displaces the third GRU; ranked by score
    assert [t.number for t in rerank_candidates(study, 3)] == [0, 1, 3]
    assert [t.number for t in rerank_candidates(study, 2)] == [0, 3]
    assert [t.number for t in rerank_candidates(study, 5)] == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_a_reranked_search_retrains_the_best_cross_validated_trial(tmp_path, walks):
    """End to end: three folds of two candidates, fold 0 being each trial's own score; the
    report's best and final describe the chosen trial; every fold is kept in rerank.json; a
    resumed run reuses those scores (here edited, so reuse is visible) instead of retraining."""
    from seqeq.api import run_on

    data, test = walks(n=144, T=12, seed=3, groups=True), walks(n=40, T=12, seed=4)
    cfg = RunConfig.of(budget_kb=3, trials=4, epochs=2, final_seeds=1, rerank=2,
                       cells=("gru", "irnn"), device="cpu", pruner="none")
    res = run_on(data, test, cfg, tmp_path / "r")
    report = json.loads(open(res.report_json).read())
    rr = report["rerank"]
    assert rr["candidates"] == 2 and rr["folds"] == 3 and len(rr["rows"]) == 2
    assert sum(rr["fold_sizes"]) == report["data"]["n_train_search"] + report["data"]["n_val"]
    assert sum(rr["fold_groups"]) == 6  # every subject held out exactly once
    trials = {t["number"]: t for t in report["trials"]}
    for row in rr["rows"]:
        assert row["fold_scores"][0] == row["val_score"] == trials[row["trial"]]["val_score"]
        assert row["score"] == pytest.approx(np.average(row["fold_scores"],
                                                        weights=rr["fold_sizes"]))
    best_row = max(rr["rows"], key=lambda r: r["score"])
    assert rr["chosen_trial"] == best_row["trial"] == report["best"]["trial"]
    assert report["search"]["rerank"] == 2 and report["search"]["rerank_folds"] == 3
    saved = json.loads((tmp_path / "r" / RERANK_FILE).read_text())
    assert len(saved["scores"]) == 6
    jsonschema = pytest.importorskip("jsonschema")
    from seqeq.report import SCHEMA_PATH

    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()),
                        cls=jsonschema.Draft202012Validator)
    assert "Re-ranking" in open(res.report_html).read()

    # the runner-up wins once its saved extra folds read perfect and the winner's zero: the
    # saved scores are used
    other = next(r["trial"] for r in rr["rows"] if r["trial"] != rr["chosen_trial"])
    for f in (1, 2):
        saved["scores"][f"{other}/{f}"] = 1.0
        saved["scores"][f"{rr['chosen_trial']}/{f}"] = 0.0
    (tmp_path / "r" / RERANK_FILE).write_text(json.dumps(saved))

    res2 = run_on(data, test, cfg.with_settings(resume=True), tmp_path / "r")
    report2 = json.loads(open(res2.report_json).read())
    assert report2["rerank"]["chosen_trial"] == report2["best"]["trial"] == other


@pytest.mark.slow
def test_worker_processes_score_folds_as_one_process_does(tmp_path, walks):
    """Same seeds on CPU: the fold scores of two spawned workers equal those of this process."""
    from seqeq.api import split_validation
    from seqeq.search import SearchContext, make_study, run_search

    data = walks(n=96, T=10, seed=5, groups=True)
    train, val, _ = split_validation(data, 0.2, 0)
    cfg = RunConfig.of(budget_kb=3, trials=3, epochs=2, rerank=2, cells=("gru",), device="cpu",
                       pruner="none")
    study = make_study(cfg, tmp_path, load_if_exists=False)
    run_search(SearchContext(train=train, val=val, cfg=cfg, device="cpu", cells=["gru"]), study)
    one, s1 = rerank(study, train, val, cfg, "cpu")

    two, s2 = rerank(study, train, val, cfg.with_settings(workers=2), "cpu")
    assert one.number == two.number
    assert [r["fold_scores"] for r in s1["rows"]] == [r["fold_scores"] for r in s2["rows"]]
