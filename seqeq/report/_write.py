"""Write report.json and report.html atomically into a run directory."""

from __future__ import annotations

from pathlib import Path

from .._io import atomic_write_json, atomic_write_text
from ..errors import SeqeqError
from ._derive import SCHEMA_VERSION, finalise
from ._html import render_html

__all__ = ["write_report", "write_html", "read_report"]

_REQUIRED = ("schema_version", "data", "search", "trials", "best", "final")


def write_report(report: dict, run_dir: str | Path, html: bool = True) -> dict[str, Path]:
    """Finalise ``report`` (see :func:`~seqeq.report._derive.finalise`) and write report.json and
    (unless ``html`` is False) report.html."""
    run_dir = Path(run_dir)
    r = finalise(report)
    atomic_write_json(run_dir / "report.json", r)
    if html:
        atomic_write_text(run_dir / "report.html", render_html(r))
    return {"json": run_dir / "report.json", "html": run_dir / "report.html" if html else ""}


def write_html(report: dict, run_dir: str | Path) -> Path:
    """Render ``report`` (e.g. read back from report.json) to ``run_dir/report.html`` only."""
    path = Path(run_dir) / "report.html"
    atomic_write_text(path, render_html(finalise(report)))
    return path


def read_report(path: str | Path) -> dict:
    """Read a report.json this version of seqeq can render; a clear error otherwise."""
    import json

    path = Path(path)
    if not path.is_file():
        raise SeqeqError(f"{path} not found", "Pass the directory of a finished run")
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SeqeqError(f"{path} is not valid JSON ({e})", "Re-run the search") from None
    missing = [k for k in _REQUIRED if k not in report] if isinstance(report, dict) else _REQUIRED
    if missing:
        raise SeqeqError(f"{path} is not a seqeq report (missing {', '.join(missing)})",
                         "Pass the directory of a finished `seqeq fit`/`bench` run")
    v = report["schema_version"]
    if not isinstance(v, int) or v > SCHEMA_VERSION:
        raise SeqeqError(f"{path} has report schema_version {v!r}; this seqeq reads up to "
                         f"{SCHEMA_VERSION}", "Upgrade seqeq to render it")
    return report
