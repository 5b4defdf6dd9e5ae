"""Stage 3, the study and the search: open the Optuna study (a local SQLite file, or a shared
storage), re-queue trials a killed or interrupted run left behind, and run the search with its
progress display; Ctrl-C ends the search, not the run."""

from __future__ import annotations

from pathlib import Path

from .. import _interrupt
from .._progress import console
from ..config import RunConfig
from ..errors import SeqeqError, opt

__all__ = ["open_study", "check_device", "fail_interrupted_trials", "search"]


def open_study(cfg: RunConfig, out: Path):
    """The Optuna study; a storage that cannot be opened is a user error naming the URL (without
    its password)."""
    from ..search import make_study

    try:
        return make_study(cfg, out, load_if_exists=cfg.run.resume or cfg.run.storage is not None)
    except SeqeqError:
        raise
    except Exception as e:
        from .rundir import disk_full

        if disk_full(e):  # not the storage's fault: run_on names the file and the way on
            raise
        url = cfg.run.storage or f"sqlite:///{out / 'study.db'}"
        try:
            from sqlalchemy.engine import make_url

            url = make_url(url).render_as_string(hide_password=True)
        except Exception:
            url = url.split("@")[-1] if "@" in url else url
        msg = (" ".join(str(e).replace(cfg.run.storage or url, url).split())[:200]
               or type(e).__name__)
        raise SeqeqError(f"cannot open the study storage {url} ({type(e).__name__}: {msg})",
                         f"Check {opt('storage')} (e.g. postgresql://user@host/db, which needs "
                         "pip install seqeq[postgres]) and that the database is reachable"
                         ) from None


def check_device(device: str) -> None:
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


def fail_interrupted_trials(study) -> int:
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


def search(rc) -> tuple[object, bool]:
    """Run the search of ``rc`` (a :class:`~seqeq.run.pipeline.Run`) in its study: returns the
    study and whether Ctrl-C ended it (the cut-short trial is then failed and re-queued)."""
    from ..search import SearchContext, run_workers

    cfg, study = rc.cfg, rc.study
    if cfg.run.resume and cfg.run.storage is None:
        n = fail_interrupted_trials(study)
        if n and not rc.quiet:
            console.print(f"resuming: {n} interrupted trial(s) marked failed and re-queued")
    prog = rc.progress
    ctx = SearchContext(train=rc.train, val=rc.val, cfg=cfg, device=rc.device, cells=rc.cells,
                        run_dir=rc.out, folds=rc.folds, watch=prog.trial_epoch)
    interrupted = False
    prog.start(study)
    try:  # a Ctrl-C between trials (Optuna's storage work) is kept too (seqeq._interrupt)
        with _interrupt.deferred():
            run_workers(ctx, study, rc.out, callbacks=[prog.callback])
    except KeyboardInterrupt:
        interrupted = True
    if interrupted and cfg.run.storage is None:  # our own study: the cut-short trial is re-queued
        fail_interrupted_trials(study)
    return study, interrupted
