"""The one training loop, for every cell.

``train_model`` trains a :class:`~seqeq.models.SequenceClassifier` on a :class:`SeqData` with Adam,
optional per-epoch validation (keeping the weights of the best validation epoch, early stopping
after ``patience`` epochs without improvement) and a per-epoch hook, through which the search
reports to Optuna's pruner. It never asks which cell it trains.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import _interrupt
from .augment import mix_series, rotate_vectors, warp_magnitudes, warp_time
from .datasets import SeqData
from .distill import SoftMixes

__all__ = ["TrainConfig", "TrainResult", "train_model", "predict_logits", "score", "METRICS",
           "resolve_device", "seed_everything", "cpu_threads", "schedule_epochs", "batch_for",
           "MIN_BATCH"]

from .config import METRICS  # noqa: E402

#: times one training run rolls back a blown-up epoch (non-finite loss or gradient) and halves its
#: learning rate before it gives up and reports ``diverged``
MAX_RECOVERIES = 3


#: the smallest batch :func:`batch_for` gives a small training set
MIN_BATCH = 16


def batch_for(n_series: int, batch_size: int) -> int:
    """The batch size a training set of ``n_series`` gets for a requested ``batch_size``: at most
    a quarter of the series (a power of two, at least :data:`MIN_BATCH`), so that a small set
    still takes several noisy optimiser steps per epoch instead of one full-batch step."""
    cap = 2 ** int(math.log2(n_series / 4)) if n_series >= 4 * MIN_BATCH else MIN_BATCH
    return max(1, min(batch_size, cap))


#: the default schedule: this many epochs (on HAR-2 with rotation augmentation 40 beat 25 by
#: 0.5-0.6 points for GRU and TARNN, benchmarks/RESULTS.md), or more where those are fewer than
#: :data:`MIN_STEPS` optimiser steps
DEFAULT_EPOCHS = 40
MIN_STEPS = 1000


def schedule_epochs(n_series: int, batch_size: int, epochs: int | None = None) -> int:
    """The epochs of a training schedule. ``epochs`` given: exactly those. None (the default):
    :data:`DEFAULT_EPOCHS` passes over ``n_series`` series, or more where those are fewer than
    :data:`MIN_STEPS` optimiser steps. The length of training is what the optimiser does, not
    how often it sees the data: 40 epochs of a 40-series set at batch 64 are 40 steps (one seed
    of BasicMotions ended at 15 %), 40 epochs of 7,000 series 4,400."""
    if epochs is not None:
        return int(epochs)
    per_epoch = max(1, math.ceil(n_series / max(1, batch_size)))
    return max(DEFAULT_EPOCHS, math.ceil(MIN_STEPS / per_epoch))


@dataclass(frozen=True)
class TrainConfig:
    """How to train one model."""

    lr: float = 1e-2
    batch_size: int = 128
    epochs: int = 30
    #: stop after this many epochs without a better validation score (0: never)
    patience: int = 8
    #: gradient-norm clipping (0: off)
    clip: float = 1.0
    weight_decay: float = 0.0
    #: "cosine" decays the learning rate to 5 % over ``epochs``; "constant" keeps it
    schedule: str = "cosine"
    device: str = "cpu"
    seed: int = 0
    #: stop training after this many seconds (None: no limit); the best epoch so far is kept.
    #: A schedule whose second epoch says it cannot end in time is shortened to what fits
    #: (``TrainResult.schedule_epochs``), so that it still ends at its low learning rate
    max_seconds: float | None = None
    #: stop after this epoch while keeping the learning-rate schedule of ``epochs`` (the final
    #: retrain repeats a trial's trajectory up to its best epoch)
    stop_epoch: int | None = None
    #: turn the training data's x/y/z channel triplets (``SeqData.vectors``) by random rotations
    #: of up to this many degrees, a fresh one per series and epoch (0: off; ``seqeq.augment``)
    rotate_deg: float = 0.0
    #: random amplitude distortions of this strength (``seqeq.augment.warp_magnitudes``; 0: off)
    augment: float = 0.0
    #: mixup: each step also trains on a mixed copy of its batch (series blended in random
    #: pairs, ``lam ~ Beta(mixup, mixup)``, ``seqeq.augment.mix_series``; 0: off)
    mixup: float = 0.0
    #: random smooth time warping of this strength (``seqeq.augment.warp_time``; 0: off)
    time_warp: float = 0.0
    #: weight averaging: the model trained is the optimiser's weights averaged over roughly the
    #: last ``average`` of the schedule's steps (an exponential moving average whose window is
    #: that share of the steps, :class:`_WeightAverage`), validated, kept and returned in their
    #: place (0: off)
    average: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("lr must be > 0, batch_size and epochs >= 1")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}")
        if not 0 <= self.rotate_deg <= 180:
            raise ValueError("rotate_deg must be in 0..180")
        if not 0 <= self.augment <= 1:
            raise ValueError("augment must be in 0..1")
        if not 0 <= self.mixup <= 10:
            raise ValueError("mixup must be in 0..10")
        if not 0 <= self.time_warp <= 1:
            raise ValueError("time_warp must be in 0..1")
        if not 0 <= self.average <= 1:
            raise ValueError("average must be in 0..1")


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0  # 1-based; 0 when there was no validation
    best_val: float | None = None
    epochs_run: int = 0
    seconds: float = 0.0
    #: the schedule's length in epochs: ``TrainConfig.epochs``, or fewer where ``max_seconds``
    #: shortened it after the second epoch
    schedule_epochs: int = 0


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``."""
    from .errors import SeqeqError, opt

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SeqeqError(f"{opt('device', 'cuda')} was asked for but no CUDA GPU is available",
                         f"Use {opt('device', 'auto')} or {opt('device', 'cpu')}")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise SeqeqError(f"unknown device {device!r}", "Use auto, cpu or cuda")
    return device


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def score(y_true: np.ndarray, y_pred: np.ndarray, metric: str = "accuracy") -> float:
    """Classification metric by name (see :data:`METRICS`)."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    if metric == "accuracy":
        return float(np.mean(y_true == y_pred))
    if metric == "balanced_accuracy":
        return float(balanced_accuracy_score(y_true, y_pred))
    if metric == "macro_f1":
        return float(f1_score(y_true, y_pred, average="macro"))
    raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")


class _Tensors:
    """A dataset held as tensors on the training device, batched with padding trimmed.

    Lazy datasets (computed on read, e.g. noisy-MNIST's noise tails) are read batch by batch.
    """

    def __init__(self, data: SeqData, device: str):
        self.data = data if data.is_lazy else None
        self.X = None if data.is_lazy else torch.as_tensor(data.X, device=device)
        self.L = torch.as_tensor(data.lengths, device=device)
        self.y = None if data.y is None else torch.as_tensor(data.y, device=device)
        self.n = data.n_series
        self.device = device

    def batch(self, idx: torch.Tensor):
        L = self.L[idx]
        T = int(L.max())
        if self.data is not None:
            x = torch.as_tensor(self.data.rows(idx.cpu().numpy())[:, :T], device=self.device)
        else:
            x = self.X[idx, :T]
        return x, L, (None if self.y is None else self.y[idx])


@torch.no_grad()
def predict_logits(model: nn.Module, data: SeqData | _Tensors, batch_size: int = 512,
                   device: str | None = None) -> np.ndarray:
    """Logits (N, C) of ``model`` on ``data`` in eval mode."""
    device = device or next(model.parameters()).device.type
    t = data if isinstance(data, _Tensors) else _Tensors(data, device)
    was_training = model.training
    model.eval()
    out = []
    order = torch.argsort(t.L)  # similar lengths together: less padding per batch
    for i in range(0, t.n, batch_size):
        idx = order[i : i + batch_size]
        x, L, _ = t.batch(idx)
        out.append(model(x, L))
    model.train(was_training)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    logits = torch.cat(out)
    inv = torch.empty_like(order)
    inv[order] = torch.arange(t.n, device=order.device)
    return logits[inv].float().cpu().numpy()


def train_model(
    model: nn.Module,
    train: SeqData,
    cfg: TrainConfig,
    val: SeqData | None = None,
    metric: str = "accuracy",
    on_epoch: Callable[[int, dict], None] | None = None,
    soft: SoftMixes | None = None,
) -> TrainResult:
    """Train ``model`` in place; with ``val``, restore the weights of the best validation epoch.

    ``on_epoch(epoch, record)`` is called after every epoch (1-based) with the epoch's record
    (``train_loss``, and ``val_score`` when validating); it may raise to stop training (the search
    raises ``optuna.TrialPruned``). On CPU it trains with one torch thread (:func:`cpu_threads`).
    ``soft``: with mixup, each step's mixed copies are drawn from this pool of blends and
    trained towards its teacher's class probabilities in place of two labels weighed by ``lam``
    (distillation, :mod:`seqeq.distill`; its teacher fitted on ``train`` alone).
    """
    with cpu_threads(cfg.device), _interrupt.deferred():
        return _train_model(model, train, cfg, val, metric, on_epoch, soft)


@contextlib.contextmanager
def cpu_threads(device: str) -> Iterator[None]:
    """Train on CPU with ``SEQEQ_CPU_THREADS`` (default 1) torch intra-op threads, restored after.

    seqeq's models are small (D ~ 10-200): a time step is a few ops of a few microseconds each, so
    extra OpenMP threads buy little, and on a machine whose cores other processes share (other
    users, or the search's own worker processes) they oversubscribe it. Measured on 2 shared cores
    (``benchmarks/RESULTS.md``, issue 9): with 2 threads a training step was 3-6x slower (GRU and
    every cell alike, 30x in bursts) while other jobs ran, and only 1.1-1.4x faster while the cores
    were idle. ``SEQEQ_CPU_THREADS=0`` keeps torch's own setting. Other devices are left alone.
    """
    n = int(os.environ.get("SEQEQ_CPU_THREADS", "1"))
    if not str(device).startswith("cpu") or n <= 0:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's weights and buffers (to roll back to, or keep the best)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class _WeightAverage:
    """An exponential moving average of a model's floating-point weights and buffers, updated
    after every optimiser step, whose window is a share of the schedule's steps: at step ``t``
    (from 0) the weights enter with ``1 - d_t``, ``d_t = min(1 - 1 / window, t / (t + 1))`` --
    the plain mean of the steps so far until there are ``window`` of them, then the moving
    average, in which the first steps' weights fade. ``swapped()`` puts the average
    in the model for evaluation and restores the optimiser's weights after.

    Written here rather than with ``torch.optim.swa_utils.AveragedModel``: that keeps a deep
    copy of the module and a fixed decay, and the window here follows the schedule, which is
    shortened after its second epoch where a time limit says it cannot end."""

    def __init__(self, model: nn.Module, share: float, total_steps: int):
        self.model, self.share, self.t = model, share, 0
        self.window = max(1.0, share * total_steps)
        self.avg = {k: v.detach().clone() for k, v in model.state_dict().items()
                    if v.is_floating_point()}

    def set_total(self, total_steps: int) -> None:
        self.window = max(1.0, self.share * total_steps)

    @torch.no_grad()
    def update(self) -> None:
        d = min(1.0 - 1.0 / self.window, self.t / (self.t + 1.0))
        self.t += 1
        for k, v in self.model.state_dict().items():
            if k in self.avg:
                self.avg[k].lerp_(v.detach(), 1.0 - d)

    def state(self) -> dict[str, torch.Tensor]:
        """The model's state with the averaged weights in it (a copy)."""
        st = _state_copy(self.model)
        st.update({k: v.clone() for k, v in self.avg.items()})
        return st

    def copy(self) -> tuple[int, dict[str, torch.Tensor]]:
        return self.t, {k: v.clone() for k, v in self.avg.items()}

    def restore(self, saved: tuple[int, dict[str, torch.Tensor]]) -> None:
        self.t, self.avg = saved[0], {k: v.clone() for k, v in saved[1].items()}

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        raw = _state_copy(self.model)
        self.model.load_state_dict(self.state())
        try:
            yield
        finally:
            self.model.load_state_dict(raw)


def _pad_to(x: torch.Tensor, T: int) -> torch.Tensor:
    """``x (B, T', C)`` zero-padded to ``T`` steps."""
    return x if x.shape[1] == T else nn.functional.pad(x, (0, 0, 0, T - x.shape[1]))


def _train_model(model, train, cfg, val, metric, on_epoch, soft=None) -> TrainResult:
    seed_everything(cfg.seed)
    device = cfg.device
    model.to(device)
    tr = _Tensors(train, device)
    va = _Tensors(val, device) if val is not None and val.n_series else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(tr.n / cfg.batch_size))
    n_epochs = [cfg.epochs]  # shortened after epoch 2 where it cannot end within max_seconds
    lr_scale = [1.0]  # halved each time training blows up and is rolled back

    def lr_factor(s: int) -> float:
        if cfg.schedule == "constant":
            return lr_scale[0]
        total = n_epochs[0] * steps_per_epoch
        return lr_scale[0] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    average = (_WeightAverage(model, cfg.average, cfg.epochs * steps_per_epoch)
               if cfg.average > 0 else None)
    evaluated = average.swapped if average is not None else contextlib.nullcontext
    recoveries = 0
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    rotate = cfg.rotate_deg > 0 and bool(train.vectors)
    # its own generator: switching augmentation on leaves the batch order as it was
    aug_gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 7919)
    res = TrainResult()
    best_state, since_best = None, 0
    t0 = time.perf_counter()
    epoch = 0
    while epoch < n_epochs[0]:
        epoch += 1
        model.train()
        perm = torch.randperm(tr.n, generator=gen).to(device)
        total_loss, seen = 0.0, 0
        out_of_time = blew_up = False
        # where to roll back to if this epoch blows up (a few KiB for seqeq's models)
        snapshot = (_state_copy(model), copy.deepcopy(opt.state_dict()),
                    average.copy() if average is not None else None)
        for i in range(0, tr.n, cfg.batch_size):
            _interrupt.check()  # a Ctrl-C recorded since the last step (seqeq._interrupt)
            if cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds:
                out_of_time = True  # validate what we have, then stop
                break
            x, L, y = tr.batch(perm[i : i + cfg.batch_size])
            if rotate:
                x = rotate_vectors(x, train.vectors, cfg.rotate_deg, aug_gen)
            if cfg.augment > 0:
                x = warp_magnitudes(x, L, model.mean, model.std, cfg.augment, aug_gen)
            if cfg.time_warp > 0:
                x = warp_time(x, L, cfg.time_warp, aug_gen)
            if cfg.mixup > 0 and soft is not None:  # and as many blends, as the teacher saw them
                xm, Lm, p = soft.draw(len(y), aug_gen, device)
                T = max(x.shape[1], xm.shape[1])
                out = model(torch.cat([_pad_to(x, T), _pad_to(xm, T)]), torch.cat([L, Lm]))
                loss = loss_fn(out[: len(y)], y) + loss_fn(out[len(y):], p.to(out.dtype))
            elif cfg.mixup > 0:  # and a mixed copy of the batch, its labels weighed by lam
                xm, Lm, j, lam = mix_series(x, L, cfg.mixup, aug_gen)
                # one forward pass over both halves: on small batches a step's cost is the
                # recurrence's per-step overhead, nearly the same for 2B series as for B
                out = model(torch.cat([x, xm]), torch.cat([L, Lm]))
                clean, mixed = out[: len(y)], out[len(y):]
                loss = (loss_fn(clean, y) + lam * loss_fn(mixed, y)
                        + (1 - lam) * loss_fn(mixed, y[j]))
            else:
                loss = loss_fn(model(x, L), y)
            reg = getattr(model, "regularization", None)
            if reg is not None:
                loss = loss + reg()  # a cell's own penalty (e.g. TARNN's), 0 for most
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = nn.utils.clip_grad_norm_(model.parameters(),
                                             cfg.clip if cfg.clip > 0 else math.inf)
            lv = float(loss.detach())
            if not (math.isfinite(lv) and math.isfinite(float(gnorm))):
                blew_up = True  # no step with a non-finite gradient: roll back (below)
                break
            opt.step()
            sched.step()
            if average is not None:
                average.update()
            total_loss += lv * len(y)
            seen += len(y)
        rec = {"epoch": epoch, "train_loss": total_loss / max(seen, 1)}
        if blew_up:
            if recoveries < MAX_RECOVERIES:
                # the weights and optimizer state of the epoch's start, at half the learning rate
                recoveries += 1
                lr_scale[0] *= 0.5
                model.load_state_dict(snapshot[0])
                opt.load_state_dict(snapshot[1])
                if average is not None:
                    average.restore(snapshot[2])
                rec["recovered"] = {"times": recoveries, "lr_scale": lr_scale[0]}
            else:  # give up, keeping the last finite weights
                model.load_state_dict(snapshot[0])
                if average is not None:
                    average.restore(snapshot[2])
                rec["diverged"] = True
                rec["train_loss"] = float("nan")
        if va is not None:
            with evaluated():
                logits = predict_logits(model, va, device=device)
            y_va = va.y.cpu().numpy()
            rec["val_score"] = score(y_va, logits.argmax(1), metric)
            # the mean cross-entropy: it still tells two models apart where a few validation
            # series give them the same accuracy (search.rank_key)
            rec["val_loss"] = float(nn.functional.cross_entropy(
                torch.from_numpy(logits), torch.from_numpy(y_va.astype(np.int64))))
            improved = res.best_val is None or rec["val_score"] > res.best_val
            # ties go to the later epoch (more training at the same validation score), but only
            # a strict improvement resets the patience counter
            if improved or rec["val_score"] == res.best_val:
                res.best_val, res.best_epoch = rec["val_score"], epoch
                best_state = average.state() if average is not None else _state_copy(model)
            since_best = 0 if improved else since_best + 1
        rec["seconds"] = time.perf_counter() - t0
        if epoch == 2 and cfg.max_seconds is not None and cfg.stop_epoch is None:
            # the schedule that fits, from the second epoch's time (validation included; the
            # first pays one-time costs)
            per_epoch = max(rec["seconds"] - res.history[0]["seconds"], 1e-9)
            fits = 2 + int((cfg.max_seconds - rec["seconds"]) / per_epoch)
            if fits < n_epochs[0]:
                n_epochs[0] = max(2, fits)
                rec["schedule_epochs"] = n_epochs[0]
                if average is not None:
                    average.set_total(n_epochs[0] * steps_per_epoch)
        res.history.append(rec)
        res.epochs_run = epoch
        if on_epoch is not None:
            on_epoch(epoch, rec)
        if rec.get("diverged") or (va is not None and cfg.patience and since_best >= cfg.patience):
            break
        if cfg.stop_epoch is not None and epoch >= cfg.stop_epoch:
            break
        if out_of_time or (cfg.max_seconds is not None
                           and time.perf_counter() - t0 > cfg.max_seconds):
            rec["out_of_time"] = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    elif average is not None:
        model.load_state_dict(average.state())
    res.schedule_epochs = n_epochs[0]
    res.seconds = time.perf_counter() - t0
    model.eval()
    return res


def estimate_epoch_seconds(data: SeqData, batch_size: int = 64, device: str = "cpu",
                           hidden: int = 32, probe_steps: int = 64) -> float:
    """Seconds one training epoch over ``data`` takes at least, measured on this machine: a
    forward and backward pass of a fused GRU (the fastest recurrent kernel; the cells seqeq
    searches are no faster) over ``probe_steps`` steps of one batch, scaled to every batch and
    step of the data (the recurrence is sequential in time, so time grows with the length)."""
    import torch.nn as nn

    B = max(1, min(batch_size, data.n_series))
    T = max(1, min(probe_steps, data.max_len))
    gru = nn.GRU(data.n_channels, hidden, batch_first=True).to(device)
    x = torch.randn(B, T, data.n_channels, device=device)
    gru(x)[0].sum().backward()  # warm-up
    t0 = time.perf_counter()
    gru(x)[0].sum().backward()
    per_step = (time.perf_counter() - t0) / T
    n_batches = math.ceil(data.n_series / B)
    mean_len = float(np.mean(data.lengths)) if len(data.lengths) else 0.0
    return per_step * n_batches * max(mean_len, 1.0)
