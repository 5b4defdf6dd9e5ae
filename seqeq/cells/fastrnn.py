"""FastRNN and FastGRNN -- Kusupati, Singh, Bhatia, Kumar, Jain & Varma, "FastGRNN: A Fast,
Accurate, Stable and Tiny Kilobyte Sized Gated Recurrent Neural Network" (NeurIPS 2018);
reference implementation: microsoft/EdgeML ``edgeml_pytorch/graph/rnn.py``.

FastRNN (alpha init -3, beta init 3, so the residual weight starts near 1)::

    h_t = sigmoid(beta) h_{t-1} + sigmoid(alpha) phi(W x_t + U h_{t-1} + b)

FastGRNN (zeta init 1, nu init -4)::

    z   = sigmoid(W x_t + U h_{t-1} + b_z)
    c   = phi(W x_t + U h_{t-1} + b_h)                         # phi = tanh by default
    h_t = (sigmoid(zeta) (1 - z) + sigmoid(nu)) * c + z * h_{t-1}

``W`` and ``U`` are dense, low-rank ``W1 W2`` / ``U1 U2`` (the paper's compression) or
permutation-diagonal. As in EdgeML, ``phi`` defaults to tanh, weights start N(0, 0.1) and biases
at 1.

Sizes: FastRNN ``|W| + |U| + D + 2``; FastGRNN ``|W| + |U| + 2 D + 2``.
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import Cell, resolve_activation
from ._params import make_map, map_param_count
from ._registry import register_cell


class _Fast(Cell):
    weight_kinds = ("dense", "lowrank", "permdiag")
    n_bias: int = 1

    def _build(self, activation, u_kind, u_rank, w_kind, w_rank, seed):
        D, d = self.hidden_size, self.input_size
        self.phi = resolve_activation(activation)
        self.W = make_map(w_kind, d, D, rank=w_rank, seed=seed + 1, std=0.1)
        self.U = make_map(u_kind, D, D, rank=u_rank, seed=seed, std=0.1)

    @classmethod
    def count_params(cls, input_size, hidden_size, u_kind="dense", u_rank=None, w_kind="dense",
                     w_rank=None, **_):
        D, d = hidden_size, input_size
        return (map_param_count(w_kind, d, D, w_rank) + map_param_count(u_kind, D, D, u_rank)
                + cls.n_bias * D + 2)

    @classmethod
    def example_hparams(cls):
        return [
            {},
            {"u_kind": "lowrank", "u_rank": 2, "w_kind": "lowrank", "w_rank": 2},
            {"u_kind": "permdiag", "w_kind": "permdiag", "activation": "relu", "seed": 2},
        ]


@register_cell("fastrnn")
class FastRNN(_Fast):
    def __init__(self, input_size: int, hidden_size: int, activation: str = "tanh",
                 u_kind: str = "dense", u_rank: int | None = None, w_kind: str = "dense",
                 w_rank: int | None = None, alpha_init: float = -3.0, beta_init: float = 3.0,
                 seed: int = 0):
        u_rank = u_rank if u_kind == "lowrank" else None
        w_rank = w_rank if w_kind == "lowrank" else None
        super().__init__(input_size, hidden_size, activation=activation, u_kind=u_kind,
                         u_rank=u_rank, w_kind=w_kind, w_rank=w_rank, alpha_init=alpha_init,
                         beta_init=beta_init, seed=seed)
        self._build(activation, u_kind, u_rank, w_kind, w_rank, seed)
        self.b = nn.Parameter(torch.ones(hidden_size))
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.beta = nn.Parameter(torch.tensor(float(beta_init)))

    def prepare(self, x):
        return self.W(x) + self.b  # (B, T, D)

    def step(self, u_t, h):
        return torch.sigmoid(self.beta) * h + torch.sigmoid(self.alpha) * self.phi(u_t + self.U(h))


@register_cell("fastgrnn")
class FastGRNN(_Fast):
    n_bias = 2

    def __init__(self, input_size: int, hidden_size: int, activation: str = "tanh",
                 u_kind: str = "dense", u_rank: int | None = None, w_kind: str = "dense",
                 w_rank: int | None = None, zeta_init: float = 1.0, nu_init: float = -4.0,
                 seed: int = 0):
        u_rank = u_rank if u_kind == "lowrank" else None
        w_rank = w_rank if w_kind == "lowrank" else None
        super().__init__(input_size, hidden_size, activation=activation, u_kind=u_kind,
                         u_rank=u_rank, w_kind=w_kind, w_rank=w_rank, zeta_init=zeta_init,
                         nu_init=nu_init, seed=seed)
        self._build(activation, u_kind, u_rank, w_kind, w_rank, seed)
        self.b_z = nn.Parameter(torch.ones(hidden_size))
        self.b_h = nn.Parameter(torch.ones(hidden_size))
        self.zeta = nn.Parameter(torch.tensor(float(zeta_init)))
        self.nu = nn.Parameter(torch.tensor(float(nu_init)))

    def prepare(self, x):
        return self.W(x)  # (B, T, D): shared by gate and candidate

    def step(self, u_t, h):
        a = u_t + self.U(h)
        z = torch.sigmoid(a + self.b_z)
        c = self.phi(a + self.b_h)
        return (torch.sigmoid(self.zeta) * (1 - z) + torch.sigmoid(self.nu)) * c + z * h
