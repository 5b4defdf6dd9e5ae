"""Frozen configuration objects, each holding one kind of thing, built once and passed down:

* :class:`DataConfig` -- where the data comes from and how to read it;
* :class:`SearchConfig` -- the search: budget, effort, what a trial may be;
* :class:`FinalConfig` -- the final models: seeds, ensemble, re-ranking, where trials are scored;
* :class:`ExportConfig` -- the exported precision (one value; the budget counts bytes at it);
* :class:`RunOptions` -- device, study storage, workers, resume/overwrite;
* :class:`RunConfig` -- one of each of the last four; :meth:`RunConfig.of` sends flat settings
  (the CLI's, the Python API's, ``SeqeqClassifier``'s) to the config that holds each.

Validation happens once, in each config's ``__post_init__``, and raises
:class:`~seqeq.errors.SeqeqError` with the fix, naming the setting as the caller does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from .errors import SeqeqError, opt

__all__ = ["DataConfig", "SearchConfig", "FinalConfig", "ExportConfig", "RunOptions", "RunConfig",
           "search_options"]

FORMATS = ("long", "wide", "nested")
NAN_POLICIES = ("reject", "fill")
PRUNERS = ("median", "hyperband", "none")
FINAL_EPOCHS = ("all", "best")
METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
QUANTIZE = (None, "int8")
MAX_RERANK = 20
MAX_RERANK_FOLDS = 10
#: a CSV file's decimal mark: None (detected), "." or ","
DECIMALS = (None, ".", ",")


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how to read it."""

    #: a CSV/Parquet file, or None for a built-in benchmark
    path: str | None = None
    #: a built-in benchmark name (``seqeq datasets`` lists them)
    benchmark: str | None = None
    test_path: str | None = None
    fmt: str | None = None
    id_col: str | None = None
    time_col: str | None = None
    label_col: str | None = None
    #: hold out whole groups (subject, device, session) for validation
    group_col: str | None = None
    nan: str = "reject"
    #: a CSV file's decimal mark ("." or ","; None: detected, and an ambiguous file refused)
    decimal: str | None = None
    data_dir: str | None = None
    #: fraction of the training data held out for validation (and for test without --test)
    val_frac: float = 0.2
    test_frac: float = 0.2
    #: which channels are x/y/z triplets of one device (``seqeq.augment.parse_vectors``):
    #: "auto" (the benchmark's own, or found from a file's channel names), "none", or a list
    vectors: str = "auto"

    def __post_init__(self) -> None:
        if (self.path is None) == (self.benchmark is None):
            raise SeqeqError("give either a data file or a benchmark name")
        if self.fmt is not None and self.fmt not in FORMATS:
            raise SeqeqError(f"unknown {opt('fmt')} {self.fmt!r}",
                             f"Use one of: {', '.join(FORMATS)}")
        if self.nan not in NAN_POLICIES:
            raise SeqeqError(f"unknown {opt('nan')} policy {self.nan!r}", "Use reject or fill")
        if self.decimal not in DECIMALS:
            raise SeqeqError(f"unknown {opt('decimal')} mark {self.decimal!r}",
                             "Use '.' (1,234.5 = 1234.5) or ',' (1.234,5 = 1234.5)")
        for name, v in (("validation", self.val_frac), ("test", self.test_frac)):
            if not 0.05 <= v <= 0.5:
                raise SeqeqError(f"{name} fraction {v} is out of range", "Use a value in 0.05-0.5")

    @property
    def name(self) -> str:
        from pathlib import Path

        if self.benchmark:
            return self.benchmark.replace(":", "-")
        return Path(self.path).stem


@dataclass(frozen=True)
class SearchConfig:
    """The search: the size budget, the effort, what a trial may be and how it trains."""

    #: KiB of stored weights, at the export precision (:class:`ExportConfig`)
    budget_kb: float = 20.0
    trials: int = 20
    #: the search's seconds; None: ``search.AUTO_SEARCH_SECONDS`` per 1,000 training series (at
    #: least that); 0: no limit. The search stops at ``trials`` or the time, whichever is first
    timeout: float | None = None
    seed: int = 0
    #: cell names to search (None: every cell with a search space)
    cells: tuple[str, ...] | None = None
    metric: str = "accuracy"
    #: epochs per trial: the length of its cosine schedule, which the final retrain repeats
    #: (pruning stops bad trials sooner). None (auto): ``train.DEFAULT_EPOCHS`` (40), or more
    #: where those are fewer than ``train.MIN_STEPS`` optimiser steps (``train.schedule_epochs``);
    #: a number: exactly that many epochs
    epochs: int | None = None
    patience: int = 6
    pruner: str = "median"
    #: open a fresh study with strong configurations of a few cell families
    #: (``search_spaces.portfolio``) before the sampler takes over
    opening: bool = True
    #: stop a trial's training after this many seconds (None: no limit)
    trial_timeout: float | None = None
    #: score each trial by cross-validation over train+validation with this many folds (whole
    #: groups when the data has groups); None (auto): ``search.CV_FOLDS`` where the validation
    #: split holds fewer than ``search.CV_BELOW`` series, else the one split; 1: the one split
    cv_folds: int | None = None
    #: rotation augmentation of x/y/z channel triplets, in degrees (None: searched among
    #: ``seqeq.augment.ROTATE_CHOICES``; 0: off); data without triplets is never rotated
    rotate: float | None = None
    #: random amplitude distortions while training (``seqeq.augment.warp_magnitudes``), their
    #: strength in units of a channel's standard deviation; 0 (the default): off; None (auto):
    #: searched between 0 and ``augment.AUGMENT_STRENGTH`` where a trial trains on fewer than
    #: ``augment.AUGMENT_BELOW`` series. Off by default: on the development suite the searched
    #: choice moved the median ratio from 0.928 to 0.883 (benchmarks/RESULTS.md)
    augment: float | None = 0.0
    #: mixup while training (``TrainConfig.mixup``): each step also trains on a mixed copy of its
    #: batch, ``lam ~ Beta(mixup, mixup)``; 0: off; None (auto, the default):
    #: ``augment.MIXUP_ALPHA`` where a trial trains on fewer than ``augment.AUGMENT_BELOW``
    #: series, else off. On by default since the convolution front end reads every step: on the
    #: development suite it moved the median ratio 0.952 -> 0.967, the worst 0.737 -> 0.750
    #: (benchmarks/RESULTS.md, "Mixup on small data, on the conv-first defaults")
    mixup: float | None = None
    #: weight averaging while training (``TrainConfig.average``): the model validated and kept is
    #: the optimiser's weights averaged over about this share of the schedule's last steps; 0:
    #: off, the default: at 0.1 the development suite's median ratio went 0.967 -> 0.976 but its
    #: worst 0.750 -> 0.722 (benchmarks/RESULTS.md, "Weight averaging and distillation")
    average: float = 0.0
    #: distillation where mixup is on (``seqeq.distill``): the mixed copies are drawn from a pool
    #: of blends labelled by a MiniRocket teacher fitted on the series the model trains on; off
    #: by default: +2.5 points on one configuration, but on the suite the median went 0.967 ->
    #: 0.961 and the worst stayed at 0.750 (the same section)
    distill: bool = False
    #: random smooth time warping of the training series (``seqeq.augment.warp_time``) of this
    #: strength: the spread of the warp's speeds around 1; 0: off; None (``--time-warp auto``):
    #: searched between none and ``augment.TIME_WARP_STRENGTH`` where trials train on fewer
    #: than ``augment.AUGMENT_BELOW`` series. Off by default: auto took the development suite's
    #: median ratio 0.967 -> 0.997 but its worst 0.750 -> 0.714 (ACSF1; benchmarks/RESULTS.md,
    #: "Time warping")
    time_warp: float | None = 0.0
    #: device limits next to the size budget (None: none): RAM of the exported model's C step
    #: (state + scratch, KiB) and its multiply-accumulates per sample; an ensemble's members
    #: share them as they share the budget (``seqeq.export.mcu.device_cost``)
    ram_kb: float | None = None
    max_macs_per_step: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.budget_kb < math.inf:
            raise SeqeqError(f"{opt('budget_kb')} must be a positive number, got {self.budget_kb}",
                             f"Give the model-size budget in KiB, e.g. {opt('budget_kb', 20)}")
        if self.trials < 1:
            raise SeqeqError(f"{opt('trials')} must be at least 1, got {self.trials}",
                             f"Give the number of trials to run, e.g. {opt('trials', 20)}")
        if self.timeout is not None and not 0 <= self.timeout < math.inf:
            raise SeqeqError(f"{opt('timeout')} must be a number of seconds (0: no limit), got "
                             f"{self.timeout}", f"Give e.g. {opt('timeout', 600)}, or leave it "
                             "out for the default (150 s per 1,000 training series)")
        if self.metric not in METRICS:
            raise SeqeqError(f"unknown {opt('metric')} {self.metric!r}",
                             f"Use one of: {', '.join(METRICS)}")
        if self.pruner not in PRUNERS:
            raise SeqeqError(f"unknown {opt('pruner')} {self.pruner!r}",
                             f"Use one of: {', '.join(PRUNERS)}")
        if self.epochs is not None and self.epochs < 1:
            raise SeqeqError(f"{opt('epochs')} must be at least 1, got {self.epochs}",
                             f"Give e.g. {opt('epochs', 25)}")
        if self.cv_folds is not None and not 1 <= self.cv_folds <= MAX_RERANK_FOLDS:
            raise SeqeqError(f"{opt('cv_folds')} must be 1 (one validation split) or "
                             f"2..{MAX_RERANK_FOLDS}, got {self.cv_folds}",
                             f"Give e.g. {opt('cv_folds', 3)}, or leave it out (auto)")
        if self.rotate is not None and not 0 <= self.rotate <= 180:
            raise SeqeqError(f"{opt('rotate', float(self.rotate))} is not an angle in 0..180 "
                             "degrees",
                             "Use auto, 0 (no rotation) or a maximum angle such as 30")
        if self.ram_kb is not None and not 0 < self.ram_kb < math.inf:
            raise SeqeqError(f"{opt('ram_kb')} must be a positive number of KiB, got "
                             f"{self.ram_kb}", f"Give e.g. {opt('ram_kb', 4)}")
        if self.max_macs_per_step is not None and self.max_macs_per_step < 1:
            raise SeqeqError(f"{opt('max_macs_per_step')} must be at least 1, got "
                             f"{self.max_macs_per_step}",
                             f"Give e.g. {opt('max_macs_per_step', 5000)}")
        if self.augment is not None and not 0 <= self.augment <= 1:
            raise SeqeqError(f"{opt('augment', float(self.augment))} is not a strength in 0..1",
                             "Use auto, 0 (off) or a strength such as 0.1 (a tenth of a "
                             "channel's standard deviation)")
        if not isinstance(self.distill, bool):
            raise SeqeqError(f"{opt('distill', self.distill)} is not on or off",
                             f"Use {opt('distill', True)} or {opt('distill', False)}")
        if not _number_in(self.average, 0, 1):
            raise SeqeqError(f"{opt('average', self.average)} is not a share of the "
                             "schedule in 0..1", f"Use 0 (off) or e.g. {opt('average', 0.1)}")
        if self.time_warp is not None and not _number_in(self.time_warp, 0, 1):
            raise SeqeqError(f"{opt('time_warp', self.time_warp)} is not a strength in 0..1",
                             f"Use auto, 0 (off) or e.g. {opt('time_warp', 0.1)}")
        if self.mixup is not None and not 0 <= self.mixup <= 10:
            raise SeqeqError(f"{opt('mixup', float(self.mixup))} is not a Beta parameter in 0..10",
                             "Use auto, 0 (off) or e.g. 0.5")
        if self.cells is not None and not self.cells:
            raise SeqeqError(f"{opt('cells')} names no cell",
                             "Name at least one cell, e.g. gru,tinyrnn, or leave it out to search "
                             "every cell")

    @property
    def budget_bytes(self) -> int:
        return int(self.budget_kb * 1024)


@dataclass(frozen=True)
class FinalConfig:
    """The final models: how many seeds retrain the chosen configuration, how many are averaged
    into the exported model, whether the best trials are re-ranked first, and where on its
    schedule a trial is scored (which the final retrain then repeats)."""

    final_seeds: int = 3
    #: export the mean of this many final models (one ONNX graph): the budget covers them all,
    #: so each trial's model gets budget / ensemble (1: a single model). None (auto):
    #: ``AUTO_ENSEMBLE`` models where the budget gives each at least ``AUTO_ENSEMBLE_MIN_KIB``,
    #: else 1 (:class:`RunConfig` resolves it)
    ensemble: int | None = None
    #: re-score this many of the best trials on ``rerank_folds`` cross-validation folds and
    #: retrain the best of them (``seqeq.rerank``); 0: retrain the search's best trial
    rerank: int = 0
    rerank_folds: int = 3
    #: "all": trials are scored at the end of their schedule (``search.trial_value``) and the
    #: final retrain runs the best trial's whole learning-rate schedule (``epochs``); "best":
    #: trials are scored at their best epoch, stop early after ``patience`` epochs without a
    #: better one, and the final retrain stops at the best trial's best epoch
    final_epochs: str = "all"

    def __post_init__(self) -> None:
        if self.final_seeds < 1:
            raise SeqeqError(f"{opt('final_seeds')} must be at least 1, got {self.final_seeds}",
                             f"Give e.g. {opt('final_seeds', 3)}")
        from .cells._ensemble import MAX_MEMBERS

        if self.ensemble is not None and not 1 <= self.ensemble <= MAX_MEMBERS:
            raise SeqeqError(f"{opt('ensemble')} must be 1..{MAX_MEMBERS}, got {self.ensemble}",
                             f"Give the number of models to average, e.g. {opt('ensemble', 3)}, "
                             "or 1")
        if self.rerank != 0 and not 2 <= self.rerank <= MAX_RERANK:
            raise SeqeqError(f"{opt('rerank')} must be 0 (off) or 2..{MAX_RERANK}, got "
                             f"{self.rerank}",
                             f"Give the number of best trials to re-score, e.g. {opt('rerank', 3)}")
        if not 3 <= self.rerank_folds <= MAX_RERANK_FOLDS:
            raise SeqeqError(f"{opt('rerank_folds')} must be 3..{MAX_RERANK_FOLDS}, got "
                             f"{self.rerank_folds}", f"Give e.g. {opt('rerank_folds', 3)}")
        if self.final_epochs not in FINAL_EPOCHS:
            raise SeqeqError(f"unknown {opt('final_epochs')} {self.final_epochs!r}",
                             f"Use one of: {', '.join(FINAL_EPOCHS)}")


@dataclass(frozen=True)
class ExportConfig:
    """The exported model's precision, one value: ``quantize`` None (fp32) or ``"int8"`` (8-bit
    weights with per-row scales). The budget counts bytes at this precision."""

    quantize: str | None = None

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE:
            raise SeqeqError(f"unknown {opt('quantize')} {self.quantize!r}", "Use int8")

    @property
    def bytes_per_param(self) -> int:
        return 1 if self.quantize == "int8" else 4


@dataclass(frozen=True)
class RunOptions:
    """Where and how the run runs: the device, the study's storage, local workers, and whether
    it continues (``resume``) or replaces (``overwrite``) the run in its directory."""

    device: str = "auto"
    storage: str | None = None
    study_name: str | None = None
    workers: int = 1
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise SeqeqError(f"{opt('workers')} must be at least 1, got {self.workers}",
                             f"Give e.g. {opt('workers', 2)}, or leave it out")
        if self.resume and self.overwrite:
            raise SeqeqError(f"{opt('resume')} and {opt('overwrite')} contradict each other",
                             "Give only one")


_PARTS = {"search": SearchConfig, "final": FinalConfig, "export": ExportConfig,
          "run": RunOptions}

#: the default ensemble: this many models averaged where the budget gives each at least
#: ``AUTO_ENSEMBLE_MIN_KIB`` KiB. Measured on the development suite at 20 KiB
#: (``benchmarks/RESULTS.md``, "Development suite"): the median accuracy ratio to MiniRocket
#: 0.867 -> 0.928 over eight problems; on HAR-2 three models added 0.9-1.5 points
AUTO_ENSEMBLE = 3
AUTO_ENSEMBLE_MIN_KIB = 4.0


def auto_ensemble(budget_kb: float) -> int:
    """How many models the default ensemble averages at ``budget_kb``."""
    return AUTO_ENSEMBLE if budget_kb >= AUTO_ENSEMBLE * AUTO_ENSEMBLE_MIN_KIB else 1


@dataclass(frozen=True)
class RunConfig:
    """A run's settings: one config of each kind. :meth:`of` builds it from flat settings (the
    command line's, the Python API's, ``SeqeqClassifier``'s), each going to the config that
    holds it; the parts validate themselves once."""

    search: SearchConfig = field(default_factory=SearchConfig)
    final: FinalConfig = field(default_factory=FinalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    run: RunOptions = field(default_factory=RunOptions)

    def __post_init__(self) -> None:
        if self.final.ensemble is None:  # the default: resolved once, recorded resolved
            from dataclasses import replace

            object.__setattr__(self, "final", replace(
                self.final, ensemble=auto_ensemble(self.search.budget_kb)))

    @classmethod
    def of(cls, **settings) -> RunConfig:
        parts: dict[str, dict] = {k: {} for k in _PARTS}
        for key, value in settings.items():
            part = _PART_OF.get(key)
            if part is None:
                raise SeqeqError(f"unknown setting {key!r}",
                                 f"Use one of: {', '.join(sorted(_PART_OF))}")
            parts[part][key] = value
        return cls(**{k: _PARTS[k](**v) for k, v in parts.items()})

    def with_settings(self, **settings) -> RunConfig:
        """This configuration with some settings changed (by name, as for :meth:`of`)."""
        return RunConfig.of(**{**self.flat(), **settings})

    def flat(self) -> dict:
        """Every setting by name (what run.json records and a resume compares)."""
        return {k: v for part in _PARTS for k, v in asdict(getattr(self, part)).items()}

    @property
    def budget_bytes(self) -> int:
        return self.search.budget_bytes

    @property
    def bytes_per_param(self) -> int:
        return self.export.bytes_per_param

    @property
    def member_budget_bytes(self) -> int:
        """What one searched model may use: an ensemble of N such models fits ``budget_bytes``
        (it costs at most N times one member; its members share one head bias)."""
        return self.search.budget_bytes // self.final.ensemble


#: which config holds each setting
_PART_OF = {f.name: part for part, cls in _PARTS.items() for f in fields(cls)}


def _number_in(v, lo: float, hi: float) -> bool:
    """Whether ``v`` is a number (not a bool) in ``lo..hi``."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi


def _auto_or_number(kw: dict, key: str, what: str, fix: str) -> dict:
    """``kw`` with the CLI's text for ``key`` read: ``auto`` as None, else a number."""
    text = kw.get(key)
    if not isinstance(text, str):
        return kw
    if text.strip().lower() == "auto":
        return {**kw, key: None}
    try:
        return {**kw, key: float(text)}
    except ValueError:
        raise SeqeqError(f"{opt(key)} {text!r} is neither auto nor {what}", fix) from None


def search_options(kw: dict) -> dict:
    """Search settings given as text (the CLI's ``--cells gru,irnn``, ``--rotate auto|DEG`` and
    ``--augment auto|S``) as :class:`SearchConfig` values; other settings pass through."""
    kw = _auto_or_number(kw, "augment", "a strength",
                         "Use auto, 0 (off) or a strength such as 0.1")
    kw = _auto_or_number(kw, "mixup", "a Beta parameter", "Use auto, 0 (off) or e.g. 0.5")
    kw = _auto_or_number(kw, "time_warp", "a strength", "Use auto, 0 (off) or e.g. 0.1")
    kw = _auto_or_number(kw, "rotate", "an angle",
                         "Use auto, 0 (no rotation) or a maximum angle such as 30")
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
