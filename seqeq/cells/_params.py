"""Weight parametrisations shared by every cell: the "low-rank / permutation sparsity" axis.

Each map is a small module ``y = M x`` with an exact parameter count known from its shape alone:

* ``dense``     -- ``M`` is a full ``out x in`` matrix (``in*out`` parameters);
* ``lowrank``   -- ``M = W1 W2`` with ``W1: out x r``, ``W2: r x in`` (``r*(in+out)``); for a square
  recurrent matrix the cells use ``identity_plus=True``, i.e. ``U = I + V H`` (iRNN Sec. 3.2);
* ``permdiag``  -- ``M = diag(a) P`` with a fixed random 0/1 selection ``P`` (TinyRNN): each output
  unit reads one input unit, ``y = a * x[index]`` (``out`` parameters). Square: ``index`` is a
  permutation of ``[D]``; rectangular ``[out] -> [in]``: every input feature is used when
  ``in <= out``. ``index`` is a buffer drawn from a stored seed, so it survives save/load/export.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["WEIGHT_KINDS", "make_map", "map_param_count", "DenseMap", "LowRankMap", "PermDiagMap",
           "apply_stacked"]

WEIGHT_KINDS = ("dense", "lowrank", "permdiag")


def map_param_count(kind: str, in_f: int, out_f: int, rank: int | None = None) -> int:
    """Exact learnable count of a map of this kind and shape."""
    if kind == "dense":
        return in_f * out_f
    if kind == "lowrank":
        if not rank:
            raise ValueError("lowrank needs a rank r >= 1")
        return rank * (in_f + out_f)
    if kind == "permdiag":
        return out_f
    raise ValueError(f"unknown weight kind {kind!r}; choose one of {WEIGHT_KINDS}")


class DenseMap(nn.Module):
    def __init__(self, in_f: int, out_f: int, std: float | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_f, in_f))
        bound = 1.0 / math.sqrt(in_f)
        with torch.no_grad():
            if std is None:
                self.weight.uniform_(-bound, bound)
            else:
                self.weight.normal_(0.0, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T

    def matrix(self) -> torch.Tensor:
        return self.weight


class LowRankMap(nn.Module):
    """``M = W1 W2`` (or ``I + W1 W2`` with ``identity_plus``, square only)."""

    def __init__(self, in_f: int, out_f: int, rank: int, identity_plus: bool = False,
                 std: float | None = None):
        super().__init__()
        if identity_plus and in_f != out_f:
            raise ValueError("identity_plus needs a square map")
        self.identity_plus = identity_plus
        self.W1 = nn.Parameter(torch.empty(out_f, rank))
        self.W2 = nn.Parameter(torch.empty(rank, in_f))
        with torch.no_grad():
            s1 = std if std is not None else 1.0 / math.sqrt(rank)
            s2 = std if std is not None else 1.0 / math.sqrt(in_f)
            self.W1.normal_(0.0, s1)
            self.W2.normal_(0.0, s2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x @ self.W2.T) @ self.W1.T
        return x + y if self.identity_plus else y

    def matrix(self) -> torch.Tensor:
        m = self.W1 @ self.W2
        if self.identity_plus:
            m = m + torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
        return m


def permdiag_index(in_f: int, out_f: int, seed: int) -> torch.Tensor:
    """The fixed selection of a permutation-diagonal map, drawn from ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    if in_f <= out_f:
        base = torch.arange(out_f) % in_f  # every input feature used
        return base[torch.randperm(out_f, generator=g)]
    return torch.randperm(in_f, generator=g)[:out_f]


class PermDiagMap(nn.Module):
    """``y = a * x[..., index]``: a learnable diagonal after a fixed random selection."""

    def __init__(self, in_f: int, out_f: int, seed: int, std: float | None = None):
        super().__init__()
        self.diag = nn.Parameter(torch.empty(out_f))
        self.register_buffer("index", permdiag_index(in_f, out_f, seed))
        with torch.no_grad():
            if std is None:
                self.diag.uniform_(-1.0, 1.0)
            else:
                self.diag.normal_(0.0, std)
        self.in_f = in_f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # index_select, not x[..., index]: the same gather, several times faster on CPU
        return x.index_select(-1, self.index) * self.diag

    def matrix(self) -> torch.Tensor:
        m = torch.zeros(self.diag.shape[0], self.in_f, dtype=self.diag.dtype,
                        device=self.diag.device)
        m[torch.arange(self.diag.shape[0]), self.index] = self.diag
        return m


def make_map(kind: str, in_f: int, out_f: int, *, rank: int | None = None,
             identity_plus: bool = False, seed: int = 0, std: float | None = None) -> nn.Module:
    """Build a map of ``kind`` (see module docstring)."""
    if kind == "dense":
        return DenseMap(in_f, out_f, std=std)
    if kind == "lowrank":
        if not rank:
            raise ValueError("lowrank needs a rank r >= 1")
        return LowRankMap(in_f, out_f, rank, identity_plus=identity_plus, std=std)
    if kind == "permdiag":
        return PermDiagMap(in_f, out_f, seed=seed, std=std)
    raise ValueError(f"unknown weight kind {kind!r}; choose one of {WEIGHT_KINDS}")


def apply_stacked(maps, x: torch.Tensor) -> torch.Tensor:
    """``[m_1(x), m_2(x), ...]`` side by side on the last axis: one product (and no concatenation
    of large outputs) when the maps are all dense or all permutation-diagonal, which is most of
    the cost of a cell's time-parallel part."""
    maps = list(maps)
    if all(isinstance(m, DenseMap) for m in maps):
        return x @ torch.cat([m.weight for m in maps]).T
    if all(isinstance(m, PermDiagMap) for m in maps):
        idx = torch.cat([m.index for m in maps])
        return x.index_select(-1, idx) * torch.cat([m.diag for m in maps])
    return torch.cat([m(x) for m in maps], dim=-1)
