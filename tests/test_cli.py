"""End to end through the CLI on tiny real data: each input layout, export, predict, and the
scikit-learn estimator."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from seqeq.cli import app

FAST = ["--trials", "2", "--epochs", "2", "--final-seeds", "1", "--cells", "gru,irnn",
        "--device", "cpu", "--quiet"]


def _ucr(staged, name, n_train=None):
    """A staged UCR/UEA problem as (train, test) SeqData."""
    from seqeq.datasets import load_benchmark

    staged(f"ucr_uea/{name}.npz")
    train, test = load_benchmark(f"ucr:{name}")
    if n_train:
        train = train.subset(np.arange(min(n_train, train.n_series)))
    return train, test


def _invoke(args):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, (res.output, res.exception)
    return res


@pytest.mark.parametrize("layout,ext,name", [
    ("long", "csv", "JapaneseVowels"),       # multivariate, unequal lengths
    ("nested", "parquet", "JapaneseVowels"),
    ("wide", "csv", "ItalyPowerDemand"),      # univariate
])
def test_fit_each_layout_end_to_end(tmp_path, staged, layout, ext, name):
    from seqeq.datasets import save_file
    from seqeq.export.runtime import OnnxClassifier
    from seqeq.models import load_model
    from seqeq.train import predict_logits

    train, test = _ucr(staged, name)
    tr, te = tmp_path / f"train.{ext}", tmp_path / f"test.{ext}"
    save_file(train, tr, layout)
    save_file(test, te, layout)
    out = tmp_path / "run"
    res = _invoke(["fit", str(tr), "--test", str(te), "--budget-kb", "6", "--out", str(out),
                   "--json", *FAST])
    result = json.loads(res.stdout)  # --json: nothing but JSON on stdout
    assert result["size_bytes"] <= 6 * 1024
    assert 0.0 <= result["test_mean"] <= 1.0
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["train"]["n_series"] == train.n_series
    assert report["data"]["test"]["n_series"] == test.n_series
    # best.onnx reproduces the PyTorch model on real inputs, unequal lengths included
    model, spec, meta = load_model(out / "model")
    clf = OnnxClassifier(out / "best.onnx")
    X, L = test.X[:40], test.lengths[:40]
    ref = predict_logits(model, test.subset(np.arange(40)), device="cpu")
    got = clf.predict_logits(X, L)
    assert np.abs(ref - got).max() < 1e-4
    assert clf.class_names == train.class_names
    # predict from the file alone, same layout, one row per series id
    preds = tmp_path / "preds.csv"
    _invoke(["predict", str(out / "best.onnx"), str(te), "--out", str(preds), "--proba"])
    import pandas as pd

    df = pd.read_csv(preds)
    assert len(df) == test.n_series
    assert set(df["label"].astype(str)) <= set(train.class_names)
    assert np.allclose(df[[c for c in df.columns if c.startswith("p_")]].sum(axis=1), 1, atol=1e-5)


def _weight_bytes(path) -> int:
    """Bytes of every initializer in an ONNX file, the Loop body's included."""
    import onnx
    from onnx import numpy_helper

    def walk(g):
        n = sum(numpy_helper.to_array(t).nbytes for t in g.initializer)
        for node in g.node:
            for at in node.attribute:
                if at.type == onnx.AttributeProto.GRAPH:
                    n += walk(at.g)
        return n

    return walk(onnx.load(str(path)).graph)


def test_bench_randomwalk_export_and_latest_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/ is relative to the working directory
    res = _invoke(["bench", "randomwalk", "--budget-kb", "3", *FAST])
    assert "test accuracy" in res.output
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "best.onnx").is_file()
    assert (runs[0] / "report.html").read_text().startswith("<!doctype html")
    # export without --run takes the latest run; int8 is smaller than fp32
    _invoke(["export", "fp32.onnx"])
    _invoke(["export", "int8.onnx", "--quantize", "int8"])
    # (compare weights, not files: for a model of a few hundred parameters the per-row scales
    # and DequantizeLinear nodes can outweigh what int8 saves)
    assert _weight_bytes(tmp_path / "int8.onnx") < _weight_bytes(tmp_path / "fp32.onnx")


def test_every_command_has_help_with_an_example():
    for cmd in ("fit", "bench", "export", "predict", "datasets", "report"):
        res = CliRunner().invoke(app, [cmd, "--help"])
        assert res.exit_code == 0
        assert "Example: seqeq" in res.output, cmd


def test_datasets_lists_benchmarks(data_dir):
    res = CliRunner().invoke(app, ["datasets", "--data-dir", str(data_dir)])
    assert res.exit_code == 0
    for name in ("randomwalk", "har2", "har6", "dsa19", "pixel-mnist"):
        assert name in res.output


def test_sklearn_estimator_on_unequal_length_lists(tmp_path, walks):
    from sklearn.base import clone

    from seqeq import SeqeqClassifier

    data = walks(n=120, T=24, unequal=True, seed=1)
    X = [data.X[i, : data.lengths[i]] for i in range(data.n_series)]
    y = np.array(data.class_names)[data.y]
    clf = SeqeqClassifier(budget_kb=2, trials=2, epochs=3, cells="gru", device="cpu",
                          out=str(tmp_path / "sk"), ensemble=2)
    assert clone(clf).get_params() == clf.get_params()
    assert not hasattr(clf, "model_")  # nothing happens in __init__
    clf.fit(X, y)
    assert clf.result_.ensemble == 2 and len(clf.model_.cell.cells) == 2
    pred = clf.predict(X)
    assert set(pred) <= set(y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert 0.0 <= clf.score(X, y) <= 1.0
    clf.set_params(trials=1)
    assert clf.get_params()["trials"] == 1


@pytest.mark.parametrize("args", [["fit"], ["fit", "x.csv", "--bogus"], ["nope"],
                                  ["bench", "har2", "--budget-kb", "abc"]])
def test_usage_errors_are_one_line_exit_2(args):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "seqeq.cli", *args], capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_version_flag_and_python_dash_m():
    import subprocess
    import sys

    import seqeq

    for cmd in ([sys.executable, "-m", "seqeq", "--version"],
                [sys.executable, "-c", "from seqeq.cli import main; main()", "--version"]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"seqeq {seqeq.__version__}"
    r = subprocess.run([sys.executable, "-m", "seqeq", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "fit" in r.stdout and "export" in r.stdout


def test_shell_completion_completes_commands_options_benchmarks_and_cells():
    import os
    import subprocess
    import sys

    def complete(words: str) -> list[str]:
        env = {**os.environ, "_SEQEQ_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - 1)}
        r = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'seqeq'; "
                            "from seqeq.cli import main; main()"], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert complete("seqeq be") == ["bench"]
    assert "--budget-kb" in complete("seqeq bench --bud")
    assert {"har2", "har6"} <= set(complete("seqeq bench ha"))
    assert complete("seqeq fit x.csv --cells gru,ir") == ["gru,irnn"]
    assert complete("seqeq export m.c --target onnx-s") == ["onnx-streaming"]
    # the script a user installs
    # (typer detects the user's shell from the parent process; here, a test's, it is named)
    r = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'seqeq'; "
                        "from seqeq.cli import main; main()", "--show-completion", "bash"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert r.returncode == 0 and "_SEQEQ_COMPLETE=complete_bash" in r.stdout, r.stderr


def test_no_arguments_print_the_help_once():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "seqeq"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0
    assert (r.stdout + r.stderr).count("Usage:") == 1


def test_every_option_and_argument_has_help_and_usage_names_them_in_capitals():
    import typer.main

    from seqeq.cli import app

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        for p in cmd.params:
            if p.param_type_name == "option":
                assert p.help, f"seqeq {name} {p.opts[0]} has no help"
            else:
                assert p.metavar and p.metavar.isupper(), f"seqeq {name} argument {p.name}"
    export = group.commands["export"]
    q = next(p for p in export.params if p.name == "quantize")
    assert "budget" not in q.help  # export has no budget


def test_the_result_table_names_hyperparameters_and_says_what_the_trial_counts_are(
        tmp_path, walks):
    import pandas as pd
    from typer.testing import CliRunner

    from seqeq.cli import _describe_spec, app

    assert _describe_spec({"cell": "gru", "hidden_size": 8, "cell_kwargs": {}}) == "gru  D=8"
    assert _describe_spec({"cell": "dirnn", "hidden_size": 15, "cell_kwargs": {"L": 4, "K": 1},
                           "conv": 16, "pool": 6}) == "dirnn  D=15  K=1, L=4  (conv 16, pool 6)"
    d = walks(n=30, T=6, C=1)
    rows = [{"series": i, "t": t, "c0": float(d.X[i, t, 0]), "label": d.class_names[d.y[i]]}
            for i in range(d.n_series) for t in range(6)]
    path = tmp_path / "d.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    r = CliRunner().invoke(app, ["fit", str(path), "--trials", "2", "--epochs", "1",
                                 "--cells", "gru", "--final-seeds", "1", "--out",
                                 str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "{}" not in r.output
    assert "finished:" in r.output and "completed" in r.output


def test_the_study_records_what_it_was_searched_under(tmp_path, walks):
    import optuna

    import seqeq
    from seqeq.api import run_on
    from seqeq.config import RunConfig

    cfg = RunConfig.of(budget_kb=3, trials=1, epochs=1, final_seeds=1, cells=("gru",),
                       device="cpu", metric="macro_f1")
    res = run_on(walks(n=40, T=8, seed=1), None, cfg, tmp_path / "r")
    attrs = optuna.load_study(study_name="seqeq",
                              storage=f"sqlite:///{res.run_dir}/study.db").user_attrs
    assert attrs["seqeq_version"] == seqeq.__version__
    assert attrs["budget_kb"] == 3 and attrs["metric"] == "macro_f1"
    assert attrs["quantize"] == "none" and attrs["ensemble"] == 1
    assert len(attrs["data_fingerprint"]) >= 8 and attrs["data"] == "walks"


def test_predict_on_labelled_data_prints_accuracy_and_confusion(tmp_path, walks):
    import pandas as pd
    from typer.testing import CliRunner

    from seqeq.api import predict, run_on
    from seqeq.cli import app
    from seqeq.config import RunConfig

    d = walks(n=40, T=8, C=1, seed=2)
    res = run_on(d, None, RunConfig.of(budget_kb=2, trials=1, epochs=1, final_seeds=1,
                                       cells=("gru",), device="cpu"), tmp_path / "r")
    rows = [{"series": i, "t": t, "c0": float(d.X[i, t, 0]), "label": d.class_names[d.y[i]]}
            for i in range(d.n_series) for t in range(8)]
    rows += [{"series": 99, "t": t, "c0": 0.0, "label": "other"} for t in range(8)]
    path = tmp_path / "d.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    df = predict(res.onnx_path, path)
    ev = df.attrs["evaluation"]
    pred = df.set_index("id").loc[list(range(40)), "label"].to_numpy()
    truth = np.asarray(d.class_names)[d.y]
    assert ev["n_labelled"] == 40 and ev["unknown_labels"] == ["other"]
    assert ev["accuracy"] == pytest.approx(float(np.mean(pred == truth)))
    assert sum(map(sum, ev["confusion_matrix"]["counts"])) == 40
    r = CliRunner().invoke(app, ["predict", res.onnx_path, str(path), "--proba"])
    assert r.exit_code == 0, r.output
    assert f"accuracy {ev['accuracy']:.4f} on 40 labelled series" in r.output
    assert "confusion matrix" in r.output and "p_calm" in r.output


def test_every_command_that_prints_a_result_prints_it_as_json(tmp_path, walks, data_dir):
    import pandas as pd

    from seqeq.api import run_on
    from seqeq.config import RunConfig

    d = walks(n=40, T=8, C=1, seed=3)
    res = run_on(d, None, RunConfig.of(budget_kb=2, trials=1, epochs=1, final_seeds=1,
                                       cells=("gru",), device="cpu"), tmp_path / "r")
    rows = [{"series": i, "t": t, "c0": float(d.X[i, t, 0]), "label": d.class_names[d.y[i]]}
            for i in range(d.n_series) for t in range(8)]
    path = tmp_path / "d.csv"
    pd.DataFrame(rows).to_csv(path, index=False)

    out = json.loads(_invoke(["predict", res.onnx_path, str(path), "--proba", "--json"]).stdout)
    assert out["n_series"] == 40 and len(out["predictions"]) == 40 and out["out"] is None
    assert {"id", "label", "p_calm"} <= set(out["predictions"][0])
    assert out["evaluation"]["n_labelled"] == 40
    assert sum(map(sum, out["evaluation"]["confusion_matrix"]["counts"])) == 40
    # with --out the predictions go to the file and the JSON says where
    out = json.loads(_invoke(["predict", res.onnx_path, str(path), "--json",
                              "--out", str(tmp_path / "p.csv")]).stdout)
    assert out["out"] == str(tmp_path / "p.csv") and "predictions" not in out
    assert len(pd.read_csv(tmp_path / "p.csv")) == 40

    out = json.loads(_invoke(["export", str(tmp_path / "m.onnx"), "--run", res.run_dir,
                              "--json"]).stdout)
    assert out["out_path"] == str(tmp_path / "m.onnx") and out["origin"] == "final"
    assert out["run_dir"] == res.run_dir and out["file_bytes"] > 0

    out = json.loads(_invoke(["report", res.run_dir, "--json"]).stdout)
    assert out["report_html"].endswith("report.html") and "search" in out["report"]

    out = json.loads(_invoke(["datasets", "--data-dir", str(data_dir), "--json"]).stdout)
    rw = next(b for b in out if b["name"] == "randomwalk")
    assert rw["present"] is True and rw["n_classes"] >= 2


def test_export_a_trial_other_than_the_winner_and_the_best_within_a_size(tmp_path, walks):
    import optuna
    import pandas as pd

    from seqeq.export.runtime import OnnxClassifier

    d = walks(n=48, T=8, C=1, seed=4)
    rows = [{"series": i, "t": t, "c0": float(d.X[i, t, 0]), "label": d.class_names[d.y[i]]}
            for i in range(d.n_series) for t in range(8)]
    csv = tmp_path / "d.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    run = tmp_path / "run"
    _invoke(["fit", str(csv), "--budget-kb", "3", "--trials", "4", "--epochs", "2",
             "--final-seeds", "1", "--cells", "gru,irnn", "--pruner", "none", "--no-opening",
             "--device", "cpu", "--quiet", "--out", str(run)])
    study = optuna.load_study(study_name="seqeq", storage=f"sqlite:///{run}/study.db")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    winner = json.loads((run / "report.json").read_text())["best"]["trial"]
    other = next(t for t in done if t.number != winner)

    r = CliRunner().invoke(app, ["export", str(tmp_path / "o.onnx"), "--run", str(run),
                                 "--trial", str(other.number)])
    assert r.exit_code == 0, r.output
    assert f"trial {other.number} of {run}" in r.output
    assert "retrained on train+validation" in r.output
    kept = run / "trials" / str(other.number) / "model.json"
    assert json.loads(kept.read_text())["spec"]["hidden_size"] == other.user_attrs["spec"][
        "hidden_size"]
    clf = OnnxClassifier(tmp_path / "o.onnx")
    assert clf.predict(d.X[:4], d.lengths[:4]).shape == (4,)
    # a second export of that trial trains nothing: it says where the kept model is
    r = CliRunner().invoke(app, ["export", str(tmp_path / "o2.onnx"), "--run", str(run),
                                 "--trial", str(other.number), "--json"])
    out = json.loads(r.stdout)
    assert out["origin"] == "trial" and out["retrained"] is False and out["trial"] == other.number
    # the winner's number exports the run's own final model
    out = json.loads(_invoke(["export", str(tmp_path / "w.onnx"), "--run", str(run),
                              "--trial", str(winner), "--json"]).stdout)
    assert out["origin"] == "final" and out["model_dir"] == str(run / "model")
    # the best trial within a size: the smallest trial's size picks a trial of at most that size
    sizes = {t.number: t.user_attrs["size_bytes"] for t in done}
    small = min(sizes.values())
    out = json.loads(_invoke(["export", str(tmp_path / "s.onnx"), "--run", str(run),
                              "--max-kb", str(small / 1024), "--json"]).stdout)
    assert sizes[out["trial"]] <= small and out["size_bytes"] <= small
    # nothing fits, no such trial: one line, exit 2
    for args, msg in ((["--max-kb", "0.01"], "fits 0.01 KiB"), (["--trial", "99"], "trial 99")):
        r = CliRunner().invoke(app, ["export", str(tmp_path / "x.onnx"), "--run", str(run),
                                     *args])
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output


def test_export_a_trial_of_a_run_on_data_in_memory(tmp_path, walks):
    from seqeq import api
    from seqeq.config import RunConfig
    from seqeq.errors import SeqeqError

    d = walks(n=40, T=8, C=1, seed=5)
    res = api.run_on(d, None, RunConfig.of(budget_kb=3, trials=2, epochs=1, final_seeds=1,
                                           cells=("gru",), device="cpu", pruner="none",
                                           opening=False), tmp_path / "r")
    winner = json.loads((tmp_path / "r" / "report.json").read_text())["best"]["trial"]
    other = 1 - winner
    with pytest.raises(SeqeqError, match="in memory"):
        api.export(tmp_path / "m.onnx", res.run_dir, trial=other)
    # other data than the run's is refused, not silently trained on
    with pytest.raises(SeqeqError, match="has changed"):
        api.export(tmp_path / "m.onnx", res.run_dir, trial=other, data=(walks(n=40, T=8, C=1,
                                                                           seed=6), None))
    info = api.export(tmp_path / "m.onnx", res.run_dir, trial=other, data=(d, None))
    assert info["origin"] == "trial" and info["retrained"] and (tmp_path / "m.onnx").is_file()
