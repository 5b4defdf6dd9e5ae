"""``SeqeqClassifier`` keeps scikit-learn's conventions: its own estimator checks, plus the cases
users lean on (issue 18): ValueError for bad input, NotFittedError, random_state, parameter names
in messages, nothing left in the temporary directory."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from seqeq import SeqeqClassifier
from seqeq.errors import SeqeqError

FAST = dict(budget_kb=2, trials=1, epochs=1, final_seeds=1, cells="gru", device="cpu",
            opening=False)

#: checks that cannot apply to a recurrent classifier of series, each with its reason
NOT_FOR_SERIES = {
    "check_n_features_in": "a 2-D X is (n_series, T) univariate series: n_features_in_ counts "
                           "channels (1), not the series length T",
    "check_n_features_in_after_fitting": "the series length may differ between fit and predict "
                                         "(a recurrent model reads any length), so a different "
                                         "number of columns at predict is not an error",
    "check_classifiers_train": "it ends by requiring an error for another number of columns at "
                               "predict, which for series is another length and is valid",
}


@parametrize_with_checks([SeqeqClassifier(**FAST)],
                         expected_failed_checks=lambda est: NOT_FOR_SERIES)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


@pytest.fixture(scope="module")
def Xy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 8, 2)).astype(np.float32)
    y = np.repeat(["calm", "wild"], 12)
    X[12:] *= 3
    return X, y


@pytest.fixture(scope="module")
def fitted(Xy):
    return SeqeqClassifier(**FAST).fit(*Xy)


def test_predict_before_fit_is_not_fitted_error(Xy):
    with pytest.raises(NotFittedError):
        SeqeqClassifier(**FAST).predict(Xy[0])


def test_wrong_channel_count_at_predict_is_a_value_error(fitted, Xy):
    with pytest.raises(ValueError, match="3 channel.* fitted with 2"):
        fitted.predict(np.zeros((2, 8, 3), np.float32))


def test_other_lengths_at_predict_are_fine(fitted):
    assert fitted.predict(np.zeros((2, 30, 2), np.float32)).shape == (2,)


@pytest.mark.parametrize("X,y,match", [
    (np.zeros((4, 5, 2), np.complex64), [0, 1, 0, 1], "Complex data not supported"),
    (np.zeros((4, 5, 2)), [0.0, 1.0, np.inf, 1.0], "y contains NaN or infinite"),
    (np.zeros((4, 5, 2)), None, "requires y"),
    (np.zeros((4, 5, 2)), [0, 1, 0], "4 series but y has 3 labels"),
    (np.zeros(5), [0], "Reshape your data"),
    (np.full((4, 5, 2), np.nan), [0, 1, 0, 1], "NaN or infinite"),
    (np.empty((12, 0, 3), np.float32), np.repeat([0, 1], 6), "0 feature"),
])
def test_bad_input_is_a_value_error_before_any_work(tmp_path, X, y, match):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=match):
        SeqeqClassifier(**FAST, out=str(out)).fit(X, y)
    assert not out.exists()


def test_zero_length_series_are_refused_up_front_not_searched_forever():
    """Issue 18: this ran 2,028 failing trials in 60 s."""
    import time

    t0 = time.perf_counter()
    with pytest.raises(SeqeqError, match="0 feature"):
        SeqeqClassifier(budget_kb=1, trials=1, epochs=1, final_seeds=1, cells="gru").fit(
            np.empty((12, 0, 3), np.float32), np.repeat([0, 1], 6))
    assert time.perf_counter() - t0 < 10


def test_an_array_like_with_only_array_is_accepted(Xy):
    class Panel:
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a if dtype is None else self.a.astype(dtype)

    X, y = Xy
    clf = SeqeqClassifier(**FAST).fit(Panel(X), y)
    assert clf.predict(Panel(X[:3])).shape == (3,)


def test_the_seed_is_random_state_and_fixes_the_result(Xy):
    assert "random_state" in SeqeqClassifier().get_params()
    assert "seed" not in SeqeqClassifier().get_params()
    a = SeqeqClassifier(**FAST, random_state=3).fit(*Xy).predict_proba(Xy[0])
    b = SeqeqClassifier(**FAST, random_state=3).fit(*Xy).predict_proba(Xy[0])
    assert np.allclose(a, b)


def test_errors_name_the_parameter_not_the_cli_flag(Xy):
    with pytest.raises(ValueError) as e:
        SeqeqClassifier(**{**FAST, "budget_kb": -1}).fit(*Xy)
    assert "budget_kb" in str(e.value) and "--budget-kb" not in str(e.value)
    with pytest.raises(ValueError) as e:
        SeqeqClassifier(**{**FAST, "cells": ","}).fit(*Xy)
    assert "cells=','" in str(e.value) and "names no cell" in str(e.value)


def test_fit_without_out_leaves_nothing_in_the_temp_dir(Xy):
    before = set(Path(tempfile.gettempdir()).glob("seqeq-*"))
    clf = SeqeqClassifier(**FAST).fit(*Xy)
    assert set(Path(tempfile.gettempdir()).glob("seqeq-*")) == before
    assert clf.result_.onnx_path == "" and clf.predict(Xy[0]).shape == (24,)


def test_aeon_layout_is_read_when_asked_and_a_transposed_looking_x_warns(walks):
    import warnings

    from seqeq import SeqeqError
    from seqeq.sklearn import _to_series

    d = walks(n=40, T=100, C=6, seed=3)
    X_aeon = np.ascontiguousarray(d.X.transpose(0, 2, 1))  # (40, 6, 100), as aeon holds it
    Xp, L = _to_series(X_aeon, layout="nct")
    assert Xp.shape == (40, 100, 6) and np.array_equal(Xp, d.X) and (L == 100).all()
    lst, L2 = _to_series([x[:, :50 + i] for i, x in enumerate(X_aeon[:3])], layout="nct")
    assert lst.shape == (3, 52, 6) and list(L2) == [50, 51, 52]
    with pytest.warns(UserWarning, match="layout='nct'"):
        Xw, _ = _to_series(X_aeon)  # read as 6 steps of 100 channels, as asked, but said
    assert Xw.shape == (40, 6, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _to_series(d.X)  # seqeq's own layout: no warning
    with pytest.raises(SeqeqError, match="layout='ntc'"):
        _to_series(d.X, layout="tnc")
    clf = SeqeqClassifier(budget_kb=2, trials=1, epochs=1, cells="gru", device="cpu",
                          opening=False, layout="nct").fit(X_aeon, d.y)
    assert clf.n_features_in_ == 6 and clf.predict(X_aeon).shape == (40,)
