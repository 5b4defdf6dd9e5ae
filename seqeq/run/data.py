"""Stage 1, the data: load the training and test series, split validation from the training
series only, refuse what cannot be trained on, and say up front what huge data will cost."""

from __future__ import annotations

import numpy as np

from ..config import DataConfig, RunConfig
from ..errors import SeqeqError, opt

__all__ = ["load_data", "split_validation", "require_per_class", "say_cost",
           "COSTLY_TRIAL_SECONDS"]


def load_data(dc: DataConfig, seed: int = 0):
    """(train, test, info): the training data (validation is split later) and the test set."""
    from ..datasets import (
        SeqData,
        align_test,
        grouped_split,
        load_benchmark,
        load_file,
        stratified_split,
    )

    if dc.benchmark:
        train, test = load_benchmark(dc.benchmark, data_dir=dc.data_dir, seed=seed)
        if dc.vectors.strip().lower() != "auto":  # auto: the benchmark's own
            train = _with_vectors(train, dc.vectors)
        return train, test, {"kind": "benchmark", "name": dc.benchmark,
                             "test": train.meta.get("split", "the benchmark's test split"),
                             "provenance": dict(train.meta)}
    # dc.fmt is the layout (long/wide/nested); the file format comes from the extension
    opts = dict(layout=dc.fmt, id_col=dc.id_col, time_col=dc.time_col, label_col=dc.label_col,
                group_col=dc.group_col, nan=dc.nan, decimal=dc.decimal)
    train: SeqData = _with_vectors(load_file(dc.path, **opts), dc.vectors)
    if dc.test_path:
        test = align_test(train, load_file(dc.test_path, class_names=train.class_names, **opts))
        return train, test, {"kind": "file", "path": str(dc.path), "test": str(dc.test_path)}
    require_per_class(train, 3, "a stratified train/validation/test split",
                      f"with a separate {opt('test')} file, 2 per class suffice")
    if train.groups is not None and len(np.unique(train.groups)) >= 3:
        # whole groups held out for test too, as validation does (unseen subjects/devices)
        keep, held = grouped_split(train.groups, train.y, dc.test_frac, seed + 7919)
        how = f"grouped {dc.test_frac:.0%} hold-out by {dc.group_col} (seed {seed})"
    else:
        keep, held = stratified_split(train.y, dc.test_frac, seed)
        how = f"stratified {dc.test_frac:.0%} hold-out (seed {seed})"
    return (train.subset(keep), train.subset(held),
            {"kind": "file", "path": str(dc.path), "test": how})


def _with_vectors(data, text: str):
    """``data`` with the x/y/z channel triplets ``--vectors`` names (``seqeq.augment``)."""
    from dataclasses import replace

    from ..augment import parse_vectors

    return replace(data, vectors=parse_vectors(text, data.channel_names))


def require_per_class(data, need: int, what: str, alt: str = "") -> None:
    """A :class:`SeqeqError` naming every class of ``data`` with fewer than ``need`` series: such a
    class cannot be on every side of ``what``, so it would never be validated or tested."""
    if data.y is None:
        return
    counts = np.bincount(data.y, minlength=data.n_classes)
    few = [(data.class_names[k], int(n)) for k, n in enumerate(counts) if n < need]
    if not few:
        return
    shown = ", ".join(f"{c!r} ({n})" for c, n in few[:5]) + (" ..." if len(few) > 5 else "")
    raise SeqeqError(
        f"{len(few)} class(es) of {data.name} have fewer than {need} series, which "
        f"{what} needs: {shown}",
        f"Add series of those classes or drop them{f' ({alt})' if alt else ''}")


def split_validation(train, frac: float, seed: int):
    """Validation from training data only: whole groups held out when the data has groups."""
    from ..datasets import grouped_split, stratified_split

    require_per_class(train, 2, "a validation split of the training data")
    if train.groups is not None:
        keep, held = grouped_split(train.groups, train.y, frac, seed)
        how = f"grouped: {len(np.unique(train.groups[held]))} groups held out"
    else:
        keep, held = stratified_split(train.y, frac, seed)
        how = f"stratified {frac:.0%}"
    return train.subset(keep), train.subset(held), how


#: a trial estimated to take longer than this (seconds) is announced before the run starts
COSTLY_TRIAL_SECONDS = 120.0


def say_cost(train, cfg: RunConfig, device: str, quiet: bool) -> None:
    """Before anything runs on huge data (very long series, very many), say what one trial will
    cost, measured on this machine: with a time limit (the default), how far its schedule will
    be cut to fit; without one (``--timeout 0``), what a trial and the whole run take."""
    import warnings

    from ..search import pool_for, search_seconds, trial_seconds
    from ..train import batch_for, estimate_epoch_seconds, schedule_epochs

    # the schedule of a trial at the search's smallest batch (the most epochs)
    epochs = schedule_epochs(train.n_series, batch_for(train.n_series, 64), cfg.search.epochs)
    pool = pool_for(train.max_len)  # the recurrence runs over the front end's blocks
    if epochs * train.n_series * float(np.mean(train.lengths)) / pool < 2e6:
        return  # small enough that no trial can take minutes: not worth a measurement
    trial = epochs * estimate_epoch_seconds(train, device=device) / pool
    limit = trial_seconds(cfg, train.n_series)
    head = f"note: {train.n_series:,} series of up to {train.max_len:,} steps: "
    if limit is not None:
        if trial <= 2 * limit:
            return  # it fits its time, or nearly: the schedule is cut by at most half
        fits = max(2, int(epochs * limit / trial))
        msg = (head + f"a trial's {epochs}-epoch schedule would take at least about "
               f"{_duration(trial)} on this machine; within its {_duration(limit)} (a quarter "
               f"of the search's {_duration(search_seconds(cfg, train.n_series))}) it is cut "
               f"to about {fits} epochs. For longer training give more time with "
               f"{opt('timeout', placeholder='SEC')} (0: none), or resample the series to fewer "
               "steps")
    else:
        if trial < COSTLY_TRIAL_SECONDS:
            return
        total = trial * (cfg.search.trials + max(cfg.final.final_seeds, cfg.final.ensemble))
        msg = (head + f"each trial of {epochs} epochs takes at least about {_duration(trial)} "
               f"on this machine, the whole run ({cfg.search.trials} trials and the final "
               f"retrain) at least {_duration(total)}. Bound it with "
               f"{opt('timeout', placeholder='SEC')} (and "
               f"{opt('trial_timeout', placeholder='SEC')}), fewer {opt('epochs')}, or resample "
               "the series to fewer steps")
    if quiet:
        warnings.warn(msg, stacklevel=3)
    else:
        from .._progress import console

        console.print(msg, markup=False)


def _duration(sec: float) -> str:
    return (f"{sec:.0f} s" if sec < 120 else f"{sec / 60:.0f} min" if sec < 7200
            else f"{sec / 3600:.1f} h")
