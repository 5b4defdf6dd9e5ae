"""The run report: report.html and report.json from a real (tiny) run, the schema, the
``seqeq report`` command, missing pieces, and a headless-browser screenshot."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from seqeq.api import run_on
from seqeq.config import RunConfig
from seqeq.datasets import SeqData, stratified_split
from seqeq.report import SCHEMA_PATH, SCHEMA_VERSION, finalise, param_importances, render_html

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
CFG = dict(budget_kb=4, trials=3, epochs=2, final_seeds=2, cells=("irnn", "gru"), seed=2)


def _walks(n: int = 120, T: int = 30, seed: int = 0) -> SeqData:
    """Two-channel random walks; class "up" drifts upwards on channel 0."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    steps = rng.normal(size=(n, T, 2)).astype(np.float32)
    steps[:, :, 0] += np.where(y == 1, 0.3, -0.3)[:, None]
    return SeqData(X=np.cumsum(steps, axis=1), lengths=np.full(n, T), y=y,
                   class_names=["down", "up"], channel_names=["pos", "noise"], name="walks")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    data = _walks()
    keep, held = stratified_split(data.y, 0.25, 0)
    out = tmp_path_factory.mktemp("report") / "run"
    run_on(data.subset(keep), data.subset(held), RunConfig.of(**CFG), out,
           data_info={"source": "synthetic", "name": "walks"})
    return out


@pytest.fixture(scope="module")
def report(run_dir) -> dict:
    return json.loads((run_dir / "report.json").read_text())


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


class _Page(HTMLParser):
    """The facts about a page the tests check."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.svgs = 0  # outermost <svg> elements
        self.depth = 0
        self.tags: list[str] = []
        self.external: list[str] = []
        self.script_src: list[str] = []
        self.trial_rows: list[dict[int, str]] = []
        self._in_trials = self._in_row = False
        self._col = -1
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a and self.depth == 0:
            self.ids.append(a["id"])
        if tag == "svg":
            self.svgs += self.depth == 0
            self.depth += 1
        for k, v in attrs:
            if k in ("src", "href", "xlink:href", "action", "data") and v and re.match(
                    r"\s*(https?:)?//", v):
                self.external.append(f"{tag} {k}={v}")
        if tag == "script" and "src" in a:
            self.script_src.append(a["src"])
        if tag == "section" and a.get("id") == "trials":
            self._in_trials = True
        if self._in_trials and tag == "tr":
            self._in_row, self._col = True, -1
            self.trial_rows.append({"class": a.get("class") or ""})
        if self._in_trials and self._in_row and tag == "td":
            self._col += 1
            self.trial_rows[-1][self._col] = a.get("data-v")

    def handle_endtag(self, tag):
        if tag == "svg":
            self.depth -= 1
        if tag == "section":
            self._in_trials = False

    def handle_data(self, data):
        if self.depth == 0:
            self.text.append(data)


def _page(html: str) -> _Page:
    return _Page(html)


# ---- the real run -----------------------------------------------------------------------------
def test_html_has_every_section_and_plot(run_dir, report):
    page = _page((run_dir / "report.html").read_text())
    for sid in ("summary", "data", "search", "model", "final", "plot-size-score",
                "plot-history", "plot-cells", "plot-confusion", "plot-learning",
                "plot-gradient", "plot-importances", "trials"):
        assert sid in page.ids, sid
    # 3 trials are too few for importances: a note instead of a plot, so 6 plots
    assert report["importances"]["values"] is None and report["importances"]["note"]
    assert page.svgs == 6
    text = " ".join(page.text)
    assert report["importances"]["note"] in text
    assert "down" in text and "up" in text  # class names (balance table)


def test_html_is_self_contained(run_dir):
    html = (run_dir / "report.html").read_text()
    page = _page(html)
    assert page.external == []
    assert page.script_src == []
    assert not {"link", "img", "iframe", "object", "embed"} & set(page.tags)
    assert "<script src" not in html.lower() and "<link" not in html.lower()
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html)
    assert "@import" not in html and "@font-face" not in html


def test_summary_shows_the_run(run_dir, report):
    text = " ".join(_page((run_dir / "report.html").read_text()).text)
    f, b, s = report["final"], report["best"], report["search"]
    assert f"{f['test_mean']:.4f} ± {f['test_std']:.4f}" in text
    assert f"{b['size_bytes'] / 1024:.2f} KiB" in text
    assert b["size_bytes_int8"] is not None and f"{b['size_bytes_int8'] / 1024:.2f} KiB" in text
    assert f"{report['export']['file_bytes'] / 1024:.2f} KiB" in text
    assert f"{s['n_complete']} / {s['n_pruned']} / {s['n_failed']}" in text
    assert b["spec"]["cell"] in text and f"D={b['spec']['hidden_size']}" in text
    assert len(f["test_scores"]) == 2 and len(f["gradient_norm"]) == 30


def test_the_weights_precision_reads_fp32_not_none(tmp_path, report):
    from seqeq.report import write_html

    rep = {**report, "export": {**(report["export"] or {}), "quantize": None},
           "deployment": {"quantize": "none", "target": "Arm Cortex-M4F"}}
    text = " ".join(_page(write_html(rep, tmp_path).read_text()).text)
    assert "(none)" not in text and "(fp32)" in text


def test_trials_table_is_ordered_by_score_without_js(run_dir, report):
    page = _page((run_dir / "report.html").read_text())
    rows = [r for r in page.trial_rows if 0 in r]  # body rows (header rows have no <td>)
    assert len(rows) == len(report["trials"]) == 3
    scores = [float(r[4]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    chosen = [r for r in rows if "chosen" in r["class"]]
    assert [int(r[0]) for r in chosen] == [report["best"]["trial"]]


def test_json_validates_against_the_shipped_schema(report, schema):
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(report, schema, cls=jsonschema.Draft202012Validator)
    assert report["schema_version"] == SCHEMA_VERSION == schema["properties"][
        "schema_version"]["const"]
    # the schema is strict enough to catch a broken report
    bad = copy.deepcopy(report)
    del bad["final"]["test_mean"]
    bad["trials"][0]["state"] = "done"
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(bad))
    assert len(errors) == 2
    undocumented = {**report, "surprise": 1}
    assert not jsonschema.Draft202012Validator(schema).is_valid(undocumented)


def test_schema_ships_as_package_data():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"seqeq\.report"\s*=\s*\[[^\]]*"schema\.json"', text)
    assert SCHEMA_PATH.parent == ROOT / "seqeq" / "report"


def test_derived_numbers_match_the_trials(report):
    d = report["derived"]
    done = [t for t in report["trials"] if t["state"] == "complete"]
    best = max(t["val_score"] for t in done)
    assert d["history"][-1]["best_so_far"] == best
    front = [t for t in report["trials"] if t["number"] in d["pareto_front"]]
    # the chosen trial has the best score (on ties, the lower validation loss: it may be a
    # larger model than a front trial of the same score)
    chosen = next(t for t in report["trials"] if t["number"] == report["best"]["trial"])
    assert chosen["val_score"] == best
    assert max(t["val_score"] for t in front) == best
    assert min(t["size_bytes"] for t in front) == min(t["size_bytes"] for t in done)
    assert set(d["best_by_cell"]) == set(report["search"]["cells"])


def test_cli_report_regenerates_the_same_page(run_dir):
    from seqeq.cli import app

    html = run_dir / "report.html"
    original = html.read_text()
    html.unlink()
    res = CliRunner().invoke(app, ["report", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert html.read_text() == original  # deterministic, from report.json alone


def test_cli_report_refuses_what_it_cannot_read(tmp_path, report):
    from seqeq.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "not found" in res.output
    (tmp_path / "report.json").write_text(json.dumps({**report, "schema_version": 99}))
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "schema_version" in res.output
    assert not (tmp_path / "report.html").exists()


# ---- missing pieces (the same report, edited) -------------------------------------------------
def test_no_test_set(report, schema):
    r = copy.deepcopy(report)
    r["data"]["test"] = None
    r["final"].update(test_scores=[], test_mean=None, test_std=None, chosen_test_score=None,
                      confusion_matrix=None)
    r = finalise(r)
    jsonschema.validate(r, schema, cls=jsonschema.Draft202012Validator)
    page = _page(render_html(r))
    assert "plot-confusion" not in page.ids and "final" in page.ids
    assert page.svgs == 5
    assert "No test set" in " ".join(page.text)


def test_pruned_failed_and_non_finite_values(report, schema):
    r = copy.deepcopy(report)
    n = len(r["trials"])
    r["trials"] += [
        {"number": n, "state": "pruned", "cell": "irnn", "params": {"cell": "irnn"},
         "spec": r["trials"][0]["spec"], "size_bytes": 1000, "val_score": 0.5,
         "epochs_run": 1, "best_epoch": None, "pruned": True, "seconds": 0.2,
         "val_curve": [0.5, float("nan")]},
        {"number": n + 1, "state": "fail", "cell": None, "params": {}, "spec": None,
         "size_bytes": None, "val_score": None, "epochs_run": None, "best_epoch": None,
         "pruned": False, "seconds": None, "val_curve": None},
    ]
    r["search"].update(n_trials=n + 2, n_pruned=1, n_failed=1)
    r["final"]["gradient_norm"][3] = float("inf")
    r = finalise(r)
    assert r["trials"][-2]["val_curve"] == [0.5, None] and r["final"]["gradient_norm"][3] is None
    json.dumps(r, allow_nan=False)  # strict JSON
    jsonschema.validate(r, schema, cls=jsonschema.Draft202012Validator)
    page = _page(render_html(r))
    assert page.svgs == 6
    rows = [row for row in page.trial_rows if 0 in row]
    assert len(rows) == n + 2 and int(rows[-1][0]) == n + 1  # no score: last
    text = " ".join(page.text)
    assert "1 trial(s) failed" in text
    assert n not in r["derived"]["pareto_front"]  # pruned trials are not on the front


def test_single_trial(report, schema):
    r = copy.deepcopy(report)
    keep = r["best"]["trial"]
    r["trials"] = [t for t in r["trials"] if t["number"] == keep]
    r["search"].update(n_trials=1, n_finished=1, n_complete=1, n_pruned=0, n_failed=0)
    r = finalise(r)
    jsonschema.validate(r, schema, cls=jsonschema.Draft202012Validator)
    assert r["derived"]["pareto_front"] == [keep]
    page = _page(render_html(r))
    assert page.svgs == 6 and len([row for row in page.trial_rows if 0 in row]) == 1


# ---- importances ------------------------------------------------------------------------------
def _study(n: int, dynamic: bool = False):
    import optuna

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        y = trial.suggest_float("y", 0, 1)
        if dynamic and trial.suggest_categorical("cell", ["a", "b"]) == "a":
            return x + trial.suggest_int("a.K", 1, 5) * 0.01
        return x + 0.1 * y

    study.optimize(objective, n_trials=n)
    return study


def test_importances_rank_the_parameter_that_matters():
    imp = param_importances(_study(20))
    assert imp["note"] is None and imp["n_trials"] == 20
    assert list(imp["values"])[0] == "x" and abs(sum(imp["values"].values()) - 1) < 1e-6


def test_importances_too_few_trials_or_dynamic_space():
    few = param_importances(_study(2))
    assert few["values"] is None and "at least" in few["note"]
    dyn = param_importances(_study(15, dynamic=True))
    assert dyn["values"] is not None or dyn["note"]
    assert json.dumps(dyn, allow_nan=False)


# ---- what a person sees -----------------------------------------------------------------------
def test_screenshot_in_headless_chromium(run_dir, tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from screenshot_report import find_chromium
    finally:
        sys.path.pop(0)
    if find_chromium() is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium)")
    png = tmp_path / "report.png"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "screenshot_report.py"),
                           str(run_dir), "--out", str(png), "--height", "3000"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(head[16:20], "big") == 1280
    from PIL import Image

    im = np.asarray(Image.open(png).convert("L"))
    assert (im < 200).mean() > 0.01  # text and plots were drawn, not a blank page


def test_a_report_plot_is_one_registration():
    """Id, title, caption, size and drawing live in one entry (issue 19): the page's sections
    follow the registry, and an id cannot be registered twice."""
    from seqeq.report._html import SECTION_IDS
    from seqeq.report._plots import PLOTS, Plot, register_plot

    assert [s for s in SECTION_IDS if s.startswith("plot-")] == list(PLOTS)
    assert all(p.title and p.caption and callable(p.draw) for p in PLOTS.values())
    with pytest.raises(ValueError, match="already registered"):
        register_plot(Plot("plot-history", "t", "c", lambda *a: None, lambda r: (1, 1)))


def test_optunas_per_parameter_warnings_become_one_sentence():
    """The report's importance note was a wall of one Optuna warning per parameter."""
    from seqeq.report._collect import _summarise

    w = ("Some regimes for parameter `{}` have less than 2 trials. The importance of the "
         "parameter may be inaccurate.")
    note = _summarise([w.format(f"irnn.p{i}") for i in range(11)] + ["Another warning."])
    assert note.startswith("Some values of 11 parameter(s) were tried by fewer than 2 trials")
    assert "irnn.p0, irnn.p1" in note and "and 3 more" in note and note.endswith("Another warning.")
    assert note.count("Some") == 1


def test_the_learning_curve_caption_says_how_long_the_retrain_ran():
    from seqeq.report._plots import _retrain_length

    assert "whole learning-rate schedule" in _retrain_length({"search": {"final_epochs": "all"}})
    assert "best epoch" in _retrain_length({"search": {"final_epochs": "best"}})
    assert "best epoch count" not in _retrain_length({"search": {"final_epochs": "all"}})


def test_the_learning_curves_take_the_chosen_cells_colour(monkeypatch):
    """A DIRNN's curves were drawn in the first searched cell's (GRU's) colour."""
    from seqeq.report import _plots

    report = {"search": {"cells": ["gru", "dirnn"], "metric": "accuracy"},
              "best": {"trial": 1, "spec": {"cell": "dirnn"}, "epochs": 2},
              "trials": [{"number": 0, "cell": "gru", "val_curve": [0.5]},
                         {"number": 1, "cell": "dirnn", "val_curve": [0.6, 0.7]}],
              "final": {"learning_curve": [{"epoch": 1, "train_loss": 1.0},
                                           {"epoch": 2, "train_loss": 0.5}], "chosen_seed": 0}}
    fig = _plots._figure(5, 3)
    _plots._learning(fig, report)
    want = _plots.cell_colours(report)["dirnn"]
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() != "best epoch"]
    assert lines and all(ln.get_color() == want for ln in lines)


def test_the_size_plot_spans_the_trials_ends_its_front_at_the_budget_and_numbers_it():
    from seqeq.report import _plots

    trials = [{"number": n, "cell": "gru", "state": "complete", "size_bytes": b,
               "val_score": v} for n, b, v in ((0, 15000, 0.8), (1, 16500, 0.9),
                                                (2, 18000, 0.85))]
    report = {"search": {"cells": ["gru"], "budget_kb": 20, "metric": "accuracy"},
              "trials": trials, "best": {"trial": 1},
              "derived": {"pareto_front": [0, 1]}}
    fig = _plots._figure(5, 3)
    _plots._size_vs_score(fig, report)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert lo > 10 and hi > 20  # not from 0 KiB: the points would crowd into a corner
    stair = [ln for ln in ax.get_lines() if ln.get_drawstyle() == "steps-post"][0]
    assert max(stair.get_xdata()) == 20  # ends at the budget line
    assert {t.get_text() for t in ax.texts} == {"#0", "#1"}


def test_the_history_legend_names_every_cell_it_draws_pruned_only_ones_too():
    """A cell whose only trial was pruned was drawn (hollow, in its colour) but not named."""
    from seqeq.report import _plots

    trials = [{"number": 0, "cell": "gru"}, {"number": 1, "cell": "fastrnn"},
              {"number": 2, "cell": "gru"}]
    hist = [{"number": 0, "state": "complete", "val_score": 0.9, "best_so_far": 0.9},
            {"number": 1, "state": "pruned", "val_score": 0.7, "best_so_far": 0.9},
            {"number": 2, "state": "pruned", "val_score": 0.8, "best_so_far": 0.9}]
    report = {"search": {"cells": ["gru", "fastrnn"], "metric": "accuracy"}, "trials": trials,
              "derived": {"history": hist}}
    fig = _plots._figure(5, 3)
    _plots._history(fig, report)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels.count("gru") == 1 and labels.count("fastrnn") == 1 and "pruned" in labels


def test_the_chosen_model_and_the_trials_table_name_the_front_ends():
    """The result table said ``gru D=9 (conv 16)``; the report's model section did not."""
    from seqeq.report._html import _model, _trials

    spec = {"cell": "gru", "hidden_size": 9, "conv": 16, "pool": 6, "cell_kwargs": {}}
    r = {"best": {"trial": 0, "spec": spec, "train": {"lr": 0.01, "batch_size": 8}},
         "search": {"metric": "accuracy"}, "derived": {"pareto_front": []},
         "trials": [{"number": 0, "cell": "gru", "state": "complete", "spec": spec,
                     "params": {}, "val_score": 1.0}]}
    model = _model(r)
    assert "front end" in model and "16 causal convolution filters over 5 steps" in model
    assert "block mean of every 6 steps" in model  # a spec from before conv_first
    import html

    first = html.unescape(_model({**r, "best": {**r["best"],
                                                "spec": {**spec, "conv_first": True}}}))
    assert ("16 causal convolution filters over 5 steps with ReLU (their weights count in the "
            "size), at every step; then each filter's largest response in every block of 6 "
            "steps") in first
    assert "conv 16, pool 6" in _trials(r)
    bare = _model({**r, "best": {**r["best"], "spec": {**spec, "conv": 0, "pool": 1}}})
    assert "front end" not in bare
