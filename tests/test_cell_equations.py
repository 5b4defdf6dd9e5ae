"""Every cell against a literal, slow transcription of its equations in CELLS.md.

Each reference below is written from the spec, not from the implementation: plain loops over
series, time steps, Euler/Newton steps and layers, explicit matrices from the weight maps'
``.matrix()``, one series at a time (running to its own length). It never calls the cell's
``prepare``/``step``. All parameters are re-drawn at random first (so tied scalars such as DIRNN's
per-layer gamma/rho/eta/alpha differ, and an index mix-up shows), then the fast implementation is
compared on tiny float64 inputs, for every example setting of every cell (each weight kind, several
K, L) and two hidden sizes (below and above the input width).
"""

from __future__ import annotations

import pytest
import torch

from seqeq.cells import create_cell, get_cell_class, list_cells

D_IN = 4
ACT = {
    "relu": lambda v: torch.clamp(v, min=0.0),
    "tanh": torch.tanh,
    "sigmoid": lambda v: 1.0 / (1.0 + torch.exp(-v)),
}
sig = ACT["sigmoid"]


def mat(m):
    return m.matrix().detach()


def P(t):
    return t.detach()


def eta_at(eta, k, t):
    """eta_k (per step) or eta_{k,t} (per step and timestep)."""
    return eta[k] if eta.dim() == 1 else eta[k, t]


# ---- references: one series xs (T, d) -> the readout the classifier sees --------------------
def ref_irnn(cell, xs):
    hp, D = cell.hparams, cell.hidden_size
    phi = ACT[hp.get("activation", "relu")]
    U, W, b, alpha, eta = mat(cell.U), mat(cell.W), P(cell.b), P(cell.alpha), P(cell.eta)
    sign = hp.get("h_sign", 1)  # Eq. 3: g(t) +- h_{k-1}; Eq. 5 writes +
    h = torch.zeros(D, dtype=xs.dtype)
    for t in range(xs.shape[0]):
        g = torch.zeros(D, dtype=xs.dtype)  # g_0 = 0
        for i in range(cell.K):
            s = g + h if sign == 1 else g - h
            g = g + eta_at(eta, i, t) * (phi(U @ s + W @ xs[t] + b) - alpha * s)
        h = g  # h_t = g_K
    return h


def ref_dirnn(cell, xs):
    """Eq. 8 literally: the time skip re-sums every earlier h_{l,n}; the depth skip sums gamma_m
    h_{m,t} over the layers m below l; the classifier reads z_{L,T} (Eq. 9)."""
    hp, D, L, K, T = cell.hparams, cell.hidden_size, cell.L, cell.K, xs.shape[0]
    phi = ACT[hp.get("activation", "relu")]
    gamma, rho, eta, alpha = P(cell.gamma), P(cell.rho), P(cell.eta), P(cell.alpha)
    zero = torch.zeros(D, dtype=xs.dtype)
    h = [[None] * T for _ in range(L)]  # h[l][t]

    def skip(l, t):
        s = zero.clone()
        for m in range(l):
            s = s + gamma[m] * h[m][t]
        past = zero.clone()
        for n in range(t):
            past = past + h[l][n]
        return s + rho[l] * past

    for t in range(T):
        for l in range(L):
            U, W = mat(cell.U[l]), mat(cell.W[l])
            b = P(cell.b[l]) if cell.b is not None else zero  # TinyRNN: b_l = 0
            g = zero.clone()
            for _k in range(K):
                z = g + skip(l, t)
                g = g + eta[l] * (phi(U @ z + W @ xs[t] + b) - alpha[l] * z)
            h[l][t] = g
    return h[L - 1][T - 1] + skip(L - 1, T - 1)  # z_{L,T} = g(K) + skips


def ref_tinyrnn(cell, xs):
    # TinyRNN is DIRNN with U_l = A_l B_l, W_l = C_l D_l (checked in test_cells) and b_l = 0
    assert cell.b is None
    return ref_dirnn(cell, xs)


def ref_tarnn(cell, xs):
    hp, D = cell.hparams, cell.hidden_size
    phi = ACT[hp.get("activation", "relu")]
    eta = P(cell.eta)
    h = torch.zeros(D, dtype=xs.dtype)
    if hp["variant"] == "paper":
        Us, Wx, bb = mat(cell.Us), mat(cell.Wx), P(cell.b_beta)
        B1, B2, U, W1, W2 = mat(cell.B1), mat(cell.B2), mat(cell.U), mat(cell.W1), mat(cell.W2)
        B = torch.cat([B1, B2], dim=1)  # B u_t with u_t = [x_t; h_{t-1}]
        Wu = torch.cat([W1, W2], dim=1)
        A = -torch.eye(D, dtype=xs.dtype)
        for t in range(xs.shape[0]):
            u = torch.cat([xs[t], h])
            beta = sig(Us @ h + Wx @ xs[t] + bb)
            z = h  # z_0 = h_{t-1}
            for k in range(cell.K):
                z = z + eta_at(eta, k, t) * beta * (A @ z + B @ u + phi(U @ z + Wu @ u))
            h = z
        return h
    # the authors' code (pytorch/tarnn.py, b_variant=True), line by line
    Ug, Wg, bg = mat(cell.Ug), mat(cell.Wg), P(cell.bg)
    U1, U2, W1, W2, b1 = mat(cell.U1), mat(cell.U2), mat(cell.W1), mat(cell.W2), P(cell.b1)
    B1, B2 = mat(cell.B1), mat(cell.B2)
    old_input = None
    for t in range(xs.shape[0]):
        inp = xs[t]
        if old_input is None:
            old_input = inp
        old_h = h
        hg = sig(Ug @ old_h + Wg @ inp + bg)
        arg = U2 @ old_h + W1 @ inp + W2 @ old_input + b1
        bx = B1 @ inp
        bh = B2 @ h
        for k in range(cell.K):
            at1 = eta_at(eta, k, t)
            h = (1 - at1) * h + at1 * (phi(U1 @ h + arg) - h - old_h + bx + bh)
        h = (1 - hg) * old_h + hg * h
        old_input = inp
    return h


def ref_ernn(cell, xs):
    hp, D = cell.hparams, cell.hidden_size
    phi = ACT[hp.get("activation", "relu")]
    U, V, W, b, eta = mat(cell.U), mat(cell.V), mat(cell.W), P(cell.b), P(cell.eta)
    I = torch.eye(D, dtype=xs.dtype)
    h = torch.zeros(D, dtype=xs.dtype)
    for t in range(xs.shape[0]):
        hk = h  # h^(0) = h_{t-1}
        for k in range(cell.K):
            e = eta_at(eta, k, t)
            hk = (1 - e) * hk + e * phi((I + U) @ (V @ hk + W @ xs[t] + b))
        h = hk
    return h


def ref_srnn(cell, xs):
    hp, D = cell.hparams, cell.hidden_size
    phi = ACT[hp.get("activation", "relu")]
    Wp = torch.zeros(D, D, dtype=xs.dtype)  # cyclic shift: (W_p h)_i = h_{i-1}
    for i in range(D):
        Wp[i, (i - 1) % D] = 1.0
    h = torch.zeros(D, dtype=xs.dtype)
    for t in range(xs.shape[0]):
        v = xs[t]
        for layer in cell.fr:  # f_r: Linear, ReLU, ..., Linear
            if isinstance(layer, torch.nn.Linear):
                v = P(layer.weight) @ v + P(layer.bias)
            else:
                v = ACT["relu"](v)
        b = v if hp["no_gate"] else v * sig(mat(cell.Ws) @ xs[t] + P(cell.bs))
        h = phi(Wp @ h + b)
    return h


def ref_fastrnn(cell, xs):
    hp, D = cell.hparams, cell.hidden_size
    phi = ACT[hp.get("activation", "tanh")]
    W, U, b = mat(cell.W), mat(cell.U), P(cell.b)
    h = torch.zeros(D, dtype=xs.dtype)
    for t in range(xs.shape[0]):
        h = sig(P(cell.beta)) * h + sig(P(cell.alpha)) * phi(W @ xs[t] + U @ h + b)
    return h


def ref_fastgrnn(cell, xs):
    hp, D = cell.hparams, cell.hidden_size
    phi = ACT[hp.get("activation", "tanh")]
    W, U, bz, bh = mat(cell.W), mat(cell.U), P(cell.b_z), P(cell.b_h)
    h = torch.zeros(D, dtype=xs.dtype)
    for t in range(xs.shape[0]):
        z = sig(W @ xs[t] + U @ h + bz)
        c = phi(W @ xs[t] + U @ h + bh)
        h = (sig(P(cell.zeta)) * (1 - z) + sig(P(cell.nu))) * c + z * h
    return h


def _torch_weights(cell, n):
    r = cell.rnn
    D = cell.hidden_size
    Wi, Wh = P(r.weight_ih_l0), P(r.weight_hh_l0)
    bi, bh = P(r.bias_ih_l0), P(r.bias_hh_l0)
    return ([Wi[j * D:(j + 1) * D] for j in range(n)], [Wh[j * D:(j + 1) * D] for j in range(n)],
            [bi[j * D:(j + 1) * D] for j in range(n)], [bh[j * D:(j + 1) * D] for j in range(n)])


def ref_gru(cell, xs):  # torch.nn.GRU's documented equations
    (Wir, Wiz, Win), (Whr, Whz, Whn), (bir, biz, bin_), (bhr, bhz, bhn) = _torch_weights(cell, 3)
    h = torch.zeros(cell.hidden_size, dtype=xs.dtype)
    for x in xs:
        r = sig(Wir @ x + bir + Whr @ h + bhr)
        z = sig(Wiz @ x + biz + Whz @ h + bhz)
        n = torch.tanh(Win @ x + bin_ + r * (Whn @ h + bhn))
        h = (1 - z) * n + z * h
    return h


def ref_lstm(cell, xs):  # torch.nn.LSTM's documented equations
    (Wii, Wif, Wig, Wio), (Whi, Whf, Whg, Who), bi, bh = _torch_weights(cell, 4)
    h = torch.zeros(cell.hidden_size, dtype=xs.dtype)
    c = torch.zeros(cell.hidden_size, dtype=xs.dtype)
    for x in xs:
        i = sig(Wii @ x + bi[0] + Whi @ h + bh[0])
        f = sig(Wif @ x + bi[1] + Whf @ h + bh[1])
        g = torch.tanh(Wig @ x + bi[2] + Whg @ h + bh[2])
        o = sig(Wio @ x + bi[3] + Who @ h + bh[3])
        c = f * c + i * g
        h = o * torch.tanh(c)
    return h


def ref_rnn(cell, xs):
    (Wi,), (Wh,), (bi,), (bh,) = _torch_weights(cell, 1)
    h = torch.zeros(cell.hidden_size, dtype=xs.dtype)
    for x in xs:
        h = torch.tanh(Wi @ x + bi + Wh @ h + bh)
    return h


REFERENCES = {
    "irnn": ref_irnn, "dirnn": ref_dirnn, "tinyrnn": ref_tinyrnn, "tarnn": ref_tarnn,
    "ernn": ref_ernn, "srnn": ref_srnn, "fastrnn": ref_fastrnn, "fastgrnn": ref_fastgrnn,
    "gru": ref_gru, "lstm": ref_lstm, "rnn": ref_rnn,
}

CASES = [(name, hp) for name in list_cells() for hp in get_cell_class(name).example_hparams()]
IDS = [f"{name}-{i}" for name in list_cells()
       for i, _ in enumerate(get_cell_class(name).example_hparams())]


def randomised(name, hp, D, seed=0):
    torch.manual_seed(seed)
    cell = create_cell(name, D_IN, D, **hp).double()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return cell


def test_every_cell_has_a_reference():
    assert set(list_cells()) <= set(REFERENCES), set(list_cells()) - set(REFERENCES)


@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
@pytest.mark.parametrize("D", [3, 6])
def test_matches_transcription(name, hp, D):
    cell = randomised(name, hp, D)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 6, D_IN, generator=g, dtype=torch.float64)
    lengths = [6, 4, 1]
    with torch.no_grad():
        fast = cell.forward_sequence(x, torch.tensor(lengths))
        ref = torch.stack([REFERENCES[name](cell, x[b, :n]) for b, n in enumerate(lengths)])
    assert ref.abs().max() > 1e-3  # the comparison is not between two near-zero vectors
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_tarnn_regulariser(variant):
    cell = randomised("tarnn", {"K": 2, "variant": variant, "reg_gamma1": 0.3,
                                "reg_gamma2": 0.7, "u_kind": "lowrank", "u_rank": 2}, 5)
    I = torch.eye(5, dtype=torch.float64)
    if variant == "paper":  # gamma1 ||A + B2||^2 + gamma2 ||U + W2||^2, A = -I
        a, b = -I + mat(cell.B2), mat(cell.U) + mat(cell.W2)
    else:
        a, b = mat(cell.B2) - I, mat(cell.U1) + mat(cell.U2)
    expected = 0.3 * torch.linalg.matrix_norm(a) ** 2 + 0.7 * torch.linalg.matrix_norm(b) ** 2
    torch.testing.assert_close(cell.regularization().detach(), expected)
