"""Recurrent cells: one interface (:class:`Cell`), one registry (``create_cell``/``list_cells``).

Importing this package registers every built-in cell.
"""

from . import classic, dirnn, ernn, fastrnn, irnn, srnn, tarnn  # noqa: F401  (registration)
from ._base import ACTIVATIONS, Cell, length_mask, resolve_activation
from ._params import WEIGHT_KINDS, make_map, map_param_count
from ._registry import create_cell, get_cell_class, list_cells, register_cell

__all__ = [
    "ACTIVATIONS",
    "Cell",
    "WEIGHT_KINDS",
    "create_cell",
    "get_cell_class",
    "length_mask",
    "list_cells",
    "make_map",
    "map_param_count",
    "register_cell",
    "resolve_activation",
]
