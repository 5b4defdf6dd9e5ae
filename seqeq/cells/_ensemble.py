"""N cells side by side: the cell of an ensemble model (``ModelSpec.members > 1``).

An ensemble of N models that share their input normalisation and average their logits is itself
one :class:`~seqeq.models.SequenceClassifier`:

* its cell runs N member cells of one kind side by side: ``prepare`` concatenates the members'
  time-parallel parts, the state is the members' states concatenated, ``step`` steps each member
  on its own slices, the readout is the members' readouts concatenated;
* its linear head holds the N heads side by side, scaled by 1/N, so
  ``head(readout) = mean_i head_i(readout_i)`` (:func:`seqeq.models.combine_models`).

So the training loop, the ONNX exporter (one ``Loop`` whose body steps every member), int8
quantisation and size counting all handle an ensemble without knowing it is one. The class is not
in the registry: the search proposes single cells, and ``build_model`` wraps N of them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._base import Cell
from ._registry import create_cell, get_cell_class

__all__ = ["Ensemble", "MAX_MEMBERS"]

#: the most members an ensemble (and a saved model) may have
MAX_MEMBERS = 16


class Ensemble(Cell):
    """``members`` cells of the registered kind ``member``, each built with ``hidden_size`` and
    the member's own hyperparameters ``kw``."""

    name = "ensemble"

    def __init__(self, input_size: int, hidden_size: int, *, member: str, members: int,
                 split_input: bool = False, **kw: Any):
        if not (isinstance(members, int) and 2 <= members <= MAX_MEMBERS):
            raise ValueError(f"an ensemble has 2..{MAX_MEMBERS} members, not {members!r}")
        super().__init__(input_size, hidden_size, member=member, members=members, **kw)
        #: each member reads its own ``input_size`` of the input's ``members * input_size``
        #: features (its own convolution front end, ``models.SequenceClassifier``), not all of it
        self.split_input = bool(split_input)
        if self.split_input:
            self.input_size = input_size * members
        self.cells = nn.ModuleList(create_cell(member, input_size, hidden_size, **kw)
                                   for _ in range(members))
        self.onnx_exportable = get_cell_class(member).onnx_exportable
        first = self.cells[0]
        with torch.no_grad():  # the width F of each member's prepare output
            f = first.prepare(torch.zeros(1, 1, input_size)).shape[-1]
        self._u = [f] * members
        self._s = [first.state_size] * members

    @classmethod
    def count_params(cls, input_size, hidden_size, *, member, members, **kw):
        return members * get_cell_class(member).count_params(input_size, hidden_size, **kw)

    @classmethod
    def readout_size_for(cls, hidden_size, *, member, members, **kw):
        return members * get_cell_class(member).readout_size_for(hidden_size, **kw)

    @classmethod
    def state_size_for(cls, hidden_size, *, member, members, **kw):
        return members * get_cell_class(member).state_size_for(hidden_size, **kw)

    def init_state(self, batch: int, device=None, dtype=None) -> torch.Tensor:
        return torch.cat([c.init_state(batch, device, dtype) for c in self.cells], dim=1)

    def _inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = len(self.cells)
        return list(x.chunk(n, dim=-1)) if self.split_input else [x] * n

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([c.prepare(xi) for c, xi in zip(self.cells, self._inputs(x),
                                                          strict=True)], dim=-1)

    def step(self, u_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        us, hs = u_t.split(self._u, dim=1), h.split(self._s, dim=1)
        return torch.cat([c.step(u, s) for c, u, s in zip(self.cells, us, hs, strict=True)],
                         dim=1)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([c.readout(s) for c, s in zip(self.cells, h.split(self._s, dim=1),
                                                       strict=True)], dim=1)

    def regularization(self) -> torch.Tensor:
        return sum(c.regularization() for c in self.cells)

    def forward_sequence(self, x, lengths=None, h0=None):
        if h0 is not None:  # an explicit initial state: the generic step loop
            return super().forward_sequence(x, lengths, h0)
        # each member on its own fast path (fused GRU/LSTM, hand-written loops, GPU kernels)
        return torch.cat([c.forward_sequence(xi, lengths)
                          for c, xi in zip(self.cells, self._inputs(x), strict=True)], dim=1)
