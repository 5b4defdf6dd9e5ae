"""The in-memory dataset every loader returns and every other part reads.

``SeqData`` holds a padded batch of series ``X (N, T, C)`` (float32, zero after each series' own
length), their ``lengths (N,)``, integer labels ``y (N,)`` indexing ``class_names``, and optional
series ids and group ids (subject, device, session) used for honest validation splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import SeqeqError, opt
from ._lazy import LazySeries

__all__ = ["SeqData", "pad_series", "stratified_split", "grouped_split", "concat"]


@dataclass
class SeqData:
    X: np.ndarray  # (N, T, C) float32, zero-padded (a LazySeries for noisy-mnist, see is_lazy)
    lengths: np.ndarray  # (N,) int64
    y: np.ndarray | None  # (N,) int64 in [0, n_classes), None for unlabelled data
    class_names: list[str]
    channel_names: list[str]
    ids: np.ndarray | None = None  # (N,) series ids (str or int)
    groups: np.ndarray | None = None  # (N,) group ids for grouped validation
    name: str = "data"
    meta: dict = field(default_factory=dict)
    #: x/y/z channel triplets, grouped by the device that carries them (``seqeq.augment``):
    #: a tuple of bodies, each a tuple of ``(x, y, z)`` channel indices; () when none
    vectors: tuple = ()

    def __post_init__(self) -> None:
        if not isinstance(self.X, LazySeries):
            self.X = np.ascontiguousarray(self.X, dtype=np.float32)
        self.lengths = np.asarray(self.lengths, dtype=np.int64)
        if self.X.ndim != 3:
            raise ValueError(f"X must be (N, T, C), got shape {self.X.shape}")
        if self.y is not None:
            self.y = np.asarray(self.y, dtype=np.int64)
        self.class_names = [str(c) for c in self.class_names]
        self.channel_names = [str(c) for c in self.channel_names]
        self.vectors = tuple(tuple(tuple(int(i) for i in t) for t in body)
                             for body in self.vectors)
        C = self.X.shape[2]
        if any(len(t) != 3 or not all(0 <= i < C for i in t)
               for body in self.vectors for t in body):
            raise ValueError(f"vectors must be (x, y, z) channel triplets below {C}, got "
                             f"{self.vectors}")

    def check_trainable(self) -> None:
        """A :class:`~seqeq.errors.SeqeqError` for data no model can be trained on: no series,
        no channel, a series of length 0 (or longer than its padding), labels out of range, or
        NaN/inf inside a series. Checked once, before a run writes anything."""
        from ..errors import SeqeqError

        if self.n_series == 0:
            raise SeqeqError(f"{self.name} holds no series", "Give at least one series per class")
        if self.n_channels == 0:
            raise SeqeqError(f"the series of {self.name} have no channels (shape "
                             f"{tuple(self.X.shape)})", "Give each time step at least one value")
        if len(self.lengths) != self.n_series:
            raise SeqeqError(f"{self.name} has {len(self.lengths)} lengths for {self.n_series} "
                             "series", "Give one length per series")
        short = np.flatnonzero(self.lengths < 1)
        if len(short):
            raise SeqeqError(f"{len(short)} series of {self.name} have length 0 (the first is "
                             f"series {int(short[0])}; the data has {self.max_len} steps)",
                             "Drop empty series: a classifier needs at least one time step")
        if (self.lengths > self.max_len).any():
            raise SeqeqError(f"{self.name} has series longer than its {self.max_len} steps",
                             "Give lengths no longer than the padded series")
        if self.y is not None and len(self.y) and (self.y.min() < 0
                                                    or self.y.max() >= self.n_classes):
            raise SeqeqError(f"{self.name} has labels outside its {self.n_classes} classes",
                             "Encode labels as 0..n_classes-1")
        if not self.is_lazy:
            inside = np.arange(self.max_len)[None, :] < self.lengths[:, None]
            bad = ~np.isfinite(self.X) & inside[:, :, None]
            if bad.any():
                i, t, c = (int(v[0]) for v in np.nonzero(bad))
                raise SeqeqError(f"{int(bad.sum())} NaN/inf values in {self.name}, first in "
                                 f"series {i} at step {t}, channel {c}",
                                 "Clean or impute them first")

    # ---- shape facts ---------------------------------------------------------------------
    @property
    def n_series(self) -> int:
        return int(self.X.shape[0])

    @property
    def max_len(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_channels(self) -> int:
        return int(self.X.shape[2])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def equal_length(self) -> bool:
        return bool((self.lengths == self.max_len).all())

    @property
    def is_lazy(self) -> bool:
        """True when ``X`` is computed on read (:class:`LazySeries`): index it by batch with
        :meth:`rows` instead of converting it whole."""
        return isinstance(self.X, LazySeries)

    def rows(self, idx) -> np.ndarray:
        """``X[idx]`` as a float32 NumPy array ``(len(idx), T, C)``, lazy or not."""
        return np.asarray(self.X[np.asarray(idx)], dtype=np.float32)

    def materialize(self) -> SeqData:
        """The same data with ``X`` as an in-memory array (a no-op copy for eager data)."""
        return replace(self, X=np.asarray(self.X, dtype=np.float32), meta=dict(self.meta))

    def subset(self, idx: np.ndarray) -> SeqData:
        idx = np.asarray(idx)
        sub = replace(
            self,
            X=self.X.take(idx) if self.is_lazy else self.X[idx],
            lengths=self.lengths[idx],
            y=None if self.y is None else self.y[idx],
            ids=None if self.ids is None else self.ids[idx],
            groups=None if self.groups is None else self.groups[idx],
            meta=dict(self.meta),
        )
        T = int(sub.lengths.max()) if sub.n_series else 0
        if T and T < sub.max_len and not sub.is_lazy:  # trim padding no subset series needs
            sub.X = np.ascontiguousarray(sub.X[:, :T])
        return sub

    def channel_stats(self, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std over real (unpadded) steps -- training statistics.

        Computed ``chunk`` series at a time (pairwise-merged moments in float64), so it needs no
        copy of the whole array and works on lazy data.
        """
        C = self.n_channels
        n, mean, m2 = 0, np.zeros(C), np.zeros(C)
        steps = np.arange(self.max_len)[None, :]
        for a in range(0, self.n_series, chunk):
            Xc = self.rows(np.arange(a, min(a + chunk, self.n_series)))  # (B, T, C)
            vals = Xc[steps < self.lengths[a : a + chunk, None]]  # (sum lengths, C)
            k = len(vals)
            if not k:
                continue
            mk = vals.mean(axis=0, dtype=np.float64)
            m2k = ((vals - mk) ** 2).sum(axis=0, dtype=np.float64)
            delta = mk - mean
            tot = n + k
            mean = mean + delta * (k / tot)
            m2 = m2 + m2k + delta**2 * (n * k / tot)
            n = tot
        std = np.sqrt(m2 / max(n, 1))
        std = np.where(std > 1e-8, std, 1.0)
        return mean.astype(np.float32), std.astype(np.float32)

    def fingerprint(self) -> str:
        """A short digest of what a model is trained and scored on: shape, classes, channels,
        labels, groups, lengths and (when in memory) the values. Equal data give equal digests; a
        resumed search compares them so its old and new trials are scored on the same series."""
        import hashlib

        h = hashlib.blake2b(digest_size=12)
        h.update(repr((tuple(self.X.shape), self.class_names, self.channel_names)).encode())
        for a in (self.lengths, self.y, self.groups):
            a = None if a is None else np.asarray(a)
            h.update(b"-" if a is None else (a.astype(str) if a.dtype == object else a).tobytes())
        if not isinstance(self.X, LazySeries):  # a lazy array's values are derived, not stored
            h.update(self.X.tobytes())
        return h.hexdigest()

    def summary(self) -> dict:
        counts = (np.bincount(self.y, minlength=self.n_classes).tolist()
                  if self.y is not None else None)
        return {
            "name": self.name,
            "n_series": self.n_series,
            "n_channels": self.n_channels,
            "channel_names": self.channel_names,
            "min_length": int(self.lengths.min()) if self.n_series else 0,
            "max_length": int(self.lengths.max()) if self.n_series else 0,
            "n_classes": self.n_classes,
            "class_names": self.class_names,
            "class_counts": counts,
        }


def pad_series(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """List of (T_i, C) arrays -> zero-padded (N, max T, C) float32 and lengths (N,)."""
    lengths = np.array([len(s) for s in series], dtype=np.int64)
    C = series[0].shape[1]
    X = np.zeros((len(series), int(lengths.max()), C), dtype=np.float32)
    for i, s in enumerate(series):
        X[i, : len(s)] = s
    return X, lengths


def concat(a: SeqData, b: SeqData) -> SeqData:
    """Stack two datasets with the same classes and channels (padding to the longer one).

    Lazy inputs are materialised.
    """
    T = max(a.max_len, b.max_len)

    def pad(X):
        X = np.asarray(X, dtype=np.float32)
        return np.pad(X, ((0, 0), (0, T - X.shape[1]), (0, 0)))

    return replace(
        a,
        X=np.concatenate([pad(a.X), pad(b.X)]),
        lengths=np.concatenate([a.lengths, b.lengths]),
        y=None if a.y is None else np.concatenate([a.y, b.y]),
        ids=None if a.ids is None or b.ids is None else np.concatenate([a.ids, b.ids]),
        groups=(None if a.groups is None or b.groups is None
                else np.concatenate([a.groups, b.groups])),
        meta=dict(a.meta),
    )


def stratified_split(y: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: (keep_idx, held_idx) with about ``frac`` of each class held out.

    Every class keeps at least one series on the kept side; a class with a single series stays
    entirely on the kept side.
    """
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n = int(round(frac * len(idx)))
        n = min(max(n, 1 if len(idx) > 1 else 0), len(idx) - 1)
        held.extend(idx[:n].tolist())
    held = np.sort(np.array(held, dtype=np.int64))
    keep = np.setdiff1d(np.arange(len(y)), held)
    return keep, held


def grouped_split(groups: np.ndarray, y: np.ndarray, frac: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Hold out whole groups (about ``frac`` of the series), so validation sees unseen subjects.

    Tries several seeded group draws and keeps the one whose held-out side covers the most classes
    with a share closest to ``frac``.
    """
    uniq = np.unique(groups)
    if len(uniq) < 2:
        raise SeqeqError(f"the group column has only {len(uniq)} distinct value",
                         "A grouped validation split needs at least 2 groups; drop "
                         f"{opt('group_col')}")
    rng = np.random.default_rng(seed)
    best, best_score = None, None
    for _ in range(64):
        perm = rng.permutation(uniq)
        held_groups, n = [], 0
        for g in perm:
            if n >= frac * len(y):
                break
            held_groups.append(g)
            n += int((groups == g).sum())
        if len(held_groups) == len(uniq):
            held_groups = held_groups[:-1]
        held = np.isin(groups, held_groups)
        cover = len(np.unique(y[held])) + len(np.unique(y[~held]))
        score = (cover, -abs(held.mean() - frac))
        if best_score is None or score > best_score:
            best, best_score = held, score
    return np.flatnonzero(~best), np.flatnonzero(best)
