"""Render the report dict as one self-contained HTML page (inline SVG plots, no external URLs)."""

from __future__ import annotations

import html
import io

__all__ = ["render_html"]


def _svg_scatter(report: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = [t for t in report["trials"] if t.get("size_bytes") and t.get("val_score") is not None]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    cells = sorted({t["cell"] for t in trials})
    for c in cells:
        pts = [t for t in trials if t["cell"] == c]
        ax.scatter([t["size_bytes"] / 1024 for t in pts], [t["val_score"] for t in pts],
                   label=c, s=22, alpha=0.8)
    ax.axvline(report["search"]["budget_kb"], color="crimson", ls="--", lw=1, label="budget")
    best = report["best"]
    ax.scatter([best["size_bytes"] / 1024], [best["val_score"]], marker="*", s=180,
               color="gold", edgecolor="black", zorder=5, label="chosen")
    ax.set_xlabel("model size (KiB, fp32)")
    ax.set_ylabel(f"validation {report['search']['metric']}")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    buf = io.StringIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    s = buf.getvalue()
    return s[s.index("<svg"):]


def render_html(report: dict) -> str:
    e = html.escape
    b, f, s = report["best"], report["final"], report["search"]
    def fmt(v):
        return "" if v is None else f"{v:.4f}"

    rows = "".join(
        f"<tr><td>{t['number']}</td><td>{e(str(t['cell']))}</td><td>{e(t['state'])}</td>"
        f"<td>{(t['size_bytes'] or 0) / 1024:.2f}</td><td>{fmt(t['val_score'])}</td>"
        f"<td>{t.get('epochs_run') or ''}</td></tr>"
        for t in sorted(report["trials"], key=lambda t: -(t["val_score"] or -1)))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>seqeq report</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}td,th{{padding:2px 8px}}</style>
</head><body><h1>seqeq report</h1>
<section id="summary"><h2>Summary</h2>
<p>Data: {e(report['data']['train']['name'])}; budget {s['budget_kb']:g} KiB; device {e(report['device'])};
{s['n_finished']} trials ({s['n_pruned']} pruned).</p>
<p>Chosen: <b>{e(b['spec']['cell'])}</b> D={b['spec']['hidden_size']} {e(str(b['spec']['cell_kwargs']))},
{b['size_bytes'] / 1024:.2f} KiB; validation {s['metric']} {b['val_score']:.4f};
test {s['metric']} {f['test_mean']:.4f} ± {f['test_std']:.4f} over {len(f['seeds'])} seeds.</p></section>
<section id="trials-plot"><h2>Validation {e(s['metric'])} vs size</h2>{_svg_scatter(report)}</section>
<section id="trials"><h2>Trials</h2><table><tr><th>#</th><th>cell</th><th>state</th><th>KiB</th>
<th>val</th><th>epochs</th></tr>{rows}</table></section></body></html>"""
