"""ERNN -- Zhang, Kag, Sullivan & Saligrama, "Equilibrated Recurrent Neural Network: Neuronal
Time-Delayed Self-Feedback Improves Accuracy and Stability" (ernn-equilibrated-rnn.txt), Eq. 9,
11, 12.

The state is the fixed point of ``h = phi(U h + V h_{t-1} + W x_t + b)``, approached by K
inexact-Newton residual steps with ``(I - U)^{-1} ~ I + U`` (Eq. 11), from ``h^(0) = h_{t-1}``::

    h^(k) = (1 - eta_k) h^(k-1) + eta_k phi( (I + U)(V h^(k-1) + W x_t + b) ),   k = 1..K
    h_t   = h^(K)

``phi`` is the paper's ``sigma`` ("a nonlinear activation such as tanh or ReLU"; ReLU in all its
experiments), not the logistic sigmoid. ``eta_k`` is learned and may go negative (Fig. 9): one per
step by default, or one per (step, timestep) as in the paper with ``n_timesteps=T0`` (fixed-length
data only); init 0.01 as in the paper. Paper default K = 1 (K = 2 is ~1 % better on HAR-2).
FastRNN is the special case ``U = 0``, K = 1.

``U`` (the (I + U) correction, init small: ||U|| ~ 0.2), ``V`` (recurrent) and ``W`` (input) are
each dense, low-rank ``W1 W2`` or permutation-diagonal (``u_kind``, ``v_kind``, ``w_kind``);
b init 0.

Size: ``|W| + D (b) + |U| + |V| + |eta|`` with ``|eta| = K`` (or ``K * T0``).
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import Cell, resolve_activation
from ._params import make_map, map_param_count
from ._registry import register_cell
from ._steps import append_eta, eta_count, make_eta, split_eta


def _small_std(kind: str, D: int) -> float:
    """Init std giving a D x D map of spectral norm ~0.2 (so that I + U ~ (I - U)^-1 holds)."""
    if kind == "dense":
        return 0.1 / D**0.5
    if kind == "lowrank":
        return 0.3 / D**0.5  # ||W1 W2|| ~ (0.3 (1 + sqrt(r / D)))^2
    return 0.1


@register_cell("ernn")
class ERNN(Cell):
    weight_kinds = ("dense", "lowrank", "permdiag")
    has_steps = True

    def __init__(self, input_size: int, hidden_size: int, K: int = 1, activation: str = "relu",
                 u_kind: str = "dense", u_rank: int | None = None, v_kind: str = "dense",
                 v_rank: int | None = None, w_kind: str = "dense", w_rank: int | None = None,
                 eta_init: float = 0.01, n_timesteps: int | None = None, seed: int = 0):
        u_rank = u_rank if u_kind == "lowrank" else None
        v_rank = v_rank if v_kind == "lowrank" else None
        w_rank = w_rank if w_kind == "lowrank" else None
        super().__init__(input_size, hidden_size, K=K, activation=activation, u_kind=u_kind,
                         u_rank=u_rank, v_kind=v_kind, v_rank=v_rank, w_kind=w_kind,
                         w_rank=w_rank, eta_init=eta_init, n_timesteps=n_timesteps, seed=seed)
        D, d = hidden_size, input_size
        self.K, self.n_timesteps = int(K), n_timesteps
        self.phi = resolve_activation(activation)
        self.W = make_map(w_kind, d, D, rank=w_rank, seed=seed + 2)
        self.b = nn.Parameter(torch.zeros(D))
        self.U = make_map(u_kind, D, D, rank=u_rank, seed=seed, std=_small_std(u_kind, D))
        self.V = make_map(v_kind, D, D, rank=v_rank, seed=seed + 1)
        self.eta = make_eta(self.K, n_timesteps, eta_init)

    @classmethod
    def count_params(cls, input_size, hidden_size, K=1, u_kind="dense", u_rank=None,
                     v_kind="dense", v_rank=None, w_kind="dense", w_rank=None, n_timesteps=None,
                     **_):
        D, d = hidden_size, input_size
        return (map_param_count(w_kind, d, D, w_rank) + D + map_param_count(u_kind, D, D, u_rank)
                + map_param_count(v_kind, D, D, v_rank) + eta_count(K, n_timesteps))

    @classmethod
    def example_hparams(cls):
        return [
            {"K": 1},
            {"K": 2, "u_kind": "lowrank", "u_rank": 2, "v_kind": "lowrank", "v_rank": 3,
             "w_kind": "lowrank", "w_rank": 2},
            {"K": 3, "u_kind": "permdiag", "v_kind": "permdiag", "w_kind": "permdiag",
             "activation": "tanh", "seed": 7},
            {"K": 2, "n_timesteps": 9, "eta_init": -0.3},
        ]

    def prepare(self, x):
        return append_eta(self.W(x) + self.b, self.eta, self.n_timesteps)  # (B, T, D [+K])

    def step(self, u_t, h):
        u_t, eta = split_eta(u_t, self.eta, self.n_timesteps)
        hk = h
        for k in range(self.K):
            a = self.V(hk) + u_t
            hk = (1 - eta[k]) * hk + eta[k] * self.phi(a + self.U(a))
        return hk
