"""Killed and interrupted searches: nothing finished is lost, resume completes the run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

TESTS = Path(__file__).resolve().parent

DRIVER = f"""
import signal, sys, torch
# a process started in the background by a non-interactive shell inherits SIGINT as ignored;
# restore Python's handler so the Ctrl-C test means the same everywhere
signal.signal(signal.SIGINT, signal.default_int_handler)
torch.set_num_threads(1)
sys.path.insert(0, {str(TESTS)!r})
from conftest import make_walks
import time
import seqeq.search
from seqeq.api import run_on

# every search epoch lasts at least 0.3 s, so "a trial is running" is a state the test can catch
_train = seqeq.search.train_model
def _slow_train(model, train, cfg, val=None, on_epoch=None, **kw):
    def hook(epoch, rec):
        time.sleep(0.3)
        if on_epoch is not None:
            on_epoch(epoch, rec)
    return _train(model, train, cfg, val=val, on_epoch=hook, **kw)
seqeq.search.train_model = _slow_train
from seqeq.config import RunConfig
out, resume, trials = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
cfg = RunConfig.of(budget_kb=3, trials=trials, epochs=5, patience=0, final_seeds=1,
                   cells=("gru", "rnn"), device="cpu", resume=resume, pruner="none", seed=7)
res = run_on(make_walks(n=240, T=40, seed=3), make_walks(n=40, T=40, seed=4), cfg, out)
print("DONE", res.n_trials)
"""


def _start(out: Path, resume: bool, trials: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(out), "1" if resume else "0",
                             str(trials)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _trials(out: Path) -> list[optuna.trial.FrozenTrial]:
    db = out / "study.db"
    if not db.exists():
        return []
    try:
        return optuna.load_study(study_name="seqeq", storage=f"sqlite:///{db}").get_trials()
    except Exception:  # the study may not be created yet
        return []


def _complete(out: Path) -> dict[int, float]:
    return {t.number: t.value for t in _trials(out)
            if t.state == optuna.trial.TrialState.COMPLETE}


def _wait_for(pred, proc, timeout=120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the search")


@pytest.mark.slow
def test_sigkill_mid_trial_then_resume(tmp_path):
    out, trials = tmp_path / "run", 5
    p = _start(out, False, trials)
    # kill while a trial is running, after at least one finished
    assert _wait_for(lambda: len(_complete(out)) >= 1 and any(
        t.state == optuna.trial.TrialState.RUNNING for t in _trials(out)), p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = _complete(out)
    running = [t.number for t in _trials(out) if t.state == optuna.trial.TrialState.RUNNING]
    assert running, "the kill should have left a trial running"

    p = _start(out, True, trials)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr[-2000:]
    after = _trials(out)
    done = _complete(out)
    # completed trials are kept, unchanged; the killed one is failed and retried
    assert all(done[n] == v for n, v in before.items())
    assert all(t.state == optuna.trial.TrialState.FAIL for t in after if t.number in running)
    retried = [t for t in after if t.user_attrs.get("retry_of") in running]
    killed = next(t for t in after if t.number in running)
    # the retry repeats whatever the killed trial had drawn (nothing, if it died at once)
    assert retried and killed.params.items() <= retried[0].params.items()
    assert len(done) == trials
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["n_finished"] == trials
    assert (out / "best.onnx").stat().st_size > 0


@pytest.mark.slow
def test_repeated_sigkill_at_random_moments(tmp_path):
    """Five kills at random moments, each followed by --resume; the end state is consistent."""
    from seqeq.models import load_model

    out, trials, rng = tmp_path / "run", 6, random.Random(1234)
    history: dict[int, float] = {}
    kills = 0
    p = _start(out, False, trials)
    _wait_for(lambda: (out / "run.json").exists() and (out / "study.db").exists(), p)
    while kills < 5:
        time.sleep(rng.uniform(0.5, 4.0))
        if p.poll() is not None:  # finished before we could kill it: start it again
            p = _start(out, True, trials)
            continue
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        now = _complete(out)
        assert all(now[n] == v for n, v in history.items()), "a completed trial changed or vanished"
        history.update(now)
        p = _start(out, True, trials)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr[-2000:]
    final = _trials(out)
    numbers = [t.number for t in final]
    assert len(numbers) == len(set(numbers))
    done = _complete(out)
    assert all(done[n] == v for n, v in history.items())
    assert len(done) == trials
    model, spec, _ = load_model(out / "model")
    assert spec.cell in ("gru", "rnn")
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["n_finished"] == trials
    assert not list(out.glob("**/.*.tmp")), "a half-written temporary file was left behind"


@pytest.mark.slow
def test_ctrl_c_exports_the_best_model_so_far_and_resume_finishes(tmp_path):
    from seqeq.models import load_model

    out, trials = tmp_path / "run", 4
    p = _start(out, False, trials)
    assert _wait_for(lambda: len(_complete(out)) >= 1 and any(
        t.state == optuna.trial.TrialState.RUNNING for t in _trials(out)), p)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr[-2000:]
    assert "search interrupted" in stderr and "--resume" in stderr
    # Optuna's log of the cut-short trial (with its traceback) is not shown (issue 18)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert (out / "best.onnx").stat().st_size > 0
    model, spec, meta = load_model(out / "model")
    assert meta["trial"] in _complete(out)
    states = {t.state for t in _trials(out)}
    assert optuna.trial.TrialState.RUNNING not in states  # a trial Ctrl-C cut short is marked
    # ... as interrupted (Optuna fails it), and re-queued once with the same parameters
    S = optuna.trial.TrialState
    cut = [t for t in _trials(out) if t.state == S.FAIL and t.user_attrs.get("interrupted")]
    waiting = [t for t in _trials(out) if t.state == S.WAITING]
    assert len(cut) == 1  # SIGINT was sent while a trial ran (each lasts >= 1.5 s)
    assert [(t.user_attrs["retry_of"], t.system_attrs["fixed_params"]) for t in waiting] == [
        (t.number, t.params) for t in cut]
    # the trials so far are reported too: interrupted, no final models, valid against the schema
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is True and report["final"] is None
    assert report["best"]["trial"] == meta["trial"]
    assert {t["number"] for t in report["trials"] if t["state"] == "complete"} == set(
        _complete(out))
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((TESTS.parent / "seqeq" / "report" / "schema.json").read_text())
    jsonschema.validate(report, schema)
    assert {t["number"] for t in report["trials"] if t.get("interrupted")} == {
        t.number for t in cut}
    html = (out / "report.html").read_text()
    assert html.startswith("<!doctype html") and "interrupted" in html
    assert "failed with an error" not in html  # a cut-short trial is not an error
    p = _start(out, True, trials)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr[-2000:]
    assert len(_complete(out)) == trials
    report = json.loads((out / "report.json").read_text())
    assert report["final"]["test_scores"] and report["interrupted"] is False
    done = {t.user_attrs.get("retry_of"): t for t in _trials(out) if t.state in (S.COMPLETE,
                                                                                  S.PRUNED)}
    for t in cut:  # the cut-short trial ran again, with its parameters, on resume
        assert t.number in done and done[t.number].params == t.params
    # and the finished report no longer says it waits for --resume (issue 22)
    html = (out / "report.html").read_text()
    assert "re-queued and run again on --resume" not in html
    assert "were run again on --resume" in html
    assert [t["retried"] for t in report["trials"] if t.get("interrupted")] == [True]
