"""The scripted entry point, a facade over :mod:`seqeq.run`: ``fit``, ``bench``, ``export``,
``predict``.

Data flows one way: load data -> split (validation from training data; test held out) -> search on
train/validation only -> retrain the chosen configuration on train+validation with several seeds ->
evaluate the test set once -> save, export, write the report. The CLI calls these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .config import DataConfig, RunConfig, search_options
from .errors import SeqeqError, opt
from .run import (
    GRADIENT_WINDOW,
    RunResult,
    export_model,
    latest_run,
    load_data,
    run,
    run_on,
    split_validation,
)

__all__ = ["RunResult", "fit", "bench", "export", "predict", "run", "run_on", "load_data",
           "split_validation", "latest_run", "export_model", "GRADIENT_WINDOW"]

def fit(path: str | Path, *, test: str | Path | None = None, budget_kb: float = 20.0,
        trials: int = 20, timeout: float | None = None, seed: int = 0,
        out: str | Path | None = None, fmt: str | None = None, id_col: str | None = None,
        time_col: str | None = None, label_col: str | None = None,
        group_col: str | None = None, nan: str = "reject", decimal: str | None = None,
        vectors: str = "auto", quiet: bool = True, **search: Any) -> RunResult:
    """Search, train, export and report on a CSV/Parquet file. Returns a :class:`RunResult`.

    ``search`` takes any other setting of :class:`~seqeq.config.RunConfig` (``cells``, ``metric``,
    ``epochs``, ``final_seeds``, ``device``, ``workers``, ``storage``, ``resume``, ``rotate``,
    ``augment`` ...). ``vectors`` names the x/y/z channel triplets that rotation augmentation turns.
    """
    dc = DataConfig(path=str(path), test_path=None if test is None else str(test), fmt=fmt,
                    id_col=id_col, time_col=time_col, label_col=label_col, group_col=group_col,
                    nan=nan, decimal=decimal, vectors=vectors)
    cfg = RunConfig.of(budget_kb=budget_kb, trials=trials, timeout=timeout, seed=seed,
                       **search_options(search))
    return run(dc, cfg, out, quiet=quiet)


def bench(name: str, *, budget_kb: float = 20.0, trials: int = 20, timeout: float | None = None,
          seed: int = 0, out: str | Path | None = None, data_dir: str | None = None,
          vectors: str = "auto", quiet: bool = True, **search: Any) -> RunResult:
    """The same as :func:`fit` on a built-in benchmark (``seqeq datasets`` lists them)."""
    dc = DataConfig(benchmark=name, data_dir=data_dir, vectors=vectors)
    cfg = RunConfig.of(budget_kb=budget_kb, trials=trials, timeout=timeout, seed=seed,
                       **search_options(search))
    return run(dc, cfg, out, quiet=quiet)


def export(out_path: str | Path, run_dir: str | Path | None = None,
           quantize: str | None = None, target: str | None = None,
           streaming: bool = False, trial: int | None = None, max_kb: float | None = None,
           data=None, quiet: bool = True) -> dict:
    """Export the best model of ``run_dir`` (the latest run if omitted) to ``out_path``, as the
    export target ``target`` names or ``out_path``'s suffix chooses (``.onnx``);
    ``streaming=True``: the one-step model (target ``onnx-streaming``,
    :mod:`seqeq.export.streaming`).

    ``trial=N``: trial N's configuration instead, and ``max_kb=K``: the best completed trial
    whose exported model fits K KiB -- retrained as the run retrained its winner (once; kept in
    ``RUN/trials/N/``), or the run's own model where that trial is its winner
    (:mod:`seqeq.run.pick`). ``data``: the run's ``(train, test)`` where it ran on data in
    memory. The returned dict says which (``origin``: ``final``, ``trial`` or ``search``;
    ``retrained``)."""
    from .export.targets import target_for
    from .run.rundir import model_origin

    target = streaming_target(target, streaming)

    target_for(out_path, target)  # an unknown target fails before any run is looked up
    run_dir = Path(run_dir) if run_dir is not None else latest_run()
    if trial is not None or max_kb is not None:
        from .run.pick import trial_model

        model_dir, picked = trial_model(run_dir, trial=trial, max_kb=max_kb, data=data,
                                        quiet=quiet)
        info = export_model(model_dir, out_path, quantize=quantize, target=target)
        return {**info, "run_dir": str(run_dir), **picked, "model_dir": str(model_dir)}
    if not (run_dir / "model" / "model.json").is_file():
        raise SeqeqError(f"{run_dir} holds no finished model",
                         "Pass the directory of a finished `seqeq fit`/`bench` run")
    info = export_model(run_dir / "model", out_path, quantize=quantize, target=target)
    return {**info, "run_dir": str(run_dir), **model_origin(run_dir)}


def streaming_target(target: str | None, streaming: bool) -> str | None:
    """The export target that ``target`` and ``streaming`` name together."""
    if not streaming:
        return target
    if target not in (None, "onnx-streaming"):
        raise SeqeqError(f"{opt('streaming')} writes the onnx-streaming target, not {target!r}",
                         f"Leave out {opt('target')}, or {opt('streaming')}")
    return "onnx-streaming"


def predict(model_path: str | Path, data: str | Path, *, proba: bool = False,
            fmt: str | None = None, id_col: str | None = None, time_col: str | None = None,
            label_col: str | None = None, nan: str = "reject", decimal: str | None = None):
    """Predict labels (and class probabilities) for every series of ``data`` from an .onnx file
    alone, with onnxruntime (torch is not imported). Returns a pandas DataFrame; where the data
    carries labels, ``df.attrs["evaluation"]`` holds the accuracy and the confusion matrix
    (rows: true class, columns: predicted, in the model's class order)."""
    import pandas as pd

    from .datasets import load_file
    from .export.runtime import OnnxClassifier

    clf = OnnxClassifier(model_path)
    ds = load_file(data, layout=fmt, id_col=id_col, time_col=time_col, label_col=label_col,
                   nan=nan, decimal=decimal, require_labels=False)
    clf.check_channels(ds.channel_names)
    probs = clf.predict_proba(ds.X, ds.lengths)
    ids = ds.ids if ds.ids is not None else np.arange(ds.n_series)
    df = pd.DataFrame({"id": ids, "label": np.asarray(clf.class_names)[probs.argmax(1)]})
    if proba:
        for i, c in enumerate(clf.class_names):
            df[f"p_{c}"] = probs[:, i]
    if ds.y is not None:
        df.attrs["evaluation"] = _evaluation(clf.class_names, ds, probs.argmax(1))
    return df


def _evaluation(class_names: list[str], ds, pred: np.ndarray) -> dict:
    """Accuracy and confusion matrix of ``pred`` (model class indices) against the data's own
    labels, matched to the model's classes by name; labels the model does not know are counted
    apart (they cannot be predicted)."""
    index = {c: k for k, c in enumerate(class_names)}
    true = np.array([index.get(str(ds.class_names[y]), -1) for y in ds.y])
    known = true >= 0
    C = len(class_names)
    counts = np.zeros((C, C), dtype=int)
    np.add.at(counts, (true[known], pred[known]), 1)
    unknown = sorted({str(ds.class_names[y]) for y, k in zip(ds.y, known, strict=True) if not k})
    return {"accuracy": float(np.mean(pred[known] == true[known])) if known.any() else None,
            "n_labelled": int(known.sum()), "unknown_labels": unknown,
            "confusion_matrix": {"class_names": list(class_names), "counts": counts.tolist()}}
