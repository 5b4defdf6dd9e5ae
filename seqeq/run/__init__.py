"""A seqeq run as a small package of named stages, each a module:

1. :mod:`~seqeq.run.data` -- load the series, split validation from the training series only,
   refuse what cannot be trained on, say what huge data will cost;
2. :mod:`~seqeq.run.rundir` -- the run directory: refuse a clobber or an incomparable resume,
   hold it with a lock, create seqeq's files, name a file that cannot be written;
3. :mod:`~seqeq.run.study` -- open the Optuna study and run the search (Ctrl-C ends the search);
4. :mod:`~seqeq.run.final` -- re-rank (optional) and retrain the chosen trial with several seeds,
   test once, average an ensemble;
5. :mod:`~seqeq.run.record` -- save, export, report and hand back a :class:`RunResult`, the
   same way for a finished and an interrupted run.

:mod:`~seqeq.run.pipeline` reads as that sequence; :mod:`seqeq.api` is the facade over it.
"""

from __future__ import annotations

from .data import load_data, require_per_class, split_validation
from .pipeline import Run, run, run_on
from .record import GRADIENT_WINDOW, export_model
from .result import RunResult
from .rundir import RUNS_DIR, latest_run

__all__ = ["GRADIENT_WINDOW", "RUNS_DIR", "Run", "RunResult", "export_model", "latest_run",
           "load_data", "require_per_class", "run", "run_on", "split_validation"]
