"""The run's live progress display: phase, current trial, a moving timer, the time left."""

from __future__ import annotations

import io

import optuna
from rich.console import Console

from seqeq import _progress
from seqeq._progress import RunProgress, clock
from seqeq.models import ModelSpec


def _text(prog: RunProgress) -> str:
    c = Console(file=io.StringIO(), width=120, color_system=None)
    c.print(prog._render())
    return c.file.getvalue()


def test_the_display_names_the_phase_the_trial_its_epoch_and_the_time_left(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(_progress.time, "perf_counter", lambda: now[0])
    prog = RunProgress(total=10, metric="accuracy", quiet=True, search_seconds=150)
    spec = ModelSpec("tarnn", 3, 12, 4)
    now[0] += 30
    prog.trial_epoch(2, spec, 3174, 12, 40, 0.71, fold=1, folds=3)
    out = _text(prog)
    assert "search" in out and "0/10" in out and "0:30" in out
    assert "about 2:00 left" in out  # the time budget: 150 s, 30 s gone
    assert "trial 2: tarnn D=12, 3.1 KiB  fold 2/3  epoch 12/40  validation 0.7100" in out
    now[0] += 7  # the timer moves without any event
    assert "0:37" in _text(prog)

    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        params={"cell": "gru"}, distributions={"cell": optuna.distributions.CategoricalDistribution(
            ["gru"])}, value=0.8, user_attrs={"size_bytes": 2048}))
    prog.callback(study, study.trials[-1])
    out = _text(prog)
    assert "1/10" in out and "best accuracy 0.8000 (trial 0, gru, 2.0 KiB)" in out

    prog.phase("re-ranking")
    assert "re-ranking" in _text(prog)
    prog.final_model(0, 3, spec, seed=1000, epochs=20)
    out = _text(prog)
    assert "final retrain" in out and "0/3" in out and "model 1 of 3 (seed 1000)" in out
    now[0] += 10
    prog.final_epoch(1, 20)  # 1 of 60 epochs in 10 s: 590 s to go
    assert f"about {clock(590)} left" in _text(prog) and "epoch 1/20" in _text(prog)
    prog.final_model(1, 3, spec, seed=1001, epochs=20)
    assert "1/3" in _text(prog) and "model 2 of 3 (seed 1001)" in _text(prog)
    prog.phase("export")
    out = _text(prog)
    assert out.startswith("export") and "epoch" not in out


def test_clock():
    assert clock(5) == "0:05" and clock(125) == "2:05" and clock(3725) == "1:02:05"
