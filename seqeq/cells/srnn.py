"""SRNN -- Rotman & Wolf, "Shuffling Recurrent Neural Networks" (AAAI 2021), Eq. 3, 5;
code: github rotmanmi/SRNN ``models/SRNN.py`` (``SRNNCell``).

No learned recurrent matrix: the state is shifted by one place and the input's contribution added::

    b(x_t) = f_r(x_t) * sigma(W_s x_t + b_s)        # gated (default); no_gate: b = f_r(x_t)
    h_t    = phi(W_p h_{t-1} + b(x_t))               # W_p h = roll(h, 1): (W_p h)_i = h_{i-1}

``f_r`` is an MLP ``d -> hyper -> ... -> D``: ``n_layers`` hidden layers of width ``hyper_size``
with ReLU, then a linear output (as the code's ``fc``); ``phi`` is ReLU by default (the code). The
whole ``b(x)`` is computed in :meth:`prepare` for all steps at once; :meth:`step` is only
roll + add + activation. The paper's matrix (Eq. 4) shifts the other way (``roll(h, -1)``); that
only relabels the units, and we follow the code and CELLS.md. Code defaults: hidden 128, hyper 64,
one hidden layer. Inits: PyTorch's ``nn.Linear`` defaults, as the code.

Size: ``d H + H + (n_layers - 1)(H^2 + H) + H D + D`` (f_r) ``+ d D + D`` (gate, unless no_gate).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._base import Cell, resolve_activation
from ._fast import FastLoop, Saved, act_backward, act_inplace, masked
from ._params import make_map
from ._registry import register_cell


def shift(h: torch.Tensor) -> torch.Tensor:
    """The fixed cyclic shift ``W_p h = roll(h, 1, -1)``, written as a concat (exports cleanly)."""
    return torch.cat([h[:, -1:], h[:, :-1]], dim=1)


@register_cell("srnn")
class SRNN(Cell):
    def __init__(self, input_size: int, hidden_size: int, hyper_size: int = 64, n_layers: int = 1,
                 no_gate: bool = False, activation: str = "relu"):
        super().__init__(input_size, hidden_size, hyper_size=hyper_size, n_layers=n_layers,
                         no_gate=no_gate, activation=activation)
        D, d, H = hidden_size, input_size, int(hyper_size)
        if int(n_layers) < 1:
            raise ValueError("SRNN's f_r needs n_layers >= 1")
        self.no_gate = bool(no_gate)
        self.phi = resolve_activation(activation)
        layers: list[nn.Module] = [nn.Linear(d, H), nn.ReLU()]
        for _ in range(int(n_layers) - 1):
            layers += [nn.Linear(H, H), nn.ReLU()]
        layers.append(nn.Linear(H, D))
        self.fr = nn.Sequential(*layers)
        if not self.no_gate:
            self.Ws = make_map("dense", d, D)  # U(-1/sqrt(d), 1/sqrt(d)), as nn.Linear
            bound = 1.0 / math.sqrt(d)
            self.bs = nn.Parameter(torch.empty(D).uniform_(-bound, bound))

    @classmethod
    def count_params(cls, input_size, hidden_size, hyper_size=64, n_layers=1, no_gate=False, **_):
        D, d, H = hidden_size, input_size, int(hyper_size)
        n = d * H + H + (int(n_layers) - 1) * (H * H + H) + H * D + D
        return n + (0 if no_gate else d * D + D)

    @classmethod
    def example_hparams(cls):
        return [
            {"hyper_size": 5},
            {"hyper_size": 3, "n_layers": 3, "activation": "tanh"},
            {"hyper_size": 4, "n_layers": 2, "no_gate": True},
        ]

    def prepare(self, x):
        b = self.fr(x)  # (B, T, D)
        if not self.no_gate:
            b = b * torch.sigmoid(self.Ws(x) + self.bs)
        return b

    def step(self, u_t, h):
        return self.phi(shift(h) + u_t)

    def fast_loop(self):
        return _SRNNLoop(self)

    def gpu_kernel(self):
        from . import _triton

        return _triton._srnn


class _SRNNLoop(FastLoop):
    """:meth:`SRNN.step` over a whole sequence, differentiated by hand (see :mod:`._fast`): no
    recurrent parameters, so the backward is ``du_t = phi'(.) dh_t``, ``dh_{t-1} = roll(du_t, -1)``.
    Saved: every state (T, B, D)."""

    params: list = []

    def __init__(self, cell: SRNN):
        self.act = cell.hparams["activation"]

    def forward(self, u, h, masks, need_grad):
        B, T, D = u.shape
        phi = act_inplace(self.act)
        us = u.transpose(0, 1).unbind(0)
        saved = None
        if need_grad:
            saved = Saved(u, H=(T, B, D))
            Hs = saved.flat("H")
        for t in range(T):
            o = Hs[t] if need_grad and masks is None else None
            hn = phi(torch.add(torch.roll(h, 1, 1), us[t], out=o))
            if masks is not None:
                hn = torch.where(masks[t], hn, h, out=Hs[t] if need_grad else None)
            h = hn
        return h, saved

    def backward(self, saved, dh, masks):
        H = saved.get("H")[0]
        T, B, D = H.shape
        act_bwd = act_backward(self.act)
        DU = H.new_empty(B, T, D)
        for t in reversed(range(T)):
            m = None if masks is None else masks[t]
            du = act_bwd(masked(dh, m), H[t], out=DU[:, t])
            dprev = torch.roll(du, -1, 1)
            dh = dprev if m is None else torch.where(m, dprev, dh)
        saved.release()
        return DU, dh, []
