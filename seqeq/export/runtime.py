"""Predict with an exported seqeq ONNX file: onnxruntime and numpy only, never torch.

    clf = OnnxClassifier("model.onnx")
    clf.class_names, clf.channel_names, clf.spec      # from the file's metadata
    clf.predict(X)                                    # X (N, T, C) raw data -> N label strings

``X`` holds raw (unnormalised) data in the channel order of :attr:`OnnxClassifier.channel_names`;
normalisation is part of the graph. Series of unequal length are right-padded to a common T and
their real lengths passed as ``lengths``; values after a series' length are never read (NaN
padding is fine).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SeqeqError
from . import _format as F

__all__ = ["OnnxClassifier"]


class OnnxClassifier:
    """A seqeq classifier exported by :func:`seqeq.export.export_onnx`, run by onnxruntime.

    ``batch_size``: series per onnxruntime call (each call runs only up to the longest series in
    it). ``threads``: onnxruntime intra-op threads (default 1: the models are small and the time
    loop is sequential, so extra threads mostly add synchronisation). ``providers``: onnxruntime
    execution providers (default CPU).
    """

    def __init__(self, path: str | os.PathLike, *, batch_size: int = 256, threads: int | None = 1,
                 providers: Sequence[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise SeqeqError("onnxruntime is not installed",
                             "Install it with: pip install onnxruntime") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise SeqeqError(f"no ONNX model at {self.path}",
                             "Pass the .onnx file written by `seqeq export`")
        if int(batch_size) < 1:
            raise SeqeqError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        so = ort.SessionOptions()
        so.log_severity_level = 4  # failures reach the caller as SeqeqError; no stderr noise
        if threads is not None:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(self.path), so, providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as e:
            raise SeqeqError(f"onnxruntime cannot load {self.path} ({type(e).__name__}: {e})",
                             "Re-export the model with `seqeq export`") from None
        props = self._session.get_modelmeta().custom_metadata_map
        fmt = props.get(F.KEY_FORMAT)
        if fmt not in (F.FORMAT, F.FORMAT_STREAMING):
            raise SeqeqError(f"{self.path} is not a seqeq ONNX model (format {fmt!r}, expected "
                             f"{F.FORMAT!r})", "Export it with `seqeq export`")
        #: a one-step model (``seqeq export --streaming``), run here sample by sample
        self.streaming = fmt == F.FORMAT_STREAMING
        try:
            if self.streaming:
                self._initial_state = np.asarray(json.loads(props[F.KEY_INITIAL_STATE]),
                                                 dtype=np.float32)
            self.class_names: list[str] = list(json.loads(props[F.KEY_CLASS_NAMES]))
            self.channel_names: list[str] = list(json.loads(props[F.KEY_CHANNEL_NAMES]))
            #: the model spec as a dict (``ModelSpec.to_dict()``; build it with ModelSpec.from_dict)
            self.spec: dict[str, Any] = dict(json.loads(props[F.KEY_SPEC]))
            #: the caller's metadata given at export
            self.metadata: dict[str, Any] = dict(json.loads(props.get(F.KEY_METADATA, "{}")))
        except (KeyError, ValueError, TypeError) as e:
            raise SeqeqError(f"{self.path} has damaged seqeq metadata ({type(e).__name__}: {e})",
                             "Re-export the model with `seqeq export`") from None
        self.seqeq_version: str = props.get(F.KEY_VERSION, "")
        self.quantize: str = props.get(F.KEY_QUANTIZE, "none")

    def __repr__(self) -> str:
        return (f"OnnxClassifier({str(self.path)!r}, cell={self.spec.get('cell')!r}, "
                f"channels={len(self.channel_names)}, classes={len(self.class_names)}, "
                f"quantize={self.quantize!r})")

    # ---- input checks ----------------------------------------------------------------------
    def check_channels(self, channel_names: Sequence[str]) -> None:
        """Raise a :class:`SeqeqError` naming both lists unless the data's channels are the
        model's, in the same order."""
        have, want = [str(c) for c in channel_names], self.channel_names
        if have == want:
            return
        fix = "Pass the channels the model was trained on, in that order"
        if sorted(have) == sorted(want):
            fix = "The data has the right channels in another order; reorder its columns"
        raise SeqeqError(f"the data has {len(have)} channels {have} but the model expects "
                         f"{len(want)}: {want}", fix)

    def _check(self, X, lengths, channel_names):
        """Validate shapes, channels and lengths; ``X`` may be any array-like or a lazy array
        with ``shape``/``dtype`` and row slicing (it is read one batch at a time)."""
        if not (hasattr(X, "shape") and hasattr(X, "dtype") and hasattr(X, "__getitem__")):
            X = np.asarray(X)
        shape, dtype = tuple(X.shape), np.dtype(X.dtype)
        if len(shape) != 3:
            raise SeqeqError(f"expected data of shape (series, time, channels), got {shape}")
        if dtype.kind not in "biuf":
            raise SeqeqError(f"expected numeric data, got dtype {dtype}")
        n, T, c = shape
        if c != len(self.channel_names):
            self.check_channels(channel_names if channel_names is not None
                                else [f"<column {i}>" for i in range(c)])
        if channel_names is not None:
            self.check_channels(channel_names)
        if n and T == 0:
            raise SeqeqError("the series are empty (time length 0)")
        if lengths is None:
            return X, np.full(n, T, dtype=np.int64)
        lengths = np.asarray(lengths)
        if lengths.shape != (n,) or lengths.dtype.kind not in "iu":
            raise SeqeqError(f"lengths must be {n} integers, got shape {lengths.shape} "
                             f"dtype {lengths.dtype}")
        lengths = lengths.astype(np.int64)
        if n and (lengths.min() < 1 or lengths.max() > T):
            raise SeqeqError(f"lengths must lie in 1..{T} (the padded time length), got "
                             f"{lengths.min()}..{lengths.max()}")
        return X, lengths

    def _batch(self, X, lengths: np.ndarray, start: int) -> np.ndarray:
        """Rows ``start:start+len(lengths)`` as float32, cut at their longest series, padding 0."""
        T = int(lengths.max())
        xb = np.array(X[start:start + len(lengths)], dtype=np.float32)[:, :T]
        xb[np.arange(T)[None, :] >= lengths[:, None]] = 0.0  # never read; NaN padding is fine
        if not np.isfinite(xb).all():
            bad = np.argwhere(~np.isfinite(xb))[0]
            raise SeqeqError(f"the data has NaN or infinite values (series {start + bad[0]}, "
                             f"step {bad[1]}, channel {self.channel_names[bad[2]]!r})",
                             "Impute or drop them before predicting")
        return np.ascontiguousarray(xb)

    # ---- predictions -----------------------------------------------------------------------
    def _run(self, X, lengths, channel_names, output: str) -> np.ndarray:
        X, lengths = self._check(X, lengths, channel_names)
        out = np.empty((len(lengths), len(self.class_names)), dtype=np.float32)
        for i in range(0, len(lengths), self.batch_size):
            ln = lengths[i:i + self.batch_size]
            xb = self._batch(X, ln, i)
            try:
                res = (self._stream(xb, ln, output) if self.streaming else
                       self._session.run([output], {F.INPUT_X: xb, F.INPUT_LENGTHS: ln})[0])
            except Exception as e:  # e.g. a cell with per-timestep weights given longer series
                raise SeqeqError(f"the model cannot run on series of length {xb.shape[1]} "
                                 f"({type(e).__name__}: {e})") from None
            out[i:i + len(ln)] = res
        return out

    def _stream(self, xb: np.ndarray, lengths: np.ndarray, output: str) -> np.ndarray:
        """A streaming model's ``output`` after each series' own last sample."""
        state = np.tile(self._initial_state, (len(lengths), 1))
        out = None
        for t in range(xb.shape[1]):
            state, res = self._session.run([F.OUTPUT_STATE, output],
                                           {F.INPUT_X_T: np.ascontiguousarray(xb[:, t]),
                                            F.INPUT_STATE: state})
            out = np.empty_like(res) if out is None else out
            done = lengths == t + 1
            out[done] = res[done]
        return out

    def predict_logits(self, X, lengths=None, *, channel_names=None) -> np.ndarray:
        """(N, T, C) raw data [+ (N,) lengths] -> (N, classes) float32 logits.

        ``channel_names``: the data's channel names, if known; they must equal the model's.
        """
        return self._run(X, lengths, channel_names, F.OUTPUT_LOGITS)

    def predict_proba(self, X, lengths=None, *, channel_names=None) -> np.ndarray:
        """(N, classes) probabilities (softmax of the logits), columns in class_names order."""
        return self._run(X, lengths, channel_names, F.OUTPUT_PROBABILITIES)

    def predict(self, X, lengths=None, *, channel_names=None) -> np.ndarray:
        """(N,) predicted label strings."""
        idx = self.predict_logits(X, lengths, channel_names=channel_names).argmax(axis=1)
        return np.asarray(self.class_names, dtype=object)[idx]
