"""The command line turns text into config objects and hands them to the api (issue 19): these
tests assert on the configs a command line builds, for every documented value of every choice
flag, without running a search (``api.run`` is replaced by a recorder)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from seqeq import api
from seqeq.cli import SHARED_OPTIONS, app
from seqeq.config import DataConfig, RunConfig


@pytest.fixture
def built(monkeypatch):
    """Run a command line; return the (DataConfig, RunConfig, out, quiet) it built."""
    seen = {}

    def record(dc, cfg, out=None, quiet=True):
        seen.update(dc=dc, cfg=cfg, out=out, quiet=quiet)
        raise typer.Exit(0)

    monkeypatch.setattr(api, "run", record)

    def invoke(*args: str):
        res = CliRunner().invoke(app, list(args))
        assert res.exit_code == 0, (res.output, res.exception)
        return seen["dc"], seen["cfg"], seen["out"], seen["quiet"]

    return invoke


def test_fit_builds_its_configs_with_the_defaults(built):
    dc, cfg, out, quiet = built("fit", "walks.csv")
    assert dc == DataConfig(path="walks.csv")
    assert cfg == RunConfig.of()  # the CLI's defaults are the configs' own
    assert out is None and quiet is False


def test_bench_builds_the_same_search_config(built):
    args = ["--budget-kb", "8", "--trials", "3", "--cells", "gru, irnn", "--seed", "4",
            "--out", "runs/x", "--quiet"]
    dc_b, cfg_b, out_b, _ = built("bench", "har2", "--data-dir", "/d", *args)
    dc_f, cfg_f, out_f, _ = built("fit", "walks.csv", *args)
    assert dc_b == DataConfig(benchmark="har2", data_dir="/d")
    assert cfg_b == cfg_f == RunConfig.of(budget_kb=8, trials=3, cells=("gru", "irnn"), seed=4)
    assert str(out_b) == str(out_f) == "runs/x"


def test_the_shared_options_are_the_configs_settings_and_sklearn_draws_from_them():
    """One list of settings (the configs' fields): the CLI's shared options are those plus the
    run's own (out, vectors, quiet, json), and SeqeqClassifier's parameters are among them."""
    import inspect

    from seqeq import SeqeqClassifier

    settings = set(RunConfig().flat())
    names = {n for n, _, _ in SHARED_OPTIONS}
    assert names - settings == {"out", "vectors", "quiet", "as_json"}
    assert settings - names == {"patience"}  # a code-level setting, no flag
    sk = set(inspect.signature(SeqeqClassifier.__init__).parameters) - {"self"}
    # (layout: how the estimator reads an array, as vectors names its channels)
    assert sk - settings == {"random_state", "out", "verbose", "vectors", "layout"}


def test_fit_and_bench_share_one_declaration_of_their_options():
    cmd = typer.main.get_command(app)
    names = {n: {p.name for p in cmd.commands[n].params if p.param_type_name == "option"}
             for n in ("fit", "bench")}
    shared = {n for n, _, _ in SHARED_OPTIONS}
    assert shared <= names["fit"] and shared <= names["bench"]
    assert names["bench"] - shared == {"data_dir"}


@pytest.mark.parametrize("flag,value,field,want", [
    ("--format", "long", "fmt", "long"), ("--format", "wide", "fmt", "wide"),
    ("--format", "nested", "fmt", "nested"),
    ("--nan", "reject", "nan", "reject"), ("--nan", "fill", "nan", "fill"),
    ("--decimal", ".", "decimal", "."), ("--decimal", ",", "decimal", ","),
    ("--vectors", "auto", "vectors", "auto"), ("--vectors", "none", "vectors", "none"),
    ("--vectors", "ax,ay,az", "vectors", "ax,ay,az"),
    ("--group-col", "subject", "group_col", "subject"), ("--test", "t.csv", "test_path", "t.csv"),
])
def test_every_data_choice_reaches_the_data_config(built, flag, value, field, want):
    dc, *_ = built("fit", "walks.csv", flag, value)
    assert getattr(dc, field) == want


@pytest.mark.parametrize("flag,value,field,want", [
    ("--metric", "accuracy", "metric", "accuracy"),
    ("--metric", "balanced_accuracy", "metric", "balanced_accuracy"),
    ("--metric", "macro_f1", "metric", "macro_f1"),
    ("--final-epochs", "all", "final_epochs", "all"),
    ("--final-epochs", "best", "final_epochs", "best"),
    ("--pruner", "median", "pruner", "median"), ("--pruner", "hyperband", "pruner", "hyperband"),
    ("--pruner", "none", "pruner", "none"),
    ("--device", "auto", "device", "auto"), ("--device", "cpu", "device", "cpu"),
    ("--device", "cuda", "device", "cuda"),
    ("--quantize", "int8", "quantize", "int8"),
    ("--rotate", "auto", "rotate", None), ("--rotate", "0", "rotate", 0.0),
    ("--rotate", "30", "rotate", 30.0),
    ("--cells", "gru", "cells", ("gru",)),
    ("--ensemble", "3", "ensemble", 3), ("--rerank", "2", "rerank", 2),
    ("--rerank-folds", "4", "rerank_folds", 4), ("--workers", "2", "workers", 2),
    ("--timeout", "60", "timeout", 60.0), ("--trial-timeout", "9", "trial_timeout", 9.0),
    ("--storage", "sqlite:///x.db", "storage", "sqlite:///x.db"),
    ("--study-name", "s", "study_name", "s"), ("--final-seeds", "2", "final_seeds", 2),
    ("--epochs", "5", "epochs", 5),
])
def test_every_search_choice_reaches_the_search_config(built, flag, value, field, want):
    _, cfg, *_ = built("fit", "walks.csv", flag, value)
    assert cfg.flat()[field] == want


@pytest.mark.parametrize("args,field,want", [
    (["--no-opening"], "opening", False), (["--opening"], "opening", True),
    (["--resume"], "resume", True), (["--overwrite"], "overwrite", True),
])
def test_switches_reach_the_search_config(built, args, field, want):
    _, cfg, *_ = built("fit", "walks.csv", *args)
    assert cfg.flat()[field] == want


def test_json_implies_quiet(built):
    *_, quiet = built("fit", "walks.csv", "--json")
    assert quiet is True


@pytest.mark.parametrize("layout", ["long", "wide", "nested"])
def test_predict_format_is_the_layout(monkeypatch, tmp_path, layout):
    """`predict --format` was passed where the file format is expected (issue 19's bug)."""
    seen = {}

    def record(model, data, **kw):
        seen.update(kw)
        raise typer.Exit(0)

    monkeypatch.setattr(api, "predict", record)
    (tmp_path / "m.onnx").write_bytes(b"x")
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "m.onnx"), "d.csv", "--format",
                                   layout, "--decimal", ","])
    assert res.exit_code == 0, res.output
    assert seen["fmt"] == layout and seen["decimal"] == ","


def test_export_quantize_reaches_the_api(monkeypatch, tmp_path):
    seen = {}

    def record(out_path, run_dir=None, quantize=None, target=None, trial=None, max_kb=None,
               quiet=True):
        seen.update(quantize=quantize, run_dir=run_dir, target=target, trial=trial,
                    max_kb=max_kb)
        raise typer.Exit(0)

    monkeypatch.setattr(api, "export", record)
    res = CliRunner().invoke(app, ["export", str(tmp_path / "m.onnx"), "--run", "runs/x",
                                   "--quantize", "int8"])
    assert res.exit_code == 0, res.output
    assert seen["quantize"] == "int8" and str(seen["run_dir"]) == "runs/x"
    assert seen["target"] is None  # chosen by the suffix
    assert seen["trial"] is None and seen["max_kb"] is None  # the run's winner
    res = CliRunner().invoke(app, ["export", str(tmp_path / "m.onnx"), "--trial", "3"])
    assert res.exit_code == 0 and seen["trial"] == 3, res.output
    res = CliRunner().invoke(app, ["export", str(tmp_path / "m.onnx"), "--max-kb", "2.5"])
    assert res.exit_code == 0 and seen["max_kb"] == 2.5, res.output
    res = CliRunner().invoke(app, ["export", str(tmp_path / "m.bin"), "--target", "onnx"])
    assert res.exit_code == 0 and seen["target"] == "onnx", res.output
    res = CliRunner().invoke(app, ["export", str(tmp_path / "m.bin"), "--target", "tflite"])
    assert res.exit_code == 2 and "unknown export target 'tflite'" in res.stderr
