"""The run report: ``report.json`` (stable, versioned; see ``schema.json`` and docs/report.md) and
a self-contained ``report.html`` rendered from the same dict."""

from ._collect import int8_size, param_importances
from ._html import render_html
from ._write import write_report

__all__ = ["int8_size", "param_importances", "render_html", "write_report"]
