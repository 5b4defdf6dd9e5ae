"""``SeqeqClassifier``: seqeq as a scikit-learn estimator for pipelines.

``X`` is an array (n_series, T, channels) or a list of (T_i, channels) arrays of unequal lengths
(a 2-D array (n_series, T) is read as univariate: each row one series). ``fit`` runs the whole
search on ``X, y`` (validation split from it, final retrain on all of it) and keeps the chosen
model in memory. With ``out`` the run directory holds the ONNX file, the model and the report;
without it the run happens in a temporary directory that is removed when ``fit`` returns (no HTML
report is rendered for it), so repeated fits leave nothing behind.

It follows scikit-learn's conventions, checked by its own estimator checks in the test suite:
bad input raises ``ValueError`` (seqeq's :class:`~seqeq.errors.SeqeqError` is one) naming the
parameter, ``predict`` before ``fit`` raises ``NotFittedError``, the seed is ``random_state``.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

__all__ = ["SeqeqClassifier"]


def _as_array(X) -> np.ndarray | list:
    """X as a float array (anything with ``__array__``, nested lists of equal lengths), or a list
    of per-series arrays when the series differ in length."""
    from .errors import SeqeqError, SeqeqTypeError

    if type(X).__module__.startswith("scipy.sparse"):
        raise SeqeqTypeError("X is a sparse matrix: sparse input is not supported",
                             "Pass a dense array (X.toarray())")
    if isinstance(X, (list, tuple)) and len(X) and any(np.ndim(s) >= 1 for s in X):
        lens = {np.shape(s)[0] if np.ndim(s) else -1 for s in X}
        if len(lens) > 1:  # unequal lengths: a list of (T_i, C) series
            return [np.asarray(s) for s in X]
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as e:
        raise SeqeqError(f"X cannot be read as an array ({e})",
                         "Pass (n_series, T, channels), (n_series, T) or a list of (T_i, C)"
                         ) from None
    if arr.dtype == object and arr.ndim == 1 and all(np.ndim(s) >= 1 for s in arr):
        return [np.asarray(s) for s in arr]  # a ragged array of series
    return arr


def _check_values(a: np.ndarray, what: str = "X") -> np.ndarray:
    from .errors import SeqeqError, SeqeqTypeError

    if np.iscomplexobj(a) or (a.dtype == object and any(isinstance(v, complex)
                                                        for v in a.ravel()[:1000])):
        raise SeqeqError(f"Complex data not supported: {what} holds complex numbers",
                         "Pass real values (e.g. the real and imaginary parts as two channels)")
    try:
        a = a.astype(np.float32)
    except (TypeError, ValueError) as e:
        raise SeqeqTypeError(f"{what} holds values that are not numbers ({e})",
                             "Pass numeric arrays") from None
    if not np.isfinite(a).all():
        raise SeqeqError(f"{what} contains NaN or infinite values", "Clean or impute them first")
    return a


#: a 3-D X whose last axis is this many times longer than its middle one (and over
#: TRANSPOSED_MIN_CHANNELS) looks like aeon's (n, channels, T) read as (n, T, channels)
TRANSPOSED_RATIO = 4
TRANSPOSED_MIN_CHANNELS = 16


def _to_series(X, n_channels: int | None = None, layout: str = "ntc"
               ) -> tuple[np.ndarray, np.ndarray]:
    """(padded X (N, T, C) float32, lengths (N,)) from any accepted form of ``X``; ``layout``
    ``"nct"`` reads aeon's and sktime's (n_series, channels, T) (a list: of (C, T_i) arrays)."""
    import warnings

    from .datasets import pad_series
    from .errors import SeqeqError

    if layout not in ("ntc", "nct"):
        raise SeqeqError(f"layout={layout!r} is not a panel layout",
                         "Use layout='ntc' (n_series, T, channels: seqeq's) or 'nct' "
                         "(n_series, channels, T: aeon's and sktime's)")
    if layout == "nct" and isinstance(X, (list, tuple)):  # (C, T_i) series
        X = [np.asarray(s).T for s in X]
    arr = _as_array(X)
    if layout == "nct" and isinstance(arr, np.ndarray) and arr.ndim == 3 \
            and not isinstance(X, list):
        arr = arr.transpose(0, 2, 1)
    elif (isinstance(arr, np.ndarray) and arr.ndim == 3 and arr.shape[2] >= TRANSPOSED_MIN_CHANNELS
          and arr.shape[2] >= TRANSPOSED_RATIO * arr.shape[1]):
        warnings.warn(f"X has shape {arr.shape}: read as {arr.shape[0]} series of "
                      f"{arr.shape[1]} steps of {arr.shape[2]} channels; if it is aeon's or "
                      "sktime's (n_series, channels, T), pass layout='nct'", UserWarning,
                      stacklevel=3)
    if isinstance(arr, np.ndarray):
        if arr.ndim < 2:
            raise SeqeqError(f"X has shape {arr.shape} ({arr.ndim}-D), not a set of series",
                             "Reshape your data: (n_series, T, channels), (n_series, T), or "
                             "X.reshape(1, -1) for a single univariate series")
        if arr.ndim > 3:
            raise SeqeqError(f"X has shape {arr.shape} ({arr.ndim}-D)",
                             "Pass (n_series, T, channels), (n_series, T) or a list of (T_i, C)")
        if arr.shape[0] == 0:
            raise SeqeqError(f"Found array with 0 sample(s) (shape={arr.shape}) while a minimum "
                             "of 1 is required", "Pass at least one series")
        if 0 in arr.shape[1:]:
            raise SeqeqError(f"X has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is "
                             "required: series of 0 steps or 0 channels",
                             "Each series needs at least one step of at least one channel")
        if arr.ndim == 2:
            arr = arr[:, :, None]
        Xp = _check_values(arr)
        lengths = np.full(len(Xp), Xp.shape[1], dtype=np.int64)
    else:
        series = [s[:, None] if s.ndim == 1 else s for s in arr]
        if not series or any(s.ndim != 2 or len(s) == 0 for s in series):
            raise SeqeqError("X must be a non-empty list of non-empty (T_i, channels) arrays",
                             "Drop empty series")
        if len({s.shape[1] for s in series}) != 1:
            raise SeqeqError("the series in X have different channel counts",
                             "Give every series the same channels")
        Xp, lengths = pad_series([_check_values(s) for s in series])
    if n_channels is not None and Xp.shape[2] != n_channels:
        raise SeqeqError(f"X has {Xp.shape[2]} channel(s) but SeqeqClassifier was fitted with "
                         f"{n_channels}", "Pass series with the channels the model was fitted on")
    return Xp, lengths


def _to_labels(y, n: int) -> np.ndarray:
    from sklearn.utils.multiclass import check_classification_targets

    from .errors import SeqeqError

    if y is None:
        raise SeqeqError("SeqeqClassifier requires y to be passed, but the target y is None",
                         "Pass the class label of every series")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        import warnings

        from sklearn.exceptions import DataConversionWarning

        warnings.warn("A column-vector y was passed when a 1d array was expected; it is read "
                      "as y.ravel()", DataConversionWarning, stacklevel=3)
        y = y.ravel()
    if y.ndim != 1:
        raise SeqeqError(f"y has shape {y.shape}", "Pass one label per series (a 1-D array)")
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        raise SeqeqError("y contains NaN or infinite values", "Give every series a label")
    if len(y) != n:
        raise SeqeqError(f"X has {n} series but y has {len(y)} labels",
                         "Pass one label per series")
    check_classification_targets(y)  # a ValueError for continuous targets
    return y


class SeqeqClassifier(ClassifierMixin, BaseEstimator):
    """Search for the best small recurrent classifier under ``budget_kb``.

    Parameters mirror ``seqeq fit``: ``budget_kb``, ``trials``, ``timeout``, ``cells``,
    ``metric``, ``epochs``, ``final_seeds``, ``ensemble``, ``rerank``, ``opening``, ``device``,
    ``random_state`` (the seed of splits, sampler and training), ``out``, ``rotate``
    (``"auto"``, or a maximum angle in degrees), ``augment`` (the strength of the amplitude
    distortions, 0: off, the default; ``"auto"``: searched), ``mixup`` (mixup's Beta parameter,
    0: off; ``"auto"``, the default: 0.5 below 1,000 series), ``average`` (the share of the
    schedule's last steps the kept weights are averaged over, 0: off, the default), ``distill``
    (label mixup's blends by a MiniRocket teacher fitted on the training series; needs aeon; off
    by default), ``time_warp`` (the strength of random smooth time warping, 0: off, the
    default; ``"auto"``: searched). ``vectors`` says which channels
    are x/y/z triplets for the rotation augmentation, by index: one list per device of
    ``(x, y, z)`` triplets, e.g. ``[[(0, 1, 2), (3, 4, 5)]]`` for a phone's accelerometer and
    gyroscope (default: none, arrays have no channel names). ``layout``: ``"ntc"`` (the
    default: (n_series, T, channels)) or ``"nct"`` (aeon's and sktime's (n_series, channels, T));
    a 3-D X with far more channels than steps is read as given, with a warning.
    """

    def __init__(self, budget_kb: float = 20.0, trials: int = 10, timeout: float | None = None,
                 cells: str | None = None, metric: str = "accuracy", epochs: int | None = None,
                 final_seeds: int = 1, device: str = "auto", random_state: int = 0,
                 out: str | None = None, verbose: bool = False, rotate: str | float = "auto",
                 vectors=None, ensemble: int | None = None, rerank: int = 0,
                 opening: bool = True, augment: str | float = 0.0, layout: str = "ntc",
                 mixup: str | float = "auto", average: float = 0.0, distill: bool = False,
                 time_warp: str | float = 0.0):
        self.budget_kb = budget_kb
        self.trials = trials
        self.timeout = timeout
        self.cells = cells
        self.metric = metric
        self.epochs = epochs
        self.final_seeds = final_seeds
        self.device = device
        self.random_state = random_state
        self.out = out
        self.verbose = verbose
        self.rotate = rotate
        self.vectors = vectors
        self.ensemble = ensemble
        self.rerank = rerank
        self.opening = opening
        self.augment = augment
        self.layout = layout
        self.mixup = mixup
        self.average = average
        self.distill = distill
        self.time_warp = time_warp

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # (n_series, T, channels)
        tags.input_tags.two_d_array = True  # (n_series, T): univariate series
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False  # one random_state fixes splits, sampler and training
        return tags

    def _seed(self) -> int:
        from .errors import SeqeqError

        rs = self.random_state
        if rs is None:
            return 0
        if isinstance(rs, (int, np.integer)) and not isinstance(rs, bool):
            return int(rs)
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(0, 2**31 - 1))
        raise SeqeqError(f"random_state={rs!r} is not an integer", "Pass an int, or None")

    def fit(self, X, y=None, groups=None):
        from .config import RunConfig, search_options
        from .datasets import SeqData
        from .errors import SeqeqError
        from .run import run_on

        Xp, lengths = _to_series(X, layout=self.layout)
        y = _to_labels(y, len(Xp))
        classes, yi = np.unique(y, return_inverse=True)
        try:  # SeqData checks the triplets
            data = SeqData(X=Xp, lengths=lengths, y=yi,
                           class_names=[str(c) for c in classes],
                           channel_names=[f"ch{i}" for i in range(Xp.shape[2])],
                           groups=None if groups is None else np.asarray(groups), name="X",
                           vectors=self.vectors or ())
        except SeqeqError:
            raise
        except (TypeError, ValueError):
            raise SeqeqError(f"vectors={self.vectors!r} is not a list of devices of (x, y, z) "
                             f"channel index triplets below {Xp.shape[2]}",
                             "Give e.g. vectors=[[(0, 1, 2), (3, 4, 5)]]") from None
        cfg = RunConfig.of(budget_kb=self.budget_kb, trials=self.trials, timeout=self.timeout,
                           seed=self._seed(), metric=self.metric, epochs=self.epochs,
                           final_seeds=self.final_seeds, ensemble=self.ensemble,
                           rerank=self.rerank, opening=self.opening, device=self.device,
                           average=self.average, distill=self.distill,
                           **search_options({"cells": self.cells, "rotate": self.rotate,
                                             "augment": self.augment,
                                             "mixup": self.mixup,
                                             "time_warp": self.time_warp}))
        if self.out is not None:
            res = run_on(data, None, cfg, self.out, data_info={"kind": "array"},
                         quiet=not self.verbose, keep_model=True)
        else:  # nothing to keep on disk: the run's folder goes when fit returns
            with tempfile.TemporaryDirectory(prefix="seqeq-") as tmp:
                res = run_on(data, None, cfg, tmp, data_info={"kind": "array"},
                             quiet=not self.verbose, keep_model=True, html=False)
            res = replace(res, run_dir="", onnx_path="", report_json="", report_html="",
                          model_dir="")
        self.model_ = res.extra.pop("model")
        self.result_ = res
        self.classes_ = classes
        self.n_features_in_ = Xp.shape[2]
        return self

    def predict_proba(self, X) -> np.ndarray:
        import torch
        from sklearn.utils.validation import check_is_fitted

        from .datasets import SeqData
        from .train import predict_logits

        check_is_fitted(self, "model_")
        Xp, lengths = _to_series(X, self.n_features_in_, getattr(self, "layout", "ntc"))
        data = SeqData(X=Xp, lengths=lengths, y=None, class_names=[], channel_names=[])
        logits = predict_logits(self.model_, data, device="cpu")
        return torch.softmax(torch.as_tensor(logits), dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(1)]
