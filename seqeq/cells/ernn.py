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
from ._fast import (
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
    sum_blocks,
)
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

    def fast_loop(self):
        return _ERNNLoop(self)

    def gpu_kernel(self):
        from . import _triton

        return _triton._ernn


class _ERNNLoop(FastLoop):
    """:meth:`ERNN.step` over a whole sequence, differentiated by hand (see :mod:`._fast`).

    Per Newton step: ``a = V h + w``, ``c = a + U a``, ``p = phi(c)``,
    ``h <- (1 - eta) h + eta p``. Saved: every step's input ``h``, ``a``, ``p`` (T, K, B, D) and
    the maps' intermediates.
    """

    def __init__(self, cell: ERNN):
        self.K, self.D, self.act = cell.K, cell.hidden_size, cell.hparams["activation"]
        self.U, self.V = MapOps(cell.U), MapOps(cell.V)
        self.eta = cell.eta
        self.params = [*self.U.params, *self.V.params, cell.eta]

    def forward(self, u, h, masks, need_grad):
        B, T, _ = u.shape
        K, D, U, V = self.K, self.D, self.U, self.V
        phi = act_inplace(self.act)
        eta = step_sizes(self.eta, T)
        ws = u[..., :D].transpose(0, 1).unbind(0)
        saved = None
        if need_grad:
            ru, rv = U.aux_width(), V.aux_width()
            saved = Saved(u, H=(T, K, B, D), A=(T, K, B, D), P=(T, K, B, D),
                          XU=None if ru is None else (T, K, B, ru),
                          XV=None if rv is None else (T, K, B, rv))
            H, A, P, XU, XV = (saved.flat(n) for n in ("H", "A", "P", "XU", "XV"))
            saved.info = (eta, u.shape)
            h = H[0].copy_(h)
        n = 0  # substep t K + k
        for t in range(T):
            w, e = ws[t], eta[t]
            hk = h
            for k in range(K):
                if need_grad:
                    a = V.mv(hk, add=w, out=A[n], aux_out=XV[n])
                    p = phi(U.mv(a, add=a, out=P[n], aux_out=XU[n]))
                    nxt = H[n + 1] if k < K - 1 or (t + 1 < T and masks is None) else None
                else:
                    a = V.mv(hk, add=w)
                    p = phi(U.mv(a, add=a))
                    nxt = None
                hk = torch.lerp(hk, p, e[k], out=nxt)  # (1 - eta) h + eta p
                n += 1
            if masks is not None:  # padded rows keep their state
                hk = torch.where(masks[t], hk, h, out=H[n] if need_grad and t + 1 < T else None)
            h = hk
        return h, saved

    def backward(self, saved, dh, masks):
        (eta, (B, T, F)), (H, P, XU, XV) = saved.info, saved.get("H", "P", "XU", "XV")
        A = saved.get("A")[0]
        K, D, U, V = self.K, self.D, self.U, self.V
        act_bwd = act_backward(self.act)
        e_tk = torch.tensor(eta, dtype=H.dtype, device=H.device).view(T, K, 1, 1)
        # scratch for one time step, reused (it stays in cache); "/ eta": scaled per step below
        DC, DA, DH = (H.new_empty(K, B, D) for _ in range(3))  # dL/dc, dL/da (/ eta), dL/dh^(k)
        ru, rv = U.aux_width(transpose=True), V.aux_width(transpose=True)
        YU = None if ru is None else H.new_empty(K, B, ru)
        YV = None if rv is None else H.new_empty(K, B, rv)
        DCv, DAv, DHv = DC.unbind(0), DA.unbind(0), DH.unbind(0)
        YUv = (None,) * K if YU is None else YU.unbind(0)
        YVv = (None,) * K if YV is None else YV.unbind(0)
        gh, gp = H.new_empty(T, K), H.new_empty(T, K)  # <dh^(k), h^(k-1)>, <dh^(k), p_k>
        DU = H.new_empty(B, T, D)
        acc_u, acc_v = GradAcc([U], K * B, H), GradAcc([V], K * B, H)
        for t in reversed(range(T)):
            e = eta[t]
            m = None if masks is None else masks[t]
            dk = masked(dh, m, out=DHv[K - 1])
            for k in reversed(range(K)):
                dc = act_bwd(dk, P[t, k], out=DCv[k])  # / eta_k
                da = U.mtv(dc, add=dc, out=DAv[k], aux_out=YUv[k])  # c = a + U a
                # h^(k) = (1 - eta) h^(k-1) + eta p, a = V h^(k-1) + w
                nxt = DHv[k - 1] if k > 0 else None
                dk = V.mtv(da, add=dk, beta=1.0 - e[k], alpha=e[k], out=nxt, aux_out=YVv[k])
            dh = dk if m is None else torch.where(m, dk, dh)
            torch.linalg.vecdot(DH.view(K, -1), H[t].view(K, -1), out=gh[t])
            torch.linalg.vecdot(DH.view(K, -1), P[t].view(K, -1), out=gp[t])
            for blk in (DC, DA, YU, YV):
                if blk is not None:
                    blk.mul_(e_tk[t])
            sum_blocks(DA, 0, out=DU[:, t])  # w enters every Newton step
            acc_u.add(DC.view(1, K * B, D), A[t].view(1, K * B, D),
                      None if XU is None else XU[t].view(1, K * B, -1),
                      None if YU is None else YU.view(1, K * B, -1))
            acc_v.add(DA.view(1, K * B, D), H[t].view(1, K * B, D),
                      None if XV is None else XV[t].view(1, K * B, -1),
                      None if YV is None else YV.view(1, K * B, -1))
        saved.release()
        d_eta = step_size_grad(self.eta, gp - gh)  # d h^(k) / d eta_k = p_k - h^(k-1)
        return (pad_features(DU, F), dh,
                [*acc_u.result()[0], *acc_v.result()[0], d_eta])
