"""``SeqeqClassifier``: seqeq as a scikit-learn estimator for pipelines.

``X`` is an array (n_series, T, channels) or a list of (T_i, channels) arrays of unequal lengths
(a 2-D array (n_series, T) is read as univariate). ``fit`` runs the whole search on ``X, y``
(validation split from it, final retrain on all of it) and keeps the chosen model in memory; the
run directory (a temporary one unless ``out`` is set) holds the ONNX file and the report.
"""

from __future__ import annotations

import tempfile

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

__all__ = ["SeqeqClassifier"]


def _to_series(X) -> tuple[np.ndarray, np.ndarray]:
    from .datasets import pad_series
    from .errors import SeqeqError

    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim == 2:
            X = X[:, :, None]
        if X.ndim != 3:
            raise SeqeqError(f"X has shape {X.shape}",
                             "Pass (n_series, T, channels), (n_series, T) or a list of (T_i, C)")
        X = X.astype(np.float32)
        lengths = np.full(len(X), X.shape[1], dtype=np.int64)
        if not np.isfinite(X).all():
            raise SeqeqError("X contains NaN or infinite values", "Clean or impute them first")
        return X, lengths
    series = [np.asarray(s, dtype=np.float32) for s in X]
    series = [s[:, None] if s.ndim == 1 else s for s in series]
    if not series or any(s.ndim != 2 or len(s) == 0 for s in series):
        raise SeqeqError("X must be a non-empty list of non-empty (T_i, channels) arrays")
    if len({s.shape[1] for s in series}) != 1:
        raise SeqeqError("the series in X have different channel counts",
                         "Give every series the same channels")
    if not all(np.isfinite(s).all() for s in series):
        raise SeqeqError("X contains NaN or infinite values", "Clean or impute them first")
    return pad_series(series)


class SeqeqClassifier(ClassifierMixin, BaseEstimator):
    """Search for the best small recurrent classifier under ``budget_kb``.

    Parameters mirror ``seqeq fit``: ``budget_kb``, ``trials``, ``timeout``, ``cells``,
    ``metric``, ``epochs``, ``final_seeds``, ``ensemble``, ``rerank``, ``opening``, ``device``,
    ``seed``, ``out``, ``rotate``
    (``"auto"``, or a maximum angle in degrees). ``vectors`` says which channels are x/y/z
    triplets for the rotation augmentation, by index: one list per device of ``(x, y, z)``
    triplets, e.g. ``[[(0, 1, 2), (3, 4, 5)]]`` for a phone's accelerometer and gyroscope
    (default: none, arrays have no channel names).
    """

    def __init__(self, budget_kb: float = 20.0, trials: int = 10, timeout: float | None = None,
                 cells: str | None = None, metric: str = "accuracy", epochs: int = 40,
                 final_seeds: int = 1, device: str = "auto", seed: int = 0,
                 out: str | None = None, verbose: bool = False, rotate: str | float = "auto",
                 vectors=None, ensemble: int = 1, rerank: int = 0, opening: bool = True):
        self.budget_kb = budget_kb
        self.trials = trials
        self.timeout = timeout
        self.cells = cells
        self.metric = metric
        self.epochs = epochs
        self.final_seeds = final_seeds
        self.device = device
        self.seed = seed
        self.out = out
        self.verbose = verbose
        self.rotate = rotate
        self.vectors = vectors
        self.ensemble = ensemble
        self.rerank = rerank
        self.opening = opening

    def fit(self, X, y, groups=None):
        from .api import _search_kwargs, run_on
        from .config import SearchConfig
        from .datasets import SeqData

        Xp, lengths = _to_series(X)
        y = np.asarray(y)
        if len(y) != len(Xp):
            from .errors import SeqeqError

            raise SeqeqError(f"X has {len(Xp)} series but y has {len(y)} labels")
        self.classes_, yi = np.unique(y, return_inverse=True)
        try:  # SeqData checks the triplets
            data = SeqData(X=Xp, lengths=lengths, y=yi,
                           class_names=[str(c) for c in self.classes_],
                           channel_names=[f"ch{i}" for i in range(Xp.shape[2])],
                           groups=None if groups is None else np.asarray(groups), name="array",
                           vectors=self.vectors or ())
        except (TypeError, ValueError):
            from .errors import SeqeqError

            raise SeqeqError(f"vectors={self.vectors!r} is not a list of devices of (x, y, z) "
                             f"channel index triplets below {Xp.shape[2]}",
                             "Give e.g. vectors=[[(0, 1, 2), (3, 4, 5)]]") from None
        cfg = SearchConfig(budget_kb=self.budget_kb, trials=self.trials, timeout=self.timeout,
                           seed=self.seed, metric=self.metric, epochs=self.epochs,
                           final_seeds=self.final_seeds, ensemble=self.ensemble, rerank=self.rerank,
                           opening=self.opening, device=self.device,
                           **_search_kwargs({"cells": self.cells, "rotate": self.rotate}))
        out = self.out or tempfile.mkdtemp(prefix="seqeq-")
        self.result_ = run_on(data, None, cfg, out, data_info={"kind": "array"},
                              quiet=not self.verbose, keep_model=True)
        self.model_ = self.result_.extra["model"]
        self.n_features_in_ = Xp.shape[2]
        return self

    def predict_proba(self, X) -> np.ndarray:
        import torch

        from .datasets import SeqData
        from .train import predict_logits

        Xp, lengths = _to_series(X)
        data = SeqData(X=Xp, lengths=lengths, y=None, class_names=[], channel_names=[])
        logits = predict_logits(self.model_, data, device="cpu")
        return torch.softmax(torch.as_tensor(logits), dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]
