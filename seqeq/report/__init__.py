"""The run report: ``report.json`` (stable, versioned; see ``schema.json`` and docs/report.md) and
a self-contained ``report.html`` rendered from the same dict."""

from pathlib import Path

from ._collect import int8_size, param_importances
from ._derive import SCHEMA_VERSION, finalise
from ._html import render_html
from ._write import read_report, write_html, write_report

__all__ = ["SCHEMA_PATH", "SCHEMA_VERSION", "finalise", "int8_size", "param_importances",
           "read_report", "render_html", "write_html", "write_report"]

#: the JSON Schema (draft 2020-12) that report.json follows
SCHEMA_PATH = Path(__file__).with_name("schema.json")
