"""Ctrl-C while training is never lost (``seqeq._interrupt``)."""

from __future__ import annotations

import os
import signal
import sys
import weakref

import pytest

from seqeq import _interrupt


class _Obj:
    pass


@pytest.fixture(autouse=True)
def _python_default_sigint():
    """Python's own SIGINT handler, as in a fresh ``seqeq`` process (earlier tests in this
    process may leave another one installed), restored afterwards."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _sigint_inside_a_weakref_callback() -> None:
    """SIGINT delivered while a weakref callback runs (as SQLAlchemy's, under Optuna's storage):
    Python runs the signal's handler inside the callback."""
    obj = _Obj()
    ref = weakref.ref(obj, lambda r: (os.kill(os.getpid(), signal.SIGINT), sum(range(1000))))
    del obj  # the callback runs here
    assert ref() is None


@pytest.fixture
def dropped(monkeypatch) -> list:
    """The exceptions Python drops ("Exception ignored in ...": ``sys.unraisablehook``)."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))
    return seen


def test_python_loses_a_ctrl_c_that_lands_in_a_weakref_callback(dropped):
    """The bug, and the control for the next test (its SIGINT really lands in a callback): the
    default handler's KeyboardInterrupt is raised in the callback, where Python reports it as
    "Exception ignored" and drops it."""
    _sigint_inside_a_weakref_callback()  # no KeyboardInterrupt reaches us
    assert dropped == [KeyboardInterrupt]


def test_deferred_keeps_it_and_check_raises_it_between_steps(dropped):
    with _interrupt.deferred():
        _sigint_inside_a_weakref_callback()
        assert dropped == []
        with pytest.raises(KeyboardInterrupt):
            _interrupt.check()
        _interrupt.check()  # raised once, then cleared


def test_an_interrupt_recorded_at_the_end_is_raised_on_leaving_and_a_second_one_at_once():
    with pytest.raises(KeyboardInterrupt):
        with _interrupt.deferred():
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    with _interrupt.deferred():
        os.kill(os.getpid(), signal.SIGINT)  # recorded
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the second: at once
            sum(range(1000))
        _interrupt.check()  # nothing left pending


def test_train_model_stops_at_the_next_step_after_a_ctrl_c(walks):
    import torch

    from seqeq.models import ModelSpec, build_model
    from seqeq.train import TrainConfig, train_model

    model = build_model(ModelSpec("gru", 2, 4, 2), seed=0)
    steps = []

    def on_epoch(e, rec):
        steps.append(e)
        if e == 2:
            _sigint_inside_a_weakref_callback()  # lands where Python would drop it

    with pytest.raises(KeyboardInterrupt):
        train_model(model, walks(n=16, T=6), TrainConfig(epochs=5, batch_size=8),
                    on_epoch=on_epoch)
    assert steps == [1, 2]  # stopped in epoch 3's first step
    assert torch.isfinite(next(model.parameters())).all()
