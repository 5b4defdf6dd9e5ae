"""Distillation for mixup: the mixed copies a model trains on are labelled by a teacher.

Mixup labels a blend of two series by its two labels weighed by the blend's ``lam``; on small
data that is often wrong (a blend of two appliances' power levels is a third level, not a
mixture of two classes). A teacher fitted on the same training series labels each blend by what
it looks like instead: :func:`soft_mixes` fits aeon's MiniRocket features with a standardised
logistic regression on the training series (only those: never the validation split a trial or
the exported model is chosen on), draws a pool of blends of random pairs of them, and keeps the
teacher's class probabilities for every blend. ``train_model(soft=...)`` then trains each step's
mixed copies towards those probabilities (:class:`SoftMixes`).

The pool is drawn and labelled once per training set, not per step: the teacher's transform runs
on the CPU (numba) and per step it made training 1.5-5x slower (benchmarks/RESULTS.md,
"Distillation"); the search's trials share one pool per fold. aeon's MiniRocket is used rather
than a transform written here: it is the reference implementation the suite measures seqeq
against, and well kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .augment import mix_series
from .datasets import SeqData
from .errors import SeqeqError, opt

#: the teacher's logistic regression's inverse regularisation (on standardised features)
TEACHER_C = 0.1
#: mixed series in the pool per training series, and the pool's bounds
POOL_PER_SERIES, POOL_MIN, POOL_MAX = 16, 512, 4096
#: series per blend draw (one ``lam`` each, as a training batch has)
_DRAW = 32


@dataclass
class SoftMixes:
    """Blends of training series (``x (P, T, C)`` zero-padded, ``lengths (P,)``) and the
    teacher's class probabilities for them (``probs (P, classes)``)."""

    x: torch.Tensor
    lengths: torch.Tensor
    probs: torch.Tensor

    def __len__(self) -> int:
        return len(self.lengths)

    def draw(self, n: int, gen: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor,
                                                                  torch.Tensor]:
        """``n`` blends drawn at random (with replacement), padding trimmed to their longest."""
        idx = torch.randint(len(self), (n,), generator=gen)
        L = self.lengths[idx]
        return (self.x[idx, : int(L.max())].to(device), L.to(device), self.probs[idx].to(device))


def pool_size(n_series: int) -> int:
    return int(min(POOL_MAX, max(POOL_MIN, POOL_PER_SERIES * n_series)))


def _panel(X: np.ndarray, T: int) -> np.ndarray:
    """Zero-padded series ``(N, T', C)`` as aeon's equal-length ``(N, C, T)`` float32 panel."""
    out = np.zeros((len(X), X.shape[2], T), dtype=np.float32)
    t = min(T, X.shape[1])
    out[:, :, :t] = np.transpose(X[:, :t], (0, 2, 1))
    return out


class Teacher:
    """aeon's MiniRocket features, standardised, and a logistic regression on them, fitted on
    ``train``; ``probs(X)`` gives class probabilities (N, classes) for zero-padded series."""

    def __init__(self, train: SeqData, seed: int = 0):
        try:
            from aeon.transformations.collection.convolution_based import MiniRocket
        except ImportError:
            raise SeqeqError(f"{opt('distill', True)} needs aeon, which is not installed",
                             "Install it (pip install 'seqeq[bench]' or pip install aeon), or "
                             f"leave {opt('distill', True)} out") from None
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        if train.y is None:
            raise ValueError("a teacher needs labelled training series")
        self.T = max(9, int(train.lengths.max()))  # MiniRocket's kernels are 9 steps long
        self.n_classes = train.n_classes
        X = np.asarray(train.X)
        self.rocket = MiniRocket(random_state=seed)
        F = self.rocket.fit_transform(_panel(X, self.T))
        self.scaler = StandardScaler().fit(F)
        self.lr = LogisticRegression(C=TEACHER_C, max_iter=2000)
        self.lr.fit(self.scaler.transform(F), train.y)

    def probs(self, X: np.ndarray) -> np.ndarray:
        F = self.scaler.transform(self.rocket.transform(_panel(X, self.T)))
        p = np.zeros((len(X), self.n_classes), dtype=np.float32)
        p[:, self.lr.classes_] = self.lr.predict_proba(F)  # a class absent from train: 0
        return p


def soft_mixes(train: SeqData, alpha: float, seed: int = 0) -> SoftMixes:
    """The distillation pool for ``train``: :func:`pool_size` blends of random pairs of its
    series (``seqeq.augment.mix_series``, ``lam ~ Beta(alpha, alpha)`` per draw of 32) labelled
    by a :class:`Teacher` fitted on ``train`` alone."""
    teacher = Teacher(train, seed)
    gen = torch.Generator().manual_seed(seed + 15485863)
    X = torch.as_tensor(np.asarray(train.X))
    L = torch.as_tensor(train.lengths)
    P = pool_size(train.n_series)
    xs, ls = [], []
    # mix_series draws its lam from torch's global generator: seeded here and restored after, so
    # the pool is the same for a seed and the caller's random stream is left as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 32452843)
        for _ in range(math.ceil(P / _DRAW)):
            idx = torch.randint(train.n_series, (_DRAW,), generator=gen)
            xm, Lm, _, _ = mix_series(X[idx], L[idx], alpha, gen)
            xs.append(xm)
            ls.append(Lm)
    x, lengths = torch.cat(xs)[:P], torch.cat(ls)[:P]
    probs = torch.as_tensor(teacher.probs(x.numpy()))
    return SoftMixes(x=x, lengths=lengths, probs=probs)
