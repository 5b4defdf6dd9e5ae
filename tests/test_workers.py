"""Several workers on one study: local processes (--workers) and a shared PostgreSQL storage."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

TESTS = Path(__file__).resolve().parent

DRIVER = f"""
import json, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {str(TESTS)!r})
from conftest import make_walks
from seqeq.api import run_on
from seqeq.config import RunConfig
out, kw = sys.argv[1], json.loads(sys.argv[2])
cfg = RunConfig.of(**{{"budget_kb": 3, "epochs": 2, "final_seeds": 1, "cells": ("gru", "rnn"),
                      "device": "cpu", "pruner": "none", **kw}})
res = run_on(make_walks(n=160, T=30, seed=3), make_walks(n=40, T=30, seed=4), cfg, out)
print(json.dumps({{"n_trials": res.n_trials, "best": res.best_spec}}))
"""


def _driver(out: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(out), json.dumps(kw)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE,
                                    optuna.trial.TrialState.PRUNED))


@pytest.mark.slow
def test_local_workers_share_one_study(tmp_path):
    out = tmp_path / "run"
    p = _driver(out, trials=6, workers=2)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr[-2000:]
    study = optuna.load_study(study_name="seqeq", storage=f"sqlite:///{out / 'study.db'}")
    done = _finished(study)
    assert 6 <= len(done) <= 7  # the second worker may finish one trial it started at 5
    assert len({t.number for t in study.get_trials()}) == len(study.get_trials())
    # each worker samples its own candidates (one seed for both proposed every random start-up
    # trial twice)
    params = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(params)) == len(params), params
    best = max(t.value for t in done if t.value is not None)
    report = json.loads((out / "report.json").read_text())
    assert report["best"]["val_score"] == best  # the best over both workers


# ---- PostgreSQL ---------------------------------------------------------------------------------
def _pg_bin() -> Path | None:
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / "initdb").exists() and (root / "pg_ctl").exists():
            return root
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url(tmp_path):
    """A real PostgreSQL server on loopback, for the lifetime of one test."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install seqeq[postgres])")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    import tempfile

    as_user: list[str] = []
    # outside pytest's private (0700) tmp tree, so the server's own user can reach it
    data = Path(tempfile.mkdtemp(prefix="seqeq-pg-"))
    if os.geteuid() == 0:  # postgres refuses to run as root: use the package's system user
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"],
                                                             capture_output=True).returncode:
            pytest.skip("running as root without a 'postgres' user to start the server")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(data, "postgres", "postgres")
    port = _free_port()

    def run(*cmd):
        return subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)

    r = run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "seqeq")
    if r.returncode:
        pytest.skip(f"initdb failed: {r.stderr.strip()[-300:]}")
    r = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", "-o",
            f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start")
    if r.returncode:
        pytest.skip(f"PostgreSQL did not start: {r.stderr.strip()[-300:]}")
    try:
        import psycopg

        for _ in range(50):
            try:
                psycopg.connect(host="127.0.0.1", port=port, user="seqeq",
                                dbname="postgres").close()
                break
            except psycopg.OperationalError:
                time.sleep(0.2)
        yield f"postgresql://seqeq@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
def test_two_processes_share_a_postgresql_study(tmp_path, postgres_url):
    kw = {"trials": 6, "storage": postgres_url, "study_name": "shared"}
    procs = [_driver(tmp_path / f"worker{i}", **kw) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    assert len({t.number for t in trials}) == len(trials)  # every trial appears once
    done = _finished(study)
    assert 6 <= len(done) <= 7
    # both workers did part of the search, and both hand back the study's best model
    best = max(t.value for t in done if t.value is not None)
    for i in range(2):
        rep = json.loads((tmp_path / f"worker{i}" / "report.json").read_text())
        assert rep["best"]["val_score"] == best  # ties may pick either trial
