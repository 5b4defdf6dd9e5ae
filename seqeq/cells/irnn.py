"""iRNN / SiRNN -- Kag, Zhang & Saligrama, "RNNs Incrementally Evolving on an Equilibrium
Manifold: A Panacea for Vanishing and Exploding Gradients?" (ICLR 2020), Eq. 5, 6, 8.

K Euler steps toward the equilibrium of the incremental ODE, from ``g_0 = 0``::

    for i in 1..K:  g_i = g_{i-1} + eta_i * ( phi(U (g_{i-1} + h_{t-1}) + W x_t + b)
                                              - alpha * (g_{i-1} + h_{t-1}) )
    h_t = g_K

SiRNN is K = 1. ``h_sign=-1`` takes the other sign Eq. 3 allows (``g - h_{t-1}`` wherever
``g + h_{t-1}`` stands): the paper's Remark after Theorem 1 notes it turns the equilibrium's
``dh_t/dh_{t-1} = -I`` into ``+I``, i.e. ``h_t = h_{t-1} + s*(x_t)`` accumulates over time instead
of alternating in sign. The paper does not say which sign its experiments used; Eq. 5 (our default)
shows ``+``. On HAR-2 ``-1`` is the better one (``benchmarks/RESULTS.md``, issue 3).

``eta`` is one learnable scalar per Euler step (init 0.01, as in the paper), or, with
``n_timesteps=T0``, one per (step, timestep) as in the authors' code (fixed-length data only;
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
from ._fast import (
    Consts,
    FastLoop,
    GradAcc,
    MapOps,
    Saved,
    act_backward,
    act_inplace,
    masked,
    pad_features,
    step_size_grad,
    step_sizes,
)
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
                 seed: int = 0, n_timesteps: int | None = None, h_sign: int = 1):
        if h_sign not in (1, -1):
            raise ValueError(f"h_sign must be 1 or -1, got {h_sign!r}")
        u_rank = u_rank if u_kind == "lowrank" else None
        w_rank = w_rank if w_kind == "lowrank" else None
        super().__init__(input_size, hidden_size, K=K, u_kind=u_kind, u_rank=u_rank,
                         w_kind=w_kind, w_rank=w_rank, activation=activation,
                         eta_init=eta_init, alpha_init=alpha_init, seed=seed,
                         n_timesteps=n_timesteps, h_sign=h_sign)
        D, d = hidden_size, input_size
        self.K = int(K)
        self.h_sign = float(h_sign)
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
            {"K": 3, "u_kind": "lowrank", "u_rank": 2, "h_sign": -1},
            {"K": 1, "u_kind": "dense", "w_kind": "permdiag", "h_sign": -1, "n_timesteps": 9},
        ]

    def prepare(self, x):
        return append_eta(self.W(x) + self.b, self.eta, self.n_timesteps)  # (B, T, D[+K])

    def step(self, u_t, h):
        u_t, eta = split_eta(u_t, self.eta, self.n_timesteps)
        g = torch.zeros_like(h)
        hs = h if self.h_sign > 0 else -h
        for i in range(self.K):
            s = g + hs
            g = g + eta[i] * (self.phi(self.U(s) + u_t) - self.alpha * s)
        return g

    def fast_loop(self):
        return _IRNNLoop(self)

    def gpu_kernel(self):
        # the kernel implements Eq. 5's sign; h_sign=-1 runs the fast loop
        from . import _triton

        return _triton._irnn if self.hparams.get("h_sign", 1) == 1 else None


class _IRNNLoop(FastLoop):
    """:meth:`IRNN.step` over a whole sequence, differentiated by hand (see :mod:`._fast`).

    The loop carries ``hs = h_sign * h``. Per Euler step: ``s = g + hs`` (``s = hs`` at i = 1),
    ``a = U s + w``, ``p = phi(a)``, ``g <- g + eta (p - alpha s)``. Saved: every ``s``, ``p``
    (T, K, B, D) and ``U``'s intermediate. The backward reduces each time step's K blocks at once
    (step-size dot products, ``U``'s gradients, the input gradient).
    """

    def __init__(self, cell: IRNN):
        self.K, self.D, self.act = cell.K, cell.hidden_size, cell.hparams["activation"]
        self.neg = cell.h_sign < 0
        self.U = MapOps(cell.U)
        self.eta, self.alpha = cell.eta, cell.alpha
        self.params = [*self.U.params, cell.alpha, cell.eta]

    def forward(self, u, h, masks, need_grad):
        B, T, _ = u.shape
        K, D, U = self.K, self.D, self.U
        phi = act_inplace(self.act)
        eta, alpha = step_sizes(self.eta, T), float(self.alpha)
        ws = u[..., :D].transpose(0, 1).unbind(0)
        c = Consts(u)
        saved = None
        if need_grad:
            r = U.aux_width()
            saved = Saved(u, S=(T, K, B, D), P=(T, K, B, D), X=None if r is None else (T, K, B, r))
            S, P, X = (saved.flat(n) for n in ("S", "P", "X"))
            saved.info = (eta, alpha, u.shape)
        h = -h if self.neg else h  # hs from here on
        if need_grad:
            h = S[0].copy_(h)
        n = 0  # substep t * K + i
        for t in range(T):
            w, e = ws[t], eta[t]
            g = None
            for i in range(K):
                if need_grad:
                    s = h if i == 0 else torch.add(g, h, out=S[n])
                    a = U.mv(s, add=w, out=P[n], aux_out=X[n])
                else:
                    s = h if i == 0 else g + h
                    a = U.mv(s, add=w)
                p = phi(a)
                q = torch.add(p, s, alpha=-alpha)
                g = q.mul_(c(e[0])) if i == 0 else g.add_(q, alpha=e[i])
                n += 1
            nxt = S[n] if need_grad and t + 1 < T else None
            if self.neg:
                g = g.neg_()
            if masks is not None:  # padded rows keep their state
                h = torch.where(masks[t], g, h, out=nxt)
            else:
                h = g if nxt is None else nxt.copy_(g)
        return (-h if self.neg else h), saved

    def backward(self, saved, dh, masks):
        (eta, alpha, (B, T, F)), (S, P, X) = saved.info, saved.get("S", "P", "X")
        K, D, U = self.K, self.D, self.U
        act_bwd = act_backward(self.act)
        e_tk = torch.tensor(eta, dtype=S.dtype, device=S.device).view(T, K, 1, 1)
        # scratch for one time step, reused (it stays in cache)
        DA, DG = S.new_empty(K, B, D), S.new_empty(K, B, D)  # dL/da_i (/ eta_i), dL/dg_i
        r = U.aux_width(transpose=True)
        Y = None if r is None else S.new_empty(K, B, r)
        DAv, DGv = DA.unbind(0), DG.unbind(0)
        Yv = (None,) * K if Y is None else Y.unbind(0)
        gs, gp = S.new_empty(T, K), S.new_empty(T, K)  # <dg_i, s_i>, <dg_i, p_i>
        DU = S.new_empty(T, B, D)
        acc = GradAcc([U], K * B, S)
        if self.neg:  # dh is dL/dhs from here on
            dh = -dh
        for t in reversed(range(T)):
            e = eta[t]
            m = None if masks is None else masks[t]
            dg = masked(dh, m, out=DGv[K - 1])
            if self.neg:  # hs_t = -g_K
                dg = dg.neg_()
            dsum = None
            for i in reversed(range(K)):
                da = act_bwd(dg, P[t, i], out=DAv[i])
                # ds = eta (U^T da - alpha dg): the gradient of s_i = g_{i-1} + h
                ds = U.mtv(da, add=dg, beta=-e[i] * alpha, alpha=e[i], aux_out=Yv[i])
                if i > 0:
                    dg = torch.add(dg, ds, out=DGv[i - 1])
                dsum = ds if dsum is None else dsum.add_(ds)
            dh = dsum if m is None else torch.where(m, dsum, dh)
            torch.linalg.vecdot(DG.view(K, -1), S[t].view(K, -1), out=gs[t])
            torch.linalg.vecdot(DG.view(K, -1), P[t].view(K, -1), out=gp[t])
            DA.mul_(e_tk[t])  # dL/da_i
            if Y is not None:
                Y.mul_(e_tk[t])
            torch.sum(DA, 0, out=DU[t])  # a_i = U s_i + w for every i
            acc.add(DA.view(1, K * B, D), S[t].view(1, K * B, D),
                    None if X is None else X[t].view(1, K * B, -1),
                    None if Y is None else Y.view(1, K * B, -1))
        saved.release()
        e_tk = e_tk.view(T, K)
        d_alpha = -(e_tk * gs).sum()
        d_eta = step_size_grad(self.eta, gp - alpha * gs)
        dh = -dh if self.neg else dh
        return pad_features(DU.transpose(0, 1), F), dh, [*acc.result()[0], d_alpha, d_eta]
