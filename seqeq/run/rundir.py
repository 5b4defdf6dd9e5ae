"""Stage 2, the run directory: refuse one that would be clobbered (or a resume that would mix
incomparable trials), hold it with a lock while the run runs, create or clear seqeq's files in
it, and turn a file that cannot be written into one line saying how to carry on."""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from ..config import DataConfig, RunConfig
from ..errors import SeqeqError, WriteError, opt

__all__ = ["RUNS_DIR", "LOCK_FILE", "check_run_dir", "prepare_run_dir", "run_dir_lock",
           "resumable", "disk_full", "default_out", "latest_run", "model_origin"]

RUNS_DIR = Path("runs")


_RUN_FILES = ("study.db", "run.json", "report.json", "best.onnx")


def check_run_dir(out: Path, cfg: RunConfig, data_fp: str | None = None) -> None:
    """Refuse a run directory that would be clobbered, before anything is read or written
    (``data_fp``: the search data's fingerprint, once loaded, for a resumed run to compare)."""
    if out.exists() and not out.is_dir():
        raise SeqeqError(f"{opt('out', str(out))} exists and is not a directory",
                         f"Choose a directory path for {opt('out')}")
    has_run = out.is_dir() and any((out / f).exists() for f in _RUN_FILES)
    if has_run and not (cfg.run.resume or cfg.run.overwrite):
        raise SeqeqError(f"run directory {out} already holds a run",
                         f"Pass {opt('resume')} to continue it, {opt('overwrite')} to replace "
                         f"it, or choose another {opt('out')}")
    if cfg.run.resume and not has_run and cfg.run.storage is None:
        raise SeqeqError(f"nothing to resume in {out}", f"Drop {opt('resume')} to start a new run")
    if cfg.run.resume and has_run:
        _check_resume_matches(out, cfg, data_fp)
    if out.is_dir() and not has_run and not cfg.run.overwrite:
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
                 "cells", "rotate", "augment", "mixup", "average", "distill", "time_warp",
                 "cv_folds", "ram_kb", "max_macs_per_step")
#: a setting whose None is typed as a value on the command line
_NONE_TYPED = {"rotate": "auto", "augment": "auto", "mixup": "auto", "time_warp": "auto"}
#: how a setting's None reads in a message where it is given by leaving its flag out
_NONE_SHOWN = {"cells": "all cells", "quantize": "none"}


def _check_resume_matches(out: Path, cfg: RunConfig, data_fp: str | None = None) -> None:
    """--resume with settings that would make the finished trials incomparable (a smaller budget
    would let an over-budget trial win, another seed another validation split) or with other data
    is refused, naming what the run used."""
    import json

    try:
        before_run = json.loads((out / "run.json").read_text(encoding="utf-8"))
        before = before_run["search"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no readable record (a run killed before writing it): nothing to compare
    # settings that runs of older versions did not record, as those versions trained: one model,
    # no amplitude distortions, no mixup, no averaging, no distillation (a resumed old run keeps
    # them off, not the new default)
    defaults = {"ensemble": 1, "augment": 0.0, "mixup": 0.0, "average": 0.0, "distill": False,
                "time_warp": 0.0}
    for key in _RESUME_FIXED:
        flag = opt(key)
        now = cfg.flat()[key]
        was = before.get(key, defaults.get(key, now))
        if isinstance(was, list):  # JSON keeps tuples as lists
            was = tuple(was)
        if was != now and isinstance(now, bool):  # a switch: --distill / --no-distill
            raise SeqeqError(f"{opt('resume')} with {opt(key, now)} but the run in {out} used "
                             f"{opt(key, bool(was))}",
                             f"Resume with {opt(key, bool(was))}, or start a new run with "
                             f"another {opt('out')}")
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
def run_dir_lock(out: Path):
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
            from .._io import write_error

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


def disk_full(e: BaseException) -> bool:
    """SQLite (through SQLAlchemy) reports a full disk as an OperationalError, not an OSError."""
    text = str(e).lower()
    return type(e).__name__ == "OperationalError" and ("disk is full" in text
                                                        or "disk i/o error" in text)


def resumable(e: SeqeqError, out: Path, cfg: RunConfig) -> WriteError:
    """A file of the run that could not be written, with how to carry on: the study keeps
    every finished trial, so the same command plus --resume continues where it stopped."""
    problem = e.problem if isinstance(e, WriteError) else (
        f"could not write the study {out / 'study.db'} (database or disk is full)")
    if not (out / "run.json").is_file():  # the run never started: nothing of it is kept
        return WriteError(problem, "Nothing was kept; free space on that disk, then run the "
                                   "command again")
    again = ("the same command" if cfg.run.resume else f"the same command plus {opt('resume')}")
    return WriteError(problem, f"The files written before it are intact (the finished trials "
                               f"are in the study); free space on that disk, then run {again}")


def prepare_run_dir(out: Path, cfg: RunConfig) -> None:
    """Create (or, with --overwrite, clear seqeq's files from) the run directory. Call only once
    every input has been validated and :func:`check_run_dir` has passed under the lock."""
    from ..search import CHECKPOINT

    try:
        if cfg.run.overwrite and out.is_dir():
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


def default_out(dc: DataConfig) -> Path:
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


def model_origin(run_dir: Path) -> dict:
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
