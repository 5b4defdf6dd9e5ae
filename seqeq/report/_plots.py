"""The report's plots as inline SVG strings (matplotlib, Agg canvas, no pyplot state).

Every function takes the finalised report dict (see :mod:`._derive`) and returns the ``<svg>``
element, or None when the report holds nothing to plot. Text is drawn as paths so the page looks
the same without any font installed; element ids are prefixed per figure so several figures can
share one HTML page; output is deterministic (fixed hash salt, no date metadata).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass

from ._derive import is_num

__all__ = ["PLOTS", "Plot", "register_plot", "cell_colours", "render_plot"]

_RC = {
    "svg.fonttype": "path",
    "svg.hashsalt": "seqeq-report",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


def cell_colours(report: dict) -> dict[str, str]:
    """One colour per cell, stable across all plots (searched cells first, in search order)."""
    cells = list((report.get("search") or {}).get("cells") or [])
    cells += [t["cell"] for t in report.get("trials") or [] if t.get("cell")]
    names = list(dict.fromkeys(cells))
    return {c: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(names)}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _to_svg(fig, prefix: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None,
                                             "Type": None})
    s = buf.getvalue()
    s = s[s.index("<svg"):]
    s = re.sub(r"<metadata>.*?</metadata>\s*", "", s, flags=re.S)
    ids = set(re.findall(r'\bid="([^"]+)"', s))
    if ids:
        alt = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
        s = re.sub(rf'(\bid="|href="#|url\(#)({alt})(?=["\)])',
                   lambda m: m.group(1) + prefix + m.group(2), s)
    return s.replace("<svg ", '<svg role="img" ', 1)


def _render(draw: Callable, report: dict, size: tuple[float, float], prefix: str) -> str | None:
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = _figure(*size)
        if draw(fig, report) is False:
            return None
        return _to_svg(fig, prefix)


def _size_unit(report: dict) -> str:
    return "int8" if (report.get("search") or {}).get("bytes_per_param") == 1 else "fp32"


def _metric(report: dict) -> str:
    return str((report.get("search") or {}).get("metric", "score")).replace("_", " ")


# ---- the plots ------------------------------------------------------------------------------
def _size_vs_score(fig, report: dict):
    trials = [t for t in report.get("trials") or []
              if is_num(t.get("size_bytes")) and is_num(t.get("val_score"))
              and t.get("state") in ("complete", "pruned")]
    if not trials:
        return False
    ax = fig.subplots()
    colours = cell_colours(report)
    for cell, col in colours.items():
        done = [t for t in trials if t["cell"] == cell and t["state"] == "complete"]
        pruned = [t for t in trials if t["cell"] == cell and t["state"] == "pruned"]
        if done:
            ax.scatter([t["size_bytes"] / 1024 for t in done], [t["val_score"] for t in done],
                       s=26, color=col, alpha=0.85, label=cell, zorder=3)
        if pruned:
            ax.scatter([t["size_bytes"] / 1024 for t in pruned],
                       [t["val_score"] for t in pruned], s=26, facecolors="none",
                       edgecolors=col, alpha=0.7, zorder=3,
                       label=None if done else cell)
    if any(t["state"] == "pruned" for t in trials):
        ax.scatter([], [], s=26, facecolors="none", edgecolors="0.4",
                   label="pruned (score so far)")
    by_number = {t["number"]: t for t in trials}
    front = [by_number[n] for n in report["derived"]["pareto_front"] if n in by_number]
    search = report.get("search") or {}
    budget = search.get("budget_kb")
    sizes = [t["size_bytes"] / 1024 for t in trials]
    xmax = max(sizes + ([budget] if is_num(budget) else []))
    # the axis spans the trials (and the budget), not 0..budget: small models would crowd
    # into one corner
    xmin = min(sizes)
    pad = 0.08 * max(xmax - xmin, 0.05 * xmax)
    left, right = max(0.0, xmin - pad), xmax + pad
    if front:
        # the staircase: nothing at a size scores more than the last front point to its left;
        # it ends at the budget (nothing beyond it was trained)
        end = budget if is_num(budget) else right
        xs = [t["size_bytes"] / 1024 for t in front] + [end]
        ys = [t["val_score"] for t in front] + [front[-1]["val_score"]]
        ax.plot(xs, ys, drawstyle="steps-post", color="0.25", lw=1, zorder=2)
        ax.scatter(xs[:-1], ys[:-1], s=70, facecolors="none", edgecolors="0.25", lw=1,
                   zorder=4)
        for t in front:  # the trial numbers, for `seqeq export --trial N`
            ax.annotate(f"#{t['number']}", (t["size_bytes"] / 1024, t["val_score"]),
                        xytext=(4, -10), textcoords="offset points", fontsize=7, color="0.25")
        ax.plot([], [], color="0.25", lw=1, marker="o", mfc="none", ms=8, label="Pareto front")
    if is_num(budget):
        ax.axvline(budget, color="crimson", ls="--", lw=1.2, zorder=1,
                   label=f"budget {budget:g} KiB")
    chosen = by_number.get((report.get("best") or {}).get("trial"))
    if chosen is not None:
        ax.scatter([chosen["size_bytes"] / 1024], [chosen["val_score"]], marker="*", s=220,
                   color="gold", edgecolor="black", linewidth=0.8, zorder=5,
                   label=f"chosen (trial {chosen['number']})")
    ax.set_xlim(left, right)
    ax.set_xlabel(f"model size (KiB of parameters, {_size_unit(report)})")
    ax.set_ylabel(f"validation {_metric(report)}")
    fig.legend(loc="outside right upper", frameon=False)


def _history(fig, report: dict):
    hist = report["derived"]["history"]
    pts = [h for h in hist if h["val_score"] is not None]
    if not pts:
        return False
    ax = fig.subplots()
    colours = cell_colours(report)
    cell_of = {t["number"]: t.get("cell") for t in report.get("trials") or []}
    for h in pts:
        c = cell_of.get(h["number"])
        col = colours.get(c, "0.5")
        if h["state"] == "complete":
            ax.scatter([h["number"]], [h["val_score"]], s=22, color=col, zorder=3)
        elif h["state"] == "fail":  # cut short by Ctrl-C, or failed: its score so far
            ax.scatter([h["number"]], [h["val_score"]], s=26, marker="x", color=col, zorder=3)
        else:
            ax.scatter([h["number"]], [h["val_score"]], s=22, facecolors="none", edgecolors=col,
                       zorder=3)
    # one legend entry per cell drawn, whatever its trials' states (a cell whose only trials
    # were pruned is still a colour on the plot)
    for c in dict.fromkeys(cell_of.get(h["number"]) for h in pts):
        if c is not None:
            ax.scatter([], [], s=22, color=colours.get(c, "0.5"), label=c)
    best = [(h["number"], h["best_so_far"]) for h in hist if h["best_so_far"] is not None]
    if best:
        xs, ys = zip(*best, strict=True)
        ax.plot(xs, ys, drawstyle="steps-post", color="black", lw=1.3, label="best so far",
                zorder=2)
    if any(h["state"] == "pruned" for h in pts):
        ax.scatter([], [], s=22, facecolors="none", edgecolors="0.4", label="pruned")
    if any(h["state"] == "fail" for h in pts):
        ax.scatter([], [], s=26, marker="x", color="0.4", label="cut short / failed")
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"validation {_metric(report)}")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # above the axes, so it never hides a trial
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=4, frameon=False,
              handletextpad=0.3, columnspacing=1.2, borderaxespad=0.2)


def _best_per_cell(fig, report: dict):
    rows = report["derived"]["best_by_cell"]
    if not rows:
        return False
    ax = fig.subplots()
    colours = cell_colours(report)
    names = list(rows)[::-1]  # first cell on top
    vals = [rows[c]["best_val_score"] for c in names]
    ax.barh(names, [v if v is not None else 0 for v in vals],
            color=[colours.get(c, "0.5") for c in names], height=0.6, zorder=2)
    for i, (c, v) in enumerate(zip(names, vals, strict=True)):
        r = rows[c]
        if v is not None:
            txt = f"{v:.3f}  ({r['n_complete']} completed, {r['n_pruned']} pruned)"
        elif r["n_trials"]:
            txt = f"no completed trial ({r['n_trials']} tried)"
        else:
            txt = "not sampled"
        ax.text(0.01 if v is None else v + 0.01, i, txt, va="center", fontsize=8)
    ax.set_xlim(0, 1.45)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel(f"best validation {_metric(report)}")
    ax.grid(axis="y", visible=False)


def _confusion(fig, report: dict):
    cm = (report.get("final") or {}).get("confusion_matrix")
    if not cm or not cm.get("counts"):
        return False
    counts, names = cm["counts"], cm.get("class_names") or [str(i) for i in range(len(cm))]
    C = len(counts)
    ax = fig.subplots()
    ax.grid(False)
    ax.imshow(counts, cmap="Blues", aspect="equal")
    ticks = list(range(C))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    rotate = C > 4 or max(len(n) for n in names) > 6
    ax.set_xticklabels(names, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                       fontsize=8 if C <= 12 else 6)
    ax.set_yticklabels(names, fontsize=8 if C <= 12 else 6)
    if C <= 20:
        top = max(max(r) for r in counts) or 1
        for i, row in enumerate(counts):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8 if C <= 10 else 6,
                        color="white" if v > 0.55 * top else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")


def _retrain_length(report: dict) -> str:
    """How long the final retrain ran, as ``--final-epochs`` set it."""
    how = (report.get("search") or {}).get("final_epochs")
    if how == "best":
        return (" The retrain stopped at the trial's best epoch (--final-epochs best), on the "
                "trial's learning-rate schedule.")
    if how == "all":
        return (" The retrain ran the trial's whole learning-rate schedule (--final-epochs all, "
                "the default).")
    return ""


def _learning(fig, report: dict):
    final = report.get("final") or {}
    curve = [r for r in final.get("learning_curve") or [] if is_num(r.get("train_loss"))]
    best_trial = (report.get("best") or {}).get("trial")
    val = next((t.get("val_curve") for t in report.get("trials") or []
                if t["number"] == best_trial), None) or []
    val_pts = [(i + 1, v) for i, v in enumerate(val) if is_num(v)]
    if not curve and not val_pts:
        return False
    from matplotlib.ticker import MaxNLocator

    ax_loss, ax_val = fig.subplots(1, 2)
    # the chosen cell's colour, as in every other plot
    col = cell_colours(report).get(((report.get("best") or {}).get("spec") or {}).get("cell"),
                                   "0.3")
    if curve:
        ax_loss.plot([r["epoch"] for r in curve], [r["train_loss"] for r in curve], marker="o",
                     ms=4, color=col)
    else:
        ax_loss.text(0.5, 0.5, "no training record", ha="center", va="center",
                     transform=ax_loss.transAxes, color="0.4")
    ens = final.get("ensemble") or {}
    ax_loss.set_title(f"final model (seed {final.get('chosen_seed')})" if not ens else
                      f"first ensemble member (seed {ens['seeds'][0]})", fontsize=9)
    ax_loss.set_ylabel("train loss (cross-entropy)")
    if val_pts:
        xs, ys = zip(*val_pts, strict=True)
        ax_val.plot(xs, ys, marker="s", ms=4, color=col, ls="--")
        best_epoch = (report.get("best") or {}).get("epochs")
        if is_num(best_epoch) and best_epoch <= len(val):
            ax_val.axvline(best_epoch, color="0.5", ls=":", lw=1, label="best epoch")
            ax_val.legend(loc="lower right", frameon=False)
    else:
        ax_val.text(0.5, 0.5, "no validation record", ha="center", va="center",
                    transform=ax_val.transAxes, color="0.4")
    ax_val.set_title(f"search, trial {best_trial}", fontsize=9)
    ax_val.set_ylabel(f"validation {_metric(report)}")
    last = max([r["epoch"] for r in curve] + [x for x, _ in val_pts] + [1])
    for ax in (ax_loss, ax_val):
        ax.set_xlabel("epoch")
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _gradient_norm(fig, report: dict):
    g = (report.get("final") or {}).get("gradient_norm") or []
    pts = [(t + 1, v) for t, v in enumerate(g) if is_num(v) and v > 0]
    if not pts:
        return False
    ax = fig.subplots()
    xs, ys = zip(*pts, strict=True)
    cell = ((report.get("best") or {}).get("spec") or {}).get("cell", "")
    ax.semilogy(xs, ys, marker="o" if len(pts) <= 60 else None, ms=3, lw=1.3, color="#2ca02c")
    ax.set_title(f"{cell}, chosen model, T = {len(g)}", fontsize=9, loc="left")
    ax.set_xlabel("time step t")
    ax.set_ylabel(r"$\|\partial h_T \,/\, \partial h_t\|$")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _importances(fig, report: dict):
    vals = ((report.get("importances") or {}).get("values")) or {}
    if not vals:
        return False
    ax = fig.subplots()
    names = list(vals)[::-1]  # most important on top
    ax.barh(names, [vals[n] for n in names], color="#9467bd", height=0.6, zorder=2)
    for i, n in enumerate(names):
        ax.text(vals[n] + 0.01, i, f"{vals[n]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(vals.values()) * 1.18 + 0.02)
    ax.set_xlabel("importance (sums to 1)")
    ax.grid(axis="y", visible=False)


def _importance_height(report: dict) -> float:
    n = len(((report.get("importances") or {}).get("values")) or {})
    return max(2.6, 0.8 + 0.32 * n)


def _cells_height(report: dict) -> float:
    return max(2.4, 0.9 + 0.42 * len(report["derived"]["best_by_cell"]))


def _confusion_size(report: dict) -> tuple[float, float]:
    cm = (report.get("final") or {}).get("confusion_matrix") or {}
    C = len(cm.get("counts") or [])
    side = min(8.0, max(3.0, 1.3 + 0.4 * C))
    return side + 0.8, side


@dataclass(frozen=True)
class Plot:
    """One report plot, in one entry: its section id, title and caption, how to draw it and at
    what size (inches, from the report), plus optional extras: ``caption_more`` adds text from
    the report to the caption, ``note`` gives a note shown above the plot (or instead of it),
    and ``hide_when_empty`` drops the section when there is nothing to draw."""

    id: str
    title: str
    caption: str
    draw: Callable
    size: Callable[[dict], tuple[float, float]]
    wide: bool = False
    caption_more: Callable[[dict], str] | None = None
    note: Callable[[dict], str | None] | None = None
    hide_when_empty: bool = False


#: the report's plots by section id, in page order (:func:`register_plot` adds one)
PLOTS: dict[str, Plot] = {}


def register_plot(plot: Plot) -> Plot:
    """Add a plot to every report; a second plot of one id is an error."""
    if plot.id in PLOTS:
        raise ValueError(f"report plot {plot.id!r} is already registered")
    PLOTS[plot.id] = plot
    return plot


def _importance_caption(r: dict) -> str:
    imp = r.get("importances") or {}
    if imp.get("values") and imp.get("evaluator"):
        return f" Evaluator: Optuna {imp['evaluator']} on {imp.get('n_trials')} trials."
    return ""


for _p in (
    Plot("plot-size-score", "Validation score against model size",
         "Every trial, coloured by cell type (hollow: pruned, scored up to where it stopped). "
         "The step line is the Pareto front of completed trials (no smaller trial scores "
         "higher); the dashed line is the size budget; the star is the chosen model.",
         _size_vs_score, lambda r: (9.6, 4.0), wide=True),
    Plot("plot-history", "Optimisation history",
         "Validation score of each trial in the order the trials ran, and the best completed "
         "score so far.", _history, lambda r: (5.4, 3.0)),
    Plot("plot-cells", "Best score per cell type",
         "The best validation score each searched cell type reached, with its trial counts.",
         _best_per_cell, lambda r: (5.4, _cells_height(r))),
    Plot("plot-confusion", "Test confusion matrix",
         "The chosen final model on the test set. Rows: true class; columns: predicted class.",
         _confusion, _confusion_size, hide_when_empty=True),  # no test set: the summary says so
    Plot("plot-learning", "Learning curves",
         "Training loss per epoch of the chosen final model (retrained on training + validation "
         "data), and the validation score per epoch of that trial during the search.",
         _learning, lambda r: (5.4, 3.0), caption_more=_retrain_length),
    Plot("plot-gradient", "Gradient-norm diagnostic",
         "How strongly the final state h_T depends on each earlier state h_t (norm of the "
         "Jacobian, averaged over up to 8 validation series, over at most their first 256 "
         "steps; log scale). A flat curve near 1 "
         "means gradients neither vanish nor explode along the sequence; a curve that falls "
         "steeply towards t = 1 means early inputs barely reach the prediction.",
         _gradient_norm, lambda r: (5.4, 3.0)),
    Plot("plot-importances", "Hyperparameter importances",
         "How much of the spread in validation scores of the completed trials each "
         "hyperparameter explains.", _importances, lambda r: (5.4, _importance_height(r)),
         caption_more=_importance_caption,
         note=lambda r: (r.get("importances") or {}).get("note")),
):
    register_plot(_p)


def render_plot(name: str, report: dict) -> str | None:
    """The plot ``name`` (a key of :data:`PLOTS`) as an ``<svg>`` string, or None if the report
    holds nothing to draw."""
    plot = PLOTS[name]
    return _render(plot.draw, report, plot.size(report), prefix=f"{name}-")
