"""Stage 5, the record: save the model to hand back, export it, and write the report and the
:class:`RunResult`. A finished run and an interrupted one (Ctrl-C in the search or the final
retrain: the search's best model so far, ``final: null``) are recorded the same way."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..errors import Interrupted, SeqeqError
from .result import RunResult

__all__ = ["GRADIENT_WINDOW", "record", "record_interrupted", "final_section", "export_model",
           "report_base"]

#: the report's gradient diagnostic (||dh_T/dh_t||) is taken over at most this many first steps
GRADIENT_WINDOW = 256


def record(rc, *, best, spec, model, val_score: float, epochs, final: dict | None,
           reranked: dict | None, save_extra: dict, search_seconds: float) -> RunResult:
    """Save ``model`` as the run's model, export it to best.onnx, write the report (``final``
    None: an interrupted run) and return the :class:`RunResult`."""
    from ..models import save_model, spec_size_bytes
    from ..report import write_report

    cfg, out = rc.cfg, rc.out
    _phase(rc, "export")
    save_model(model, spec, out / "model", extra=save_extra)
    onnx_info = export_model(out / "model", out / "best.onnx", quantize=cfg.export.quantize)
    report = report_base(rc.study, cfg, out, rc.device, rc.cells, rc.t_start, search_seconds,
                         final is None, rc.train_all, rc.test, rc.data_info, rc.val_how,
                         rc.train, rc.val)
    report.update({"rerank": reranked, "best": _best_section(best, spec, model, val_score, epochs),
                   "final": final, "export": onnx_info or None,
                   "deployment": _deployment(rc, spec, model)})
    _phase(rc, "report")
    paths = write_report(report, out, html=rc.html)
    fin = final or {}
    return RunResult(
        run_dir=str(out), best_spec=spec.to_dict(),
        size_bytes=spec_size_bytes(spec, cfg.bytes_per_param), quantize=cfg.export.quantize,
        val_score=float(val_score), metric=cfg.search.metric, test_mean=fin.get("test_mean"),
        test_std=fin.get("test_std"), test_scores=list(fin.get("test_scores") or []),
        onnx_path=str(out / "best.onnx"), test_score=fin.get("chosen_test_score"),
        ensemble=cfg.final.ensemble if final is not None else 1,
        report_json=str(paths["json"]), report_html=str(paths["html"]),
        model_dir=str(out / "model"), n_trials=report["search"]["n_finished"],
        n_pruned=report["search"]["n_pruned"], seconds=time.perf_counter() - rc.t_start,
        extra={"interrupted": final is None, "onnx": onnx_info, "rerank": reranked,
               **({"model": model} if rc.keep_model else {})})


def _phase(rc, name: str) -> None:
    if getattr(rc, "progress", None) is not None:
        rc.progress.phase(name)


def _deployment(rc, spec, model) -> dict | None:
    """The exported model's figures on a microcontroller (``seqeq.export.mcu.deployment``), or
    why there are none; a failure here never costs the run its model or report."""
    from ..export import mcu

    if not mcu.DEPLOYMENT_FIGURES:
        return None
    _phase(rc, "device figures")
    data = rc.val if rc.val is not None and rc.val.n_series else rc.train
    try:
        i = int(np.argmax(data.lengths))
        return mcu.deployment(model, spec, class_names=rc.train.class_names,
                              channel_names=rc.train.channel_names,
                              quantize=rc.cfg.export.quantize,
                              series=np.asarray(data.X[i, : int(data.lengths[i])]),
                              window_steps=int(np.median(rc.train_all.lengths)))
    except (SeqeqError, RuntimeError, OSError, ValueError) as e:
        return {"error": f"{type(e).__name__}: {e}"[:500]}


def final_section(rc, finals: list[dict], chosen: dict, ensemble: dict | None, model) -> dict:
    """The report's ``final``: every final model's scores, the exported model's test score (and
    with int8 weights), its confusion matrix, learning curve and gradient diagnostic."""
    import torch

    from ..export import quantize_model_weights
    from ..models import gradient_norm_ratio
    from ..train import predict_logits, score

    test, val, metric = rc.test, rc.val, rc.cfg.search.metric
    test_scores = [f["test_score"] for f in finals if "test_score" in f]
    # what int8 weights cost: the chosen model, quantise-dequantised, on the same test set
    test_int8 = (score(test.y, predict_logits(quantize_model_weights(model), test, device="cpu")
                       .argmax(1), metric) if test is not None else None)
    # the diagnostic runs one backward pass per state unit through every step: a bounded window
    Tg = min(int(val.lengths.min()), GRADIENT_WINDOW * model.pool)  # (recurrent steps)
    gx = torch.as_tensor(np.asarray(val.X[: min(8, val.n_series), :Tg]))
    return {
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
        "gradient_norm": gradient_norm_ratio(model, gx).tolist(),
    }


def record_interrupted(rc, search_seconds: float, during: str = "search") -> RunResult:
    """Ctrl-C during the search or the final retrain: hand back the best model of the search so
    far (checkpointed by the search; not retrained, not tested), a report of the trials so far
    (``interrupted: true``, ``final: null``), and say how to resume. Finished trials stay in
    the study; a resumed run whose search is complete goes straight to the final retrain."""
    from .._progress import console
    from ..models import load_model
    from ..search import CHECKPOINT, best_trial

    resume_hint = "resume with the same command plus --resume"
    try:
        best = best_trial(rc.study)
        model, spec, meta = load_model(rc.out / CHECKPOINT)
    except SeqeqError:
        raise Interrupted(f"{during} interrupted before any trial finished",
                          f"Nothing to export; {resume_hint}") from None
    trial = next((t for t in rc.study.get_trials(deepcopy=False)
                  if t.number == meta.get("trial")), best)
    res = record(rc, best=trial, spec=spec, model=model,
                 val_score=float(meta.get("val_score", best.value)),
                 epochs=trial.user_attrs.get("best_epoch"), final=None, reranked=None,
                 save_extra=meta, search_seconds=search_seconds)
    console.print(f"[yellow]{during} interrupted[/yellow]: the best model of the search so "
                  f"far (trial {trial.number}) is in {rc.out / 'best.onnx'} (not retrained, not "
                  f"tested), the trials so far in {res.report_html or res.report_json}; finished "
                  f"trials are kept in the study; {resume_hint}")
    return res


def report_base(study, cfg: RunConfig, out: Path, device: str, cells, t_start: float,
                 search_seconds: float, interrupted: bool, train_all, test, data_info: dict,
                 val_how: str, train, val) -> dict:
    """The report's sections that the search alone determines (data, search, trials,
    importances); :func:`run_on` adds the final models, an interrupted run the checkpoint."""
    from .. import __version__
    from ..augment import describe_vectors
    from ..report import param_importances
    from ..search import trial_records

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
        "search": {"budget_kb": cfg.search.budget_kb, "budget_bytes": cfg.budget_bytes,
                   "bytes_per_param": cfg.bytes_per_param, "quantize": cfg.export.quantize,
                   "metric": cfg.search.metric, "trials_requested": cfg.search.trials,
                   "timeout": cfg.search.timeout, "epochs": cfg.search.epochs,
                   "final_epochs": cfg.final.final_epochs, "pruner": cfg.search.pruner,
                   "ensemble": cfg.final.ensemble, "rerank": cfg.final.rerank,
                   "rerank_folds": cfg.final.rerank_folds, "opening": cfg.search.opening,
                   "seed": cfg.search.seed, "workers": cfg.run.workers, "cells": cells,
                   "ram_kb": cfg.search.ram_kb, "max_macs_per_step": cfg.search.max_macs_per_step,
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
    from ..models import spec_param_count, spec_size_bytes
    from ..report import int8_size

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
    from ..export.targets import target_for
    from ..models import load_model

    writer = target_for(out_path, target)
    model, spec, meta = load_model(model_dir)
    missing = [k for k in ("class_names", "channel_names") if meta.get(k) is None]
    if missing:
        raise SeqeqError(f"the model in {model_dir} has no {' or '.join(missing)}",
                         "Export the model/ folder of a finished seqeq run")
    return {**writer.write(model, spec, out_path, class_names=meta["class_names"],
                           channel_names=meta["channel_names"], quantize=quantize),
            "target": writer.name}
