"""The search's opening trials: strong configurations of a few cell families, tried first.

A 16-trial search over eleven cell families starts with a handful of random trials, and TPE then
concentrates on the family that scored best among them; a family that the random start missed or
drew badly (a tiny model, a poor learning rate) is rarely tried again. On HAR-2 that decided the
result: three all-cells ensemble searches scored 97.31 ± 0.40 % on test, and the same seeds score
97.76 ± 0.28 % with the opening (``benchmarks/RESULTS.md``, "Opening trials"). So a fresh study is
seeded with an *opening*: one trial per family of :data:`PORTFOLIO`, in order, each at the largest
hidden size the budget allows (``size_frac`` = 1) with settings measured well on the built-in
benchmarks; every other hyperparameter is left to the sampler. They count as the sampler's first
trials, and the search goes on from them as from any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._space import _completion, _fits, get_family

__all__ = ["PORTFOLIO", "OPENING_LR", "OPENING_BATCH", "OPENING_ROTATE", "opening_count",
           "opening_trials"]

#: cell families in the order they open a search, each with the hyperparameters fixed for its
#: opening trial: the cells that won searches in ``benchmarks/RESULTS.md`` (GRU on HAR-2/HAR-6,
#: TARNN on HAR-2 8 KiB and DSA-19, DIRNN and ERNN in ensemble searches), with the settings of
#: their best measured trials
PORTFOLIO: tuple[tuple[str, dict[str, Any]], ...] = (
    ("gru", {}),
    ("tarnn", {"K": 2, "variant": "code", "u_kind": "dense", "w_kind": "dense",
               "activation": "relu"}),
    ("dirnn", {"L": 4, "K": 1, "u_kind": "dense", "w_kind": "dense", "activation": "relu"}),
    ("ernn", {"K": 2}),
    ("fastgrnn", {}),
)
#: learning rate and batch size of every opening trial (the GRU-only HAR-2 searches' choices)
OPENING_LR = 1e-2
OPENING_BATCH = 64
#: rotation of x/y/z triplets in the opening trials, when rotation is searched (the best fixed
#: GRU and TARNN settings measured on HAR-2 used 30-45 degrees)
OPENING_ROTATE = 30


#: the opening trials read data of at most this many channels through a convolution front end
#: of this many filters: one value per step tells a recurrent cell little about local shape,
#: while several sensor channels already give its input projection something to mix
OPENING_CONV_CHANNELS = 3
OPENING_CONV = 16


def opening_count(trials: int) -> int:
    """How many opening trials a search of ``trials`` trials gets: a fifth, at least one."""
    return max(1, trials // 5)


def opening_trials(cells: Sequence[str], d: int, C: int, budget: int, bpp: int, trials: int,
                   rotate: bool) -> list[dict[str, Any]]:
    """The Optuna parameters of the opening trials of a search over ``cells`` (the portfolio
    families among them, at most :func:`opening_count`). A family's fixed hyperparameters are
    kept only if they fit the budget together (else the sampler draws them); ``rotate``: the
    search draws ``rotate_deg``."""
    out = []
    for cell, fixed in PORTFOLIO:
        if cell not in cells:
            continue
        fam = get_family(cell)
        if not _fits(fam, d, C, _completion(fam, dict(fixed), 0), budget, bpp):
            fixed = {}
        params = {"cell": cell, **{f"{cell}.{k}": v for k, v in fixed.items()},
                  "size_frac": 1.0, "lr": OPENING_LR, "batch_size": OPENING_BATCH,
                  "conv": OPENING_CONV if d <= OPENING_CONV_CHANNELS else 0}
        if rotate:
            params["rotate_deg"] = OPENING_ROTATE
        out.append(params)
        if len(out) == opening_count(trials):
            break
    return out
