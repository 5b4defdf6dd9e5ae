"""Trust, second pass (issue 18): no endless or unbounded step, one run per directory, a full
disk named, Ctrl-C in the final retrain keeps the promise, a closed pipe ends quietly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from typer.testing import CliRunner

from seqeq.cli import app
from seqeq.config import RunConfig
from seqeq.errors import SeqeqError, WriteError, cli_names

TESTS = Path(__file__).resolve().parent
FAST = dict(budget_kb=3, trials=2, epochs=1, final_seeds=1, cells=("gru",), device="cpu")


def _trials(out: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="seqeq", storage=f"sqlite:///{out / 'study.db'}"
                             ).get_trials()


# ---- failed trials ------------------------------------------------------------------------
def test_a_search_whose_trials_all_fail_stops_with_the_cause(tmp_path, walks, monkeypatch):
    import seqeq.search
    from seqeq.api import run_on
    from seqeq.search import MAX_FAILURES_IN_A_ROW

    def broken(*a, **kw):
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")

    monkeypatch.setattr(seqeq.search, "train_model", broken)
    t0 = time.perf_counter()
    with pytest.raises(SeqeqError) as e:
        run_on(walks(n=60, T=10), None, RunConfig.of(**{**FAST, "trials": 50}), tmp_path / "r")
    assert time.perf_counter() - t0 < 60
    msg = str(e.value)
    assert "trial(s) in a row failed" in msg and "Expected sequence length" in msg
    assert "\n" not in msg
    trials = _trials(tmp_path / "r")
    assert len(trials) == MAX_FAILURES_IN_A_ROW  # not 2,028
    assert all(t.user_attrs["error"].startswith("RuntimeError:") for t in trials)


def test_failed_trials_count_toward_trials(tmp_path, walks, monkeypatch):
    """Some trials fail, the others complete: the search ends after --trials counted trials
    and reports the failed ones with their cause."""
    import seqeq.search
    from seqeq.api import run_on

    real = seqeq.search.train_model
    calls = []

    def sometimes(model, train, cfg, **kw):
        calls.append(1)
        if len(calls) % 2 == 0:
            raise FloatingPointError("loss is nan")
        return real(model, train, cfg, **kw)

    monkeypatch.setattr(seqeq.search, "train_model", sometimes)
    res = run_on(walks(n=60, T=10), None, RunConfig.of(**{**FAST, "trials": 4}), tmp_path / "r")
    states = [t.state for t in _trials(tmp_path / "r")]
    assert len(states) == 4  # two completed, two failed: four counted
    report = json.loads(Path(res.report_json).read_text())
    failed = [t for t in report["trials"] if t["state"] == "fail"]
    assert len(failed) == 2 and all(t["error"] == "FloatingPointError: loss is nan"
                                    for t in failed)
    assert report["search"]["n_failed"] == 2


# ---- bounded steps -------------------------------------------------------------------------
def test_gradient_diagnostic_runs_over_a_bounded_window(tmp_path, walks):
    from seqeq.api import GRADIENT_WINDOW, run_on

    T = GRADIENT_WINDOW + 60
    res = run_on(walks(n=40, T=T), None, RunConfig.of(**FAST), tmp_path / "r")
    report = json.loads(Path(res.report_json).read_text())
    g = report["final"]["gradient_norm"]
    # over the recurrence's steps: the window, or fewer where the front end pools the series
    assert len(g) == min(GRADIENT_WINDOW, -(-T // report["best"]["spec"]["pool"]))


def test_huge_data_is_announced_with_what_it_costs(monkeypatch):
    """Data whose epochs take long: the run says up front what a trial costs -- how far its
    schedule is cut to fit its time (the default), or what it and the run take (no limit)."""
    import seqeq.train
    from seqeq.datasets import SeqData
    from seqeq.run.data import say_cost as _say_cost

    X = np.zeros((400, 256, 3), np.float32)
    d = SeqData(X=X, lengths=np.full(400, 256), y=np.repeat([0, 1], 200),
                class_names=["a", "b"], channel_names=["x", "y", "z"])
    # as measured on a slow machine: 100 s per epoch
    monkeypatch.setattr(seqeq.train, "estimate_epoch_seconds", lambda data, **kw: 100.0)
    with cli_names(), pytest.warns(UserWarning) as rec:
        _say_cost(d, RunConfig.of(budget_kb=8, trials=2, timeout=0), "cpu", quiet=True)
    msg = str(rec[0].message)
    assert "400 series of up to 256 steps" in msg and "each trial of 40 epochs" in msg
    assert "--timeout SEC" in msg
    with cli_names(), pytest.warns(UserWarning) as rec:
        _say_cost(d, RunConfig.of(budget_kb=8, trials=2), "cpu", quiet=True)
    msg = str(rec[0].message)
    # 40 epochs x 100 s against a trial's 38 s (a quarter of 150 s): cut to the minimum
    assert "a trial's 40-epoch schedule would take at least about 67 min" in msg
    assert "cut to about 2 epochs" in msg and "--timeout SEC (0: none)" in msg
    small = SeqData(X=np.zeros((12, 50, 3), np.float32), lengths=np.full(12, 50),
                    y=np.repeat([0, 1], 6), class_names=["a", "b"], channel_names=["x", "y", "z"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _say_cost(small, RunConfig.of(budget_kb=8, trials=2), "cpu", quiet=True)  # says nothing


# ---- one run per directory ------------------------------------------------------------------
def test_a_run_directory_held_by_another_run_is_refused(tmp_path):
    from seqeq.run.rundir import run_dir_lock as _run_dir_lock

    sys.path.insert(0, str(TESTS))
    from test_bad_input import FAST as CLI_FAST
    from test_bad_input import good_frame

    good_frame().to_csv(tmp_path / "good.csv", index=False)
    out = tmp_path / "run"
    with _run_dir_lock(out):
        res = CliRunner().invoke(app, ["fit", str(tmp_path / "good.csv"), *CLI_FAST, "--out",
                                       str(out)])
    assert res.exit_code == 2
    line = res.stderr.strip()
    assert f"another seqeq run (pid {os.getpid()}) is using {out}" in line, line
    assert "choose another --out" in line and "--storage" not in line
    assert sorted(p.name for p in out.iterdir()) == [".seqeq.lock"]


@pytest.mark.slow
def test_two_runs_started_at_once_on_one_directory(tmp_path):
    """One finishes; the other says another run holds the directory (or, if it started after
    the first finished, that the directory already holds a run), never a storage error."""
    sys.path.insert(0, str(TESTS))
    from test_bad_input import FAST as CLI_FAST
    from test_bad_input import good_frame

    good_frame().to_csv(tmp_path / "good.csv", index=False)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "seqeq.cli", "fit", str(tmp_path / "good.csv"), *CLI_FAST,
            "--out", str(out)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    done = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(rc for _, _, rc in done)
    assert codes == [0, 2], done
    loser = next(err for _, err, rc in done if rc == 2)
    assert "another seqeq run" in loser or "already holds a run" in loser, loser
    assert "storage" not in loser and "Traceback" not in loser
    assert (out / "best.onnx").is_file()


# ---- a full disk ------------------------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    """A 512 KiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip() or r.returncode})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(mnt: Path, leave: int) -> None:
    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
    (mnt / "filler").write_bytes(b"\0" * max(0, free - leave))


def test_a_file_that_cannot_be_written_is_named_and_the_old_one_kept(tiny_disk):
    from seqeq._io import atomic_write_bytes

    target = tiny_disk / "report.json"
    target.write_text("the old report")
    _fill(tiny_disk, 0)
    with pytest.raises(WriteError) as e:
        atomic_write_bytes(target, b"x" * 200_000)
    assert f"could not write {target} (No space left on device)" in str(e.value)
    assert target.read_text() == "the old report"
    assert not [p for p in tiny_disk.iterdir() if p.name.endswith(".tmp")]


def test_a_run_on_a_full_disk_says_which_file_and_how_to_resume(tiny_disk, tmp_path):
    sys.path.insert(0, str(TESTS))
    from test_bad_input import FAST as CLI_FAST
    from test_bad_input import good_frame

    good_frame().to_csv(tmp_path / "good.csv", index=False)
    out = tiny_disk / "run"
    argv = [sys.executable, "-m", "seqeq.cli", "fit", str(tmp_path / "good.csv"), *CLI_FAST,
            "--out", str(out)]
    _fill(tiny_disk, 0)  # full before the run starts: nothing is kept
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr
    assert "could not write" in p.stderr and "Nothing was kept" in p.stderr, p.stderr
    assert not out.exists()
    (tiny_disk / "filler").unlink()
    # room for the study and the model, not for the HTML report (about 220 KiB of plots)
    _fill(tiny_disk, 200 * 1024)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "could not write" in lines[0] and str(out) in lines[0], lines[0]
    assert "free space on that disk, then run the same command plus --resume" in lines[0]
    (tiny_disk / "filler").unlink()
    p = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert (out / "best.onnx").is_file() and (out / "report.html").is_file()
    assert len(_trials(out)) == 1  # the finished trial was kept, not run again


# ---- Ctrl-C in the final retrain --------------------------------------------------------------
DRIVER = f"""
import signal, sys, time, torch
signal.signal(signal.SIGINT, signal.default_int_handler)
torch.set_num_threads(1)
sys.path.insert(0, {str(TESTS)!r})
from conftest import make_walks
import seqeq.train
from pathlib import Path
_train = seqeq.train.train_model
def _slow(model, train, cfg, val=None, on_epoch=None, **kw):
    if val is None:  # the final retrain (the search passes its validation set)
        Path(sys.argv[1] + ".final").write_text("started")
        time.sleep(60)
    return _train(model, train, cfg, val=val, on_epoch=on_epoch, **kw)
if sys.argv[2] == "0":
    seqeq.train.train_model = _slow
from seqeq.config import RunConfig
from seqeq.api import run_on
cfg = RunConfig.of(budget_kb=3, trials=2, epochs=2, final_seeds=1, cells=("gru",),
                   device="cpu", resume=sys.argv[2] == "1")
res = run_on(make_walks(n=80, T=12, seed=3), make_walks(n=20, T=12, seed=4), cfg, sys.argv[1],
             quiet=False)
print("INTERRUPTED" if res.extra.get("interrupted") else "DONE")
"""


@pytest.mark.slow
def test_ctrl_c_in_the_final_retrain_exports_reports_and_resumes(tmp_path):
    import signal

    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-c", DRIVER, str(out), "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    t0 = time.time()
    while not Path(f"{out}.final").exists():
        assert p.poll() is None and time.time() - t0 < 120, p.communicate()
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0 and "INTERRUPTED" in stdout, stderr
    assert "final retrain interrupted" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    assert (out / "best.onnx").stat().st_size > 0
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is True and report["final"] is None
    assert len([t for t in report["trials"] if t["state"] == "complete"]) == 2
    # `seqeq report` works on it, and `seqeq export` says what it exports
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    res = CliRunner().invoke(app, ["export", str(tmp_path / "x.onnx"), "--run", str(out)])
    assert res.exit_code == 0
    assert "from the search of" in res.stderr and "not retrained or tested" in res.stderr
    # resume: the search is complete, so it goes straight to the final retrain
    p = subprocess.run([sys.executable, "-c", DRIVER, str(out), "1"], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0 and "DONE" in p.stdout, p.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is False and report["final"]["test_scores"]
    assert len(_trials(out)) == 2  # no trial ran again
    res = CliRunner().invoke(app, ["export", str(tmp_path / "y.onnx"), "--run", str(out)])
    assert "the final model of" in res.stderr


# ---- a closed pipe ---------------------------------------------------------------------------
@pytest.mark.slow
def test_predict_into_a_closed_pipe_ends_quietly(tmp_path):
    sys.path.insert(0, str(TESTS))
    from test_bad_input import FAST as CLI_FAST
    from test_bad_input import good_frame

    good_frame().to_csv(tmp_path / "good.csv", index=False)
    run = tmp_path / "run"
    assert CliRunner().invoke(app, ["fit", str(tmp_path / "good.csv"), *CLI_FAST, "--out",
                                    str(run)]).exit_code == 0
    good_frame(n=4000, T=2).to_csv(tmp_path / "many.csv", index=False)  # > a pipe's buffer out
    p = subprocess.Popen([sys.executable, "-m", "seqeq.cli", "predict", str(run / "best.onnx"),
                          str(tmp_path / "many.csv"), "--proba"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()  # what `| head -1` does
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert first.startswith(b"id,label")
    assert err == "" and p.returncode == 141


def test_ctrl_c_before_any_trial_finished_exits_130_and_keeps_the_study(tmp_path, monkeypatch):
    import seqeq.search

    sys.path.insert(0, str(TESTS))
    from test_bad_input import FAST as CLI_FAST
    from test_bad_input import good_frame

    def pressed(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(seqeq.search, "train_model", pressed)
    good_frame().to_csv(tmp_path / "good.csv", index=False)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["fit", str(tmp_path / "good.csv"), *CLI_FAST, "--out",
                                   str(out)])
    assert res.exit_code == 130
    line = res.stderr.strip()
    assert line.startswith("error: search interrupted before any trial finished"), line
    assert "--resume" in line and "\n" not in line
    # the cut-short trial is kept as interrupted and queued again for --resume
    assert [(t.state.name, t.user_attrs.get("interrupted")) for t in _trials(out)] == [
        ("FAIL", True), ("WAITING", None)]
