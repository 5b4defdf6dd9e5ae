"""The run report: ``report.json`` (stable, versioned) and a self-contained ``report.html``."""

from ._html import render_html
from ._write import write_report

__all__ = ["render_html", "write_report"]
