"""Re-ranking the search's best trials on more validation data before one is retrained.

The search scores every trial on one validation split: on HAR-2 that is 4 of the 21 training
subjects, and trials of different cells end within a few tenths of a point of each other there, so
which one wins is partly the luck of those 4 subjects (``benchmarks/RESULTS.md``, "Re-ranking").
``--rerank K`` takes the best trial of each of the K best cell families (then the next best
trials, when fewer families finished) and scores each on ``--rerank-folds F`` folds that
together cover every training series once: fold 0 is the search's own validation split (the trial's
score there is reused), folds 1..F-1 partition the rest -- whole groups (subjects) when the data has
groups, as the validation split does, stratified by class otherwise. Each extra fold trains the
trial's configuration (same spec, learning rate, batch size, schedule, augmentation) on every other
series and scores the held fold the way the search scores a trial (``search.trial_value``). A
candidate's re-ranking score is the mean over folds weighted by fold size; the best one is
retrained.

Each finished fold is written to ``rerank.json`` in the run directory at once, so an interrupted
re-ranking continues where it stopped under ``--resume``.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna

from .config import RunConfig
from .datasets import SeqData
from .errors import SeqeqError, opt

__all__ = ["RERANK_FILE", "rerank_folds", "rerank_candidates", "rerank"]

RERANK_FILE = "rerank.json"


def rerank_folds(train: SeqData, val: SeqData, folds: int, seed: int) -> list[np.ndarray]:
    """The held-out indices, into ``concat(train, val)``, of each re-ranking fold: fold 0 is the
    validation split, folds 1..``folds``-1 partition ``train`` (by group when it has groups)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    n_tr, k = train.n_series, folds - 1
    held = [np.arange(n_tr, n_tr + val.n_series)]
    y = np.asarray(train.y)
    with warnings.catch_warnings():  # a class smaller than k: sklearn warns, the split is fine
        warnings.simplefilter("ignore", UserWarning)
        if train.groups is not None:
            n_groups = len(np.unique(train.groups))
            if n_groups < k:
                raise SeqeqError(
                    f"{opt('rerank_folds', folds)} needs {k} groups besides the validation "
                    f"split, but the search's training side has {n_groups}",
                    f"Use {opt('rerank_folds', max(3, n_groups + 1))} or less, or "
                    f"{opt('rerank', 0)}")
            parts = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(
                np.zeros(n_tr), y, train.groups)
        else:
            if np.bincount(y).max() < k:
                raise SeqeqError(
                    f"{opt('rerank_folds', folds)} needs a class with {k} series besides the "
                    f"validation split", f"Lower {opt('rerank_folds')}, or {opt('rerank', 0)}")
            parts = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(
                np.zeros(n_tr), y)
        held += [np.sort(h) for _, h in parts]
    return held


def rerank_candidates(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    """The ``k`` trials to re-score: the best completed trial (``search.rank_key``) of each of
    the ``k`` best cell families, then, if fewer families finished, the next best trials. One
    per distinct configuration (a re-queued trial repeats its parameters). Families first
    because the search's top trials are mostly one family (TPE concentrates on it), and which
    family is best is what one validation split decides worst (``benchmarks/RESULTS.md``)."""
    from .search import best_trial, rank_key

    best_trial(study)  # a clear error when no trial completed
    done = sorted((t for t in study.get_trials(deepcopy=False,
                                               states=(optuna.trial.TrialState.COMPLETE,))
                   if t.value is not None and "spec" in t.user_attrs), key=rank_key,
                  reverse=True)
    distinct, seen = [], set()
    for t in done:
        key = json.dumps([t.user_attrs["spec"], t.user_attrs.get("train")], sort_keys=True)
        if key not in seen:
            seen.add(key)
            distinct.append(t)
    leaders, families = [], set()
    for t in distinct:
        if t.user_attrs["spec"]["cell"] not in families:
            families.add(t.user_attrs["spec"]["cell"])
            leaders.append(t)
    chosen = leaders[:k]
    chosen += [t for t in distinct if t not in chosen][: k - len(chosen)]
    return sorted(chosen, key=rank_key, reverse=True)


# ---------------------------------------------------------------------------------------------
# one fold of one candidate (run here or in a worker process)
_DATA: SeqData | None = None


def _init_worker(full: SeqData) -> None:
    import torch

    global _DATA
    torch.set_num_threads(1)
    _DATA = full


def _fold_score(trial: optuna.trial.FrozenTrial, held: np.ndarray, cfg: RunConfig,
                device: str, full: SeqData | None = None) -> float:
    """Train ``trial``'s configuration on every series of ``full`` outside ``held`` and score it on
    ``held`` as the search scores a trial."""
    from .models import build_model
    from .search import soft_of, spec_of, train_config_of, trial_value
    from .train import train_model

    full = full if full is not None else _DATA
    keep = np.setdiff1d(np.arange(full.n_series), held)
    tr, va = full.subset(keep), full.subset(held)
    seed = cfg.search.seed + trial.number
    model = build_model(spec_of(trial), seed=seed)
    model.set_normalisation(*tr.channel_stats())
    curve: list[float] = []
    res = train_model(model, tr, train_config_of(trial, device, seed=seed), val=va,
                      metric=cfg.search.metric,
                      on_epoch=lambda e, rec: curve.append(rec.get("val_score", math.nan)),
                      soft=soft_of(trial, tr, cfg.search.seed))
    return trial_value(curve, res.best_val, cfg)


# ---------------------------------------------------------------------------------------------
def _load_done(path: Path, key: dict) -> dict[str, float]:
    """Fold scores a previous (interrupted) re-ranking of the same folds already finished."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(rec, dict) or rec.get("key") != key:
        return {}
    return {str(k): float(v) for k, v in (rec.get("scores") or {}).items()}


def rerank(study: optuna.Study, train: SeqData, val: SeqData, cfg: RunConfig, device: str,
           run_dir: Path | None = None,
           on_fold: Callable[[int, int, float], None] | None = None
           ) -> tuple[optuna.trial.FrozenTrial, dict]:
    """Re-score the ``cfg.final.rerank`` best trials on ``cfg.final.rerank_folds`` folds; return
    the best one and the report's ``rerank`` section. ``on_fold(trial, fold, score)`` follows
    progress."""
    from ._io import atomic_write_json
    from .datasets import concat
    from .search import rank_key

    t0 = time.perf_counter()
    cands = rerank_candidates(study, cfg.final.rerank)
    held = rerank_folds(train, val, cfg.final.rerank_folds, cfg.search.seed)
    sizes = [int(len(h)) for h in held]
    full = concat(train, val)
    key = {"folds": cfg.final.rerank_folds, "seed": cfg.search.seed, "fold_sizes": sizes,
           "metric": cfg.search.metric}
    path = run_dir / RERANK_FILE if run_dir is not None else None
    done = _load_done(path, key) if path is not None else {}
    for t in cands:  # fold 0: the trial's own validation score
        done[f"{t.number}/0"] = float(t.value)
    jobs = [(t, f) for t in cands for f in range(1, len(held)) if f"{t.number}/{f}" not in done]

    def record(t, f: int, value: float) -> None:
        done[f"{t.number}/{f}"] = float(value)
        if path is not None:
            atomic_write_json(path, {"key": key, "scores": done})
        if on_fold is not None:
            on_fold(t.number, f, float(value))

    if len(cands) > 1:
        _run_jobs(jobs, held, cfg, device, full, record)
    rows = []
    for t in cands:
        scores = [done[f"{t.number}/{f}"] for f in range(len(held))]
        rows.append({"trial": t.number, "cell": t.user_attrs["spec"].get("cell"),
                     "size_bytes": t.user_attrs.get("size_bytes"), "val_score": float(t.value),
                     "fold_scores": scores,
                     "score": float(np.average(scores, weights=sizes))})
    score = {r["trial"]: r["score"] for r in rows}
    chosen = max(cands, key=lambda t: (score[t.number], *rank_key(t)))
    section = {"candidates": len(cands), "folds": len(held), "fold_sizes": sizes,
               "fold_groups": ([int(len(np.unique(full.groups[h]))) for h in held]
                               if full.groups is not None else None),
               "rows": rows, "chosen_trial": chosen.number,
               "search_best_trial": cands[0].number,
               "seconds": time.perf_counter() - t0}
    return chosen, section


def _run_jobs(jobs, held, cfg: RunConfig, device: str, full: SeqData, record) -> None:
    """Each (trial, fold) job here, or over ``cfg.run.workers`` processes (spawned: torch and
    fork do not mix); every result is recorded as it arrives."""
    if not jobs:
        return
    if cfg.run.workers <= 1 or len(jobs) == 1 or not device.startswith("cpu"):
        for t, f in jobs:
            record(t, f, _fold_score(t, held[f], cfg, device, full))
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    with ProcessPoolExecutor(max_workers=min(cfg.run.workers, len(jobs)),
                             mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(full,)) as pool:
        pending = {pool.submit(_fold_score, t, held[f], cfg, device): (t, f) for t, f in jobs}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    t, f = pending.pop(fut)
                    record(t, f, fut.result())
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
