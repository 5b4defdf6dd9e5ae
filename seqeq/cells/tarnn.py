"""TARNN -- Kag & Saligrama, "Time Adaptive Recurrent Neural Network" (CVPR 2021), Eq. 5, 6,
Algorithm 1; code: github anilkagak2/TARNN ``pytorch/tarnn.py``.

``variant="paper"`` (default): an ODE whose element-wise time constant is a gate of input and
state, ``A = -I``, ``u_t = [x_t; h_{t-1}]``, K Euler steps from ``z_0 = h_{t-1}``::

    beta = sigma(U_s h_{t-1} + W_x x_t + b_beta)
    z_k  = z_{k-1} + eta_k beta * ( -z_{k-1} + B1 x_t + B2 h_{t-1}
                                    + phi(U z_{k-1} + W1 x_t + W2 h_{t-1}) ),   k = 1..K
    h_t  = z_K

The paper's Eq. 6 writes the recursion for ``1 < k < K`` with ``z^1 = s_{m-1}`` (K - 1 updates);
we follow CELLS.md: K updates, K = 3 by default. ``eta`` is learned, one per Euler step
(``n_timesteps=T0``: one per (step, timestep)), init 0.01 as the code.

``variant="code"``: the authors' PyTorch cell (``b_variant=True``), gate applied outside::

    beta = sigma(U_g h_{t-1} + W_g x_t + b_g)                     (b_g init -3)
    arg  = U2 h_{t-1} + W1 x_t + W2 x_{t-1} + b1                  (x_0 := x_1, as the code)
    z_0  = h_{t-1}
    z_k  = (1 - eta_k) z_{k-1}
           + eta_k ( phi(U1 z_{k-1} + arg) - z_{k-1} - h_{t-1} + B1 x_t + B2 h_{t-1} )
    h_t  = (1 - beta) h_{t-1} + beta z_K

``x_{t-1}`` only enters linearly, so :meth:`prepare` computes ``W1 x_t + W2 x_{t-1} + b1`` for all
steps at once from the shifted input; the state stays ``h``. (A streaming call ``cell(x_t, h)`` sees
``x_t`` as the first step, i.e. uses ``x_{t-1} := x_t``.) Quirks of the reference code, not copied:
``forward`` reads ``x`` before it is defined when ``h`` is None (and squeezes ``h`` before the None
check); its ``b2`` parameter is never used (but counted in its parameter totals); the TensorFlow
version never resets its timestep counter, so per-timestep ``eta`` drifts across batches. The code
learns ``eta`` per (step, timestep): here ``n_timesteps=T0`` (fixed-length data only).

Weights: every ``D x D`` matrix takes ``u_kind`` (dense / low-rank ``W1 W2`` /
permutation-diagonal), every ``D x d`` matrix ``w_kind``; init N(0, ``weight_std`` = 0.1) as the
code, biases 0 (gate bias 0 for the paper variant, -3 for the code variant).

Optional regulariser (Thm. 1, identity gradients), Frobenius norms:
paper ``gamma1 ||A + B2||^2 + gamma2 ||U + W2||^2`` with ``A = -I``; for the code variant the
analogous ``gamma1 ||B2 - I||^2 + gamma2 ||U1 + U2||^2``. Returned by :meth:`regularization`.

Size: paper ``4 |U| + 3 |W| + D + |eta|``; code ``4 |U| + 4 |W| + 2 D + |eta|`` where ``|U|``,
``|W|`` are the counts of a ``D x D`` / ``D x d`` map of the chosen kind and ``|eta| = K`` (or
``K * T0``).
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import Cell, resolve_activation
from ._params import make_map, map_param_count
from ._registry import register_cell
from ._steps import append_eta, eta_count, make_eta, split_eta

VARIANTS = ("paper", "code")

# (name, square) of every map, in creation order (seed offset = position)
_MAPS = {
    "paper": (("Us", True), ("Wx", False), ("B1", False), ("B2", True), ("U", True),
              ("W1", False), ("W2", True)),
    "code": (("Ug", True), ("Wg", False), ("B1", False), ("B2", True), ("U1", True),
             ("U2", True), ("W1", False), ("W2", False)),
}


@register_cell("tarnn")
class TARNN(Cell):
    weight_kinds = ("dense", "lowrank", "permdiag")
    has_steps = True

    def __init__(self, input_size: int, hidden_size: int, K: int = 3, variant: str = "paper",
                 activation: str = "relu", u_kind: str = "dense", u_rank: int | None = None,
                 w_kind: str = "dense", w_rank: int | None = None, eta_init: float = 0.01,
                 gate_bias_init: float | None = None, weight_std: float = 0.1,
                 n_timesteps: int | None = None, reg_gamma1: float = 0.0,
                 reg_gamma2: float = 0.0, seed: int = 0):
        if variant not in VARIANTS:
            raise ValueError(f"unknown TARNN variant {variant!r}; choose one of {VARIANTS}")
        u_rank = u_rank if u_kind == "lowrank" else None
        w_rank = w_rank if w_kind == "lowrank" else None
        if gate_bias_init is None:
            gate_bias_init = -3.0 if variant == "code" else 0.0
        super().__init__(input_size, hidden_size, K=K, variant=variant, activation=activation,
                         u_kind=u_kind, u_rank=u_rank, w_kind=w_kind, w_rank=w_rank,
                         eta_init=eta_init, gate_bias_init=gate_bias_init,
                         weight_std=weight_std, n_timesteps=n_timesteps, reg_gamma1=reg_gamma1,
                         reg_gamma2=reg_gamma2, seed=seed)
        D, d = hidden_size, input_size
        self.K, self.variant, self.n_timesteps = int(K), variant, n_timesteps
        self.reg_gamma1, self.reg_gamma2 = float(reg_gamma1), float(reg_gamma2)
        self.phi = resolve_activation(activation)
        for i, (name, square) in enumerate(_MAPS[variant]):
            kind, rank = (u_kind, u_rank) if square else (w_kind, w_rank)
            setattr(self, name, make_map(kind, D if square else d, D, rank=rank, seed=seed + i,
                                         std=weight_std))
        if variant == "paper":
            self.b_beta = nn.Parameter(torch.full((D,), float(gate_bias_init)))
        else:
            self.bg = nn.Parameter(torch.full((D,), float(gate_bias_init)))
            self.b1 = nn.Parameter(torch.zeros(D))
        self.eta = make_eta(self.K, n_timesteps, eta_init)

    @classmethod
    def count_params(cls, input_size, hidden_size, K=3, variant="paper", u_kind="dense",
                     u_rank=None, w_kind="dense", w_rank=None, n_timesteps=None, **_):
        D, d = hidden_size, input_size
        n = sum(map_param_count(u_kind, D, D, u_rank) if sq
                else map_param_count(w_kind, d, D, w_rank) for _, sq in _MAPS[variant])
        return n + (D if variant == "paper" else 2 * D) + eta_count(K, n_timesteps)

    @classmethod
    def example_hparams(cls):
        return [
            {"K": 1},
            {"K": 3, "u_kind": "lowrank", "u_rank": 2, "w_kind": "lowrank", "w_rank": 2},
            {"K": 2, "u_kind": "permdiag", "w_kind": "permdiag", "activation": "tanh"},
            {"K": 1, "variant": "code"},
            {"K": 3, "variant": "code", "u_kind": "lowrank", "u_rank": 2, "w_kind": "permdiag"},
            {"K": 2, "variant": "code", "n_timesteps": 9, "u_kind": "permdiag", "seed": 4},
            {"K": 2, "n_timesteps": 9, "w_kind": "lowrank", "w_rank": 1},
        ]

    def prepare(self, x):
        if self.variant == "paper":
            u = torch.cat([self.Wx(x) + self.b_beta, self.B1(x), self.W1(x)], dim=-1)
        else:
            x_prev = torch.cat([x[:, :1], x[:, :-1]], dim=1)  # x_{t-1}, with x_0 := x_1
            u = torch.cat([self.W1(x) + self.W2(x_prev) + self.b1, self.B1(x),
                           self.Wg(x) + self.bg], dim=-1)
        return append_eta(u, self.eta, self.n_timesteps)  # (B, T, 3D [+K])

    def step(self, u_t, h):
        u_t, eta = split_eta(u_t, self.eta, self.n_timesteps)
        D = self.hidden_size
        if self.variant == "paper":
            beta = torch.sigmoid(self.Us(h) + u_t[:, :D])
            c = u_t[:, D:2 * D] + self.B2(h)  # B u_t
            wu = u_t[:, 2 * D:] + self.W2(h)  # W u_t
            z = h
            for k in range(self.K):
                z = z + eta[k] * beta * (-z + c + self.phi(self.U(z) + wu))
            return z
        arg = self.U2(h) + u_t[:, :D]
        c = u_t[:, D:2 * D] + self.B2(h) - h
        beta = torch.sigmoid(self.Ug(h) + u_t[:, 2 * D:])
        z = h
        for k in range(self.K):
            z = (1 - eta[k]) * z + eta[k] * (self.phi(self.U1(z) + arg) - z + c)
        return (1 - beta) * h + beta * z

    def regularization(self):
        if self.reg_gamma1 == 0.0 and self.reg_gamma2 == 0.0:
            return super().regularization()
        eye = torch.eye(self.hidden_size, dtype=self.eta.dtype, device=self.eta.device)
        if self.variant == "paper":
            a = -eye + self.B2.matrix()
            b = self.U.matrix() + self.W2.matrix()
        else:
            a = self.B2.matrix() - eye
            b = self.U1.matrix() + self.U2.matrix()
        return self.reg_gamma1 * (a**2).sum() + self.reg_gamma2 * (b**2).sum()
