"""Render a finalised report dict (see :mod:`._derive`) as one self-contained HTML page.

No external scripts, styles, fonts, images or URLs: plots are inline SVG, the style sheet and the
few lines of click-to-sort JavaScript are inline, and the page reads fine without JavaScript (the
trials table is already ordered by validation score).
"""

from __future__ import annotations

import html
from typing import Any

from ._derive import finalise, is_num
from ._plots import PLOTS, render_plot

__all__ = ["render_html", "SECTION_IDS"]

#: the ids of the page's sections, in order: the fixed sections, every registered plot
#: (``_plots.PLOTS``; a plot section appears when there is data to plot), the trials table
SECTION_IDS = ("summary", "data", "search", "model", "final", "deployment", *PLOTS, "trials")

_CSS = """
:root{--fg:#1b1f24;--muted:#5b6570;--line:#d8dee4;--bg2:#f5f7f9;--accent:#0b5cad}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 color:var(--fg);max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 6px}
h3{font-size:13px;margin:14px 0 6px;color:var(--muted);text-transform:uppercase;
 letter-spacing:.04em}
.meta{color:var(--muted);font-size:13px;margin:0 0 14px;overflow-wrap:anywhere}
nav{font-size:13px;margin:0 0 18px;display:flex;flex-wrap:wrap;gap:4px 14px}
nav a{color:var(--accent);text-decoration:none}
section{margin:0 0 26px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:10px;
 margin:12px 0}
.card{background:var(--bg2);border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.card .k{font-size:12px;color:var(--muted)}.card .v{font-size:20px;font-weight:600}
.card .s{font-size:12px;color:var(--muted)}
.notes{background:#fff8e1;border:1px solid #f1d98a;border-radius:8px;padding:8px 14px 8px 30px;
 margin:10px 0}
.note{color:var(--muted);font-style:italic}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:8px 28px}
table{border-collapse:collapse;font-size:13px}
table.kv th{text-align:left;font-weight:500;color:var(--muted);padding:3px 14px 3px 0;
 vertical-align:top;white-space:nowrap}
table.kv td{padding:3px 0;overflow-wrap:anywhere}
table.grid th,table.grid td{border-bottom:1px solid var(--line);padding:4px 10px;text-align:right}
table.grid th{background:var(--bg2);position:sticky;top:0}
table.grid .l{text-align:left}
table.grid tr.chosen td{background:#fff6cc;font-weight:600}
.num{font-variant-numeric:tabular-nums}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:18px 28px}
.plot{margin:0}
.plot svg{max-width:100%;height:auto;display:block}
.cap{color:var(--muted);font-size:13px;margin:0 0 6px}
.scroll{overflow-x:auto;max-height:none}
.js table.sortable th{cursor:pointer;user-select:none}
.js table.sortable th:hover{color:var(--accent)}
table.sortable th[data-dir=asc]::after{content:" \\25B2"}
table.sortable th[data-dir=desc]::after{content:" \\25BC"}
footer{color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding-top:8px}
"""

# click a column header to sort; the first click on a numeric column sorts largest first
_JS = """
document.documentElement.classList.add("js");
document.querySelectorAll("table.sortable").forEach(function (tbl) {
  tbl.querySelectorAll("thead th").forEach(function (th, i) {
    th.addEventListener("click", function () {
      var desc = th.dataset.dir !== "desc";
      tbl.querySelectorAll("thead th").forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = desc ? "desc" : "asc";
      var key = function (r) {
        var c = r.cells[i], v = c.dataset.v !== undefined ? c.dataset.v : c.textContent.trim();
        return v === "" ? null : (isNaN(v) ? v.toLowerCase() : Number(v));
      };
      var rows = Array.prototype.slice.call(tbl.tBodies[0].rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return (x === null) - (y === null); }
        return (x < y ? -1 : x > y ? 1 : 0) * (desc ? -1 : 1);
      });
      rows.forEach(function (r) { tbl.tBodies[0].appendChild(r); });
    });
  });
});
"""

# ---- formatting ---------------------------------------------------------------------------

def _precision(quantize) -> str:
    """How the weights are stored, in words: int8, else fp32 (recorded as None or "none")."""
    return "fp32" if quantize in (None, "none", "") else str(quantize)

def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _score(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if is_num(v) else "—"


def _kib(nbytes: Any) -> str:
    return f"{nbytes / 1024:.2f} KiB" if is_num(nbytes) else "—"


def _seconds(s: Any) -> str:
    if not is_num(s):
        return "—"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec} s" if m < 60 else f"{m // 60} h {m % 60} min"


def _kv(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows if v is not None)
    return f'<table class="kv">{body}</table>'


def _card(key: str, value: str, sub: str = "") -> str:
    return (f'<div class="card"><div class="k">{_e(key)}</div><div class="v">{value}</div>'
            f'<div class="s">{sub}</div></div>')


def _hp(spec: dict | None, front_ends: bool = True) -> str:
    """The cell's hyperparameters, then (``front_ends``) its front ends in short (``conv 16,
    pool 6``) where it has any."""
    if not spec:
        return ""
    from ..models import front_end_names

    kw = spec.get("cell_kwargs") or {}
    return ", ".join([f"{k}={v}" for k, v in kw.items()]
                     + (front_end_names(spec) if front_ends else []))


def _front_end(spec: dict) -> str | None:
    """What reads the series before the cell, in words (None: the cell reads it as it is)."""
    from ..models import CONV_KERNEL

    conv = (f"{spec['conv']} causal convolution filters over {CONV_KERNEL} steps with ReLU "
            "(their weights count in the size)") if spec.get("conv") else None
    pool = spec.get("pool") or 1
    if conv and pool > 1 and spec.get("conv_first", False):  # (absent: saved before it)
        return (f"{conv}, at every step; then each filter's largest response in every block of "
                f"{pool} steps (padding never read)")
    parts = [f"a block mean of every {pool} steps (padding never read)"] if pool > 1 else []
    return ", then ".join(parts + ([conv] if conv else [])) or None


# ---- sections -----------------------------------------------------------------------------
def _notes(r: dict) -> list[str]:
    s, f = r.get("search") or {}, r.get("final") or {}
    notes = []
    if r.get("interrupted"):
        notes.append("The search was interrupted; the report covers the trials that finished."
                     + (" The model is the best trial's own: not retrained, not tested. Run the "
                        "same command with --resume to finish." if r.get("final") is None
                        else ""))
    if (r.get("data") or {}).get("test") is None:
        notes.append("No test set was given: there are no test scores and no confusion matrix. "
                     "The validation score was used to choose the model and is optimistic.")
    failed = s.get("n_failed") or 0
    # trials Ctrl-C cut short: failed, and re-queued for --resume
    cut = [t for t in r.get("trials") or [] if t.get("state") == "fail" and t.get("interrupted")]
    waiting = sum(not t.get("retried") for t in cut)
    if waiting:
        notes.append(f"{waiting} trial(s) were cut short by the interruption; they are re-queued "
                     "and run again on --resume.")
    if len(cut) - waiting:
        notes.append(f"{len(cut) - waiting} trial(s) cut short by an interruption were run again "
                     "on --resume (the cut-short ones stay in the table, failed).")
    if failed - len(cut):
        notes.append(f"{failed - len(cut)} trial(s) failed with an error (the search log names "
                     "it); the search went on without them.")
    if is_num(s.get("trials_requested")) and is_num(s.get("n_finished")) \
            and s["n_finished"] < s["trials_requested"]:
        why = "interrupted" if r.get("interrupted") else "time limit"
        notes.append(f"Only {s['n_finished']} of the {s['trials_requested']} requested trials "
                     f"finished ({why}).")
    if is_num(f.get("test_std")) and f["test_std"] > 0.05 and len(f.get("test_scores") or []) > 1:
        notes.append(f"Test scores vary between final seeds (std {f['test_std']:.3f}); the mean "
                     "is a better guide than any single seed.")
    return notes


def _summary(r: dict) -> str:
    s, b, f = r.get("search") or {}, r.get("best") or {}, r.get("final") or {}
    ex = r.get("export") or {}
    spec = b.get("spec") or {}
    metric = _e(s.get("metric", "score"))
    ens = f.get("ensemble") or {}
    if ens and is_num(f.get("chosen_test_score")):
        test = _card(f"test {metric}", f"{f['chosen_test_score']:.4f}",
                     f"ensemble of {_e(ens['members'])}; single models "
                     f"{_score(f.get('test_mean'))} ± {_score(f.get('test_std'))}")
    elif is_num(f.get("test_mean")):
        test = _card(f"test {metric}", f"{f['test_mean']:.4f} ± {_score(f.get('test_std'))}",
                     f"mean ± std over {len(f.get('test_scores') or [])} final seed(s)")
    elif r.get("interrupted") and r.get("final") is None:
        test = _card(f"test {metric}", "—", "search interrupted: not tested")
    else:
        test = _card(f"test {metric}", "—", "no test set")
    cards = [
        test,
        _card(f"validation {metric}", _score(b.get("val_score")),
              f"best trial #{_e(b.get('trial'))} in the search"),
        _card("chosen model", f"{_e(spec.get('cell'))} · D={_e(spec.get('hidden_size'))}"
              + (f" × {_e(spec['members'])}" if (spec.get("members") or 1) > 1 else ""),
              _e(_hp(spec)) or "&nbsp;"),
        _card("size", _kib(b.get("size_bytes")),
              f"fp32; int8 {_kib(b.get('size_bytes_int8'))}; budget "
              f"{_e(format(s.get('budget_kb', 0), 'g'))} KiB"),
        _card("ONNX file", _kib(ex.get("file_bytes")),
              f"opset {_e(ex.get('opset'))}" if ex.get("opset") else "not exported"),
        _card("trials", f"{_e(s.get('n_complete'))} / {_e(s.get('n_pruned'))} / "
                        f"{_e(s.get('n_failed'))}",
              "completed / pruned / failed"),
        _card("wall time", _seconds(r.get("wall_seconds")),
              f"search {_seconds(r.get('search_seconds'))} on {_e(r.get('device'))}"),
    ]
    notes = _notes(r)
    notes_html = ("<ul class=\"notes\">" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"
                  if notes else "")
    return (f'<section id="summary"><h2>Summary</h2><div class="cards">{"".join(cards)}</div>'
            f"{notes_html}</section>")


def _data(r: dict) -> str:
    d = r.get("data") or {}
    tr, te = d.get("train") or {}, d.get("test")
    origin = d.get("origin") or {}
    src = origin.get("path") or origin.get("name") or origin.get("source")
    chans = tr.get("channel_names") or []
    ch = ", ".join(chans[:12]) + (f", … ({len(chans)} in all)" if len(chans) > 12 else "")
    lo, hi = tr.get("min_length"), tr.get("max_length")
    lengths = f"{lo} (all equal)" if lo == hi else f"{lo} – {hi}"
    if te:
        tlo, thi = te.get("min_length"), te.get("max_length")
        lengths += f"; test {tlo}" + ("" if tlo == thi else f" – {thi}")
    kv = _kv([
        ("name", _e(tr.get("name"))),
        ("source", _e(src) if src else None),
        ("series", f"{_e(tr.get('n_series'))} training"
                   + (f", {_e(te.get('n_series'))} test" if te else ", no test set")),
        ("test set", _e(origin.get("test")) if origin.get("test") else None),
        ("validation", f"{_e(d.get('validation'))}: {_e(d.get('n_train_search'))} series to "
                       f"train, {_e(d.get('n_val'))} to validate during the search"),
        ("channels", f"{_e(tr.get('n_channels'))}: {_e(ch)}"),
        ("x/y/z vectors", _e(d.get("vectors")) or None),
        ("lengths", _e(lengths)),
        ("classes", _e(tr.get("n_classes"))),
    ])
    names = tr.get("class_names") or []
    bal = (r.get("derived") or {}).get("class_balance") or {}
    tc, tec = tr.get("class_counts") or [], (te or {}).get("class_counts") or []
    btr, bte = bal.get("train") or [], bal.get("test") or []

    def cell(counts, fr, i):
        if i >= len(counts):
            return "<td>—</td>"
        return f'<td class="num">{counts[i]} <span class="note">({fr[i]:.0%})</span></td>'

    rows = "".join(f'<tr><td class="l">{_e(n)}</td>{cell(tc, btr, i)}'
                   + (cell(tec, bte, i) if te else "") + "</tr>"
                   for i, n in enumerate(names))
    head = '<tr><th class="l">class</th><th>train</th>' + ("<th>test</th>" if te else "") + "</tr>"
    balance = (f'<div class="scroll"><table class="grid"><thead>{head}</thead><tbody>{rows}'
               "</tbody></table></div>") if names else ""
    return (f'<section id="data"><h2>Data</h2><div class="cols"><div>{kv}</div>'
            f"<div><h3>Class balance</h3>{balance}</div></div></section>")


def _search(r: dict) -> str:
    s = r.get("search") or {}
    unit = "int8" if s.get("bytes_per_param") == 1 else "fp32"
    kv = _kv([
        ("budget", f"{_e(format(s.get('budget_kb', 0), 'g'))} KiB "
                   f"({_e(s.get('budget_bytes'))} bytes of {unit} parameters)"
                   + (f" for an ensemble of {_e(s['ensemble'])} models: each searched model "
                      f"got 1/{_e(s['ensemble'])} of it" if (s.get("ensemble") or 1) > 1
                      else "")),
        ("device limits", ", ".join(
            ([f"RAM {_e(format(s['ram_kb'], 'g'))} KiB"] if s.get("ram_kb") else [])
            + ([f"{s['max_macs_per_step']:,} multiply-accumulates per sample"]
               if s.get("max_macs_per_step") else []))
         + " (of the model as C: candidates over them were shrunk or not trained)"
         if s.get("ram_kb") or s.get("max_macs_per_step") else None),
        ("metric", _e(s.get("metric"))),
        ("cells searched", _e(", ".join(s.get("cells") or []))),
        ("trials", f"{_e(s.get('n_trials'))} run ({_e(s.get('trials_requested'))} requested): "
                   f"{_e(s.get('n_complete'))} completed, {_e(s.get('n_pruned'))} pruned, "
                   f"{_e(s.get('n_failed'))} failed"),
        ("epochs per trial", f"at most {_e(s.get('epochs'))}, pruner {_e(s.get('pruner'))}"
         if s.get("epochs") is not None else None),
        ("time limit", _seconds(s.get("timeout")) if s.get("timeout") else None),
        ("device", _e(r.get("device"))),
        ("search time", _seconds(r.get("search_seconds"))),
        ("wall time", _seconds(r.get("wall_seconds"))),
        ("seed", _e(s.get("seed"))),
        ("workers", _e(s.get("workers")) if (s.get("workers") or 1) > 1 else None),
    ])
    return f'<section id="search"><h2>Search</h2>{kv}{_rerank(r)}</section>'


def _rerank(r: dict) -> str:
    """``--rerank``: the candidates' fold scores, the chosen one starred."""
    rr = r.get("rerank")
    if not rr:
        return ""
    metric = _e((r.get("search") or {}).get("metric"))
    groups = rr.get("fold_groups") or [None] * len(rr["fold_sizes"])
    heads = "".join(f"<th>fold {k + 1}<br><span class=\"cap\">{_e(n)} series"
                    + (f", {_e(g)} groups" if g is not None else "") + "</span></th>"
                    for k, (n, g) in enumerate(zip(rr["fold_sizes"], groups, strict=True)))
    rows = "".join(
        f'<tr><td>{"★ " if row["trial"] == rr["chosen_trial"] else ""}{_e(row["trial"])}</td>'
        f'<td class="l">{_e(row["cell"])}</td><td>{_kib(row["size_bytes"])}</td>'
        + "".join(f"<td>{_score(v)}</td>" for v in row["fold_scores"])
        + f'<td><b>{_score(row["score"])}</b></td></tr>'
        for row in sorted(rr["rows"], key=lambda x: -x["score"]))
    changed = rr["chosen_trial"] != rr["search_best_trial"]
    return (f'<h3>Re-ranking</h3><p class="cap">The {_e(rr["candidates"])} best trials, '
            f"re-scored ({metric}) on {_e(rr['folds'])} cross-validation folds that together "
            "hold out every training series once (fold 1 is the search's validation split; "
            "score: the mean weighted by fold size), in "
            f"{_seconds(rr.get('seconds'))}. "
            + (f"It chose trial {_e(rr['chosen_trial'])} over the search's best, trial "
               f"{_e(rr['search_best_trial'])}." if changed
               else "It confirmed the search's best trial.") + "</p>"
            '<div class="scroll"><table class="grid"><thead><tr><th>trial</th>'
            f'<th class="l">cell</th><th>size</th>{heads}<th>score</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def _model(r: dict) -> str:
    b, ex = r.get("best") or {}, r.get("export") or {}
    spec, tr = b.get("spec") or {}, b.get("train") or {}
    rot = float(tr.get("rotate_deg") or 0)
    aug = float(tr.get("augment") or 0)
    mix = float(tr.get("mixup") or 0)
    avg = float(tr.get("average") or 0)
    tw = float(tr.get("time_warp") or 0)
    kv = _kv([
        ("cell", f"<b>{_e(spec.get('cell'))}</b> (trial #{_e(b.get('trial'))})"
                 + (f", an ensemble of {_e(spec['members'])} such models averaging their "
                    "logits" if (spec.get("members") or 1) > 1 else "")),
        ("hidden size D", _e(spec.get("hidden_size"))),
        ("cell hyperparameters", _e(_hp(spec, front_ends=False)) or None),
        ("front end", _e(front) if (front := _front_end(spec)) else None),
        ("training", f"lr {_score(tr.get('lr'), 5)}, batch size {_e(tr.get('batch_size'))}, "
                     + (f"x/y/z channels turned by random rotations up to {rot:g}°, "
                        if rot else "")
                     + (f"random scaling, magnitude warping and jitter of strength {aug:g}, "
                        if aug else "")
                     + (f"random smooth time warping of strength {tw:g}, " if tw else "")
                     + (f"mixup (a mixed copy of each batch, Beta({mix:g}, {mix:g})"
                        + (", labelled by a MiniRocket teacher fitted on the training series"
                           if tr.get("distill") else "") + "), " if mix else "")
                     + (f"weights averaged over the last {avg:g} of the schedule, "
                        if avg else "")
                     + (f"best validation score at epoch {_e(b.get('epochs'))} of its trial "
                        "(not retrained: interrupted)" if r.get("final") is None
                        and r.get("interrupted") else
                        f"{_e(b.get('epochs'))} epoch(s) in the final retrain")),
        ("parameters", _e(b.get("param_count"))),
        ("size", f"{_kib(b.get('size_bytes'))} fp32, {_kib(b.get('size_bytes_int8'))} int8"),
        ("validation score", _score(b.get("val_score"))),
    ])
    if ex:
        onnx = _kv([
            ("file", _e(ex.get("path"))),
            ("file size", f"{_kib(ex.get('file_bytes'))} ({_e(ex.get('file_bytes'))} bytes)"),
            ("weights", f"{_kib(ex.get('weight_bytes'))} ({_e(_precision(ex.get('quantize')))})"),
            ("opset / nodes", f"{_e(ex.get('opset'))} / {_e(ex.get('num_nodes'))}"),
            ("max |ONNX − PyTorch|", f"{ex['max_abs_error']:.2e}"
             if is_num(ex.get("max_abs_error")) else None),
        ])
    else:
        onnx = '<p class="note">No ONNX file was written for this run.</p>'
    return (f'<section id="model"><h2>Chosen model</h2><div class="cols"><div>{kv}</div>'
            f"<div><h3>ONNX export</h3>{onnx}</div></div></section>")


def _final(r: dict) -> str:
    if r.get("final") is None and r.get("interrupted"):
        return ('<section id="final"><h2>Final models</h2><p class="note">Not run: the search '
                "was interrupted. The exported model is the best trial's, trained on the search "
                "split only; resume the search (same command plus --resume) to retrain it on "
                "training + validation data and test it.</p></section>")
    f, s = r.get("final") or {}, r.get("search") or {}
    seeds, vals, tests = f.get("seeds") or [], f.get("val_scores") or [], f.get("test_scores") or []
    has_test = bool(tests)
    ens = f.get("ensemble") or {}
    chosen = set(ens.get("seeds") or []) or {f.get("chosen_seed")}
    rows = []
    for i, seed in enumerate(seeds):
        cls = ' class="chosen"' if seed in chosen else ""
        mark = " ★" if cls else ""
        rows.append(f"<tr{cls}><td>{_e(seed)}{mark}</td>"
                    f'<td class="num">{_score(vals[i] if i < len(vals) else None)}</td>'
                    + (f'<td class="num">{_score(tests[i] if i < len(tests) else None)}</td>'
                       if has_test else "") + "</tr>")
    metric = _e(s.get("metric"))
    head = (f"<tr><th>seed</th><th>{metric} on validation data</th>"
            + (f"<th>test {metric}</th>" if has_test else "") + "</tr>")
    if ens:
        exported = (f"the exported ensemble of seeds {_e(', '.join(map(str, ens['seeds'])))} "
                    f"(★): <b>{_score(f.get('chosen_test_score'))}</b>")
        how = (f"the first {_e(ens['members'])} (★) are averaged into the exported model, "
               "one ONNX graph")
    else:
        exported = (f"chosen seed {_e(f.get('chosen_seed'))}: "
                    f"{_score(f.get('chosen_test_score'))}")
        how = ("the seed with the best score on the validation data (seen in this retraining, "
               "so optimistic) is the exported model (★)")
    summary = (f"<p>Test {metric}: <b>{_score(f.get('test_mean'))} ± "
               f"{_score(f.get('test_std'))}</b> (single models, mean ± standard deviation over "
               f"{len(tests)} seed(s)); {exported}.</p>" if has_test else
               '<p class="note">No test set: no test scores and no confusion matrix.</p>')
    return (f'<section id="final"><h2>Final models</h2><p class="cap">The chosen configuration '
            f"retrained on training + validation data with {len(seeds)} seed(s); {how}.</p>"
            f"{summary}"
            f'<table class="grid"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
            "</section>")


def _plot_section(name: str, r: dict) -> str:
    plot = PLOTS[name]
    cap = plot.caption + (plot.caption_more(r) if plot.caption_more else "")
    note = plot.note(r) if plot.note else None
    extra = f'<p class="note">{_e(note)}</p>' if note else ""
    svg = render_plot(name, r)
    if svg is None and plot.hide_when_empty:
        return ""
    body = svg if svg is not None else ('<p class="note">Nothing to plot yet (no finished trial '
                                        "with a score).</p>" if not extra else "")
    wide = " wide" if plot.wide else ""
    return (f'<section id="{name}" class="plot{wide}"><h2>{_e(plot.title)}</h2>'
            f'<p class="cap">{_e(cap)}</p>{extra}{body}</section>')


def _trials(r: dict) -> str:
    trials = r.get("trials") or []
    front = set((r.get("derived") or {}).get("pareto_front") or [])
    chosen = (r.get("best") or {}).get("trial")

    def order(t):
        v = t.get("val_score")
        return (0 if is_num(v) else 1, -(v if is_num(v) else 0),
                t.get("size_bytes") if is_num(t.get("size_bytes")) else float("inf"), t["number"])

    def num(v: Any, text: str) -> str:
        """A numeric cell: the value to sort by in data-v, ``text`` to show."""
        return f'<td class="num" data-v="{v if is_num(v) else ""}">{text}</td>'

    rows = []
    for t in sorted(trials, key=order):
        spec, params = t.get("spec") or {}, t.get("params") or {}
        n, size, v = t["number"], t.get("size_bytes"), t.get("val_score")
        ep, best_ep, secs = t.get("epochs_run"), t.get("best_epoch"), t.get("seconds")
        mark = (" ★" if n == chosen else "") + (" ◆" if n in front else "")
        epochs = "—" if ep is None else f"{ep}" + ("" if best_ep is None else f" ({best_ep})")
        rows.append(
            ('<tr class="chosen">' if n == chosen else "<tr>")
            + num(n, f"{n}{mark}")
            + f'<td class="l">{_e(t.get("cell"))}</td><td class="l">{_e(t.get("state"))}</td>'
            + num(size / 1024 if is_num(size) else None,
                  f"{size / 1024:.2f}" if is_num(size) else "—")
            + num(v, _score(v))
            + num(ep, epochs)
            + num(secs, f"{secs:.1f}" if is_num(secs) else "—")
            + num(spec.get("hidden_size"), _e(spec.get("hidden_size", "—")))
            + num(params.get("lr"), _score(params.get("lr"), 5))
            + num(params.get("batch_size"), _e(params.get("batch_size", "—")))
            + f'<td class="l">{_e(_hp(spec))}</td></tr>')
    metric = _e((r.get("search") or {}).get("metric"))
    head = ("<tr><th>trial</th><th class=\"l\">cell</th><th class=\"l\">state</th>"
            f"<th>size KiB</th><th>validation {metric}</th><th>epochs (best)</th>"
            "<th>seconds</th><th>D</th><th>lr</th><th>batch</th>"
            "<th class=\"l\">cell hyperparameters, front end</th></tr>")
    return (f'<section id="trials"><h2>All trials</h2><p class="cap">Ordered by validation score '
            "(click a column header to sort). ★ chosen trial; ◆ on the Pareto front. Pruned "
            "trials show the best score before they stopped.</p>"
            f'<div class="scroll"><table class="grid sortable"><thead>{head}</thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div></section>')


def _deployment(r: dict) -> str:
    dep = r.get("deployment")
    head = '<section id="deployment"><h2>Deployment</h2>'
    if not dep:
        return (head + '<p class="note">Not measured for this run (`seqeq export model.c` '
                "writes the C source; see README, Deployment).</p></section>")
    if "error" in dep:
        return head + f'<p class="note">Not measured: {_e(dep["error"])}</p></section>'

    def nbytes(v):
        return f"{v:,} B ({v / 1024:.2f} KiB)" if is_num(v) else "—"

    ins = dep.get("instructions_per_step")
    kv = _kv([
        ("target", _e(dep.get("target"))),
        ("weights", _e(_precision(dep.get("quantize")))),
        ("flash (code + weights)", nbytes(dep.get("flash_bytes"))
         if dep.get("flash_bytes") is not None
         else f"weights {nbytes(dep.get('weight_bytes'))} (code not measured)"),
        ("RAM", f"{nbytes(dep.get('ram_bytes'))}: state {nbytes(dep.get('state_bytes'))} + "
                + (f"stack of a step {nbytes(dep.get('stack_bytes'))} (incl. scratch "
                   f"{nbytes(dep.get('scratch_bytes'))})" if dep.get("stack_bytes") is not None
                   else f"scratch {nbytes(dep.get('scratch_bytes'))}")),
        ("multiply-accumulates per sample", f"{dep.get('macs_per_step'):,}"
         if is_num(dep.get("macs_per_step")) else "—"),
        ("instructions per sample", f"{ins:,.0f}" if is_num(ins) else "—"),
        ("latency per window", f"{dep['ms_per_window']:.2f} ms for {dep.get('window_steps')} "
         f"samples at {dep.get('clock_mhz')} MHz, one instruction per cycle"
         if is_num(dep.get("ms_per_window")) else None),
    ])
    how = dep.get("instructions_method") or dep.get("unmeasured") or ""
    return (head + kv + f'<p class="cap">The exported model as C (`seqeq export model.c'
            f'{" --quantize int8" if dep.get("quantize") == "int8" else ""}`), cross-compiled '
            f"for the Cortex-M4F with -Os. Instructions: {_e(how)}.</p></section>")


def render_html(report: dict) -> str:
    """The whole page for ``report`` (a report dict or the content of ``report.json``)."""
    r = report if "derived" in report else finalise(report)
    d = (r.get("data") or {}).get("train") or {}
    title = f"seqeq report: {d.get('name', 'run')}"
    plots = [_plot_section(n, r) for n in PLOTS]
    nav = "".join(f'<a href="#{i}">{_e(t)}</a>' for i, t in (
        ("summary", "Summary"), ("data", "Data"), ("search", "Search"), ("model", "Model"),
        ("final", "Final models"), ("deployment", "Deployment"), (next(iter(PLOTS)), "Plots"),
        ("trials", "Trials")))
    body = "\n".join([
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{_e(r.get("created"))} · seqeq {_e(r.get("seqeq_version"))} · '
        f'report schema {_e(r.get("schema_version"))} · {_e(r.get("run_dir"))}</p>',
        f"<nav>{nav}</nav>",
        _summary(r), _data(r), _search(r), _model(r), _final(r), _deployment(r),
        plots[0], f'<div class="plots">{"".join(p for p in plots[1:])}</div>',
        _trials(r),
        '<footer>All numbers on this page are in report.json next to this file '
        "(see its schema_version).</footer>",
    ])
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
            f"<script>{_JS}</script>\n</body></html>\n")

