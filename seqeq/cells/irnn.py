"""iRNN / SiRNN -- Kag, Zhang & Saligrama, "RNNs Incrementally Evolving on an Equilibrium
Manifold: A Panacea for Vanishing and Exploding Gradients?" (ICLR 2020), Eq. 5, 6, 8.

K Euler steps toward the equilibrium of the incremental ODE, from ``g_0 = 0``::

    for i in 1..K:  g_i = g_{i-1} + eta_i * ( phi(U (g_{i-1} + h_{t-1}) + W x_t + b)
                                              - alpha * (g_{i-1} + h_{t-1}) )
    h_t = g_K

SiRNN is K = 1. ``eta`` is one learnable scalar per Euler step (init 0.01, as in the paper), or,
with ``n_timesteps=T0``, one per (step, timestep) as in the authors' code (fixed-length data only;
see :mod:`._steps`). ``U`` is dense, low-rank ``I + V H`` (the paper's choice, Sec. 3.2) or
permutation-diagonal; ``W`` dense, low-rank ``W1 W2`` or permutation-diagonal.

Size (learnable scalars): ``|W| + D (b) + |U| + 1 (alpha) + K (eta)`` where ``|.|`` is the count
of the chosen parametrisation (dense ``D*d`` / ``D*D``, low-rank ``r*(d+D)`` / ``2*r*D``,
permutation-diagonal ``D``); ``K`` becomes ``K * T0`` with ``n_timesteps=T0``.
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import Cell, resolve_activation
from ._params import make_map, map_param_count
from ._registry import register_cell
from ._steps import append_eta, eta_count, make_eta, split_eta


@register_cell("irnn")
class IRNN(Cell):
    weight_kinds = ("dense", "lowrank", "permdiag")
    has_steps = True

    def __init__(self, input_size: int, hidden_size: int, K: int = 1, u_kind: str = "lowrank",
                 u_rank: int | None = 8, w_kind: str = "dense", w_rank: int | None = None,
                 activation: str = "relu", eta_init: float = 0.01, alpha_init: float = 1.0,
                 seed: int = 0, n_timesteps: int | None = None):
        u_rank = u_rank if u_kind == "lowrank" else None
        w_rank = w_rank if w_kind == "lowrank" else None
        super().__init__(input_size, hidden_size, K=K, u_kind=u_kind, u_rank=u_rank,
                         w_kind=w_kind, w_rank=w_rank, activation=activation,
                         eta_init=eta_init, alpha_init=alpha_init, seed=seed,
                         n_timesteps=n_timesteps)
        D, d = hidden_size, input_size
        self.K = int(K)
        self.phi = resolve_activation(activation)
        self.W = make_map(w_kind, d, D, rank=w_rank, seed=seed + 1)
        self.b = nn.Parameter(torch.zeros(D))
        self.U = make_map(u_kind, D, D, rank=u_rank, identity_plus=True, seed=seed,
                          std=0.1 / max(1, u_rank or 1) ** 0.5 if u_kind == "lowrank" else None)
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.n_timesteps = n_timesteps
        self.eta = make_eta(self.K, n_timesteps, eta_init)

    @classmethod
    def count_params(cls, input_size, hidden_size, K=1, u_kind="lowrank", u_rank=8,
                     w_kind="dense", w_rank=None, n_timesteps=None, **_):
        D, d = hidden_size, input_size
        return (map_param_count(w_kind, d, D, w_rank) + D + map_param_count(u_kind, D, D, u_rank)
                + 1 + eta_count(K, n_timesteps))

    @classmethod
    def example_hparams(cls):
        return [
            {"K": 1, "u_kind": "lowrank", "u_rank": 2, "w_kind": "dense"},
            {"K": 3, "u_kind": "dense", "w_kind": "lowrank", "w_rank": 2, "activation": "tanh"},
            {"K": 2, "u_kind": "permdiag", "w_kind": "permdiag", "seed": 3},
            {"K": 2, "u_kind": "lowrank", "u_rank": 3, "n_timesteps": 9},
        ]

    def prepare(self, x):
        return append_eta(self.W(x) + self.b, self.eta, self.n_timesteps)  # (B, T, D[+K])

    def step(self, u_t, h):
        u_t, eta = split_eta(u_t, self.eta, self.n_timesteps)
        g = torch.zeros_like(h)
        for i in range(self.K):
            s = g + h
            g = g + eta[i] * (self.phi(self.U(s) + u_t) - self.alpha * s)
        return g
