"""The one registry of recurrent cells.

A cell class registers itself with ``@register_cell("name")``; ``create_cell(name, ...)`` builds it,
dropping keyword arguments that are ``None`` so the cell's own defaults stand (as timm's factory
does). Registering a name twice is an error (as torchvision's model registry does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._base import Cell

__all__ = ["register_cell", "create_cell", "list_cells", "get_cell_class"]

_CELLS: dict[str, type[Cell]] = {}


def register_cell(name: str):
    """Class decorator: register a :class:`Cell` subclass under ``name``."""

    def wrap(cls: type[Cell]) -> type[Cell]:
        if name in _CELLS:
            raise ValueError(
                f"cell {name!r} is already registered (by {_CELLS[name].__qualname__})")
        cls.name = name
        _CELLS[name] = cls
        return cls

    return wrap


def list_cells() -> list[str]:
    """Names of every registered cell, in registration order."""
    return list(_CELLS)


def get_cell_class(name: str) -> type[Cell]:
    try:
        return _CELLS[name]
    except KeyError:
        from ..errors import SeqeqError

        raise SeqeqError(
            f"unknown cell {name!r}", f"Choose one of: {', '.join(_CELLS)}"
        ) from None


def _clean(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def create_cell(name: str, input_size: int, hidden_size: int, **kwargs: Any) -> Cell:
    """Build the registered cell ``name``; ``None`` keyword arguments are dropped."""
    return get_cell_class(name)(input_size, hidden_size, **_clean(kwargs))
