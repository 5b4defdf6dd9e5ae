"""DIRNN and TinyRNN -- Zhang, Wu, Li, Yue & Zhou, "Deep Incremental RNN for Learning Sequential
Data: A Lyapunov Stable Dynamical System" (ICDM 2021), Eq. 5, 8, 9, 10.

L stacked iRNN-style layers, every layer reading the raw input ``x_t``, with learned skips across
depth (gamma) and time (rho). For layer ``l = 1..L`` at step ``t``, K Euler steps from ``g = 0``::

    z_{l,t}(k)   = g_{l,t}(k) + sum_{m<l} gamma_m h_{m,t} + rho_l S_{l,t-1}
    g_{l,t}(k+1) = g_{l,t}(k) + eta_l ( phi(U_l z_{l,t}(k) + W_l x_t + b_l) - alpha_l z_{l,t}(k) )
    h_{l,t}      = g_{l,t}(K),        S_{l,t} = S_{l,t-1} + h_{l,t},   S_{l,0} = 0

and the classifier reads ``z_{L,T} = z_{L,T}(K) = h_{L,T} + sum_{m<L} gamma_m h_{m,T}
+ rho_L S_{L,T-1}`` (Eq. 9).

How the paper is read here (it leaves these to the reader):

* The depth skip ``sum_{m=1}^{l-1} gamma_{m,t} h_{m,t}`` (Eq. 5, 8) is indexed by the *source*
  layer ``m``: ``gamma_m`` weighs layer m's state at the *same* step t wherever it is added (in
  every layer above m). Tied over time (Sec. V), that is one scalar per layer; the paper counts L of
  them ("(2D + 4) L"), although ``gamma_L`` has no layer above it and so never reaches the output
  (its gradient is exactly 0). It is kept so the learnable count is the paper's.
* The time skip ``sum_{n=1}^{t-1} rho_{l,n} h_{l,n}`` sums every earlier *hidden state* ``h`` (not
  ``z``) of the same layer, with one weight ``rho_l`` (tied over n): ``rho_l S_{l,t-1}``, a running
  sum kept in the state (O(1) per step). Unlike iRNN there is no separate ``+ h_{l,t-1}`` term.
* ``eta_{l,t}^k`` and ``alpha_l`` are one scalar per layer (tied over t and k, Sec. V).
* ``z_{L,T}`` in the loss (Eq. 9) is ``z`` at the last Euler step, i.e. with ``g = h_{L,T}``.

State ``(B, (L + 1) D)``: ``[S_1, ..., S_L, z_L]`` (sums up to and including the current step, then
the readout ``z_{L,t}``). Inits (not given in the paper): alpha 1, eta 0.01 (as iRNN), gamma 1,
rho 1 (then ``S`` is a leaky integrator of the layer's drive, bounded for small ``K eta``), b 0.

DIRNN: ``U_l``, ``W_l`` dense by default; low-rank ``U = I + V H`` (iRNN Sec. 3.2) / ``W = W1 W2``
and permutation-diagonal are offered for the search. Size: ``L (|W| + |U| + D + 4)``.

TinyRNN (Sec. IV, Eq. 10): ``U_l = A_l B_l``, ``W_l = C_l D_l`` with learnable diagonals ``A, C``
and fixed random selections ``B`` (a permutation of [D]) and ``D`` ([D] -> [d], every feature used
when d <= D), drawn from the stored ``seed``; ``b_l = 0``. Size exactly ``(2D + 4) L``.
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
    sum_blocks,
)
from ._params import apply_stacked, make_map, map_param_count
from ._registry import register_cell


class _DeepIncremental(Cell):
    """Shared machinery of DIRNN and TinyRNN (see module docstring)."""

    deep = True
    has_steps = True

    def _build(self, L, K, activation, u_kind, u_rank, w_kind, w_rank, bias, eta_init,
               alpha_init, gamma_init, rho_init, seed):
        D, d = self.hidden_size, self.input_size
        self.L, self.K = int(L), int(K)
        if self.L < 1 or self.K < 1:
            raise ValueError("DIRNN needs L >= 1 and K >= 1")
        self.phi = resolve_activation(activation)
        if u_kind == "dense":
            u_std = 0.25 / D**0.5  # spectral norm ~0.5 < alpha (Thm. 3)
        elif u_kind == "lowrank":
            u_std = 0.1 / max(1, u_rank or 1) ** 0.5  # I + V H, as iRNN
        else:
            u_std = None  # permutation-diagonal: U(-1, 1), so ||U|| <= 1 = alpha
        self.U = nn.ModuleList(
            make_map(u_kind, D, D, rank=u_rank, identity_plus=True, seed=seed + 2 * i, std=u_std)
            for i in range(self.L))
        self.W = nn.ModuleList(make_map(w_kind, d, D, rank=w_rank, seed=seed + 2 * i + 1)
                               for i in range(self.L))
        self.b = nn.Parameter(torch.zeros(self.L, D)) if bias else None
        self.alpha = nn.Parameter(torch.full((self.L,), float(alpha_init)))
        self.eta = nn.Parameter(torch.full((self.L,), float(eta_init)))
        self.gamma = nn.Parameter(torch.full((self.L,), float(gamma_init)))
        self.rho = nn.Parameter(torch.full((self.L,), float(rho_init)))

    @staticmethod
    def _count(d, D, L, u_kind, u_rank, w_kind, w_rank, bias):
        per_layer = (map_param_count(u_kind, D, D, u_rank) + map_param_count(w_kind, d, D, w_rank)
                     + (D if bias else 0) + 4)
        return int(L) * per_layer

    @classmethod
    def state_size_for(cls, hidden_size, L=3, **_):
        return (int(L) + 1) * hidden_size

    def readout(self, h):
        return h[:, self.L * self.hidden_size:]  # z_{L,t}

    def prepare(self, x):
        u = apply_stacked(self.W, x)  # (B, T, L*D): W_l x_t + b_l, layer by layer
        return u if self.b is None else u + self.b.reshape(-1)

    def step(self, u_t, state):
        D = self.hidden_size
        sums, z = [], None
        lower = torch.zeros_like(state[:, :D])  # sum_{m<l} gamma_m h_{m,t}
        for i in range(self.L):
            S_prev = state[:, i * D:(i + 1) * D]
            wx = u_t[:, i * D:(i + 1) * D]
            base = lower + self.rho[i] * S_prev
            g = torch.zeros_like(base)
            for _ in range(self.K):
                z = g + base
                g = g + self.eta[i] * (self.phi(self.U[i](z) + wx) - self.alpha[i] * z)
            sums.append(S_prev + g)  # S_{l,t}
            z = g + base  # z_{l,t}(K)
            if i < self.L - 1:  # gamma_L would only feed layers above L: there are none
                lower = lower + self.gamma[i] * g
        return torch.cat([*sums, z], dim=1)

    def fast_loop(self):
        return _DeepLoop(self)

    def gpu_kernel(self):
        from . import _triton

        return _triton._deep


class _DeepLoop(FastLoop):
    """:meth:`_DeepIncremental.step` over a whole sequence, differentiated by hand (see
    :mod:`._fast`).

    Layer l at step t: ``base = lower + rho_l S_l``, K Euler steps ``z = g + base``,
    ``p = phi(U_l z + w_l)``, ``g <- g + eta_l (p - alpha_l z)``; then ``S_l <- S_l + g``,
    ``lower <- lower + gamma_l g`` and, on top, ``z_L = g + base``. Saved: every ``z``, ``p`` and
    ``U_l``'s intermediate (T, L, K, B, .), each layer's final ``g`` and the states entering each
    step. The backward reduces each time step's L x K blocks at once.
    """

    def __init__(self, cell: _DeepIncremental):
        self.L, self.K, self.D = cell.L, cell.K, cell.hidden_size
        self.act = cell.hparams["activation"]
        self.U = [MapOps(m) for m in cell.U]
        self.cell = cell
        self.params = [*(p for ops in self.U for p in ops.params), cell.alpha, cell.eta,
                       cell.gamma, cell.rho]

    def _scalars(self):
        c = self.cell
        return (c.eta.detach().tolist(), c.alpha.detach().tolist(), c.gamma.detach().tolist(),
                c.rho.detach().tolist())

    def forward(self, u, h, masks, need_grad):
        B, T, _ = u.shape
        L, K, D = self.L, self.K, self.D
        phi = act_inplace(self.act)
        eta, alpha, gamma, rho = self._scalars()
        ws = [ut.unbind(1) for ut in u.view(B, T, L, D).unbind(1)]  # w_{l,t}: ws[t][l]
        c = Consts(u)
        saved = None
        if need_grad:
            r = self.U[0].aux_width()
            saved = Saved(u, Z=(T, L, K, B, D), P=(T, L, K, B, D), G=(T, L, B, D),
                          H=(T, B, (L + 1) * D), X=None if r is None else (T, L, K, B, r))
            Z, P, G, X = (saved.flat(n) for n in ("Z", "P", "G", "X"))
            H = saved.get("H")[0]
            saved.info = u.shape
            h = H[0].copy_(h)
        n = 0  # substep (t L + l) K + k
        for t in range(T):
            hn = H[t + 1] if need_grad and t + 1 < T and masks is None else torch.empty_like(h)
            h_l, hn_l = h.view(B, L + 1, D).unbind(1), hn.view(B, L + 1, D).unbind(1)
            lower = None
            for i in range(L):
                U, e, al = self.U[i], eta[i], alpha[i]
                S_prev, w = h_l[i], ws[t][i]
                gout = G[t * L + i] if need_grad else None
                if lower is None:
                    base = torch.mul(S_prev, c(rho[i]), out=Z[n] if need_grad else None)
                else:
                    base = torch.add(lower, S_prev, alpha=rho[i], out=Z[n] if need_grad else None)
                g = None
                for k in range(K):
                    if need_grad:
                        z = base if k == 0 else torch.add(g, base, out=Z[n])
                        a = U.mv(z, add=w, out=P[n], aux_out=X[n])
                    else:
                        z = base if k == 0 else g + base
                        a = U.mv(z, add=w)
                    q = torch.add(phi(a), z, alpha=-al)
                    last = gout if k == K - 1 else None
                    if k == 0:
                        g = torch.mul(q, c(e), out=last)
                    else:
                        g = torch.add(g, q, alpha=e, out=last)
                    n += 1
                torch.add(S_prev, g, out=hn_l[i])  # S_l,t
                if i == L - 1:
                    torch.add(g, base, out=hn_l[L])  # z_L,t
                elif lower is None:
                    lower = torch.mul(g, c(gamma[i]))
                else:
                    lower = lower.add_(g, alpha=gamma[i])
            if masks is not None:  # padded rows keep their state
                hn = torch.where(masks[t], hn, h, out=H[t + 1] if need_grad and t + 1 < T else None)
            h = hn
        return h, saved

    def backward(self, saved, dh, masks):
        (B, T, _), (Z, P, H, X) = saved.info, saved.get("Z", "P", "H", "X")
        Pf, Gf = saved.flat("P"), saved.flat("G")
        L, K, D = self.L, self.K, self.D
        act_bwd = act_backward(self.act)
        eta, alpha, gamma, rho = self._scalars()
        # scratch for one time step (L x K blocks), reused: it stays in cache
        DA, DG = Z.new_empty(L, K, B, D), Z.new_empty(L, K, B, D)  # dL/da (/ eta_l), dL/dg
        r = self.U[0].aux_width(transpose=True)
        Y = None if r is None else Z.new_empty(L, K, B, r)
        DAv, DGv = DA.view(L * K, B, D).unbind(0), DG.view(L * K, B, D).unbind(0)
        Yv = (None,) * (L * K) if Y is None else Y.view(L * K, B, r).unbind(0)
        acc_z, acc_p = Z.new_zeros(L, K, B, D), Z.new_zeros(L, K, B, D)  # sum dg z, dg p
        acc_gamma, acc_rho = Z.new_zeros(L, B, D), Z.new_zeros(L, B, D)
        DU = Z.new_empty(B, T, L, D)  # dL/dw / eta_l, in the layout of u
        acc = GradAcc(self.U, K * B, Z)
        for t in reversed(range(T)):
            m = None if masks is None else masks[t]
            dn = masked(dh, m)  # into the new state [S_1..S_L, z_L]
            dprev = torch.empty_like(dn)
            dn_l, dprev_l = dn.view(B, L + 1, D).unbind(1), dprev.view(B, L + 1, D).unbind(1)
            H_l = H[t].view(B, L + 1, D).unbind(1)
            dlower = None  # dL/d lower_{l+1}
            for i in reversed(range(L)):
                U, e, al = self.U[i], eta[i], alpha[i]
                dS = dn_l[i]
                j = i * K + K - 1
                if i == L - 1:
                    dzL = dn_l[L]
                    dg = torch.add(dS, dzL, out=DGv[j])
                else:
                    acc_gamma[i].addcmul_(dlower, Gf[t * L + i])
                    dg = torch.add(dS, dlower, alpha=gamma[i], out=DGv[j])
                dbase = None
                for k in reversed(range(K)):
                    j = i * K + k
                    da = act_bwd(dg, Pf[t * L * K + j], out=DAv[j])
                    dz = U.mtv(da, add=dg, beta=-e * al, alpha=e, aux_out=Yv[j])
                    if k > 0:
                        dg = torch.add(dg, dz, out=DGv[j - 1])
                    dbase = dz if dbase is None else dbase.add_(dz)
                if i == L - 1:
                    dbase.add_(dzL)
                acc_rho[i].addcmul_(dbase, H_l[i])
                torch.add(dS, dbase, alpha=rho[i], out=dprev_l[i])
                dlower = dbase if dlower is None else dbase.add_(dlower)
            dprev_l[L].zero_()  # z_L is read, never carried
            dh = dprev if m is None else torch.where(m, dprev, dh)
            acc_z.addcmul_(DG, Z[t])
            acc_p.addcmul_(DG, P[t])
            sum_blocks(DA, 1, out=DU[:, t].transpose(0, 1))  # w_l enters every Euler step
            acc.add(DA.view(L, K * B, D), Z[t].view(L, K * B, D),
                    None if X is None else X[t].view(L, K * B, -1),
                    None if Y is None else Y.view(L, K * B, -1))
        saved.release()
        ev = torch.tensor(eta, dtype=Z.dtype, device=Z.device)
        du = DU.mul_(ev.view(1, 1, L, 1)).view(B, T, L * D)
        sz, sp = acc_z.sum((1, 2, 3)), acc_p.sum((1, 2, 3))
        d_alpha = -ev * sz
        d_eta = sp - self.cell.alpha.detach() * sz
        dU = [g for gs in acc.result(eta) for g in gs]
        return du, dh, [*dU, d_alpha, d_eta, acc_gamma.sum((1, 2)), acc_rho.sum((1, 2))]


@register_cell("dirnn")
class DIRNN(_DeepIncremental):
    weight_kinds = ("dense", "lowrank", "permdiag")

    def __init__(self, input_size: int, hidden_size: int, L: int = 3, K: int = 3,
                 activation: str = "relu", u_kind: str = "dense", u_rank: int | None = None,
                 w_kind: str = "dense", w_rank: int | None = None, eta_init: float = 0.01,
                 alpha_init: float = 1.0, gamma_init: float = 1.0, rho_init: float = 1.0,
                 seed: int = 0):
        u_rank = u_rank if u_kind == "lowrank" else None
        w_rank = w_rank if w_kind == "lowrank" else None
        super().__init__(input_size, hidden_size, L=L, K=K, activation=activation,
                         u_kind=u_kind, u_rank=u_rank, w_kind=w_kind, w_rank=w_rank,
                         eta_init=eta_init, alpha_init=alpha_init, gamma_init=gamma_init,
                         rho_init=rho_init, seed=seed)
        self._build(L, K, activation, u_kind, u_rank, w_kind, w_rank, True, eta_init,
                    alpha_init, gamma_init, rho_init, seed)

    @classmethod
    def count_params(cls, input_size, hidden_size, L=3, u_kind="dense", u_rank=None,
                     w_kind="dense", w_rank=None, **_):
        return cls._count(input_size, hidden_size, L, u_kind, u_rank, w_kind, w_rank, True)

    @classmethod
    def example_hparams(cls):
        return [
            {"L": 2, "K": 1},
            {"L": 3, "K": 2, "u_kind": "lowrank", "u_rank": 2, "w_kind": "lowrank", "w_rank": 2},
            {"L": 2, "K": 3, "u_kind": "permdiag", "w_kind": "permdiag", "activation": "tanh"},
            {"L": 1, "K": 2, "u_kind": "dense", "w_kind": "permdiag", "seed": 5},
        ]


@register_cell("tinyrnn")
class TinyRNN(_DeepIncremental):
    weight_kinds = ("permdiag",)

    def __init__(self, input_size: int, hidden_size: int, L: int = 3, K: int = 3,
                 activation: str = "relu", eta_init: float = 0.01, alpha_init: float = 1.0,
                 gamma_init: float = 1.0, rho_init: float = 1.0, seed: int = 0):
        super().__init__(input_size, hidden_size, L=L, K=K, activation=activation,
                         eta_init=eta_init, alpha_init=alpha_init, gamma_init=gamma_init,
                         rho_init=rho_init, seed=seed)
        self._build(L, K, activation, "permdiag", None, "permdiag", None, False, eta_init,
                    alpha_init, gamma_init, rho_init, seed)

    @classmethod
    def count_params(cls, input_size, hidden_size, L=3, **_):
        return cls._count(input_size, hidden_size, L, "permdiag", None, "permdiag", None, False)

    @classmethod
    def example_hparams(cls):
        return [{"L": 2, "K": 1}, {"L": 3, "K": 3, "seed": 11}, {"L": 1, "K": 2}]
