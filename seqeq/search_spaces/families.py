"""One search-space function per cell family.

Each returns a :class:`Family`: the cell's hyperparameter dimensions in sampling order (the hidden
size D is always drawn last, from what the budget leaves). Names follow the cells' constructor
arguments; ranges follow the papers (K 1-5, L 1-6, ReLU default).
"""

from __future__ import annotations

from ._space import Dim, Family, register_family

ACT = Dim("activation", "cat", ("relu", "tanh"))


def _u(kinds=("lowrank", "dense", "permdiag")):
    return (
        Dim("u_kind", "cat", kinds, cheapest="permdiag" if "permdiag" in kinds else kinds[0]),
        Dim("u_rank", "int", low=1, high=16, log=True, when=lambda hp: hp["u_kind"] == "lowrank"),
    )


def _w(kinds=("dense", "lowrank", "permdiag")):
    return (
        Dim("w_kind", "cat", kinds, cheapest="permdiag" if "permdiag" in kinds else kinds[0]),
        Dim("w_rank", "int", low=1, high=8, when=lambda hp: hp["w_kind"] == "lowrank"),
    )


K5 = Dim("K", "int", low=1, high=5)


@register_family
def irnn() -> Family:
    # h_sign: Eq. 3's +-h_{t-1}; -1 (accumulating state) was 3 points better on HAR-2 at K = 5
    return Family("irnn", (K5, Dim("h_sign", "cat", (-1, 1)), *_u(), *_w(), ACT))


@register_family
def gru() -> Family:
    return Family("gru", ())


@register_family
def lstm() -> Family:
    return Family("lstm", ())


@register_family
def rnn() -> Family:
    return Family("rnn", ())


L6 = Dim("L", "int", low=1, high=6)


@register_family
def dirnn() -> Family:
    return Family("dirnn", (L6, K5, *_u(("dense", "lowrank", "permdiag")), *_w(), ACT))


@register_family
def tinyrnn() -> Family:
    return Family("tinyrnn", (L6, K5, ACT))


@register_family
def tarnn() -> Family:
    return Family("tarnn", (K5, Dim("variant", "cat", ("paper", "code")),
                            *_u(("dense", "lowrank", "permdiag")), *_w(), ACT))


@register_family
def ernn() -> Family:
    v = (Dim("v_kind", "cat", ("dense", "lowrank", "permdiag"), cheapest="permdiag"),
         Dim("v_rank", "int", low=1, high=16, log=True, when=lambda hp: hp["v_kind"] == "lowrank"))
    return Family("ernn", (Dim("K", "int", low=1, high=3),
                           *_u(("dense", "lowrank", "permdiag")), *v, *_w(), ACT))


@register_family
def srnn() -> Family:
    return Family("srnn", (Dim("hyper_size", "int", low=8, high=128, log=True),
                           Dim("n_layers", "int", low=1, high=2),
                           Dim("no_gate", "cat", (False, True), cheapest=True)))


@register_family
def fastrnn() -> Family:
    return Family("fastrnn", (*_u(("dense", "lowrank", "permdiag")), *_w(),
                              Dim("activation", "cat", ("tanh", "relu"))))


@register_family
def fastgrnn() -> Family:
    return Family("fastgrnn", (*_u(("dense", "lowrank", "permdiag")), *_w(),
                               Dim("activation", "cat", ("tanh", "relu"))))
