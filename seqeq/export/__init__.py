"""ONNX export of trained models and a torch-free runtime for the exported files.

* :func:`export_onnx` -- one self-describing ``.onnx`` file per model (needs torch);
* :func:`quantize_model_weights`, :func:`int8_size_bytes` -- int8 weights, measured in torch;
* :class:`OnnxClassifier` (:mod:`seqeq.export.runtime`) -- predictions with onnxruntime only.

Names are imported lazily so ``import seqeq.export.runtime`` never imports torch.
"""

from __future__ import annotations

import importlib

__all__ = [
    "DEFAULT_OPSET",
    "OnnxClassifier",
    "export_onnx",
    "int8_size_bytes",
    "quantization_plan",
    "quantize_model_weights",
]

_WHERE = {
    "DEFAULT_OPSET": "exporter",
    "export_onnx": "exporter",
    "int8_size_bytes": "quantize",
    "quantization_plan": "quantize",
    "quantize_model_weights": "quantize",
    "OnnxClassifier": "runtime",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
