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
from ._fast import (
    Consts,
    FastLoop,
    GradAcc,
    MapOps,
    Saved,
    act_backward,
    act_inplace,
    masked,
)
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

    def fast_loop(self):
        return _FastRNNLoop(self)


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

    def fast_loop(self):
        return _FastGRNNLoop(self)


def _aux(op: MapOps, T: int, B: int, transpose: bool = False):
    r = op.aux_width(transpose)
    return None if r is None else (T, B, r)


class _FastRNNLoop(FastLoop):
    """:meth:`FastRNN.step` over a whole sequence, differentiated by hand (see :mod:`._fast`):
    ``p = phi(U h + w)``, ``h <- sigma(beta) h + sigma(alpha) p``. Saved: states, ``p``."""

    def __init__(self, cell: FastRNN):
        self.act, self.U = cell.hparams["activation"], MapOps(cell.U)
        self.alpha, self.beta = cell.alpha, cell.beta
        self.params = [*self.U.params, cell.alpha, cell.beta]

    def forward(self, u, h, masks, need_grad):
        B, T, D = u.shape
        phi, U = act_inplace(self.act), self.U
        sa, sb = torch.sigmoid(self.alpha).item(), torch.sigmoid(self.beta).item()
        us, c = u.transpose(0, 1).unbind(0), Consts(u)
        saved = None
        if need_grad:
            saved = Saved(u, H=(T, B, D), P=(T, B, D), X=_aux(U, T, B))
            H, P, X = (saved.flat(n) for n in ("H", "P", "X"))
            saved.info = (sa, sb)
        for t in range(T):
            if need_grad:
                h = H[t].copy_(h)
                p = phi(U.mv(h, add=us[t], out=P[t], aux_out=X[t]))
            else:
                p = phi(U.mv(h, add=us[t]))
            hn = torch.add(torch.mul(h, c(sb)), p, alpha=sa)
            h = hn if masks is None else torch.where(masks[t], hn, h)
        return h, saved

    def backward(self, saved, dh, masks):
        (sa, sb), (H, P, X) = saved.info, saved.get("H", "P", "X")
        T, B, D = H.shape
        U, act_bwd = self.U, act_backward(self.act)
        DU = H.new_empty(B, T, D)
        r = U.aux_width(transpose=True)
        Y = None if r is None else H.new_empty(T, B, r)
        DG = H.new_empty(T, B, D)
        for t in reversed(range(T)):
            m = None if masks is None else masks[t]
            dn = masked(dh, m, out=DG[t])
            da = act_bwd(dn, P[t], out=DU[:, t])  # / sigma(alpha)
            dprev = U.mtv(da, add=dn, beta=sb, alpha=sa, aux_out=None if Y is None else Y[t])
            dh = dprev if m is None else torch.where(m, dprev, dh)
        saved.release()
        DU.mul_(sa)
        acc = GradAcc([U], T * B, H)
        acc.add(DU.transpose(0, 1).reshape(1, T * B, D), H.view(1, T * B, D),
                None if X is None else X.view(1, T * B, -1),
                None if Y is None else Y.mul_(sa).view(1, T * B, -1))
        gp = torch.dot(DG.view(-1), P.view(-1))  # d h_t / d sigma(alpha) = p
        gh = torch.dot(DG.view(-1), H.view(-1))  # d h_t / d sigma(beta) = h_{t-1}
        return DU, dh, [*acc.result()[0], gp * sa * (1 - sa), gh * sb * (1 - sb)]


class _FastGRNNLoop(FastLoop):
    """:meth:`FastGRNN.step` over a whole sequence, differentiated by hand (see :mod:`._fast`):
    ``a = U h + w``, ``z = sigmoid(a + b_z)``, ``c = phi(a + b_h)``,
    ``h <- (sigma(zeta) (1 - z) + sigma(nu)) c + z h``. Saved: states, ``z``, ``c``."""

    def __init__(self, cell: FastGRNN):
        self.act, self.U = cell.hparams["activation"], MapOps(cell.U)
        self.cell = cell
        self.params = [*self.U.params, cell.b_z, cell.b_h, cell.zeta, cell.nu]

    def forward(self, u, h, masks, need_grad):
        B, T, D = u.shape
        phi, U, cell = act_inplace(self.act), self.U, self.cell
        sz, sn = torch.sigmoid(cell.zeta).item(), torch.sigmoid(cell.nu).item()
        bz, bh = cell.b_z.detach(), cell.b_h.detach()
        us = u.transpose(0, 1).unbind(0)
        saved = None
        if need_grad:
            saved = Saved(u, H=(T, B, D), Z=(T, B, D), C=(T, B, D), X=_aux(U, T, B))
            H, Z, C, X = (saved.flat(n) for n in ("H", "Z", "C", "X"))
            saved.info = (sz, sn)
        for t in range(T):
            if need_grad:
                h = H[t].copy_(h)
            a = U.mv(h, add=us[t], aux_out=X[t] if need_grad else None)
            z = torch.add(a, bz, out=Z[t] if need_grad else None).sigmoid_()
            c = phi(torch.add(a, bh, out=C[t] if need_grad else None))
            coef = torch.mul(z, -sz).add_(sz + sn)  # sigma(zeta) (1 - z) + sigma(nu)
            hn = torch.addcmul(coef.mul_(c), z, h)
            h = hn if masks is None else torch.where(masks[t], hn, h)
        return h, saved

    def backward(self, saved, dh, masks):
        (sz, sn), (H, Z, C, X) = saved.info, saved.get("H", "Z", "C", "X")
        T, B, D = H.shape
        U, act_bwd = self.U, act_backward(self.act)
        DU = H.new_empty(B, T, D)  # dL/da = dL/du
        DZ, DC = H.new_empty(T, B, D), H.new_empty(T, B, D)  # dL/d(a + b_z), dL/d(a + b_h)
        r = U.aux_width(transpose=True)
        Y = None if r is None else H.new_empty(T, B, r)
        gzeta, gnu = [], []
        for t in reversed(range(T)):
            m = None if masks is None else masks[t]
            dn = masked(dh, m)
            z, c, h = Z[t], C[t], H[t]
            dcoef = dn * c
            gzeta.append(torch.dot(dcoef.view(-1), z.view(-1)))  # d/d sigma(zeta): (1 - z) c
            gnu.append(dcoef.sum())
            # dz = dn h - sigma(zeta) dn c;  dc = dn coef
            dz = torch.add(dn * h, dcoef, alpha=-sz)
            torch.ops.aten.sigmoid_backward.grad_input(dz, z, grad_input=DZ[t])
            coef = torch.mul(z, -sz).add_(sz + sn)
            act_bwd(dn * coef, c, out=DC[t])
            da = torch.add(DZ[t], DC[t], out=DU[:, t])
            dprev = U.mtv(da, add=dn * z, aux_out=None if Y is None else Y[t])
            dh = dprev if m is None else torch.where(m, dprev, dh)
        saved.release()
        acc = GradAcc([self.U], T * B, H)
        acc.add(DU.transpose(0, 1).reshape(1, T * B, D), H.view(1, T * B, D),
                None if X is None else X.view(1, T * B, -1),
                None if Y is None else Y.view(1, T * B, -1))
        s_dcoef = torch.stack(gnu).sum()
        g_zeta = s_dcoef - torch.stack(gzeta).sum()  # sum dcoef (1 - z)
        return DU, dh, [*acc.result()[0], DZ.sum((0, 1)), DC.sum((0, 1)),
                        g_zeta * sz * (1 - sz), s_dcoef * sn * (1 - sn)]
