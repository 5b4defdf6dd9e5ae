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
    return Family("irnn", (K5, *_u(), *_w(), ACT))


@register_family
def gru() -> Family:
    return Family("gru", ())


@register_family
def lstm() -> Family:
    return Family("lstm", ())


@register_family
def rnn() -> Family:
    return Family("rnn", ())
