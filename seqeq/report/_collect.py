"""Facts for the report that need live objects (the study, the trained model).

``seqeq.run.record`` calls these while it assembles the report dict; everything they return is plain
JSON, so ``report.html`` can later be rendered from ``report.json`` alone.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["MIN_TRIALS_FOR_IMPORTANCE", "param_importances", "int8_size"]

#: fewer completed trials than this give importances that are noise; the report says so instead
MIN_TRIALS_FOR_IMPORTANCE = 5


def param_importances(study: Any) -> dict[str, Any]:
    """Hyperparameter importances of a finished study (Optuna's PED-ANOVA evaluator, its default
    from Optuna 5; deterministic, and it copes with cell-specific parameters).

    Returns ``{"values": {param: importance} | None, "evaluator": str, "n_trials": int,
    "note": str | None}``. ``values`` (normalised to sum to 1, largest first) is None with a
    ``note`` saying why when there are too few completed trials or Optuna cannot or will not tell
    the parameters apart (e.g. every trial has the same score). Only completed trials count.
    """
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    n = len(complete)
    out: dict[str, Any] = {"values": None, "evaluator": "PedAnovaImportanceEvaluator",
                           "n_trials": n, "note": None}
    if n < MIN_TRIALS_FOR_IMPORTANCE:
        out["note"] = (f"Importances need at least {MIN_TRIALS_FOR_IMPORTANCE} completed trials; "
                       f"this search completed {n}.")
        return out
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            values = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
        except (ValueError, RuntimeError, ZeroDivisionError) as e:
            out["note"] = f"Optuna could not compute importances: {e}"
            return out
    experimental = optuna.exceptions.ExperimentalWarning
    msgs = list(dict.fromkeys(str(w.message) for w in caught
                              if issubclass(w.category, UserWarning)
                              and not issubclass(w.category, experimental)))
    if not values:
        out["note"] = "Optuna found no parameter shared by the completed trials."
        return out
    equal = [m for m in msgs if "will be equal" in m]
    if equal:
        out["note"] = "Optuna cannot rank the parameters: " + equal[0]
        return out
    out["values"] = {str(k): float(v) for k, v in sorted(values.items(), key=lambda kv: -kv[1])}
    if msgs:
        out["note"] = _summarise(msgs)
    return out


def _summarise(msgs: list[str]) -> str:
    """Optuna's warnings as a note: its one warning per parameter with too few trials in some
    regime becomes one sentence naming those parameters."""
    import re

    few = [m for m in msgs if re.match(r"Some regimes for parameter `[^`]+` have less than", m)]
    names = [re.search(r"`([^`]+)`", m).group(1) for m in few]
    rest = [m for m in msgs if m not in few]
    if names:
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        rest.insert(0, f"Some values of {len(names)} parameter(s) were tried by fewer than 2 "
                       f"trials, so their importances may be inaccurate: {shown}.")
    return " ".join(rest)


def int8_size(model: Any) -> int | None:
    """Parameter bytes after per-row int8 quantisation (None when the model cannot be
    quantised, e.g. the export package is unavailable)."""
    try:
        from ..export import int8_size_bytes

        return int(int8_size_bytes(model))
    except (ImportError, AttributeError, KeyError, ValueError, RuntimeError):
        return None
