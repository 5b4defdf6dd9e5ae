"""Render a run's report.html in headless Chromium and save a full-page PNG, to look at it.

    python benchmarks/screenshot_report.py runs/har2            # -> runs/har2/report.png
    python benchmarks/screenshot_report.py runs/har2/report.html --out /tmp/shot.png

The page must render with the network cut off (it is self-contained); Chromium runs with its
background networking disabled and a throw-away profile. Exit code 0 when the PNG was written.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["find_chromium", "screenshot"]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The first Chromium/Chrome executable on PATH, or None."""
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def screenshot(html_path: str | Path, out_png: str | Path, width: int = 1280,
               height: int = 4000, timeout: float = 120.0, browser: str | None = None) -> Path:
    """Screenshot ``html_path`` at ``width`` x ``height`` CSS pixels into ``out_png``."""
    browser = browser or find_chromium()
    if browser is None:
        raise FileNotFoundError(f"no Chromium found on PATH (tried {', '.join(CANDIDATES)})")
    html_path, out_png = Path(html_path).resolve(), Path(out_png).resolve()
    out_png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="seqeq-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--screenshot={out_png}", f"--window-size={width},{height}",
               html_path.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not out_png.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {proc.returncode}):\n"
                           f"{proc.stderr[-2000:]}")
    return out_png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="a run directory or a report.html file")
    ap.add_argument("--out", type=Path, help="PNG path (default: report.png next to the HTML)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=4000)
    a = ap.parse_args(argv)
    html_path = a.report / "report.html" if a.report.is_dir() else a.report
    if not html_path.is_file():
        print(f"error: {html_path} not found", file=sys.stderr)
        return 2
    out = a.out or html_path.with_name("report.png")
    try:
        png = screenshot(html_path, out, a.width, a.height)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
