"""Budget-aware search spaces.

Each cell family declares its hyperparameters as a list of :class:`Dim` (one function per family in
:mod:`seqeq.search_spaces.families`). :func:`suggest_spec` turns an Optuna trial into a
:class:`~seqeq.models.ModelSpec` that is *feasible by construction*:

* the model size is computed exactly from hyperparameters (``spec_size_bytes``), before anything is
  built;
* every categorical choice offered is one that still fits the budget with the cheapest completion
  (decided once per study, so the choice lists stay fixed as Optuna requires);
* integer upper bounds (K, L, rank) shrink to what still fits;
* the hidden size D is drawn last, as a fraction ``size_frac`` of the room left between the smallest
  and the largest D that fit -- so D's upper bound follows from every other choice.

No trial is ever proposed over budget. :func:`smallest_size` tells the user the smallest feasible
model when nothing fits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..models import ModelSpec, spec_size_bytes

__all__ = ["Dim", "Family", "register_family", "get_family", "suggest_spec", "smallest_size",
           "feasible_cells", "D_MIN", "D_MAX", "size_of"]

D_MIN = 4
D_MAX = 512


@dataclass(frozen=True)
class Dim:
    """One hyperparameter: ``kind`` is "cat", "int" or "float"."""

    name: str
    kind: str
    choices: tuple = ()
    low: float = 0
    high: float = 0
    log: bool = False
    #: only sampled when this predicate of the hyperparameters chosen so far holds
    when: Callable[[dict], bool] | None = None
    #: cost order for categoricals: cheapest first (used for the minimal completion)
    cheapest: Any = None

    def minimal(self) -> Any:
        if self.kind == "cat":
            return self.cheapest if self.cheapest is not None else self.choices[0]
        return self.low if self.kind == "int" else float(self.low)


@dataclass(frozen=True)
class Family:
    """A cell family's search space: its cells' hyperparameter dims, in sampling order."""

    cell: str
    dims: tuple[Dim, ...]
    #: hyperparameters fixed for this family (e.g. TinyRNN's weight kinds)
    fixed: tuple[tuple[str, Any], ...] = ()
    d_min: int = D_MIN
    #: hidden size must be a multiple of this
    d_step: int = 1


_FAMILIES: dict[str, Family] = {}


def register_family(fn: Callable[[], Family]) -> Callable[[], Family]:
    """Decorator: register the search space of a registered cell (one per cell). A family of an
    unknown cell, or a second family of one cell, is an error at import, not a cell that is
    silently never searched; ``tests/test_search.py`` checks that every cell has a family."""
    from ..cells import list_cells

    fam = fn()
    if fam.cell not in list_cells():
        raise ValueError(f"search family {fn.__name__!r} names cell {fam.cell!r}, which is not "
                         f"registered (cells: {', '.join(list_cells())})")
    if fam.cell in _FAMILIES:
        raise ValueError(f"cell {fam.cell!r} already has a search family")
    _FAMILIES[fam.cell] = fam
    return fn


def get_family(cell: str) -> Family:
    if cell not in _FAMILIES:
        from ..errors import SeqeqError

        raise SeqeqError(f"no search space for cell {cell!r}",
                         f"Search one of: {', '.join(_FAMILIES)}")
    return _FAMILIES[cell]


def families() -> list[str]:
    return list(_FAMILIES)


def size_of(cell: str, d: int, C: int, D: int, kw: dict, bytes_per_param: int = 4) -> int:
    return spec_size_bytes(ModelSpec(cell, d, D, C, kw), bytes_per_param)


def _completion(fam: Family, chosen: dict, start: int) -> dict:
    kw = dict(chosen)
    for dim in fam.dims[start:]:
        if dim.name not in kw and (dim.when is None or dim.when(kw)):
            kw[dim.name] = dim.minimal()
    return kw


def _cell_kwargs(fam: Family, hp: dict) -> dict:
    import inspect

    from ..cells import get_cell_class

    params = inspect.signature(get_cell_class(fam.cell).__init__).parameters
    out = {k: v for k, v in {**dict(fam.fixed), **hp}.items() if k in params}
    return out


def _d_min(fam: Family, kw: dict) -> int:
    ranks = [int(v) for k, v in kw.items() if k.endswith("rank") and v]
    return max([fam.d_min, *ranks])


def _max_d(fam: Family, d: int, C: int, kw: dict, budget: int, bpp: int) -> int:
    """Largest D (multiple of d_step) whose model fits ``budget`` bytes, or 0."""
    lo = _d_min(fam, kw)
    ckw = _cell_kwargs(fam, kw)
    if size_of(fam.cell, d, C, lo, ckw, bpp) > budget:
        return 0
    hi = lo
    while hi < D_MAX and size_of(fam.cell, d, C, min(2 * hi, D_MAX), ckw, bpp) <= budget:
        hi = min(2 * hi, D_MAX)
    top = min(2 * hi, D_MAX)
    while hi < top:  # largest fitting in [hi, top]
        mid = (hi + top + 1) // 2
        if size_of(fam.cell, d, C, mid, ckw, bpp) <= budget:
            hi = mid
        else:
            top = mid - 1
    return hi - (hi % fam.d_step) if fam.d_step > 1 else hi


def _fits(fam, d, C, kw, budget, bpp) -> bool:
    return _max_d(fam, d, C, kw, budget, bpp) >= _d_min(fam, kw)


def smallest_size(cells: Sequence[str], d: int, C: int, bpp: int = 4) -> tuple[int, str]:
    """Smallest model size in bytes over ``cells`` (cheapest hyperparameters, smallest D)."""
    best = None
    for cell in cells:
        fam = get_family(cell)
        kw = _completion(fam, {}, 0)
        s = size_of(cell, d, C, _d_min(fam, kw), _cell_kwargs(fam, kw), bpp)
        if best is None or s < best[0]:
            best = (s, cell)
    return best


def feasible_cells(cells: Sequence[str], d: int, C: int, budget: int, bpp: int = 4) -> list[str]:
    return [c for c in cells if _fits(get_family(c), d, C, _completion(get_family(c), {}, 0),
                                      budget, bpp)]


def suggest_spec(trial, cell: str, d: int, C: int, budget: int, bpp: int = 4) -> ModelSpec:
    """Sample a feasible :class:`ModelSpec` of ``cell`` from ``trial`` (see module docstring)."""
    fam = get_family(cell)
    chosen: dict[str, Any] = {}
    # categoricals first, their choice lists fixed for the study (Optuna needs that): a choice is
    # offered when it fits with everything else at its cheapest. Then the numeric dimensions,
    # whose upper bounds shrink to what still fits given the categoricals.
    dims = sorted(fam.dims, key=lambda dim: dim.kind != "cat")
    for dim in dims:
        if dim.when is not None and not dim.when(chosen):
            continue
        pname = f"{cell}.{dim.name}"

        def fits(value, base, name=dim.name):  # every dimension not in ``base`` at its cheapest
            return _fits(fam, d, C, _completion(fam, {**base, name: value}, 0), budget, bpp)

        if dim.kind == "cat":
            choices = [c for c in dim.choices if fits(c, {})]
            value = trial.suggest_categorical(pname, choices or [dim.minimal()])
            if not fits(value, chosen):
                # jointly infeasible with an earlier choice: take the cheapest (recorded)
                value = dim.minimal()
                trial.set_user_attr(f"adjusted.{dim.name}", True)
            chosen[dim.name] = value
        elif dim.kind == "int":
            hi = int(dim.high)
            while hi > dim.low and not fits(hi, chosen):
                hi -= 1
            chosen[dim.name] = trial.suggest_int(pname, int(dim.low), hi, log=dim.log)
        else:
            chosen[dim.name] = trial.suggest_float(pname, dim.low, dim.high, log=dim.log)
    kw = _cell_kwargs(fam, chosen)
    lo, hi = _d_min(fam, chosen), _max_d(fam, d, C, chosen, budget, bpp)
    frac = trial.suggest_float("size_frac", 0.0, 1.0)
    s_lo, s_hi = size_of(cell, d, C, lo, kw, bpp), size_of(cell, d, C, hi, kw, bpp)
    # the largest D whose model fits the target size (sizes are whole bytes, monotone in D)
    D = max(lo, _max_d(fam, d, C, chosen, int(s_lo + frac * (s_hi - s_lo)), bpp))
    spec = ModelSpec(cell, d, D, C, kw)
    assert spec_size_bytes(spec, bpp) <= budget, "search proposed a model over budget"
    return spec
