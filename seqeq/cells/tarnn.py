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
from ._fast import (
    Consts,
    FastLoop,
    GradAcc,
    MapOps,
    Saved,
    StackedMaps,
    act_backward,
    act_inplace,
    masked,
    pad_features,
    step_size_grad,
    step_sizes,
)
from ._params import apply_stacked, make_map, map_param_count
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
            u = apply_stacked([self.Wx, self.B1, self.W1], x)  # [Wx x, B1 x, W1 x] + [b, 0, 0]
            u = u + torch.cat([self.b_beta, self.b_beta.new_zeros(2 * self.hidden_size)])
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

    def fast_loop(self):
        return _TARNNLoop(self)

    def gpu_kernel(self):
        # the authors'-code variant runs the fast loop
        from . import _triton

        return _triton._tarnn if self.hparams.get("variant", "paper") == "paper" else None

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


_SIGMOID_BWD = torch.ops.aten.sigmoid_backward.grad_input


class _TARNNLoop(FastLoop):
    """:meth:`TARNN.step` over a whole sequence, differentiated by hand (see :mod:`._fast`).

    The three maps of ``h_{t-1}`` (paper: ``Us, B2, W2``; code: ``U2, B2, Ug``) run as one
    ``(B, 3D)`` product, in the column order of :meth:`TARNN.prepare`. Per Euler step
    ``p = phi(U z + wu)``, ``q = p - z + c`` and

    * paper: ``z <- z + eta beta q`` (``h_t = z_K``);
    * code: ``z <- (1 - eta) z + eta q`` (``h_t = h + beta (z_K - h)``).

    Saved: every ``z`` (T, K + 1, B, D), ``p``, ``q`` (T, K, B, D), ``beta`` (T, B, D) and ``U``'s
    intermediate.
    """

    def __init__(self, cell: TARNN):
        self.K, self.D, self.act = cell.K, cell.hidden_size, cell.hparams["activation"]
        self.paper = cell.variant == "paper"
        names = ("Us", "B2", "W2") if self.paper else ("U2", "B2", "Ug")
        self.pre = StackedMaps([getattr(cell, n) for n in names])
        self.U = MapOps(cell.U if self.paper else cell.U1)
        self.eta = cell.eta
        self.params = [*self.pre.params, *self.U.params, cell.eta]

    def forward(self, u, h, masks, need_grad):
        B, T, _ = u.shape
        K, D, U = self.K, self.D, self.U
        phi = act_inplace(self.act)
        eta = step_sizes(self.eta, T)
        us = u[..., :3 * D].transpose(0, 1).unbind(0)
        saved = None
        if need_grad:
            r = U.aux_width()
            saved = Saved(u, Z=(T, K + 1, B, D), P=(T, K, B, D), Q=(T, K, B, D),
                          BETA=(T, B, D), X=None if r is None else (T, K, B, r))
            Zt, P, Q, X = saved.flat("Z"), *(saved.flat(n) for n in ("P", "Q", "X"))
            BETA = saved.get("BETA")[0]
            saved.info = (eta, u.shape)
        n = 0  # substep t K + k
        for t in range(T):
            e = eta[t]
            if need_grad:
                h = Zt[t * (K + 1)].copy_(h)
            pre = self.pre.mv(h, add=us[t])
            if self.paper:
                beta = torch.sigmoid(pre[:, :D], out=BETA[t] if need_grad else None)
                c, wu = pre[:, D:2 * D], pre[:, 2 * D:]
            else:
                wu, c = pre[:, :D], pre[:, D:2 * D].sub_(h)
                beta = torch.sigmoid(pre[:, 2 * D:], out=BETA[t] if need_grad else None)
            z = h
            for k in range(K):
                j = t * (K + 1) + k + 1  # z_{k+1}
                if need_grad:
                    p = phi(U.mv(z, add=wu, out=P[n], aux_out=X[n]))
                    q = torch.sub(p, z, out=Q[n]).add_(c)
                else:
                    q = torch.sub(phi(U.mv(z, add=wu)), z).add_(c)
                zo = Zt[j] if need_grad else None
                if self.paper:
                    z = torch.addcmul(z, beta, q, value=e[k], out=zo)
                else:
                    z = torch.lerp(z, q, e[k], out=zo)  # (1 - eta) z + eta q
                n += 1
            hn = z if self.paper else torch.lerp(h, z, beta)
            if masks is not None:  # padded rows keep their state
                hn = torch.where(masks[t], hn, h)
            h = hn
        return h, saved

    def backward(self, saved, dh, masks):
        (eta, (B, T, F)), (Z, P, Q, BETA, X) = saved.info, saved.get("Z", "P", "Q", "BETA", "X")
        K, D, U = self.K, self.D, self.U
        act_bwd = act_backward(self.act)
        e_tk = torch.tensor(eta, dtype=Z.dtype, device=Z.device).view(T, K, 1, 1)
        c = Consts(Z)
        # scratch for one time step (K blocks), reused: it stays in cache
        DA, DZ = Z.new_empty(K, B, D), Z.new_empty(K, B, D)  # dL/da (/ eta), dL/dz_{k+1}
        TMP = Z.new_empty(K, B, D) if self.paper else None  # beta dL/dz_{k+1}
        r = U.aux_width(transpose=True)
        Y = None if r is None else Z.new_empty(K, B, r)
        DAv, DZv = DA.unbind(0), DZ.unbind(0)
        TMPv = TMP.unbind(0) if TMP is not None else None
        Yv = (None,) * K if Y is None else Y.unbind(0)
        r1, r2 = Z.new_empty(T, K), Z.new_empty(T, K)  # for the step sizes
        DPRE = Z.new_empty(B, T, 3 * D)  # dL/du: [beta, c, wu] (paper) / [wu, c, beta] (code)
        acc = GradAcc([U], K * B, Z)
        for t in reversed(range(T)):
            e, beta, h = eta[t], BETA[t], Z[t, 0]
            m = None if masks is None else masks[t]
            dn = masked(dh, m)
            dpre = DPRE[:, t]
            if self.paper:
                dbeta, dc, dwu = dpre[:, :D], dpre[:, D:2 * D], dpre[:, 2 * D:]
                dz = dn
            else:
                dwu, dc, dbeta = dpre[:, :D], dpre[:, D:2 * D], dpre[:, 2 * D:]
                dz = torch.mul(dn, beta, out=DZv[K - 1])  # h_t = h + beta (z_K - h)
                gbeta = dn * (Z[t, K] - h)
                direct = dn - dz  # (1 - beta) dh_t
            for k in reversed(range(K)):
                q = Q[t, k]
                if self.paper:  # z_{k+1} = z_k + eta beta q_k
                    tq = torch.mul(dz, beta, out=TMPv[k])  # dL/dq / eta
                    if k == K - 1:
                        gbeta = torch.mul(dz, q).mul_(c(e[k]))
                    else:
                        gbeta.addcmul_(dz, q, value=e[k])
                else:  # z_{k+1} = (1 - eta) z_k + eta q_k
                    tq = dz
                da = act_bwd(tq, P[t, k], out=DAv[k])
                if k == K - 1:
                    torch.mul(tq, c(e[k]), out=dc)
                    torch.mul(da, c(e[k]), out=dwu)
                else:
                    dc.add_(tq, alpha=e[k])
                    dwu.add_(da, alpha=e[k])
                nxt = DZv[k - 1] if k > 0 else None
                if self.paper:  # dz_k = dz - eta tq + eta U^T da
                    dz = U.mtv(da, add=torch.add(dz, tq, alpha=-e[k]), alpha=e[k], out=nxt,
                               aux_out=Yv[k])
                else:  # dz_k = (1 - 2 eta) dz + eta U^T da
                    dz = U.mtv(da, add=dz, beta=1.0 - 2.0 * e[k], alpha=e[k], out=nxt,
                               aux_out=Yv[k])
            _SIGMOID_BWD(gbeta, beta, grad_input=dbeta)
            if self.paper:
                dprev = self.pre.mtv(dpre, dz, h)  # z_0 = h
                torch.linalg.vecdot(TMP.view(K, -1), Q[t].view(K, -1), out=r1[t])
                r2[t] = 0.0
            else:  # c = B2 h + .. - h
                dprev = self.pre.mtv(dpre, dz.add_(direct).sub_(dc), h)
                torch.linalg.vecdot(DZ.view(K, -1), Q[t].view(K, -1), out=r1[t])
                torch.linalg.vecdot(DZ.view(K, -1), Z[t, :K].reshape(K, -1), out=r2[t])
            dh = dprev if m is None else torch.where(m, dprev, dh)
            DA.mul_(e_tk[t])
            if Y is not None:
                Y.mul_(e_tk[t])
            acc.add(DA.view(1, K * B, D), Z[t, :K].reshape(1, K * B, D),
                    None if X is None else X[t].view(1, K * B, -1),
                    None if Y is None else Y.view(1, K * B, -1))
        saved.release()
        d_eta = step_size_grad(self.eta, r1 - r2)
        return (pad_features(DPRE, F), dh,
                [*self.pre.result(Z), *acc.result()[0], d_eta])
