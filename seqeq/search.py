"""The AutoML search: an Optuna study over cells and their hyperparameters under a size budget.

One objective for every cell: sample a feasible :class:`ModelSpec` and training settings, train with
the one training loop, report the validation metric every epoch to the pruner, return the best
validation score. The study lives in a storage (SQLite in the run directory by default, any Optuna
storage URL otherwise), so a search can be resumed and shared by several worker processes.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna

from . import _interrupt
from .augment import (
    AUGMENT_BELOW,
    AUGMENT_STRENGTH,
    MIXUP_ALPHA,
    ROTATE_CHOICES,
    TIME_WARP_STRENGTH,
)
from .config import RunConfig
from .datasets import SeqData
from .distill import soft_mixes
from .errors import SeqeqError, opt
from .models import ModelSpec, build_model, conv_param_count, save_model, spec_size_bytes
from .search_spaces import feasible_cells, list_families, smallest_size, suggest_spec
from .search_spaces.portfolio import opening_trials
from .train import DEFAULT_EPOCHS, TrainConfig, batch_for, schedule_epochs, train_model

__all__ = ["SearchContext", "make_study", "open_study", "run_search", "trial_records", "best_trial",
           "spec_of", "train_config_of", "FINISHED", "counts_toward_trials", "trial_error"]

# Optuna flags heartbeats, retries and grouped TPE as experimental/deprecated-API; we rely on them
# deliberately and pin the behaviour with tests, so their warnings are noise for our users.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", category=FutureWarning, module=r"optuna\..*")
warnings.filterwarnings("ignore", category=FutureWarning, module=r"seqeq\.search")
optuna.logging.set_verbosity(optuna.logging.WARNING)

CHECKPOINT = "checkpoint"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
#: a search none of whose trials completes stops after this many failed trials in a row
MAX_FAILURES_IN_A_ROW = 3


class TrialFailure(Exception):
    """A trial's training failed (a numerical or shape error in one configuration): the trial is
    failed, counts toward ``--trials``, and the search goes on. Its cause is the trial's
    ``error`` user attribute."""


def trial_error(t: optuna.trial.FrozenTrial) -> str | None:
    """Why a trial failed in its own training (None: it did not, or Ctrl-C / a dead worker cut
    it short, in which case it is re-queued rather than counted)."""
    return t.user_attrs.get("error")


def counts_toward_trials(t: optuna.trial.FrozenTrial) -> bool:
    """Completed, pruned, and failed in its own training: what ``--trials`` counts. Trials cut
    short by Ctrl-C or a dead worker are run again and do not count."""
    return t.state in FINISHED or (t.state == optuna.trial.TrialState.FAIL
                                   and trial_error(t) is not None)
LR_RANGE = (1e-3, 3e-2)
BATCH_SIZES = (64, 128, 256)


@dataclass
class SearchContext:
    """Everything the objective needs; picklable, so worker processes get a copy."""

    train: SeqData
    val: SeqData
    cfg: RunConfig
    device: str
    cells: list[str]
    #: where the best model so far is checkpointed (None: nowhere)
    run_dir: Path | None = None
    #: cross-validation folds (train, validation) that score each trial (None: train/val,
    #: the one split); see :func:`cv_splits`
    folds: list[tuple[SeqData, SeqData]] | None = None
    #: called after each epoch of this process's trials (the progress display,
    #: ``RunProgress.trial_epoch``); not sent to worker processes
    watch: Callable[..., None] | None = None
    #: the distillation pools of the folds, drawn when a trial first needs one (a few MB each:
    #: not sent to worker processes, which draw their own, the same)
    soft: dict = field(default_factory=dict)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "watch": None, "soft": {}}

    def soft_for(self, k: int, train: SeqData, mixup: float):
        """Fold ``k``'s distillation pool (:func:`seqeq.distill.soft_mixes`)."""
        if (k, mixup) not in self.soft:
            self.soft[(k, mixup)] = soft_mixes(train, mixup, seed=self.cfg.search.seed)
        return self.soft[(k, mixup)]


def candidate_cells(cfg: RunConfig, d: int, C: int) -> list[str]:
    """The cells to search: requested (or all with a search space) that can fit the budget."""
    known = list_families()
    cells = list(cfg.search.cells) if cfg.search.cells else known
    unknown = [c for c in cells if c not in known]
    if unknown:
        raise SeqeqError(f"unknown cell(s) in {opt('cells')}: {', '.join(unknown)}",
                         f"Choose from: {', '.join(known)}")
    ok = feasible_cells(cells, d, C, cfg.member_budget_bytes, cfg.bytes_per_param)
    if not ok:
        size, cell = smallest_size(cells, d, C, cfg.bytes_per_param)
        n = cfg.final.ensemble
        what = f"an ensemble of {n} models" if n > 1 else "the smallest feasible model"
        raise SeqeqError(
            f"no model fits {opt('budget_kb', cfg.search.budget_kb)}: {what} ({cell}) needs "
            f"{n * size / 1024:.2f} KiB for {d} channels and {C} classes",
            f"Raise {opt('budget_kb')} to at least {math.ceil(n * size / 1024 * 100) / 100:g}"
            + (f" or lower {opt('ensemble')}" if n > 1 else ""))
    return ok


def _retry_callback():
    """Re-queue a trial whose worker died (stale heartbeat), at most twice."""
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    return cls(max_retry=2) if cls else optuna.storages.RetryFailedTrialCallback(max_retry=2)


def _rdb_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Open an RDB storage. Several workers starting at once on a fresh database race to create
    its schema (PostgreSQL: duplicate key on CREATE TYPE); the losers retry once it exists."""
    from sqlalchemy.exc import DBAPIError

    for i in range(attempts):
        try:
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=10,
                grace_period=30,
                heartbeat_stale_trial_callback=_retry_callback(),
                engine_kwargs=({"connect_args": {"timeout": 60}} if url.startswith("sqlite")
                               else None),
            )
        except DBAPIError:
            if i == attempts - 1:
                raise
            time.sleep(0.5 * (i + 1))
    raise AssertionError("unreachable")


def sampler_seed(cfg: RunConfig, worker: int = 0) -> int:
    """The sampler's seed in one worker. Every worker of a study must draw its own candidates:
    with one seed, N workers propose the same random start-up trials N times. Local worker k uses
    ``seed + k`` (worker 0, a single-process search, uses ``seed``: reproducible); processes that
    share a ``--storage`` cannot know each other's index, so they mix in fresh entropy."""
    if cfg.run.storage is not None:
        import secrets

        return (cfg.search.seed + secrets.randbits(31)) % 2**31
    return cfg.search.seed + worker


#: trials report to the pruner in percent of their schedule (trials of one search may have
#: schedules of different epochs: ``train.schedule_epochs``), and the median pruner waits a fifth
PROGRESS_STEPS = 100
PRUNER_WARMUP = 20


#: the default time of a search: this many seconds per 1,000 training series, at least this many
#: (with the final retrain, a run on a small problem ends within 5 minutes on one CPU core)
AUTO_SEARCH_SECONDS = 150.0
#: the final models may take this share of the search's time (``run.final.final_schedule``)
FINAL_SHARE = 0.8
#: a trial may take this share of the search's time (its schedule is shortened to fit:
#: ``TrainConfig.max_seconds``; a cross-validated trial's folds share it), so the search sees
#: at least four trials
TRIAL_SHARE = 0.25


def search_seconds(cfg: RunConfig, n_series: int) -> float | None:
    """The search's time limit: ``--timeout``, or (unset) :data:`AUTO_SEARCH_SECONDS` per 1,000
    training series, at least that; ``--timeout 0``: none. The search also stops at
    ``--trials``, whichever comes first."""
    t = cfg.search.timeout
    if t is None:
        return AUTO_SEARCH_SECONDS * max(1.0, n_series / 1000)
    return float(t) if t > 0 else None


def trial_seconds(cfg: RunConfig, n_series: int) -> float | None:
    """One trial's time limit: ``--trial-timeout``, or a quarter of the search's."""
    if cfg.search.trial_timeout is not None:
        return float(cfg.search.trial_timeout)
    total = search_seconds(cfg, n_series)
    return None if total is None else TRIAL_SHARE * total


#: where the validation split holds fewer series than this, a trial is scored by
#: cross-validation with this many folds over train+validation (``--cv-folds``)
CV_BELOW = 100
CV_FOLDS = 3


def cv_fold_count(cfg: RunConfig, n_val: int) -> int:
    """The folds that score a trial: ``--cv-folds``, or (auto) :data:`CV_FOLDS` where the
    validation split has fewer than :data:`CV_BELOW` series (with BasicMotions' 8 validation
    series a trial's score moves in steps of 12.5 points, and four of seven trials tied at
    100 %), else 1 (the split alone: a few hundred series or more, e.g. HAR-2's 1,470)."""
    if cfg.search.cv_folds is not None:
        return cfg.search.cv_folds
    return CV_FOLDS if n_val < CV_BELOW else 1


def cv_splits(train: SeqData, val: SeqData, folds: int, seed: int
              ) -> list[tuple[SeqData, SeqData]] | None:
    """``folds`` (train, validation) pairs over ``concat(train, val)``: the first is the search's
    own split (so a resumed or shared study's first fold is the same), the others stratified
    folds (whole groups when the data has groups) of the same size; None for 1 fold. Every
    fold's training side has every class."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    from .datasets import concat

    if folds <= 1:
        return None
    full = concat(train, val)
    n = full.n_series
    y = np.asarray(full.y)
    out = [(train, val)]
    with warnings.catch_warnings():  # a class smaller than the folds: sklearn warns; fine
        warnings.simplefilter("ignore", UserWarning)
        if full.groups is not None and len(np.unique(full.groups)) >= folds:
            parts = StratifiedGroupKFold(n_splits=folds, shuffle=True,
                                         random_state=seed + 1).split(np.zeros(n), y,
                                                                      full.groups)
        else:
            parts = StratifiedKFold(n_splits=min(folds, max(2, int(np.bincount(y).max()))),
                                    shuffle=True, random_state=seed + 1).split(np.zeros(n), y)
        for keep, held in parts:
            if len(out) == folds:
                break
            if len(np.unique(y[keep])) < full.n_classes or not len(held):
                continue  # a fold whose training side misses a class cannot be scored
            out.append((full.subset(np.sort(keep)), full.subset(np.sort(held))))
    return out if len(out) > 1 else None


#: the recurrence of a trial runs over at most about this many steps: longer series are read
#: through the pooling front end (``models.pool_time``, no parameters)
MAX_RECURRENT_STEPS = 256
#: ... and over at most this many where the convolution front end reads the series first: its
#: filters see every step, and a block keeps each filter's largest response, so the recurrence
#: reads what happened in each block rather than a smoothed series. A GRU D=24 with 16 filters,
#: three seeds: ArrowHead 58 % (filters on the series itself) -> 72 % (64 blocks) -> 78 % (32)
#: -> 69 % (16); Pickup 42 -> 67 -> 74 -> 71 %, ACSF1 62 -> 69 -> 69 -> 63 %, and 3-4x faster
#: (benchmarks/RESULTS.md, "Convolution first")
CONV_RECURRENT_STEPS = 32


def pool_for(max_len: int, conv: int = 0) -> int:
    """The front end's pooling for series of up to ``max_len`` steps: 1 (none) up to
    :data:`MAX_RECURRENT_STEPS` (with a convolution front end of ``conv`` filters,
    :data:`CONV_RECURRENT_STEPS`), else the fewest steps per block that bring the recurrence
    within it (ACSF1's 1,460 steps: blocks of 6, 244 steps; with the convolution, of 46, 32
    steps). A recurrence over thousands of steps is both slow (sequential in time) and hard to
    train (a gradient through every step)."""
    steps = CONV_RECURRENT_STEPS if conv else MAX_RECURRENT_STEPS
    return max(1, math.ceil(max_len / steps))


def progress_step(epoch: int, epochs: int) -> int:
    """The pruner's step for ``epoch`` of a schedule of ``epochs``: percent done, 1..100."""
    return max(1, math.ceil(PROGRESS_STEPS * epoch / max(epochs, 1)))


def make_study(cfg: RunConfig, run_dir: Path, load_if_exists: bool,
               worker: int = 0) -> optuna.Study:
    """Create or open the study: SQLite in ``run_dir`` unless ``cfg.run.storage`` names another."""
    url = cfg.run.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    storage = _rdb_storage(url)
    n_startup = max(3, min(10, cfg.search.trials // 3))

    def sampler(seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup,
                                          multivariate=True, group=True, constant_liar=True)

    if cfg.search.pruner == "median":
        # no verdict before a fifth of the schedule: a trial's first epochs say little about
        # its end, less so under augmentation (a 40-epoch HAR-2 search at 8 KiB pruned both GRUs
        # it tried at epoch 3, benchmarks/RESULTS.md)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=PRUNER_WARMUP)
    elif cfg.search.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=5, max_resource=PROGRESS_STEPS)
    else:
        pruner = optuna.pruners.NopPruner()
    seed = sampler_seed(cfg, worker)
    study = optuna.create_study(
        storage=storage,
        study_name=cfg.run.study_name or "seqeq",
        sampler=sampler(seed),
        pruner=pruner,
        direction="maximize",
        load_if_exists=load_if_exists,
    )
    n = len(study.get_trials(deepcopy=False))
    if n:  # resumed: a sampler restarted from the same seed would replay the tried candidates
        study.sampler = sampler((seed + 100_003 * n) % 2**31)
    return study


def spec_of(trial: optuna.trial.FrozenTrial) -> ModelSpec:
    return ModelSpec.from_dict(trial.user_attrs["spec"])


def train_config_of(trial: optuna.trial.FrozenTrial, device: str, seed: int,
                    stop_epoch: int | None = None, epochs: int | None = None) -> TrainConfig:
    """The trial's training settings; with ``stop_epoch``, the same learning-rate schedule
    followed up to that epoch (how the final model repeats the trial's best epoch); with
    ``epochs``, a schedule of that length instead of the trial's (``run.final.final_schedule``)."""
    t = trial.user_attrs["train"]
    return TrainConfig(lr=t["lr"], batch_size=t["batch_size"], epochs=epochs or t["epochs"],
                       patience=0 if stop_epoch else t.get("patience", 0), device=device,
                       seed=seed, stop_epoch=stop_epoch, rotate_deg=t.get("rotate_deg", 0.0),
                       augment=t.get("augment", 0.0), mixup=t.get("mixup", 0.0),
                       average=t.get("average", 0.0), time_warp=t.get("time_warp", 0.0))


def soft_of(trial: optuna.trial.FrozenTrial, train: SeqData, seed: int):
    """The distillation pool for training ``trial``'s configuration on ``train`` (None where the
    trial trained without: no mixup, or ``distill`` off)."""
    t = trial.user_attrs["train"]
    if not (t.get("distill") and t.get("mixup")):
        return None
    return soft_mixes(train, t["mixup"], seed=seed)


def _objective(ctx: SearchContext) -> Callable[[optuna.Trial], float]:
    cfg = ctx.cfg
    d, C = ctx.train.n_channels, ctx.train.n_classes
    folds = ctx.folds or [(ctx.train, ctx.val)]
    n_fit = folds[0][0].n_series  # what a trial trains on (the batch and schedule follow it)

    def objective(trial: optuna.Trial) -> float:
        cell = trial.suggest_categorical("cell", ctx.cells)
        conv = _suggest_conv(trial, cell, d, C, cfg)
        # the cell reads the front end's filters; what the front end's weights take (counted
        # at 4 bytes each, an upper bound at any precision) is not the cell's to spend
        budget = cfg.member_budget_bytes - 4 * conv_param_count(d, conv)
        spec = dataclasses.replace(
            suggest_spec(trial, cell, conv or d, C, budget, cfg.bytes_per_param),
            input_size=d, pool=pool_for(ctx.train.max_len, conv), conv=conv)
        spec = _within_device_limits(trial, spec, cfg)
        lr = trial.suggest_float("lr", *LR_RANGE, log=True)
        batch_size = batch_for(n_fit, trial.suggest_categorical("batch_size", list(BATCH_SIZES)))
        rotate = _suggest_rotate(trial, cfg, ctx.train)
        augment = _suggest_augment(trial, cfg, n_fit)
        mixup = _mixup_for(cfg, n_fit)
        time_warp = _suggest_time_warp(trial, cfg, n_fit)
        # judged at the end of its schedule (what the final retrain delivers), a trial runs it
        # whole unless pruned; judged by its best epoch, it stops early after `patience`
        sc = cfg.search
        epochs = schedule_epochs(n_fit, batch_size, sc.epochs)
        # (--patience counts epochs of a 40-epoch schedule: a longer one waits as much longer)
        patience = (0 if cfg.final.final_epochs == "all"
                    else max(sc.patience, round(sc.patience * epochs / DEFAULT_EPOCHS)))
        # fold 0 sizes the schedule to its share of the trial's time; the others follow it
        # (stopped, as a last resort, at their share: a fold of a third fewer series per epoch
        # rarely needs it)
        limit = trial_seconds(cfg, ctx.train.n_series)
        share = None if limit is None else limit / len(folds)
        size = spec_size_bytes(spec, cfg.bytes_per_param)
        trial.set_user_attr("spec", spec.to_dict())
        trial.set_user_attr("size_bytes", size)
        # "planned_epochs": the schedule before a time limit shortened it, which the final
        # retrain runs where its own time allows (run.final.final_schedule)
        settings = {"lr": lr, "batch_size": batch_size, "epochs": epochs, "patience": patience,
                    "rotate_deg": rotate, "augment": augment, "mixup": mixup,
                    "average": sc.average, "distill": bool(sc.distill and mixup > 0),
                    "time_warp": time_warp,
                    "planned_epochs": epochs}
        trial.set_user_attr("train", settings)
        t0 = time.perf_counter()
        curve: list[float] = []
        losses: list[float] = []
        reported, pruner_step = [0], [0]

        def on_epoch(epoch: int, rec: dict) -> None:
            """The first fold's epochs: recorded, and reported to the pruner (every trial's
            first fold is the same split, so their curves compare)."""
            nonlocal epochs
            if "schedule_epochs" in rec:  # shortened to fit the trial's time: the other folds
                epochs = settings["epochs"] = rec["schedule_epochs"]  # and the final retrain
                trial.set_user_attr("train", settings)  # repeat it
            v = rec.get("val_score", float("nan"))
            curve.append(v)
            losses.append(rec.get("val_loss", float("nan")))
            if ctx.watch is not None:
                ctx.watch(trial.number, spec, size, epoch, epochs, v, 0, len(folds))
            step = progress_step(epoch, epochs)
            if step <= reported[0]:
                return  # a long schedule reports once per percent (the storage is written)
            reported[0] = step
            trial.set_user_attr("val_curve", curve)
            trial.set_user_attr("epochs_run", epoch)
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            # with folds, the first fold's score is reported where it weighs as a share of the
            # trial's, once per pruner step (optuna warns about, and ignores, a step reported twice)
            pstep = step if len(folds) == 1 else max(1, step // len(folds))
            if pstep <= pruner_step[0]:
                return
            pruner_step[0] = pstep
            trial.report(v, pstep)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} of {epochs}")

        values, weights, fold_losses, first = [], [], [], None
        for k, (tr, va) in enumerate(folds):
            model = build_model(spec, seed=sc.seed + trial.number)
            model.set_normalisation(*tr.channel_stats())
            tcfg = TrainConfig(lr=lr, batch_size=batch_size, epochs=epochs, patience=patience,
                               device=ctx.device, seed=sc.seed + trial.number,
                               max_seconds=share, rotate_deg=rotate, augment=augment,
                               mixup=mixup, average=sc.average, time_warp=time_warp,
                               stop_epoch=None if k == 0 else epochs)
            fold_curve: list[float] = []
            fold_loss: list[float] = []

            def later_fold(epoch: int, rec: dict, c=fold_curve, lo=fold_loss, k=k) -> None:
                c.append(rec.get("val_score", float("nan")))
                lo.append(rec.get("val_loss", float("nan")))
                if ctx.watch is not None:
                    ctx.watch(trial.number, spec, size, epoch, epochs, c[-1], k, len(folds))

            soft = ctx.soft_for(k, tr, mixup) if settings["distill"] else None
            res = train_model(model, tr, tcfg, val=va, metric=cfg.search.metric,
                              on_epoch=on_epoch if k == 0 else later_fold, soft=soft)
            if k == 0:
                first = (model, res)
                fold_curve, fold_loss = curve, losses
            values.append(trial_value(fold_curve, res.best_val, cfg, epochs))
            tail = [v for v in fold_loss[-tail_epochs(epochs):] if math.isfinite(v)]
            fold_losses.append(float(np.mean(tail)) if tail else math.nan)
            weights.append(va.n_series)
        model, res = first
        if res.epochs_run > 1:  # what one epoch of this configuration costs (the final
            # retrain's time check): the first fold's epochs after its first
            h = res.history
            trial.set_user_attr("epoch_seconds",
                                (h[-1]["seconds"] - h[0]["seconds"]) / (len(h) - 1))
        trial.set_user_attr("val_curve", curve)
        trial.set_user_attr("epochs_run", res.epochs_run)
        value = float(np.average(values, weights=weights))
        if len(folds) > 1:
            trial.set_user_attr("fold_scores", values)
        loss = float(np.average(fold_losses, weights=weights))
        if math.isfinite(loss):  # breaks ties between trials of one score (rank_key)
            trial.set_user_attr("val_loss", loss)
        trial.set_user_attr("best_epoch", res.best_epoch)
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        if ctx.run_dir is not None and _beats_best(trial, value):
            # the best model so far (its first fold's), kept so an interrupted search still
            # hands back a model
            save_model(model.cpu(), spec, ctx.run_dir / CHECKPOINT,
                       extra={"trial": trial.number, "val_score": value,
                              "class_names": ctx.train.class_names,
                              "channel_names": ctx.train.channel_names})
        return value

    def marked(trial: optuna.Trial) -> float:
        try:
            return objective(trial)
        except KeyboardInterrupt:  # Optuna fails the trial; say why, so resume re-queues it
            trial.set_user_attr("interrupted", True)
            raise
        except SeqeqError:  # the user's input, not this configuration: the search stops
            raise
        except (RuntimeError, ValueError, FloatingPointError, ZeroDivisionError) as e:
            msg = " ".join(str(e).split())[:300] or type(e).__name__
            trial.set_user_attr("error", f"{type(e).__name__}: {msg}")
            raise TrialFailure(msg) from e

    return marked


def tail_epochs(epochs: int) -> int:
    """How many final epochs a trial's score averages under ``--final-epochs all``."""
    return max(1, round(epochs / 10))


def trial_value(curve: list[float], best_val: float | None, cfg: RunConfig,
                epochs: int | None = None) -> float:
    """A trial's score. ``--final-epochs all`` (the final model runs the whole schedule): the
    mean validation score of the schedule's last :func:`tail_epochs` epochs. The single best
    epoch of a noisy validation curve rewards lucky spikes (a trial that peaked at epoch 3 of 40
    and was stopped won searches it then lost on test, ``benchmarks/RESULTS.md``); the end of the
    schedule is both steadier and what the final retrain delivers. ``best``: the best epoch.
    ``epochs``: the trial's schedule (default ``--epochs``)."""
    if cfg.final.final_epochs == "all":
        n = epochs or cfg.search.epochs or len(curve) or DEFAULT_EPOCHS
        tail = [v for v in curve[-tail_epochs(n):] if math.isfinite(v)]
        return float(np.mean(tail)) if tail else 0.0
    return float(best_val if best_val is not None else 0.0)


#: filters of the convolution front end the search chooses from (0: none;
#: ``models.SequenceClassifier``)
CONV_CHOICES = (0, 16)


def _suggest_conv(trial: optuna.Trial, cell: str, d: int, C: int, cfg: RunConfig) -> int:
    """The trial's convolution front end: a searched choice of :data:`CONV_CHOICES`, or none
    where the cell would not fit the budget beside it (recorded as ``adjusted.conv``)."""
    conv = int(trial.suggest_categorical("conv", list(CONV_CHOICES)))
    if conv:
        left = cfg.member_budget_bytes - 4 * conv_param_count(d, conv)
        if not feasible_cells([cell], conv, C, left, cfg.bytes_per_param):
            trial.set_user_attr("adjusted.conv", True)
            return 0
    return conv


def _within_device_limits(trial: optuna.Trial, spec: ModelSpec, cfg: RunConfig) -> ModelSpec:
    """``spec``, or where it is over ``--ram-kb`` / ``--max-macs-per-step`` (each ensemble member
    gets its share, as of the budget), the same model at the largest hidden size under them
    (``adjusted.hidden_size``); a trial whose model is over them at every size is pruned
    untrained. The costs are the C export's (``seqeq.export.mcu.device_cost``)."""
    sc = cfg.search
    if sc.ram_kb is None and sc.max_macs_per_step is None:
        return spec
    from .export.mcu import device_cost

    n = cfg.final.ensemble
    ram = None if sc.ram_kb is None else sc.ram_kb * 1024 / n
    macs = None if sc.max_macs_per_step is None else sc.max_macs_per_step / n

    def cost(D: int) -> dict | None:
        try:
            c = device_cost(dataclasses.replace(spec, hidden_size=D))
        except (ValueError, RuntimeError, SeqeqError):  # no model of this size
            return None
        fits = ((ram is None or c["ram_bytes"] <= ram)
                and (macs is None or c["macs_per_step"] <= macs))
        return c if fits else None

    D, c = spec.hidden_size, cost(spec.hidden_size)
    if c is None:  # the largest size that fits (the costs grow with D)
        lo, hi, best = 1, D - 1, None
        while lo <= hi:
            mid = (lo + hi) // 2
            got = cost(mid)
            if got is not None:
                best, lo = (mid, got), mid + 1
            else:
                hi = mid - 1
        if best is None:
            trial.set_user_attr("over_device_limits", True)
            raise optuna.TrialPruned("over --ram-kb / --max-macs-per-step at every hidden size")
        (D, c), spec = best, dataclasses.replace(spec, hidden_size=best[0])
        trial.set_user_attr("adjusted.hidden_size", D)
    trial.set_user_attr("device", c)
    return spec


def _suggest_augment(trial: optuna.Trial, cfg: RunConfig, n_fit: int) -> float:
    """The strength of the trial's amplitude distortions (``seqeq.augment.warp_magnitudes``):
    ``--augment S`` when given; none for trials that train on :data:`~seqeq.augment.AUGMENT_BELOW`
    series or more (on HAR-2's 7,000, scaling and jitter did not help); below, searched between
    none and :data:`~seqeq.augment.AUGMENT_STRENGTH`: they helped OSULeaf and not ArrowHead
    (``benchmarks/augment_small.py``), so the data decides."""
    if cfg.search.augment is not None:
        return float(cfg.search.augment)
    if n_fit >= AUGMENT_BELOW:
        return 0.0
    return float(trial.suggest_categorical("augment", [0.0, AUGMENT_STRENGTH]))


def _suggest_time_warp(trial: optuna.Trial, cfg: RunConfig, n_fit: int) -> float:
    """The strength of the trial's time warping (``seqeq.augment.warp_time``): ``--time-warp
    S`` when given; auto: none for trials that train on :data:`~seqeq.augment.AUGMENT_BELOW`
    series or more, below that searched between none and
    :data:`~seqeq.augment.TIME_WARP_STRENGTH` (it helped four problems of five and cost ACSF1,
    whose appliances' cycles keep their tempo, 9 points: the data decides)."""
    if cfg.search.time_warp is not None:
        return float(cfg.search.time_warp)
    if n_fit >= AUGMENT_BELOW:
        return 0.0
    return float(trial.suggest_categorical("time_warp", [0.0, TIME_WARP_STRENGTH]))


def _mixup_for(cfg: RunConfig, n_fit: int) -> float:
    """Mixup's Beta parameter for a trial (``TrainConfig.mixup``): ``--mixup A`` when given;
    auto: :data:`~seqeq.augment.MIXUP_ALPHA` where the trial trains on fewer than
    :data:`~seqeq.augment.AUGMENT_BELOW` series, else none."""
    if cfg.search.mixup is not None:
        return float(cfg.search.mixup)
    return MIXUP_ALPHA if n_fit < AUGMENT_BELOW else 0.0


def _suggest_rotate(trial: optuna.Trial, cfg: RunConfig, train) -> float:
    """The trial's rotation augmentation (``seqeq.augment``): none when the data has no x/y/z
    channel triplets, ``--rotate DEG`` when fixed, else a searched maximum angle."""
    if not train.vectors:
        return 0.0
    if cfg.search.rotate is not None:
        return float(cfg.search.rotate)
    return float(trial.suggest_categorical("rotate_deg", list(ROTATE_CHOICES)))


def _beats_best(trial: optuna.Trial, value: float) -> bool:
    try:
        return value > trial.study.best_value
    except ValueError:  # no completed trial yet
        return True


def run_search(ctx: SearchContext, study: optuna.Study,
               callbacks: list[Callable] | None = None) -> optuna.Study:
    """Run this process's share of the search until ``cfg.search.trials`` trials have ended
    (completed, pruned or failed in training: :func:`counts_toward_trials`, over all workers),
    the search's time (:func:`search_seconds`) passes, or the trials keep failing (then a
    one-line SeqeqError)."""
    cfg = ctx.cfg
    if sum(map(counts_toward_trials, study.get_trials(deepcopy=False))) >= cfg.search.trials:
        return study
    seconds = search_seconds(cfg, ctx.train.n_series)
    # Optuna logs each failed or interrupted trial with its traceback; seqeq says it in one line
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study.optimize(
        _objective(ctx),
        n_trials=None,
        timeout=seconds,
        callbacks=[_stop_when_done(cfg.search.trials, seconds), *(callbacks or [])],
        catch=(TrialFailure,),
        gc_after_trial=False,
    )
    _raise_if_failing(study)
    _wait_for_other_workers(study)
    return study


def _failures_in_a_row(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that failed in their training since the last one that did not (none when a
    trial has completed: the search then has a model and goes on to ``--trials``)."""
    if any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
        return []
    ended = sorted((t for t in trials if counts_toward_trials(t)),
                   key=lambda t: (t.datetime_complete or t.datetime_start, t.number))
    run: list[optuna.trial.FrozenTrial] = []
    for t in ended:
        run = [*run, t] if trial_error(t) is not None else []
    return run


def _stop_when_done(trials: int, seconds: float | None = None) -> Callable:
    """A study callback: stop at ``trials`` counted trials (:func:`counts_toward_trials`, over
    all workers), when the trials keep failing before any completed, or (``seconds``) when the
    next trial, if it takes as long as the median finished one, would end past the search's
    time: a trial is not started that would overrun it (Optuna's own ``timeout`` only stops
    starting trials once the time is up, and the last one then runs over)."""
    t0 = time.perf_counter()

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        ts = study.get_trials(deepcopy=False)
        if (sum(map(counts_toward_trials, ts)) >= trials
                or len(_failures_in_a_row(ts)) >= MAX_FAILURES_IN_A_ROW):
            study.stop()
            return
        if seconds is not None:
            took = [t.duration.total_seconds() for t in ts
                    if t.state in FINISHED and t.duration is not None]
            if took and time.perf_counter() - t0 + float(np.median(took)) > seconds:
                study.stop()

    return callback


def _raise_if_failing(study: optuna.Study) -> None:
    """A search whose trials all failed ends with one line naming the cause."""
    ts = study.get_trials(deepcopy=False)
    fails = _failures_in_a_row(ts)
    if fails and (len(fails) >= MAX_FAILURES_IN_A_ROW
                  or not any(t.state in FINISHED for t in ts)):
        causes = sorted({trial_error(t) for t in fails})
        raise SeqeqError(
            f"the search stopped: {len(fails)} trial(s) in a row failed in training and none "
            f"completed ({causes[0]}" + (f"; and {len(causes) - 1} other cause(s)"
                                         if len(causes) > 1 else "") + ")",
            "Check the data (length, channels, values) and the options the message names; the "
            "failed trials are kept in the study")


def _wait_for_other_workers(study: optuna.Study, poll: float = 1.0) -> None:
    """Block until no trial of the study is running, so every worker hands back the best over
    all workers. A dead worker's trial is failed once its heartbeat is stale (grace period)."""
    running = optuna.trial.TrialState.RUNNING
    while study.get_trials(deepcopy=False, states=(running,)):
        _interrupt.check()
        optuna.storages.fail_stale_trials(study)
        time.sleep(poll)


def _worker_main(ctx: SearchContext, run_dir: str, worker: int) -> None:
    import torch

    torch.set_num_threads(1)
    study = make_study(ctx.cfg, Path(run_dir), load_if_exists=True, worker=worker)
    try:
        run_search(ctx, study)
    except (SeqeqError, KeyboardInterrupt):  # the main process says it, once
        pass


def open_study(ctx: SearchContext, study: optuna.Study) -> int:
    """Queue the opening trials (``search_spaces.portfolio``) in a study that has no trial yet;
    returns how many were queued. A resumed or shared study that already has trials keeps its
    own history (``skip_if_exists`` guards against two processes opening one study at once)."""
    cfg = ctx.cfg
    if not cfg.search.opening or study.get_trials(deepcopy=False):
        return 0
    rotate = bool(ctx.train.vectors) and cfg.search.rotate is None
    params = opening_trials(ctx.cells, ctx.train.n_channels, ctx.train.n_classes,
                            cfg.member_budget_bytes, cfg.bytes_per_param, cfg.search.trials, rotate)
    for p in params:
        study.enqueue_trial(p, user_attrs={"opening": True}, skip_if_exists=True)
    return len(params)


def run_workers(ctx: SearchContext, study: optuna.Study, run_dir: Path,
                callbacks: list[Callable] | None = None) -> optuna.Study:
    """Run ``cfg.run.workers`` local processes on one study (this process is one of them), after
    queueing the opening trials of a fresh study."""
    import multiprocessing as mp

    open_study(ctx, study)
    if ctx.cfg.run.workers <= 1:
        return run_search(ctx, study, callbacks)
    mpc = mp.get_context("spawn")
    procs = [mpc.Process(target=_worker_main, args=(ctx, str(run_dir), k), daemon=False)
             for k in range(1, ctx.cfg.run.workers)]
    for p in procs:
        p.start()
    try:
        run_search(ctx, study, callbacks)
    finally:
        for p in procs:
            p.join()
    return study


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    done = [t for t in study.get_trials(deepcopy=False,
                                        states=(optuna.trial.TrialState.COMPLETE,))
            if t.value is not None and "spec" in t.user_attrs]
    if not done:
        errors = [e for t in study.get_trials(deepcopy=False) if (e := trial_error(t))]
        why = f" (its trials failed: {errors[-1]})" if errors else ""
        raise SeqeqError(f"the search completed no trial{why}",
                         f"Give it more time ({opt('timeout')}) or trials ({opt('trials')}), or "
                         "check the data")
    return max(done, key=rank_key)


def rank_key(t: optuna.trial.FrozenTrial) -> tuple:
    """How completed trials rank: best validation score; ties -> lower validation loss (the mean
    cross-entropy of the same epochs), smaller model, earlier trial. With a few validation series
    many trials tie on accuracy (four of seven BasicMotions trials scored 1.0 on its 8 validation
    series; the smallest of them, chosen on size, tested 67.5-95 % over its final seeds), and the
    loss still tells how sure and how right each one was."""
    loss = t.user_attrs.get("val_loss")
    return (t.value, -(loss if loss is not None and math.isfinite(loss) else math.inf),
            -t.user_attrs.get("size_bytes", 0), -t.number)


def trial_records(study: optuna.Study) -> list[dict]:
    """Every trial as a plain record (for report.json)."""
    out = []
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        ua = t.user_attrs
        out.append({
            "number": t.number,
            "state": t.state.name.lower(),
            "cell": t.params.get("cell"),
            "params": dict(t.params),
            "spec": ua.get("spec"),
            "size_bytes": ua.get("size_bytes"),
            "val_score": t.value if t.value is not None else (
                max((v for v in ua.get("val_curve", []) if v == v), default=None)),
            "epochs_run": ua.get("epochs_run"),
            "best_epoch": ua.get("best_epoch"),
            "pruned": t.state == optuna.trial.TrialState.PRUNED,
            "seconds": (t.duration.total_seconds() if t.duration else ua.get("seconds")),
            "val_curve": ua.get("val_curve"),
            "interrupted": bool(ua.get("interrupted", False)),
            "retried": t.number in retried,
            "opening": bool(ua.get("opening", False)),
            "error": ua.get("error"),
        })
    return out
