"""Numbers the report shows that are computed from the run's records (not measured).

:func:`finalise` returns a copy of the report dict with non-finite floats replaced by ``None``
(so ``report.json`` is strict JSON any language can read) and the ``derived`` block recomputed:
the Pareto front, the best-so-far history, the best score per cell and the class balance. The
HTML and ``report.json`` are written from the same finalised dict, so every number on the page is
also in the JSON.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["SCHEMA_VERSION", "finalise", "clean_numbers", "is_num"]

SCHEMA_VERSION = 1


def is_num(v: Any) -> bool:
    """A finite real number (bool excluded)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def clean_numbers(obj: Any) -> Any:
    """A deep copy of ``obj`` (dicts, lists, scalars) with NaN/inf replaced by None, numpy
    scalars and arrays turned into Python values, and tuples into lists."""
    if isinstance(obj, dict):
        return {str(k): clean_numbers(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_numbers(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalar / array
        return clean_numbers(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _scored(trials: list[dict], states: tuple[str, ...]) -> list[dict]:
    return [t for t in trials if t.get("state") in states and is_num(t.get("val_score"))]


def pareto_front(trials: list[dict]) -> list[int]:
    """Numbers of the completed trials no other completed trial beats on both size (smaller) and
    validation score (higher), ordered by size."""
    pts = [t for t in _scored(trials, ("complete",)) if is_num(t.get("size_bytes"))]
    pts.sort(key=lambda t: (t["size_bytes"], -t["val_score"], t["number"]))
    front, best = [], -math.inf
    for t in pts:
        if t["val_score"] > best:
            front.append(t["number"])
            best = t["val_score"]
    return front


def history(trials: list[dict]) -> list[dict]:
    """Per trial in order of number: its state, score, and the best completed score so far."""
    out, best = [], None
    for t in sorted(trials, key=lambda t: t["number"]):
        v = t.get("val_score") if is_num(t.get("val_score")) else None
        if t.get("state") == "complete" and v is not None:
            best = v if best is None else max(best, v)
        out.append({"number": t["number"], "state": t.get("state"), "val_score": v,
                    "best_so_far": best})
    return out


def best_by_cell(trials: list[dict], cells: list[str]) -> dict[str, dict]:
    """For every searched cell: its best completed trial (None if it has none) and its counts."""
    names = list(dict.fromkeys([*cells, *(t["cell"] for t in trials if t.get("cell"))]))
    out = {}
    for c in names:
        mine = [t for t in trials if t.get("cell") == c]
        done = _scored(mine, ("complete",))
        top = max(done, key=lambda t: (t["val_score"], -(t.get("size_bytes") or 0)),
                  default=None)
        out[c] = {"best_val_score": top["val_score"] if top else None,
                  "best_trial": top["number"] if top else None,
                  "n_trials": len(mine),
                  "n_complete": len(done),
                  "n_pruned": sum(t.get("state") == "pruned" for t in mine),
                  "n_failed": sum(t.get("state") == "fail" for t in mine)}
    return out


def class_balance(summary: dict | None) -> list[float] | None:
    counts = (summary or {}).get("class_counts")
    if not counts:
        return None
    n = sum(counts)
    return [c / n if n else 0.0 for c in counts]


def finalise(report: dict) -> dict:
    """A JSON-clean copy of ``report`` with its ``derived`` block (re)computed."""
    r = clean_numbers(report)
    trials = r.get("trials") or []
    data = r.get("data") or {}
    r["derived"] = {
        "pareto_front": pareto_front(trials),
        "history": history(trials),
        "best_by_cell": best_by_cell(trials, (r.get("search") or {}).get("cells") or []),
        "class_balance": {"train": class_balance(data.get("train")),
                          "test": class_balance(data.get("test"))},
    }
    return r
