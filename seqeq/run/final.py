"""Stage 4, the final models: the chosen trial (re-ranked on cross-validation folds with
``--rerank``) retrained on train+validation with several seeds, the test set evaluated once per
model, and the model to export: the best seed's, or the average of the first ``--ensemble``."""

from __future__ import annotations

from pathlib import Path

from .._progress import console
from ..config import RunConfig

__all__ = ["final_models"]


def final_models(study, train, val, test, cfg: RunConfig, device: str, out: Path,
                  quiet: bool, trial=None, progress=None):
    """The chosen trial (re-ranked with ``--rerank``) retrained on train+validation with
    ``final_seeds`` seeds (the test set evaluated once per model), and the model to export: the
    best seed's on validation, or the average of the first ``ensemble`` of them. ``trial``: that
    trial instead of the chosen one (``seqeq export --trial``), retrained the same way.
    ``progress``: the run's :class:`~seqeq._progress.RunProgress`."""
    from ..datasets import concat
    from ..models import build_model, combine_models
    from ..search import best_trial, soft_of, spec_of, train_config_of
    from ..train import predict_logits, score, train_model

    best, reranked = trial, None
    if best is None:
        best = best_trial(study)
        if cfg.final.rerank:
            if progress is not None:
                progress.phase("re-ranking")
            best, reranked = _rerank(study, train, val, cfg, device, out, quiet)
    spec = spec_of(best)
    # "all": the trial's whole learning-rate schedule. The epoch at which a small validation set
    # peaked is mostly noise: measured over 3 benchmarks x 2 cells x 3 seeds, the end of the
    # schedule scored higher on test than the validation-chosen epoch in 16 of 18 runs
    # (benchmarks/RESULTS.md, "Final retrain length"); "best" stops at that epoch
    full = concat(train, val)
    n_models = max(cfg.final.final_seeds, cfg.final.ensemble)
    schedule, epochs = final_schedule(best, cfg, full.n_series, train.n_series, n_models)
    mean, std = full.channel_stats()
    soft = soft_of(best, full, cfg.search.seed)  # one pool for every seed (seqeq.distill)
    finals = []
    for k in range(n_models):
        seed = cfg.search.seed + 1000 + k
        on_epoch = None
        if progress is not None:
            progress.final_model(k, n_models, spec, seed, epochs)
            on_epoch = lambda e, rec: progress.final_epoch(e, epochs)  # noqa: E731
        model = build_model(spec, seed=seed)
        model.set_normalisation(mean, std)
        tcfg = train_config_of(best, device, seed=seed, stop_epoch=epochs, epochs=schedule)
        hist = train_model(model, full, tcfg, metric=cfg.search.metric, on_epoch=on_epoch,
                           soft=soft)
        fit_score = score(val.y, predict_logits(model, val).argmax(1), cfg.search.metric)
        rec = {"seed": seed, "model": model, "val_score": fit_score, "history": hist.history}
        if test is not None:  # the test set, evaluated once per final model
            pred = predict_logits(model, test).argmax(1)
            rec.update(test_score=score(test.y, pred, cfg.search.metric), test_pred=pred)
        finals.append(rec)
    ensemble = None
    if cfg.final.ensemble > 1:  # the first N final models, averaged into one exported model
        members = finals[: cfg.final.ensemble]
        model, spec = combine_models([f["model"].cpu() for f in members], spec)
        chosen = {"seed": None, "model": model, "history": members[0]["history"]}
        if test is not None:
            chosen["test_pred"] = predict_logits(model, test).argmax(1)
            chosen["test_score"] = score(test.y, chosen["test_pred"], cfg.search.metric)
        ensemble = {"members": cfg.final.ensemble, "seeds": [f["seed"] for f in members]}
    else:
        chosen = max(finals, key=lambda f: f["val_score"])
    return best, reranked, spec, epochs, finals, chosen, ensemble


def final_schedule(best, cfg: RunConfig, n_full: int, n_search: int, n_models: int
                   ) -> tuple[int, int]:
    """(schedule, stop epoch) of each final model. ``--final-epochs all``: the trial's planned
    schedule (before its time limit shortened it: on small data, trials that are
    cross-validated get a third of a trial's time per fold), where the final models' time
    allows -- ``search.FINAL_SHARE`` of the search's time, shared by the final models, at the
    trial's measured cost per epoch scaled to the larger training set -- else the longest that
    fits, at least the schedule the trial ran. ``best``: the trial's schedule, up to its best
    epoch."""
    from ..search import FINAL_SHARE, search_seconds

    t = best.user_attrs["train"]
    ran = int(t["epochs"])
    if cfg.final.final_epochs != "all":
        return ran, max(1, int(best.user_attrs.get("best_epoch") or ran))
    planned = int(t.get("planned_epochs", ran))
    budget = search_seconds(cfg, n_search)
    budget = None if budget is None else FINAL_SHARE * budget
    per_epoch = best.user_attrs.get("epoch_seconds")
    if planned > ran and budget is not None and per_epoch:
        fits = int(budget / n_models / (per_epoch * n_full / max(1, n_search)))
        planned = max(ran, min(planned, fits))
    return planned, planned


def _rerank(study, train, val, cfg: RunConfig, device: str, out: Path, quiet: bool):
    """``--rerank``: the best trial after re-scoring the top few on cross-validation folds."""
    from ..rerank import rerank

    def on_fold(trial: int, fold: int, value: float) -> None:
        if not quiet:
            console.print(f"  re-rank: trial {trial}, fold {fold + 1}/{cfg.final.rerank_folds}: "
                          f"{cfg.search.metric} {value:.4f}")

    if not quiet:
        k, folds = cfg.final.rerank, cfg.final.rerank_folds
        console.print(f"re-ranking the {k} best trials on {folds} cross-validation folds "
                      f"({k * (folds - 1)} trainings; fold 1 is the search's validation split)")
    best, section = rerank(study, train, val, cfg, device, run_dir=out, on_fold=on_fold)
    if not quiet:
        rows = sorted(section["rows"], key=lambda r: -r["score"])
        console.print("re-ranked: " + "; ".join(
            f"trial {r['trial']} ({r['cell']}) {r['score']:.4f}"
            f"{' (chosen)' if r['trial'] == best.number else ''}" for r in rows))
    return best, section
