"""Terminal progress for a search: a rich progress bar over trials and a live best-so-far line."""

from __future__ import annotations

import time

import optuna
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["SearchProgress", "console"]

#: everything human-readable goes to stderr, so ``--json`` keeps stdout clean
console = Console(stderr=True)

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


class SearchProgress:
    """Context manager; pass :meth:`callback` to ``study.optimize``."""

    def __init__(self, total: int, metric: str, quiet: bool = False, ensemble: int = 1):
        self.total, self.metric, self.quiet = total, metric, quiet
        self.per = f" per model, x {ensemble}" if ensemble > 1 else ""  # trials size one member
        self.progress = None
        self.t0 = time.perf_counter()

    def __enter__(self):
        if not self.quiet:
            self.progress = Progress(
                TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("{task.description}"),
                console=console, transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("starting", total=self.total)
        return self

    def start(self, study: optuna.Study) -> None:
        self.callback(study, None)

    def callback(self, study: optuna.Study, trial) -> None:
        if self.progress is None:
            return
        from .search import counts_toward_trials, trial_error

        if trial is not None and trial_error(trial) is not None:
            self.progress.console.print(f"  trial {trial.number} ({trial.params.get('cell')}) "
                                        f"failed: {trial_error(trial)}", markup=False)
        trials = study.get_trials(deepcopy=False)
        counted = sum(map(counts_toward_trials, trials))
        done = [t for t in trials if t.state in FINISHED]
        best = [t for t in done
                if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
        desc = ""
        if best:
            from .search import rank_key

            b = max(best, key=rank_key)  # the trial the run will choose, ties included
            kib = b.user_attrs.get("size_bytes", 0) / 1024
            desc = (f"best {self.metric} {b.value:.4f} ({b.params.get('cell')}, {kib:.1f} KiB"
                    f"{self.per})")
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in done)
        if pruned:
            desc += f"  [dim]{pruned} pruned[/dim]"
        if counted > len(done):
            desc += f"  [dim]{counted - len(done)} failed[/dim]"
        self.progress.update(self.task, completed=min(counted, self.total), description=desc)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False
