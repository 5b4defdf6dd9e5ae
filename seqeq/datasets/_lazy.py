"""Read-only (N, T, C) float32 arrays whose rows are computed when read.

Noisy-MNIST is 60000 series x 1000 steps x 28 channels: 6.7 GB as float32, almost all of it noise.
:class:`NoisePadded` stores only the informative prefix (as uint8 pixels) and draws each series'
noise tail from its own seeded generator when the series is read, so a batch costs
``B x T x C`` floats and row ``i`` always holds the same values.

A lazy array supports what a training loop needs: ``shape``, ``len``, ``X[idx]`` / ``X[a:b]`` /
``X[idx, :T]`` (returning a NumPy array) and ``take(idx)`` (a lazy subset). ``np.asarray(X)``
materialises the whole array -- avoid it on the full set.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LazySeries", "NoisePadded"]


class LazySeries:
    """Base class: subclasses implement ``_rows(idx) -> (len(idx), T, C) float32``."""

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, n: int, T: int, C: int, rows: np.ndarray | None = None):
        self._n, self._T, self._C = int(n), int(T), int(C)
        self._map = None if rows is None else np.asarray(rows, dtype=np.int64)

    # ---- array facts ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self), self._T, self._C)

    @property
    def size(self) -> int:
        n, t, c = self.shape
        return n * t * c

    @property
    def nbytes(self) -> int:
        """Bytes the array would take if materialised."""
        return self.size * 4

    def __len__(self) -> int:
        return self._n if self._map is None else len(self._map)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype=float32, lazy)"

    # ---- reading -------------------------------------------------------------------------
    def _base_index(self, idx: np.ndarray) -> np.ndarray:
        return idx if self._map is None else self._map[idx]

    def _normalise(self, key) -> np.ndarray:
        n = len(self)
        if isinstance(key, slice):
            return np.arange(n)[key]
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean index of shape {idx.shape} for {n} rows")
            return np.flatnonzero(idx)
        if idx.dtype.kind not in "iu":
            raise IndexError(f"cannot index rows with {idx.dtype} values")
        idx = idx.astype(np.int64).reshape(-1)
        if ((idx < -n) | (idx >= n)).any():
            raise IndexError(f"row index out of range for {n} rows")
        return np.where(idx < 0, idx + n, idx)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            if not key:
                return self[...]
            first, rest = key[0], key[1:]
            if first is Ellipsis:
                return np.asarray(self)[key]
            if isinstance(first, (int, np.integer)):
                return self[first][rest]
            return self[first][(slice(None), *rest)]
        if key is Ellipsis:
            return np.asarray(self)
        if isinstance(key, (int, np.integer)):
            n = len(self)
            if not -n <= key < n:
                raise IndexError(f"row {key} out of range for {n} rows")
            return self._rows(self._base_index(np.array([key % n])))[0]
        return self._rows(self._base_index(self._normalise(key)))

    def take(self, idx) -> LazySeries:
        """A lazy subset holding rows ``idx`` (no values are computed)."""
        sub = object.__new__(type(self))
        sub.__dict__.update(self.__dict__)
        sub._map = self._base_index(self._normalise(idx))
        return sub

    def __array__(self, dtype=None, copy=None):
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)

    def _rows(self, idx: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class NoisePadded(LazySeries):
    """``signal[i] * scale`` for the first ``S`` steps, then i.i.d. N(0, 1) noise up to ``T``.

    The noise of series ``i`` is drawn from ``np.random.default_rng([seed, stream, i])``, so it does
    not depend on which other rows are read with it or in what order.
    """

    def __init__(self, signal: np.ndarray, T: int, *, seed: int, stream: int, scale: float = 1.0):
        n, S, C = signal.shape
        if T < S:
            raise ValueError(f"T={T} is shorter than the signal ({S} steps)")
        super().__init__(n, T, C)
        self._signal = signal
        self._S = S
        self._seed, self._stream, self._scale = int(seed), int(stream), float(scale)

    def _rows(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), self._T, self._C), dtype=np.float32)  # (B, T, C)
        np.multiply(self._signal[idx], self._scale, out=out[:, : self._S], dtype=np.float32,
                    casting="unsafe")
        for j, i in enumerate(idx):
            rng = np.random.default_rng([self._seed, self._stream, int(i)])
            out[j, self._S:] = rng.standard_normal((self._T - self._S, self._C), dtype=np.float32)
        return out
