"""Write report.json and report.html atomically into a run directory."""

from __future__ import annotations

from pathlib import Path

from .._io import atomic_write_json, atomic_write_text
from ._html import render_html


def write_report(report: dict, run_dir: str | Path) -> dict[str, Path]:
    run_dir = Path(run_dir)
    atomic_write_json(run_dir / "report.json", report)
    atomic_write_text(run_dir / "report.html", render_html(report))
    return {"json": run_dir / "report.json", "html": run_dir / "report.html"}
