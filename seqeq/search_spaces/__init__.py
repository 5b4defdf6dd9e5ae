"""Budget-aware search spaces: one function per cell family, plus exact size formulas."""

from . import families  # noqa: F401  (registration side effect)
from ._space import (
    D_MAX,
    D_MIN,
    Dim,
    Family,
    feasible_cells,
    get_family,
    register_family,
    size_of,
    smallest_size,
    suggest_spec,
)
from ._space import (
    families as list_families,
)

__all__ = [
    "D_MAX",
    "D_MIN",
    "Dim",
    "Family",
    "feasible_cells",
    "get_family",
    "list_families",
    "register_family",
    "size_of",
    "smallest_size",
    "suggest_spec",
]
