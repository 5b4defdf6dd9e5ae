"""Terminal progress of a run: which phase it is in (search, re-ranking, final retrain, export,
report), a bar over its trials or final models, a timer that keeps moving, an estimate of the
time left, the best trial so far, and what is training now (the trial's cell and size, its fold,
epoch of epochs and latest validation score; or the final model k of N).

One :class:`RunProgress` lives through the whole run; the display is redrawn four times a second
from its state (a ``rich.live.Live``), so the timer moves while a long epoch trains. Everything
goes to stderr, so ``--json`` keeps stdout clean; ``quiet`` shows nothing.
"""

from __future__ import annotations

import threading
import time

import optuna
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

__all__ = ["RunProgress", "console", "clock"]

#: everything human-readable goes to stderr, so ``--json`` keeps stdout clean
console = Console(stderr=True)

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def clock(seconds: float) -> str:
    """``1:02:03`` / ``2:03``."""
    s = max(0, int(round(seconds)))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunProgress:
    """The run's live display. Use as a context manager; the search passes :meth:`callback`
    to ``study.optimize`` and :meth:`trial_epoch` to each trial's training, the final stage
    calls :meth:`final_model` and :meth:`final_epoch`, the pipeline :meth:`phase`."""

    def __init__(self, total: int, metric: str, quiet: bool = False, ensemble: int = 1,
                 search_seconds: float | None = None):
        self.total, self.metric, self.quiet = total, metric, quiet
        self.per = f" per model, x {ensemble}" if ensemble > 1 else ""  # trials size one member
        self.search_seconds = search_seconds
        self.t0 = time.perf_counter()
        self._lock = threading.Lock()
        self._phase, self._phase_t0 = "search", self.t0
        self._done, self._of = 0, total
        self._best, self._counts = "", ""
        self._now = ""
        self._trial_t: list[float] = []  # seconds of each finished trial (this process)
        self._trial_start = self.t0
        self._epochs_done = self._epochs_total = 0
        self.live: Live | None = None

    # ---- the context ----------------------------------------------------------------------
    def __enter__(self):
        if not self.quiet:
            self.live = Live(get_renderable=self._render, console=console,
                             refresh_per_second=4, transient=False, redirect_stdout=False,
                             redirect_stderr=False)
            self.live.start()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            with self._lock:
                self._now = ""
            self.live.stop()
            self.live = None
        return False

    def print(self, *args, **kw) -> None:
        """A line above the display (or nothing, quiet)."""
        if not self.quiet:
            console.print(*args, **kw)

    # ---- what the run reports -------------------------------------------------------------
    def phase(self, name: str, total: int | None = None) -> None:
        """A new phase (``re-ranking``, ``final retrain``, ``export``, ``report``): its bar
        counts ``total`` steps (None: no bar)."""
        with self._lock:
            self._phase, self._phase_t0 = name, time.perf_counter()
            self._done, self._of = 0, total
            self._now = ""
            self._epochs_done = self._epochs_total = 0

    def start(self, study: optuna.Study) -> None:
        self.callback(study, None)

    def callback(self, study: optuna.Study, trial) -> None:
        """After each trial (Optuna's callback): the count, the best so far, failures."""
        from .search import counts_toward_trials, rank_key, trial_error

        if trial is not None:
            now = time.perf_counter()
            self._trial_t.append(now - self._trial_start)
            self._trial_start = now
            if trial_error(trial) is not None:
                self.print(f"  trial {trial.number} ({trial.params.get('cell')}) failed: "
                           f"{trial_error(trial)}", markup=False)
        trials = study.get_trials(deepcopy=False)
        counted = sum(map(counts_toward_trials, trials))
        done = [t for t in trials if t.state in FINISHED]
        best = [t for t in done
                if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
        desc = ""
        if best:
            b = max(best, key=rank_key)  # the trial the run will choose, ties included
            kib = b.user_attrs.get("size_bytes", 0) / 1024
            desc = (f"best {self.metric} {b.value:.4f} (trial {b.number}, "
                    f"{b.params.get('cell')}, {kib:.1f} KiB{self.per})")
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in done)
        counts = []
        if pruned:
            counts.append(f"{pruned} pruned")
        if counted > len(done):
            counts.append(f"{counted - len(done)} failed")
        with self._lock:
            self._done = min(counted, self.total)
            self._best, self._counts = desc, ", ".join(counts)
            self._now = ""

    def trial_epoch(self, number: int, spec, size_bytes: int, epoch: int, epochs: int,
                    score: float | None, fold: int = 0, folds: int = 1) -> None:
        """A trial of the search finished an epoch."""
        from .models import ModelSpec

        s = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)
        where = f"  fold {fold + 1}/{folds}" if folds > 1 else ""
        val = f"  validation {score:.4f}" if score is not None and score == score else ""
        with self._lock:
            self._now = (f"trial {number}: {s.cell} D={s.hidden_size}, {size_bytes / 1024:.1f} "
                         f"KiB{where}  epoch {epoch}/{epochs}{val}")

    def final_model(self, k: int, n: int, spec, seed: int, epochs: int) -> None:
        """The final stage starts model ``k`` (0-based) of ``n``."""
        with self._lock:
            if self._phase != "final retrain":
                self._phase, self._phase_t0 = "final retrain", time.perf_counter()
                self._epochs_done, self._epochs_total = 0, n * epochs
            self._done, self._of = k, n
            self._model = f"model {k + 1} of {n} (seed {seed}): {spec.cell} D={spec.hidden_size}"
            self._now = f"{self._model}  epoch 0/{epochs}"

    def final_epoch(self, epoch: int, epochs: int) -> None:
        with self._lock:
            self._epochs_done += 1
            self._now = f"{self._model}  epoch {epoch}/{epochs}"

    # ---- drawing --------------------------------------------------------------------------
    def _left(self, now: float) -> float | None:
        """Seconds the phase has left, where they can be told."""
        if self._phase == "search":
            left = []
            if self.search_seconds is not None:
                left.append(self.search_seconds - (now - self.t0))
            if self._trial_t and self._of:
                per = sum(self._trial_t) / len(self._trial_t)
                left.append(per * (self._of - self._done) - (now - self._trial_start))
            return max(0.0, min(left)) if left else None
        if self._phase == "final retrain" and self._epochs_done and self._epochs_total:
            rate = (now - self._phase_t0) / self._epochs_done
            return max(0.0, rate * (self._epochs_total - self._epochs_done))
        return None

    def _render(self):
        now = time.perf_counter()
        with self._lock:
            head = Table.grid(padding=(0, 1))
            row = [Text(self._phase, style="bold")]
            if self._of:
                row += [ProgressBar(total=self._of, completed=self._done, width=28),
                        Text(f"{self._done}/{self._of}")]
            left = self._left(now)
            row.append(Text(clock(now - self.t0)
                            + (f" (about {clock(left)} left)" if left is not None else ""),
                            style="yellow"))
            head.add_row(*row)
            parts = [head]
            if self._phase == "search" and (self._best or self._counts):
                parts.append(Text("  " + "  ".join(x for x in (self._best, self._counts) if x)))
            if self._now:
                parts.append(Text("  " + self._now, style="dim"))
            return Group(*parts)
