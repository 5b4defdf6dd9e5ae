"""seqeq: AutoML for sequence classification with small, stable recurrent cells.

Scripted use::

    import seqeq
    res = seqeq.fit("walks.parquet", budget_kb=8, trials=30)
    res = seqeq.bench("har2", budget_kb=20, trials=8)
    seqeq.export("best.onnx", run_dir=res.run_dir)
    preds = seqeq.predict("best.onnx", "new.csv")       # onnxruntime only, no torch

and a scikit-learn estimator, :class:`seqeq.SeqeqClassifier`. Attributes are imported lazily, so
``import seqeq`` is cheap and the predict path never imports torch.
"""

__version__ = "0.1.0"

from .errors import SeqeqError  # noqa: E402

__all__ = ["SeqeqClassifier", "SeqeqError", "RunResult", "__version__", "bench", "export", "fit",
           "predict"]

_LAZY = {"fit": "api", "bench": "api", "export": "api", "predict": "api", "RunResult": "api",
         "SeqeqClassifier": "sklearn"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'seqeq' has no attribute {name!r}")
