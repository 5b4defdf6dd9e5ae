"""The run, as the sequence of its stages: data -> run directory -> study and search -> final
models -> record. :func:`run` reads the data a :class:`~seqeq.config.DataConfig` names;
:func:`run_on` takes it in memory. Every input is validated before anything is written."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import DataConfig, RunConfig
from ..errors import WriteError
from .data import load_data, say_cost, split_validation
from .final import final_models
from .record import final_section, record, record_interrupted
from .result import RunResult
from .rundir import (
    LOCK_FILE,
    check_run_dir,
    default_out,
    disk_full,
    prepare_run_dir,
    resumable,
    run_dir_lock,
)
from .study import check_device, open_study, search

__all__ = ["Run", "run", "run_on"]


@dataclass
class Run:
    """What the stages of one run share: its settings, its data and splits, and (once opened)
    its study."""

    cfg: RunConfig
    out: Path
    train_all: Any
    test: Any
    train: Any
    val: Any
    val_how: str
    data_info: dict
    data_fp: str
    device: str
    cells: list[str]
    quiet: bool = True
    keep_model: bool = False
    html: bool = True
    t_start: float = field(default_factory=time.perf_counter)
    study: Any = None
    #: the cross-validation folds that score each trial (None: the one validation split)
    folds: Any = None
    #: the live progress display (:class:`~seqeq._progress.RunProgress`), while the run runs
    progress: Any = None


def run(dc: DataConfig, cfg: RunConfig, out: str | Path | None = None,
        quiet: bool = True) -> RunResult:
    """Search, retrain, test once, export and report on the data ``dc`` names."""
    out = Path(out) if out is not None else default_out(dc)
    check_run_dir(out, cfg)  # before reading any data: a refused run costs nothing
    train_all, test, data_info = load_data(dc, seed=cfg.search.seed)
    return run_on(train_all, test, cfg, out, data_info={**data_info, "config": asdict(dc)},
                  val_frac=dc.val_frac, quiet=quiet)


def run_on(train_all, test, cfg: RunConfig, out: str | Path, data_info: dict | None = None,
           val_frac: float = 0.2, quiet: bool = True, keep_model: bool = False,
           html: bool = True) -> RunResult:
    """The run on in-memory data (``test`` may be None: no test evaluation). ``html``: render
    report.html (report.json is always written); ``keep_model``: the model in ``extra``."""
    rc = _validated(train_all, test, cfg, Path(out), data_info or {}, val_frac, quiet)
    rc.keep_model, rc.html = keep_model, html
    try:
        with run_dir_lock(rc.out) as created:
            _start(rc, created)
            return _search_and_finish(rc)
    except WriteError as e:
        raise resumable(e, rc.out, cfg) from None
    except Exception as e:
        if disk_full(e):
            raise resumable(e, rc.out, cfg) from None
        raise


def _validated(train_all, test, cfg: RunConfig, out: Path, data_info: dict,
               val_frac: float, quiet: bool) -> Run:
    """Every check that needs no file written: data, device, splits, run directory, budget,
    re-ranking folds; and what huge data will cost."""
    from ..search import candidate_cells, cv_fold_count, cv_splits
    from ..train import resolve_device

    t_start = time.perf_counter()
    train_all.check_trainable()
    if test is not None:
        test.check_trainable()
    device = resolve_device(cfg.run.device)
    check_device(device)
    train, val, val_how = split_validation(train_all, val_frac, cfg.search.seed)
    folds = cv_splits(train, val, cv_fold_count(cfg, val.n_series), cfg.search.seed)
    if folds is not None:
        val_how += (f"; each trial scored by {len(folds)}-fold cross-validation over the "
                    "training data (this split, then stratified folds)")
    data_fp = f"{train.fingerprint()}-{val.fingerprint()}"
    check_run_dir(out, cfg, data_fp)  # a resumed run: the same data as its finished trials
    cells = candidate_cells(cfg, train.n_channels, train.n_classes)
    say_cost(train, cfg, device, quiet)
    if cfg.final.rerank:  # folds that cannot be made fail now, not after the search
        from ..rerank import rerank_folds

        rerank_folds(train, val, cfg.final.rerank_folds, cfg.search.seed)
    return Run(cfg=cfg, out=out, train_all=train_all, test=test, train=train, val=val,
               val_how=val_how, data_info=data_info, data_fp=data_fp, device=device,
               cells=cells, quiet=quiet, t_start=t_start, folds=folds)


def _start(rc: Run, created: bool) -> None:
    """Under the run directory's lock: check it again, open the study, write run.json. A run
    that fails here leaves nothing behind."""
    from .. import __version__
    from .._io import atomic_write_json

    cfg, out = rc.cfg, rc.out
    try:
        check_run_dir(out, cfg, rc.data_fp)  # again, now that no other run can change it
        if cfg.run.storage is not None:  # a shared storage that cannot be opened writes nothing
            rc.study = open_study(cfg, out)
        prepare_run_dir(out, cfg)
        if rc.study is None:
            rc.study = open_study(cfg, out)
        # what optuna-dashboard shows for the study: what it was searched under
        for key, value in (("seqeq_version", __version__),
                           ("budget_kb", cfg.search.budget_kb),
                           ("quantize", cfg.export.quantize or "none"),
                           ("metric", cfg.search.metric), ("data_fingerprint", rc.data_fp),
                           ("data", (rc.data_info or {}).get("name")
                            or rc.train_all.name),
                           ("ensemble", cfg.final.ensemble)):
            if rc.study.user_attrs.get(key) != value:
                rc.study.set_user_attr(key, value)
        atomic_write_json(out / "run.json", {
            "seqeq_version": __version__, "data": rc.data_info, "search": cfg.flat(),
            "device": rc.device, "cells": rc.cells, "validation": rc.val_how,
            "data_fingerprint": rc.data_fp})
    except BaseException:
        if created:  # nothing is left behind by a run that never started
            shutil.rmtree(out, ignore_errors=True)
        elif not (out / "run.json").exists():
            (out / LOCK_FILE).unlink(missing_ok=True)
        raise


def _search_and_finish(rc: Run) -> RunResult:
    """The search, then the final models, then the record, under one progress display; Ctrl-C
    in either of the first two still records the search's best model."""
    from .._progress import RunProgress
    from ..search import search_seconds as search_limit

    cfg = rc.cfg
    with RunProgress(cfg.search.trials, cfg.search.metric, quiet=rc.quiet,
                     ensemble=cfg.final.ensemble,
                     search_seconds=search_limit(cfg, rc.train.n_series)) as rc.progress:
        return _stages(rc)


def _stages(rc: Run) -> RunResult:
    _, interrupted = search(rc)
    search_seconds = time.perf_counter() - rc.t_start
    if interrupted:
        return record_interrupted(rc, search_seconds, during="search")
    try:
        best, reranked, spec, epochs, finals, chosen, ensemble = final_models(
            rc.study, rc.train, rc.val, rc.test, rc.cfg, rc.device, rc.out, rc.quiet,
            progress=rc.progress)
    except KeyboardInterrupt:
        return record_interrupted(rc, search_seconds, during="final retrain")
    model = chosen["model"].cpu()
    save_extra = {"class_names": rc.train.class_names, "channel_names": rc.train.channel_names,
                  "metric": rc.cfg.search.metric, "seed": chosen["seed"],
                  **({"member_seeds": ensemble["seeds"]} if ensemble else {})}
    return record(rc, best=best, spec=spec, model=model, val_score=best.value, epochs=epochs,
                  final=final_section(rc, finals, chosen, ensemble, model), reranked=reranked,
                  save_extra=save_extra, search_seconds=search_seconds)
