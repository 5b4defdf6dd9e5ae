"""The scripted entry point: ``fit``, ``bench``, ``export``, ``predict``.

Data flows one way: load data -> split (validation from training data; test held out) -> search on
train/validation only -> retrain the chosen configuration on train+validation with several seeds ->
evaluate the test set once -> save, export ONNX, write the report. The CLI calls these functions.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import DataConfig, SearchConfig
from .errors import Interrupted, SeqeqError, WriteError, opt

__all__ = ["RunResult", "fit", "bench", "export", "predict", "run", "load_data", "latest_run"]

RUNS_DIR = Path("runs")
#: the report's gradient diagnostic (||dh_T/dh_t||) is taken over at most this many first steps
GRADIENT_WINDOW = 256


@dataclass
class RunResult:
    """What a search produced."""

    run_dir: str
    best_spec: dict
    size_bytes: int
    val_score: float
    metric: str
    test_mean: float | None
    test_std: float | None
    test_scores: list[float]
    onnx_path: str
    report_json: str
    report_html: str
    model_dir: str
    n_trials: int
    n_pruned: int
    seconds: float
    #: None (fp32) or "int8": the precision ``size_bytes`` is counted at (what was budgeted)
    quantize: str | None = None
    #: the exported model's own test score (an ensemble's, or the chosen seed's); None untested
    test_score: float | None = None
    #: models averaged into the exported one (1: a single model)
    ensemble: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def size_kib(self) -> float:
        return self.size_bytes / 1024

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extra"] = {k: v for k, v in self.extra.items() if k != "model"}
        d["size_kib"] = self.size_kib
        return d


# ---------------------------------------------------------------------------------------------
# data
def load_data(dc: DataConfig, seed: int = 0):
    """(train, test, info): the training data (validation is split later) and the test set."""
    from .datasets import (
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

    from .augment import parse_vectors

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
    from .datasets import grouped_split, stratified_split

    require_per_class(train, 2, "a validation split of the training data")
    if train.groups is not None:
        keep, held = grouped_split(train.groups, train.y, frac, seed)
        how = f"grouped: {len(np.unique(train.groups[held]))} groups held out"
    else:
        keep, held = stratified_split(train.y, frac, seed)
        how = f"stratified {frac:.0%}"
    return train.subset(keep), train.subset(held), how


# ---------------------------------------------------------------------------------------------
# run directory
_RUN_FILES = ("study.db", "run.json", "report.json", "best.onnx")


def _check_run_dir(out: Path, cfg: SearchConfig, data_fp: str | None = None) -> None:
    """Refuse a run directory that would be clobbered, before anything is read or written
    (``data_fp``: the search data's fingerprint, once loaded, for a resumed run to compare)."""
    if out.exists() and not out.is_dir():
        raise SeqeqError(f"{opt('out', str(out))} exists and is not a directory",
                         f"Choose a directory path for {opt('out')}")
    has_run = out.is_dir() and any((out / f).exists() for f in _RUN_FILES)
    if has_run and not (cfg.resume or cfg.overwrite):
        raise SeqeqError(f"run directory {out} already holds a run",
                         f"Pass {opt('resume')} to continue it, {opt('overwrite')} to replace "
                         f"it, or choose another {opt('out')}")
    if cfg.resume and not has_run and cfg.storage is None:
        raise SeqeqError(f"nothing to resume in {out}", f"Drop {opt('resume')} to start a new run")
    if cfg.resume and has_run:
        _check_resume_matches(out, cfg, data_fp)
    if out.is_dir() and not has_run and not cfg.overwrite:
        foreign = sorted(p.name for p in out.iterdir()
                         if not _is_tmp(p) and p.name != LOCK_FILE)
        if foreign:
            raise SeqeqError(f"{opt('out', str(out))} is not empty and holds no seqeq run (it has "
                             f"{len(foreign)} entries, e.g. {foreign[0]!r})",
                             f"Choose a new or empty directory, or pass {opt('overwrite')} to "
                             "write "
                             "into it")


#: what a study's trials were sized, sampled and scored under: a resumed run must keep them (the
#: number of trials, the timeout, the workers, --rerank may change)
_RESUME_FIXED = ("budget_kb", "quantize", "ensemble", "metric", "epochs", "final_epochs", "seed",
                 "cells", "rotate")
#: a setting whose None is typed as a value on the command line
_NONE_TYPED = {"rotate": "auto"}
#: how a setting's None reads in a message where it is given by leaving its flag out
_NONE_SHOWN = {"cells": "all cells", "quantize": "none"}


def _check_resume_matches(out: Path, cfg: SearchConfig, data_fp: str | None = None) -> None:
    """--resume with settings that would make the finished trials incomparable (a smaller budget
    would let an over-budget trial win, another seed another validation split) or with other data
    is refused, naming what the run used."""
    import json

    try:
        before_run = json.loads((out / "run.json").read_text(encoding="utf-8"))
        before = before_run["search"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no readable record (a run killed before writing it): nothing to compare
    defaults = {"ensemble": 1}  # settings that runs of older versions did not record
    for key in _RESUME_FIXED:
        flag = opt(key)
        was, now = before.get(key, defaults.get(key, getattr(cfg, key))), getattr(cfg, key)
        if isinstance(was, list):  # JSON keeps tuples as lists
            was = tuple(was)
        if was != now:
            shown = _flag_value(was, key)
            again = (f"Resume without {flag}" if was is None and key not in _NONE_TYPED
                     else f"Resume with {flag} {shown}")
            raise SeqeqError(f"{opt('resume')} with {flag} {_flag_value(now, key)} but the run "
                             f"in {out} used {shown}",
                             f"{again}, or start a new run with another {opt('out')}")
    was_fp = before_run.get("data_fingerprint")
    if data_fp is not None and was_fp is not None and was_fp != data_fp:
        raise SeqeqError(f"{opt('resume')} with other data than the run in {out} was searched on "
                         "(its training or validation series differ)",
                         f"Resume with the same data file, {opt('group_col')} and validation "
                         f"split, or start a new run with another {opt('out')}")


def _flag_value(v, key: str = "") -> str:
    """A setting as a user would type it on the command line."""
    if v is None:
        return _NONE_TYPED.get(key) or _NONE_SHOWN.get(key, "none")
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def _is_tmp(p: Path) -> bool:
    """A temporary file left by :func:`seqeq._io.atomic_write_bytes` in a killed process."""
    return p.is_file() and p.name.startswith(".") and p.name.endswith(".tmp")


#: the file in a run directory that the run holding it keeps locked (``flock``) while it runs
LOCK_FILE = ".seqeq.lock"


@contextmanager
def _run_dir_lock(out: Path):
    """Hold ``out`` for this process while the block runs: a second run started on the same
    directory (at the same moment, or while this one runs) is refused, naming the holder. The
    lock is the operating system's, so a killed run leaves none behind. Yields whether this
    process created ``out`` (only then may a failed start remove it)."""
    try:
        out.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    except OSError as e:
        raise SeqeqError(f"cannot create the run directory {out} ({e.strerror or e})",
                         f"Choose a writable {opt('out')}") from None
    try:
        fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:  # another run that failed to start just removed the directory
        raise SeqeqError(f"another seqeq run was starting in {out}",
                         "Run the command again") from None
    except OSError as e:
        raise SeqeqError(f"cannot create the run directory {out} ({e.strerror or e})",
                         f"Choose a writable {opt('out')}") from None
    try:
        _flock(fd)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
        os.close(fd)
        raise SeqeqError(f"another seqeq run{f' (pid {holder})' if holder.isdigit() else ''} is "
                         f"using {out}", f"Wait for it to finish, or choose another "
                         f"{opt('out')}") from None
    try:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as e:  # a full disk: nothing of this run can be written
            from ._io import write_error

            if created:
                shutil.rmtree(out, ignore_errors=True)
            raise write_error(out / LOCK_FILE, e) from None
        yield created
    finally:
        os.close(fd)  # releases the lock


def _flock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks; runs are not guarded
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _disk_full(e: BaseException) -> bool:
    """SQLite (through SQLAlchemy) reports a full disk as an OperationalError, not an OSError."""
    text = str(e).lower()
    return type(e).__name__ == "OperationalError" and ("disk is full" in text
                                                        or "disk i/o error" in text)


def _resumable(e: SeqeqError, out: Path, cfg: SearchConfig) -> WriteError:
    """A file of the run that could not be written, with how to carry on: the study keeps
    every finished trial, so the same command plus --resume continues where it stopped."""
    problem = e.problem if isinstance(e, WriteError) else (
        f"could not write the study {out / 'study.db'} (database or disk is full)")
    if not (out / "run.json").is_file():  # the run never started: nothing of it is kept
        return WriteError(problem, "Nothing was kept; free space on that disk, then run the "
                                   "command again")
    again = ("the same command" if cfg.resume else f"the same command plus {opt('resume')}")
    return WriteError(problem, f"The files written before it are intact (the finished trials "
                               f"are in the study); free space on that disk, then run {again}")


def _prepare_run_dir(out: Path, cfg: SearchConfig) -> None:
    """Create (or, with --overwrite, clear seqeq's files from) the run directory. Call only once
    every input has been validated."""
    from .search import CHECKPOINT

    _check_run_dir(out, cfg)
    try:
        if cfg.overwrite and out.is_dir():
            for f in (*_RUN_FILES, "report.html"):
                (out / f).unlink(missing_ok=True)
            for d in ("model", CHECKPOINT):
                shutil.rmtree(out / d, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        for d in (out, out / "model", out / CHECKPOINT):  # only seqeq's own folders
            for tmp in (d.glob(".*.tmp") if d.is_dir() else ()):
                if _is_tmp(tmp):  # the write it belonged to never finished; the target is intact
                    tmp.unlink(missing_ok=True)
    except OSError as e:
        raise SeqeqError(f"cannot create the run directory {out} ({e.strerror or e})",
                         f"Choose a writable {opt('out')}") from None


def _open_study(cfg: SearchConfig, out: Path):
    """The Optuna study; a storage that cannot be opened is a user error naming the URL (without
    its password)."""
    from .search import make_study

    try:
        return make_study(cfg, out, load_if_exists=cfg.resume or cfg.storage is not None)
    except SeqeqError:
        raise
    except Exception as e:
        if _disk_full(e):  # not the storage's fault: run_on names the file and the way on
            raise
        url = cfg.storage or f"sqlite:///{out / 'study.db'}"
        try:
            from sqlalchemy.engine import make_url

            url = make_url(url).render_as_string(hide_password=True)
        except Exception:
            url = url.split("@")[-1] if "@" in url else url
        msg = " ".join(str(e).replace(cfg.storage or url, url).split())[:200] or type(e).__name__
        raise SeqeqError(f"cannot open the study storage {url} ({type(e).__name__}: {msg})",
                         f"Check {opt('storage')} (e.g. postgresql://user@host/db, which needs "
                         "pip install seqeq[postgres]) and that the database is reachable"
                         ) from None


def _check_device(device: str) -> None:
    """A CUDA device that is not there fails now, not after the run directory is written."""
    if not device.startswith("cuda"):
        return
    import torch

    idx = device.partition(":")[2]
    if idx and not idx.isdigit():
        raise SeqeqError(f"unknown device {device!r}", "Use auto, cpu, cuda or cuda:N")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(idx or 0) >= n:
        raise SeqeqError(f"{opt('device', device)} was asked for but {n} CUDA GPU(s) are "
                         f"available", f"Use {opt('device', 'auto')} or {opt('device', 'cpu')}")


def _default_out(dc: DataConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return RUNS_DIR / f"{dc.name}-{stamp}"


def latest_run(runs_dir: Path = RUNS_DIR) -> Path:
    """The most recently finished run under ``runs/``."""
    cands = [p.parent.parent for p in runs_dir.glob("*/model/model.json")] if runs_dir.is_dir() \
        else []
    if not cands:
        raise SeqeqError(f"no finished run found under {runs_dir}/",
                         "Run `seqeq fit` or `seqeq bench` first, or pass --run DIR")
    return max(cands, key=lambda p: (p / "model" / "model.json").stat().st_mtime)


def _fail_interrupted_trials(study) -> int:
    """A local study after Ctrl-C, or on resume: trials left RUNNING by a killed process are
    failed, and they and the trials Ctrl-C cut short (failed by Optuna, marked ``interrupted``)
    are re-queued once with the same parameters."""
    import optuna

    S = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    n = 0
    for t in trials:
        cut = t.state == S.FAIL and t.user_attrs.get("interrupted")
        if t.number in retried or not (t.state == S.RUNNING or cut):
            continue
        if t.state == S.RUNNING:
            study.tell(t.number, state=S.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        n += 1
    return n


# ---------------------------------------------------------------------------------------------
# the run
def run(dc: DataConfig, cfg: SearchConfig, out: str | Path | None = None,
        quiet: bool = True) -> RunResult:
    """Search, retrain, test once, export and report. See the module docstring."""
    out = Path(out) if out is not None else _default_out(dc)
    _check_run_dir(out, cfg)  # before reading any data: a refused run costs nothing
    train_all, test, data_info = load_data(dc, seed=cfg.seed)
    return run_on(train_all, test, cfg, out, data_info={**data_info, "config": asdict(dc)},
                  val_frac=dc.val_frac, quiet=quiet)


def run_on(train_all, test, cfg: SearchConfig, out: str | Path, data_info: dict | None = None,
           val_frac: float = 0.2, quiet: bool = True, keep_model: bool = False,
           html: bool = True) -> RunResult:
    """The pipeline on in-memory data (``test`` may be None: no test evaluation). ``html``:
    render report.html (report.json is always written)."""
    from .search import candidate_cells
    from .train import resolve_device

    t_start = time.perf_counter()
    out = Path(out)
    data_info = data_info or {}
    # validate everything (run dir, device, data, budget, storage) before writing anything
    train_all.check_trainable()
    if test is not None:
        test.check_trainable()
    device = resolve_device(cfg.device)
    _check_device(device)
    train, val, val_how = split_validation(train_all, val_frac, cfg.seed)
    data_fp = f"{train.fingerprint()}-{val.fingerprint()}"
    _check_run_dir(out, cfg, data_fp)  # a resumed run: the same data as its finished trials
    cells = candidate_cells(cfg, train.n_channels, train.n_classes)
    _say_cost(train, cfg, device, quiet)
    if cfg.rerank:  # folds that cannot be made fail now, not after the search
        from .rerank import rerank_folds

        rerank_folds(train, val, cfg.rerank_folds, cfg.seed)
    try:
        with _run_dir_lock(out) as created:
            return _run_locked(train_all, test, cfg, out, data_info, quiet, keep_model, t_start,
                               device, train, val, val_how, data_fp, cells, created, html)
    except WriteError as e:
        raise _resumable(e, out, cfg) from None
    except Exception as e:
        if _disk_full(e):
            raise _resumable(e, out, cfg) from None
        raise


def _run_locked(train_all, test, cfg: SearchConfig, out: Path, data_info: dict, quiet: bool,
                keep_model: bool, t_start: float, device: str, train, val, val_how: str,
                data_fp: str, cells: list[str], created: bool, html: bool = True) -> RunResult:
    """The run, once its inputs are valid and this process holds the run directory: open the
    study, search, retrain, test once, export and report."""
    import torch

    from . import __version__
    from ._io import atomic_write_json
    from ._progress import SearchProgress, console
    from .models import save_model, spec_size_bytes
    from .report import write_report
    from .search import SearchContext, run_workers
    from .train import predict_logits, score

    study = None
    try:
        _check_run_dir(out, cfg, data_fp)  # again, now that no other run can change it
        if cfg.storage is not None:  # a shared storage that cannot be opened writes nothing
            study = _open_study(cfg, out)
        _prepare_run_dir(out, cfg)
        if study is None:
            study = _open_study(cfg, out)
        run_info = {"seqeq_version": __version__, "data": data_info, "search": asdict(cfg),
                    "device": device, "cells": cells, "validation": val_how,
                    "data_fingerprint": data_fp}
        atomic_write_json(out / "run.json", run_info)
    except BaseException:
        if created:  # nothing is left behind by a run that never started
            shutil.rmtree(out, ignore_errors=True)
        elif not (out / "run.json").exists():
            (out / LOCK_FILE).unlink(missing_ok=True)
        raise

    if cfg.resume and cfg.storage is None:
        n = _fail_interrupted_trials(study)
        if n and not quiet:
            console.print(f"resuming: {n} interrupted trial(s) marked failed and re-queued")
    ctx = SearchContext(train=train, val=val, cfg=cfg, device=device, cells=cells, run_dir=out)
    interrupted = False
    with SearchProgress(cfg.trials, cfg.metric, quiet=quiet, ensemble=cfg.ensemble) as prog:
        prog.start(study)
        try:
            run_workers(ctx, study, out, callbacks=[prog.callback])
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        if cfg.storage is None:  # our own study: a trial Ctrl-C cut short is failed and re-queued
            _fail_interrupted_trials(study)
        report = _report_base(study, cfg, out, device, cells, t_start,
                              time.perf_counter() - t_start, True, train_all, test, data_info,
                              val_how, train, val)
        return _finish_interrupted(study, out, cfg, report)
    search_seconds = time.perf_counter() - t_start

    try:  # Ctrl-C in re-ranking or the final retrain still hands back the search's best model
        best, reranked, spec, epochs, finals, chosen, ensemble = _final_models(
            study, train, val, test, cfg, device, out, quiet)
    except KeyboardInterrupt:
        report = _report_base(study, cfg, out, device, cells, t_start, search_seconds, True,
                              train_all, test, data_info, val_how, train, val)
        return _finish_interrupted(study, out, cfg, report, during="final retrain")
    test_scores = [f["test_score"] for f in finals if "test_score" in f]
    model = chosen["model"].cpu()

    extra = {"class_names": train.class_names, "channel_names": train.channel_names,
             "metric": cfg.metric, "seed": chosen["seed"],
             **({"member_seeds": ensemble["seeds"]} if ensemble else {})}
    save_model(model, spec, out / "model", extra=extra)
    onnx_info = export_model(out / "model", out / "best.onnx", quantize=cfg.quantize)

    from .export import quantize_model_weights
    from .models import gradient_norm_ratio

    # what int8 weights cost: the chosen model, quantise-dequantised, on the same test set
    test_int8 = (score(test.y, predict_logits(quantize_model_weights(model), test, device="cpu")
                       .argmax(1), cfg.metric) if test is not None else None)

    # the diagnostic runs one backward pass per state unit through every step: a bounded window
    Tg = min(int(val.lengths.min()), GRADIENT_WINDOW)
    gx = torch.as_tensor(np.asarray(val.X[: min(8, val.n_series), :Tg]))
    grad_norm = gradient_norm_ratio(model, gx).tolist()

    report = _report_base(study, cfg, out, device, cells, t_start, search_seconds, interrupted,
                          train_all, test, data_info, val_how, train, val)
    n_finished = report["search"]["n_finished"]
    report.update({
        "rerank": reranked,
        "best": _best_section(best, spec, model, best.value, epochs),
        "final": {
            "seeds": [f["seed"] for f in finals],
            "val_scores": [f["val_score"] for f in finals],
            "test_scores": test_scores,
            "test_mean": float(np.mean(test_scores)) if test_scores else None,
            "test_std": float(np.std(test_scores)) if test_scores else None,
            "chosen_seed": chosen["seed"],
            "chosen_test_score": chosen.get("test_score"),
            "chosen_test_score_int8": test_int8,
            "ensemble": ensemble,
            "confusion_matrix": (
                {"class_names": test.class_names,
                 "counts": _confusion(test.y, chosen["test_pred"], test.n_classes)}
                if test is not None else None),
            "learning_curve": chosen["history"],
            "gradient_norm": grad_norm,
        },
        "export": onnx_info or None,
    })
    paths = write_report(report, out, html=html)
    return RunResult(
        run_dir=str(out), best_spec=spec.to_dict(),
        size_bytes=spec_size_bytes(spec, cfg.bytes_per_param), quantize=cfg.quantize,
        val_score=float(best.value), metric=cfg.metric,
        test_mean=report["final"]["test_mean"], test_std=report["final"]["test_std"],
        test_scores=test_scores, onnx_path=str(out / "best.onnx"),
        test_score=report["final"]["chosen_test_score"], ensemble=cfg.ensemble,
        report_json=str(paths["json"]), report_html=str(paths["html"]),
        model_dir=str(out / "model"), n_trials=n_finished,
        n_pruned=report["search"]["n_pruned"], seconds=time.perf_counter() - t_start,
        extra={"interrupted": interrupted, "onnx": onnx_info, "rerank": reranked,
               **({"model": model} if keep_model else {})},
    )


def _final_models(study, train, val, test, cfg: SearchConfig, device: str, out: Path,
                  quiet: bool):
    """The chosen trial (re-ranked with ``--rerank``) retrained on train+validation with
    ``final_seeds`` seeds (the test set evaluated once per model), and the model to export: the
    best seed's on validation, or the average of the first ``ensemble`` of them."""
    from .datasets import concat
    from .models import build_model, combine_models
    from .search import best_trial, spec_of, train_config_of
    from .train import predict_logits, score, train_model

    best = best_trial(study)
    reranked = None
    if cfg.rerank:
        best, reranked = _rerank(study, train, val, cfg, device, out, quiet)
    spec = spec_of(best)
    # "all": the trial's whole learning-rate schedule. The epoch at which a small validation set
    # peaked is mostly noise: measured over 3 benchmarks x 2 cells x 3 seeds, the end of the
    # schedule scored higher on test than the validation-chosen epoch in 16 of 18 runs
    # (benchmarks/RESULTS.md, "Final retrain length"); "best" stops at that epoch
    all_epochs = int(best.user_attrs["train"]["epochs"])
    epochs = (all_epochs if cfg.final_epochs == "all"
              else max(1, int(best.user_attrs.get("best_epoch") or all_epochs)))
    full = concat(train, val)
    mean, std = full.channel_stats()
    finals = []
    for k in range(max(cfg.final_seeds, cfg.ensemble)):
        seed = cfg.seed + 1000 + k
        model = build_model(spec, seed=seed)
        model.set_normalisation(mean, std)
        tcfg = train_config_of(best, device, seed=seed, stop_epoch=epochs)
        hist = train_model(model, full, tcfg, metric=cfg.metric)
        fit_score = score(val.y, predict_logits(model, val).argmax(1), cfg.metric)
        rec = {"seed": seed, "model": model, "val_score": fit_score, "history": hist.history}
        if test is not None:  # the test set, evaluated once per final model
            pred = predict_logits(model, test).argmax(1)
            rec.update(test_score=score(test.y, pred, cfg.metric), test_pred=pred)
        finals.append(rec)
    ensemble = None
    if cfg.ensemble > 1:  # the first N final models, averaged into one exported model
        members = finals[: cfg.ensemble]
        model, spec = combine_models([f["model"].cpu() for f in members], spec)
        chosen = {"seed": None, "model": model, "history": members[0]["history"]}
        if test is not None:
            chosen["test_pred"] = predict_logits(model, test).argmax(1)
            chosen["test_score"] = score(test.y, chosen["test_pred"], cfg.metric)
        ensemble = {"members": cfg.ensemble, "seeds": [f["seed"] for f in members]}
    else:
        chosen = max(finals, key=lambda f: f["val_score"])
    return best, reranked, spec, epochs, finals, chosen, ensemble


#: a trial estimated to take longer than this (seconds) is announced before the run starts
COSTLY_TRIAL_SECONDS = 120.0


def _say_cost(train, cfg: SearchConfig, device: str, quiet: bool) -> None:
    """Before anything runs on huge data (very long series, very many), say what one trial and
    the whole run will cost at least, measured on this machine, and how to bound it."""
    import warnings

    from .train import estimate_epoch_seconds

    if cfg.epochs * train.n_series * float(np.mean(train.lengths)) < 2e6:
        return  # small enough that no trial can take minutes: not worth a measurement
    trial = cfg.epochs * estimate_epoch_seconds(train, device=device)
    if trial < COSTLY_TRIAL_SECONDS:
        return
    total = trial * (cfg.trials + max(cfg.final_seeds, cfg.ensemble))
    msg = (f"note: {train.n_series:,} series of up to {train.max_len:,} steps: each trial of "
           f"{cfg.epochs} epochs takes at least about {_duration(trial)} on this machine, the "
           f"whole run ({cfg.trials} trials and the final retrain) at least {_duration(total)}. "
           f"Bound it with {opt('timeout', placeholder='SEC')} (and "
           f"{opt('trial_timeout', placeholder='SEC')}), fewer {opt('epochs')}, or resample the "
           "series to fewer steps")
    if quiet:
        warnings.warn(msg, stacklevel=3)
    else:
        from ._progress import console

        console.print(msg, markup=False)


def _duration(sec: float) -> str:
    return (f"{sec:.0f} s" if sec < 120 else f"{sec / 60:.0f} min" if sec < 7200
            else f"{sec / 3600:.1f} h")


def _rerank(study, train, val, cfg: SearchConfig, device: str, out: Path, quiet: bool):
    """``--rerank``: the best trial after re-scoring the top few on cross-validation folds."""
    from ._progress import console
    from .rerank import rerank

    def on_fold(trial: int, fold: int, value: float) -> None:
        if not quiet:
            console.print(f"  re-rank: trial {trial}, fold {fold + 1}/{cfg.rerank_folds}: "
                          f"{cfg.metric} {value:.4f}")

    if not quiet:
        console.print(f"re-ranking the {cfg.rerank} best trials on {cfg.rerank_folds} "
                      f"cross-validation folds ({cfg.rerank * (cfg.rerank_folds - 1)} trainings; "
                      f"fold 1 is the search's validation split)")
    best, section = rerank(study, train, val, cfg, device, run_dir=out, on_fold=on_fold)
    if not quiet:
        rows = sorted(section["rows"], key=lambda r: -r["score"])
        console.print("re-ranked: " + "; ".join(
            f"trial {r['trial']} ({r['cell']}) {r['score']:.4f}"
            f"{' (chosen)' if r['trial'] == best.number else ''}" for r in rows))
    return best, section


def _report_base(study, cfg: SearchConfig, out: Path, device: str, cells, t_start: float,
                 search_seconds: float, interrupted: bool, train_all, test, data_info: dict,
                 val_how: str, train, val) -> dict:
    """The report's sections that the search alone determines (data, search, trials,
    importances); :func:`run_on` adds the final models, an interrupted run the checkpoint."""
    from . import __version__
    from .augment import describe_vectors
    from .report import param_importances
    from .search import trial_records

    trials = trial_records(study)
    return {
        "schema_version": 1,
        "seqeq_version": __version__,
        "run_dir": str(out),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": device,
        "wall_seconds": time.perf_counter() - t_start,
        "search_seconds": search_seconds,
        "interrupted": interrupted,
        "data": {"train": train_all.summary(),
                 "test": test.summary() if test is not None else None,
                 "origin": data_info, "validation": val_how,
                 "n_train_search": train.n_series, "n_val": val.n_series,
                 "vectors": describe_vectors(train_all.vectors, train_all.channel_names)},
        "search": {"budget_kb": cfg.budget_kb, "budget_bytes": cfg.budget_bytes,
                   "bytes_per_param": cfg.bytes_per_param, "quantize": cfg.quantize,
                   "metric": cfg.metric, "trials_requested": cfg.trials,
                   "timeout": cfg.timeout, "epochs": cfg.epochs,
                   "final_epochs": cfg.final_epochs, "pruner": cfg.pruner,
                   "ensemble": cfg.ensemble, "rerank": cfg.rerank,
                   "rerank_folds": cfg.rerank_folds, "opening": cfg.opening,
                   "seed": cfg.seed, "workers": cfg.workers, "cells": cells,
                   "n_trials": len(trials),
                   "n_finished": sum(t["state"] in ("complete", "pruned") for t in trials),
                   "n_complete": sum(t["state"] == "complete" for t in trials),
                   "n_pruned": sum(t["pruned"] for t in trials),
                   "n_failed": sum(t["state"] == "fail" for t in trials)},
        "trials": trials,
        "importances": param_importances(study),
    }


def _best_section(trial, spec, model, val_score: float, epochs: int | None) -> dict:
    """The report's ``best``: the chosen trial's configuration and sizes, its validation score
    and the epochs its exported model trained."""
    from .models import spec_param_count, spec_size_bytes
    from .report import int8_size

    return {"trial": trial.number, "spec": spec.to_dict(), "params": dict(trial.params),
            "size_bytes": spec_size_bytes(spec), "size_bytes_int8": int8_size(model),
            "param_count": spec_param_count(spec), "val_score": val_score,
            "epochs": epochs, "train": trial.user_attrs.get("train")}


def _confusion(y_true, y_pred, C: int) -> list[list[int]]:
    m = np.zeros((C, C), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m.tolist()


def export_model(model_dir: str | Path, out_path: str | Path, quantize: str | None = None,
                 target: str | None = None) -> dict:
    """Export a saved model (``model.json`` + ``model.safetensors``) to the export target that
    ``target`` names or ``out_path``'s suffix chooses (:mod:`seqeq.export.targets`)."""
    from .export.targets import target_for
    from .models import load_model

    writer = target_for(out_path, target)
    model, spec, meta = load_model(model_dir)
    missing = [k for k in ("class_names", "channel_names") if meta.get(k) is None]
    if missing:
        raise SeqeqError(f"the model in {model_dir} has no {' or '.join(missing)}",
                         "Export the model/ folder of a finished seqeq run")
    return {**writer.write(model, spec, out_path, class_names=meta["class_names"],
                           channel_names=meta["channel_names"], quantize=quantize),
            "target": writer.name}


def _finish_interrupted(study, out: Path, cfg: SearchConfig, report: dict,
                        during: str = "search") -> RunResult:
    """Ctrl-C during the search or the final retrain: hand back the best model of the search so
    far (checkpointed by the search, no retrain, no test evaluation), a report of the trials so
    far (``interrupted: true``, ``final: null``), and say how to resume. Finished trials stay in
    the study; a resumed run whose search is complete goes straight to the final retrain."""
    from ._progress import console
    from .models import load_model, save_model, spec_size_bytes
    from .report import write_report
    from .search import CHECKPOINT, best_trial

    resume_hint = "resume with the same command plus --resume"
    try:
        best = best_trial(study)
        model, spec, meta = load_model(out / CHECKPOINT)
    except SeqeqError:
        raise Interrupted(f"{during} interrupted before any trial finished",
                          f"Nothing to export; {resume_hint}") from None
    save_model(model, spec, out / "model", extra=meta)
    onnx_info = export_model(out / "model", out / "best.onnx", quantize=cfg.quantize)
    trial = next((t for t in study.get_trials(deepcopy=False)
                  if t.number == meta.get("trial")), best)
    report.update({
        "best": _best_section(trial, spec, model, float(meta.get("val_score", best.value)),
                              trial.user_attrs.get("best_epoch")),
        "rerank": None,
        "final": None,
        "export": onnx_info or None,
    })
    paths = write_report(report, out)
    console.print(f"[yellow]{during} interrupted[/yellow]: the best model of the search so "
                  f"far (trial {trial.number}) is in {out / 'best.onnx'} (not retrained, not "
                  f"tested), the trials so far in {paths['html']}; finished trials are kept in "
                  f"the study; {resume_hint}", markup=True)
    return RunResult(
        run_dir=str(out), best_spec=spec.to_dict(),
        size_bytes=spec_size_bytes(spec, cfg.bytes_per_param), quantize=cfg.quantize,
        val_score=report["best"]["val_score"], metric=cfg.metric, test_mean=None,
        test_std=None, test_scores=[], onnx_path=str(out / "best.onnx"),
        report_json=str(paths["json"]), report_html=str(paths["html"]),
        model_dir=str(out / "model"), n_trials=report["search"]["n_finished"],
        n_pruned=report["search"]["n_pruned"], seconds=report["wall_seconds"],
        extra={"interrupted": True, "onnx": onnx_info})


# ---------------------------------------------------------------------------------------------
# public functions
def fit(path: str | Path, *, test: str | Path | None = None, budget_kb: float = 20.0,
        trials: int = 20, timeout: float | None = None, seed: int = 0,
        out: str | Path | None = None, fmt: str | None = None, id_col: str | None = None,
        time_col: str | None = None, label_col: str | None = None,
        group_col: str | None = None, nan: str = "reject", decimal: str | None = None,
        vectors: str = "auto", quiet: bool = True, **search: Any) -> RunResult:
    """Search, train, export and report on a CSV/Parquet file. Returns a :class:`RunResult`.

    ``search`` takes any other :class:`~seqeq.config.SearchConfig` field (``cells``, ``metric``,
    ``epochs``, ``final_seeds``, ``device``, ``workers``, ``storage``, ``resume``, ``rotate``
    ...). ``vectors`` names the x/y/z channel triplets that rotation augmentation turns.
    """
    dc = DataConfig(path=str(path), test_path=None if test is None else str(test), fmt=fmt,
                    id_col=id_col, time_col=time_col, label_col=label_col, group_col=group_col,
                    nan=nan, decimal=decimal, vectors=vectors)
    cfg = SearchConfig(budget_kb=budget_kb, trials=trials, timeout=timeout, seed=seed,
                       **_search_kwargs(search))
    return run(dc, cfg, out, quiet=quiet)


def bench(name: str, *, budget_kb: float = 20.0, trials: int = 20, timeout: float | None = None,
          seed: int = 0, out: str | Path | None = None, data_dir: str | None = None,
          vectors: str = "auto", quiet: bool = True, **search: Any) -> RunResult:
    """The same as :func:`fit` on a built-in benchmark (``seqeq datasets`` lists them)."""
    dc = DataConfig(benchmark=name, data_dir=data_dir, vectors=vectors)
    cfg = SearchConfig(budget_kb=budget_kb, trials=trials, timeout=timeout, seed=seed,
                       **_search_kwargs(search))
    return run(dc, cfg, out, quiet=quiet)


def _search_kwargs(kw: dict) -> dict:
    rot = kw.get("rotate")
    if isinstance(rot, str):  # the CLI's text: auto or an angle
        if rot.strip().lower() == "auto":
            kw = {**kw, "rotate": None}
        else:
            try:
                kw = {**kw, "rotate": float(rot)}
            except ValueError:
                raise SeqeqError(f"{opt('rotate')} {rot!r} is neither auto nor an angle",
                                 "Use auto, 0 (no rotation) or a maximum angle such as 30"
                                 ) from None
    if "cells" in kw and isinstance(kw["cells"], str):
        cells = tuple(c.strip() for c in kw["cells"].split(",") if c.strip())
        if not cells:
            raise SeqeqError(f"{opt('cells', kw['cells'])} names no cell",
                             "Name at least one cell, e.g. gru,tinyrnn, or leave it out to "
                             "search every cell")
        kw = {**kw, "cells": cells}
    elif kw.get("cells") is not None:
        kw = {**kw, "cells": tuple(kw["cells"])}
    return kw


def export(out_path: str | Path, run_dir: str | Path | None = None,
           quantize: str | None = None, target: str | None = None) -> dict:
    """Export the best model of ``run_dir`` (the latest run if omitted) to ``out_path``, as the
    export target ``target`` names or ``out_path``'s suffix chooses (``.onnx``)."""
    from .export.targets import target_for

    target_for(out_path, target)  # an unknown target fails before any run is looked up
    run_dir = Path(run_dir) if run_dir is not None else latest_run()
    if not (run_dir / "model" / "model.json").is_file():
        raise SeqeqError(f"{run_dir} holds no finished model",
                         "Pass the directory of a finished `seqeq fit`/`bench` run")
    info = export_model(run_dir / "model", out_path, quantize=quantize, target=target)
    return {**info, "run_dir": str(run_dir), **_model_origin(run_dir)}


def _model_origin(run_dir: Path) -> dict:
    """Which model a run's ``model/`` holds: the final retrain's (``"final"``), or, for a run
    interrupted before it finished, the search's best trial's own (``"search"``, not retrained
    and not tested)."""
    import json

    try:
        meta = json.loads((run_dir / "model" / "model.json").read_text(encoding="utf-8"))
        extra = meta.get("extra", meta) if isinstance(meta, dict) else {}
    except (OSError, ValueError):
        extra = {}
    if isinstance(extra, dict) and "trial" in extra and "seed" not in extra:
        return {"origin": "search", "trial": extra.get("trial")}
    return {"origin": "final", "trial": None}


def predict(model_path: str | Path, data: str | Path, *, proba: bool = False,
            fmt: str | None = None, id_col: str | None = None, time_col: str | None = None,
            label_col: str | None = None, nan: str = "reject", decimal: str | None = None):
    """Predict labels (and class probabilities) for every series of ``data`` from an .onnx file
    alone, with onnxruntime (torch is not imported). Returns a pandas DataFrame."""
    import pandas as pd

    from .datasets import load_file
    from .export.runtime import OnnxClassifier

    clf = OnnxClassifier(model_path)
    ds = load_file(data, layout=fmt, id_col=id_col, time_col=time_col, label_col=label_col,
                   nan=nan, decimal=decimal, require_labels=False)
    clf.check_channels(ds.channel_names)
    probs = clf.predict_proba(ds.X, ds.lengths)
    ids = ds.ids if ds.ids is not None else np.arange(ds.n_series)
    df = pd.DataFrame({"id": ids, "label": np.asarray(clf.class_names)[probs.argmax(1)]})
    if proba:
        for i, c in enumerate(clf.class_names):
            df[f"p_{c}"] = probs[:, i]
    return df
