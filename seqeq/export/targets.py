"""The export targets: each is one registration — a name, the output suffixes that choose it, and
the function that writes a trained model there.

``seqeq export OUT`` picks the target from OUT's suffix (``target=`` names it explicitly);
ONNX (``.onnx``) is registered here, and a new deployment format joins with one
:func:`register_target` call, with no change to the CLI or the api.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import SeqeqError, opt

__all__ = ["ExportTarget", "register_target", "list_targets", "target_for"]


@dataclass(frozen=True)
class ExportTarget:
    """``write(model, spec, path, *, class_names, channel_names, quantize) -> info dict`` (with at
    least ``path`` and ``file_bytes``)."""

    name: str
    suffixes: tuple[str, ...]
    description: str
    write: Callable[..., dict]


_TARGETS: dict[str, ExportTarget] = {}


def register_target(target: ExportTarget) -> ExportTarget:
    """Register an export target; a second target of one name or one suffix is an error."""
    if target.name in _TARGETS:
        raise ValueError(f"export target {target.name!r} is already registered")
    taken = {s: t.name for t in _TARGETS.values() for s in t.suffixes}
    clash = [s for s in target.suffixes if s in taken]
    if clash:
        raise ValueError(f"suffix {clash[0]!r} already chooses export target {taken[clash[0]]!r}")
    _TARGETS[target.name] = target
    return target


def list_targets() -> list[ExportTarget]:
    return list(_TARGETS.values())


def target_for(path: str | Path, name: str | None = None) -> ExportTarget:
    """The target ``name`` names, else the one ``path``'s suffix chooses; a clear error for
    neither, listing what there is."""
    if name is not None:
        if name not in _TARGETS:
            raise SeqeqError(f"unknown export target {name!r}",
                             f"Use one of: {', '.join(_TARGETS)}")
        return _TARGETS[name]
    lower = Path(path).name.lower()
    for t in _TARGETS.values():
        if lower.endswith(t.suffixes):
            return t
    known = [s for t in _TARGETS.values() for s in t.suffixes]
    raise SeqeqError(f"{path} does not end in {' or '.join(known)}",
                     f"Name the output file {' or '.join('*' + s for s in known)}"
                     + (f", or pass {opt('target')}" if len(_TARGETS) > 1 else ""))


def _write_onnx(model, spec, path, *, class_names, channel_names, quantize=None) -> dict:
    from .exporter import export_onnx

    return export_onnx(model, spec, path, class_names=class_names, channel_names=channel_names,
                       quantize=quantize)


def _write_streaming(model, spec, path, *, class_names, channel_names, quantize=None) -> dict:
    from .streaming import export_streaming_onnx

    if not str(path).lower().endswith(".onnx"):
        raise SeqeqError(f"the streaming model is an ONNX file; {path} does not end in .onnx",
                         "Name the output file *.onnx")
    return export_streaming_onnx(model, spec, path, class_names=class_names,
                                 channel_names=channel_names, quantize=quantize)


register_target(ExportTarget(
    "onnx", (".onnx",), "the whole series in one ONNX graph (a Loop over time); inputs x "
    "(batch, time, channels) and lengths (batch,), outputs logits and probabilities",
    _write_onnx))
register_target(ExportTarget(
    "onnx-streaming", (), "one time step in a Loop-free ONNX graph (for tract, ONNX-to-C and "
    "ONNX-to-TFLite converters, and sample-by-sample use); inputs x_t (batch, channels) and state "
    "(batch, S), outputs state_next, logits and probabilities; chosen by --streaming",
    _write_streaming))


def _write_c(model, spec, path, *, class_names, channel_names, quantize=None) -> dict:
    from .c_source import export_c

    return export_c(model, spec, path, class_names=class_names, channel_names=channel_names,
                    quantize=quantize)


register_target(ExportTarget(
    "c", (".c",), "C99 source for microcontrollers (NAME.c and NAME.h): one call per raw sample "
    "on a caller-owned state, no dynamic allocation, weights in flash (int8 with per-row scales "
    "for --quantize int8)", _write_c))
