"""The ``seqeq`` command line: parse options, build config objects, call :mod:`seqeq.api`, print.

Exit codes: 0 success; 2 bad input or usage (one line on stderr, no traceback); 1 any other failure;
130 interrupted.
"""

from __future__ import annotations

import io
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import SeqeqError, cli_names

app = typer.Typer(
    name="seqeq",
    help="AutoML for sequence classification with small, stable recurrent cells, exported to ONNX.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"seqeq {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", help="Print seqeq's version and exit.", is_eager=True,
        callback=_show_version)] = False) -> None:
    """AutoML for sequence classification with small, stable recurrent cells, exported to ONNX
    and C."""


@contextmanager
def _user_errors():
    """Turn seqeq's errors into one line and exit code 2 (a file that could not be written: 1);
    anything else into one line and 1; a closed stdout (``| head``) into a quiet exit 141."""
    try:
        with cli_names():  # messages name settings as flags (--budget-kb), not as parameters
            yield
    except SeqeqError as e:
        typer.echo(f"error: {_one_line(e)}", err=True)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except BrokenPipeError:
        _quiet_broken_pipe()
    except typer.Exit:
        raise
    except Exception as e:  # a bug or an environment failure: still no traceback by default
        if os.environ.get("SEQEQ_DEBUG"):
            raise
        typer.echo(f"error: {type(e).__name__}: {_one_line(e)} (set SEQEQ_DEBUG=1 for the "
                   "traceback)", err=True)
        raise typer.Exit(1) from None


def _quiet_broken_pipe():
    """The reader of stdout went away (``seqeq predict ... | head -1``): stop without a word,
    as other command-line tools do, with the shell's code for SIGPIPE (128 + 13)."""
    try:  # what is still buffered for the closed pipe must not fail again at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
    raise typer.Exit(141) from None


def _one_line(e: BaseException) -> str:
    """The message on one line, whatever it quotes (a file's text, a library's multi-line
    error, a hostile name)."""
    return " ".join(str(e).split()) or type(e).__name__


# ---- shared options ---------------------------------------------------------------------------
Budget = Annotated[float, typer.Option("--budget-kb", help="Model-size budget in KiB "
                                       "(parameter bytes incl. the classifier head).")]
Trials = Annotated[int, typer.Option(help="Trials to finish (completed or pruned), all workers.")]
Timeout = Annotated[float | None, typer.Option(
    help="Wall-clock limit of the search in seconds (default: 150 per 1,000 training series, "
         "at least 150; 0: none). The search ends at --trials or this, whichever is first.")]
Seed = Annotated[int, typer.Option(help="Seed for splits, sampler and training.")]
Out = Annotated[Path | None, typer.Option(help="Run directory (default runs/<name>-<time>).")]
def _complete_cells(incomplete: str) -> list[str]:
    """Shell completion of ``--cells``: the registered cells, after the ones already typed."""
    from .cells import list_cells

    done, _, last = incomplete.rpartition(",")
    head = f"{done}," if done else ""
    return [head + c for c in list_cells() if c.startswith(last) and c not in done.split(",")]


def _complete_benchmarks(incomplete: str) -> list[str]:
    """Shell completion of ``bench NAME``: the built-in benchmarks and the staged UCR/UEA sets."""
    from .datasets import list_benchmarks

    return [b.name for b in list_benchmarks() if b.name.startswith(incomplete)]


def _complete_targets(incomplete: str) -> list[str]:
    from .export.targets import list_targets

    return [t.name for t in list_targets() if t.name.startswith(incomplete)]


Cells = Annotated[str | None, typer.Option(help="Comma-separated cells to search, e.g. "
                                           "irnn,tinyrnn,gru (default: all).",
                                           autocompletion=_complete_cells)]
Metric = Annotated[str, typer.Option(help="accuracy | balanced_accuracy | macro_f1.")]
Epochs = Annotated[int | None, typer.Option(
    help="Epochs per trial: its learning-rate schedule, which the final retrain repeats "
         "(default: 40, or more where those are fewer than 1000 optimiser steps).")]
FinalSeeds = Annotated[int, typer.Option("--final-seeds", help="Seeds for the final retrain.")]
Ensemble = Annotated[int | None, typer.Option(
    help="Export the average of this many final models as one ONNX model; the budget covers "
         "them all (each searched model gets budget / N). Default: 3 where that leaves each at "
         "least 4 KiB (--budget-kb 12 or more), else 1.")]
Rerank = Annotated[int, typer.Option(
    help="Re-score the best trial of each of the K best cell families on --rerank-folds "
         "cross-validation folds (whole groups, like the validation split) and retrain the best "
         "of them; 0: off.")]
RerankFolds = Annotated[int, typer.Option(
    "--rerank-folds", help="Folds of --rerank: the validation split plus F-1 folds of the "
    "rest of the training data.")]
CvFolds = Annotated[int | None, typer.Option(
    "--cv-folds", help="Score each trial by cross-validation with this many folds over the "
    "training data (whole groups with --group-col); 1: the one validation split. Default: 3 "
    "where the validation split has fewer than 100 series, else 1.")]
Opening = Annotated[bool, typer.Option(
    help="Open a fresh search with a strong configuration of each of a few cell families (GRU, "
         "TARNN, DIRNN, ERNN, FastGRNN among --cells; a fifth of --trials) before the sampler "
         "takes over.")]
FinalEpochs = Annotated[str, typer.Option(
    "--final-epochs", help="all | best: trials are scored at the end of their schedule and the "
    "final retrain runs it whole (all), or trials are scored at their best validation epoch, "
    "stop early, and the final retrain stops there (best).")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda.")]
Storage = Annotated[str | None, typer.Option(help="Optuna storage URL (e.g. postgresql://...) "
                                             "shared by several workers.")]
StudyName = Annotated[str | None, typer.Option("--study-name", help="Study name in --storage.")]
Workers = Annotated[int, typer.Option(help="Local worker processes on one study.")]
Resume = Annotated[bool, typer.Option(help="Continue the interrupted search in --out.")]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing run in --out.")]
Quantize = Annotated[str | None, typer.Option(help="int8: budget and export 8-bit weights.")]
ExportQuantize = Annotated[str | None, typer.Option(
    "--quantize", help="int8: write 8-bit weights with per-row scales (default: float32).")]
Pruner = Annotated[str, typer.Option(help="median | hyperband | none.")]
TrialTimeout = Annotated[float | None, typer.Option(
    "--trial-timeout", help="One trial's seconds (default: a quarter of the search's time); a "
    "schedule that cannot end in time is shortened after its second epoch.")]
Rotate = Annotated[str, typer.Option(
    help="Training augmentation: turn x/y/z sensor channels by random rotations up to DEG "
    "degrees. auto: searched (0, 15, 30 or 45); a number fixes it; 0 turns it off.")]
Augment = Annotated[str, typer.Option(
    help="Training augmentation for any series: random scaling, smooth magnitude warping and "
    "jitter of strength S (in units of a channel's standard deviation), e.g. 0.1; 0 (default): "
    "off; auto: searched (0 or 0.1) when trials train on fewer than 1,000 series.")]
Mixup = Annotated[str, typer.Option(
    help="Training augmentation for any series: each step also trains on a mixed copy of its "
    "batch (series blended in random pairs, labels weighed alike) with blends ~ Beta(A, A), "
    "e.g. 0.5; 0: off; auto (default): 0.5 when trials train on fewer than 1,000 series.")]
Average = Annotated[float, typer.Option(
    help="Weight averaging: the model validated and kept is its weights averaged over about "
    "this share of the schedule's last steps, e.g. 0.1; 0 (default): off.")]
Distill = Annotated[bool, typer.Option(
    help="Distillation where mixup is on: the mixed copies a model trains on are labelled by a "
    "MiniRocket teacher fitted on its training series, not by their blends' weights (needs "
    "aeon). Off by default.")]
TimeWarp = Annotated[str, typer.Option(
    "--time-warp", help="Training augmentation for any series: read each series at a random "
    "smooth pace (parts stretched, parts squeezed; order, ends and length kept) of strength S, "
    "e.g. 0.1; 0 (default): off; auto: searched (0 or 0.1) when trials train on fewer than "
    "1,000 series.")]
RamKb = Annotated[float | None, typer.Option(
    "--ram-kb", help="Device limit: RAM of the exported model's C step (state + scratch), in "
    "KiB. Candidates over it are shrunk or not trained.")]
MaxMacs = Annotated[int | None, typer.Option(
    "--max-macs-per-step", help="Device limit: multiply-accumulates per sample of the exported "
    "model.")]
Vectors = Annotated[str, typer.Option(
    help="Which channels are x/y/z triplets of one device: auto (found from names like acc_x "
    "or T_xacc; a benchmark's own), none, or devices separated by ';', each a comma list of "
    "channels in x,y,z order, e.g. 'ax,ay,az,gx,gy,gz;wx,wy,wz'.")]
Quiet = Annotated[bool, typer.Option(help="No progress output.")]
Decimal = Annotated[str | None, typer.Option(
    help="The decimal mark of numbers in a CSV file: '.' (then ',' may group thousands: "
    "8,302 = 8302) or ',' (then '.' may: 1.234,5 = 1234.5). Default: detected; a file whose "
    "numbers read two ways is refused.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def _describe_spec(spec: dict) -> str:
    """``gru  D=8``, with the cell's hyperparameters and front ends where it has any:
    ``dirnn  D=15  L=4, K=1  (conv 16, pool 6)``."""
    from .models import front_end_names

    hp = ", ".join(f"{k}={v}" for k, v in sorted((spec.get("cell_kwargs") or {}).items()))
    front = front_end_names(spec)
    return (f"{spec['cell']}  D={spec['hidden_size']}" + (f"  {hp}" if hp else "")
            + (f"  ({', '.join(front)})" if front else ""))


def _print_json(obj) -> None:
    """One JSON document on stdout (what ``--json`` prints on every command)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _print_result(res, as_json: bool) -> None:
    if as_json:
        _print_json(res.to_dict())
        return
    from rich.table import Table

    from ._progress import console

    spec = res.best_spec
    t = Table(title="seqeq result", show_header=False)
    members = spec.get("members", 1)
    t.add_row("model", _describe_spec(spec)
              + (f"  x {members} (ensemble: mean of their logits)" if members > 1 else ""))
    prec = "int8 weights + scales" if res.quantize == "int8" else "fp32 parameters"
    t.add_row("size", f"{res.size_kib:.2f} KiB ({prec}, incl. head)")
    t.add_row(f"validation {res.metric}", f"{res.val_score:.4f}")
    rr = res.extra.get("rerank")
    if rr:
        mine = next(r for r in rr["rows"] if r["trial"] == rr["chosen_trial"])
        t.add_row("re-ranked", f"{mine['score']:.4f} on {rr['folds']} folds, best of "
                  f"{rr['candidates']} trials"
                  + (f" (the search alone would have taken trial {rr['search_best_trial']})"
                     if rr["chosen_trial"] != rr["search_best_trial"] else ""))
    if res.test_mean is None:
        t.add_row(f"test {res.metric}", "not evaluated (interrupted, or no test set)")
    else:
        single = f"{res.test_mean:.4f} ± {res.test_std:.4f} over {len(res.test_scores)} seeds"
        if res.ensemble > 1:
            t.add_row(f"test {res.metric}", f"{res.test_score:.4f} (the ensemble; single "
                      f"models {single})")
        else:
            t.add_row(f"test {res.metric}", single)
    t.add_row("trials", f"{res.n_trials} finished: {res.n_trials - res.n_pruned} completed, "
              f"{res.n_pruned} pruned")
    t.add_row("time", f"{res.seconds:.0f} s")
    t.add_row("ONNX", res.onnx_path)
    t.add_row("report", res.report_html)
    console.print(t)


#: the options ``fit`` and ``bench`` share, declared once: (parameter, type with its flag, default).
#: :func:`_shared_options` adds them to both commands; :func:`_configs` turns them into configs.
SHARED_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("budget_kb", Budget, 20.0), ("trials", Trials, 20), ("timeout", Timeout, None),
    ("seed", Seed, 0), ("out", Out, None), ("cells", Cells, None), ("metric", Metric, "accuracy"),
    ("epochs", Epochs, None), ("final_seeds", FinalSeeds, 3), ("ensemble", Ensemble, None),
    ("rerank", Rerank, 0), ("rerank_folds", RerankFolds, 3), ("opening", Opening, True),
    ("cv_folds", CvFolds, None),
    ("final_epochs", FinalEpochs, "all"), ("device", Device, "auto"),
    ("storage", Storage, None), ("study_name", StudyName, None), ("workers", Workers, 1),
    ("resume", Resume, False), ("overwrite", Overwrite, False), ("quantize", Quantize, None),
    ("pruner", Pruner, "median"), ("trial_timeout", TrialTimeout, None),
    ("rotate", Rotate, "auto"), ("augment", Augment, "0"), ("mixup", Mixup, "auto"),
    ("average", Average, 0.0), ("distill", Distill, False),
    ("time_warp", TimeWarp, "0"), ("ram_kb", RamKb, None),
    ("max_macs_per_step", MaxMacs, None), ("vectors", Vectors, "auto"),
    ("quiet", Quiet, False),
    ("as_json", AsJson, False),
)


def _shared_options(fn):
    """Give a command every option of :data:`SHARED_OPTIONS` after its own; the command
    receives them together as ``shared`` (a dict)."""
    import functools
    import inspect

    own = [p for p in inspect.signature(fn, eval_str=True).parameters.values()
           if p.name != "shared"]
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
             for n, a, d in SHARED_OPTIONS]

    @functools.wraps(fn)
    def command(**kw):
        return fn(**{k: v for k, v in kw.items() if k not in _SHARED_NAMES},
                  shared={k: kw[k] for k in _SHARED_NAMES})

    command.__signature__ = inspect.Signature(own + extra)
    command.__annotations__ = {p.name: p.annotation for p in own + extra}
    return command


_SHARED_NAMES = tuple(n for n, _, _ in SHARED_OPTIONS)
#: shared options that are not search settings
_NOT_SEARCH = ("out", "vectors", "quiet", "as_json")


def _configs(shared: dict, **data) -> tuple[Any, Any]:
    """(DataConfig, RunConfig) from a command line's values: text (``--cells``,
    ``--rotate``) becomes typed values here, and the configs validate the rest once."""
    from .config import DataConfig, RunConfig, search_options

    dc = DataConfig(vectors=shared["vectors"], **data)
    cfg = RunConfig.of(**search_options({k: v for k, v in shared.items()
                                         if k not in _NOT_SEARCH}))
    return dc, cfg


def _run_command(dc, cfg, shared: dict) -> None:
    from . import api

    res = api.run(dc, cfg, shared["out"], quiet=shared["quiet"] or shared["as_json"])
    _print_result(res, shared["as_json"])
    if res.extra.get("interrupted"):
        raise typer.Exit(130)


# ---- commands ---------------------------------------------------------------------------------
@app.command()
@_shared_options
def fit(
    path: Annotated[Path, typer.Argument(
        metavar="PATH",
        help="Training data: .csv or .parquet (or the UCR/UEA archive's .ts / .arff).")],
    test: Annotated[Path | None, typer.Option(help="Test data (default: a stratified, "
                                              "seeded 20 % hold-out of PATH).")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="long | wide | nested "
                                            "(default: detected).")] = None,
    id_col: Annotated[str | None, typer.Option("--id-col", help="Series id column (long).")] = None,
    time_col: Annotated[str | None, typer.Option("--time-col", help="Time/order column.")] = None,
    label_col: Annotated[str | None, typer.Option("--label-col", help="Label column.")] = None,
    group_col: Annotated[str | None, typer.Option("--group-col", help="Hold out whole groups "
                                                  "(subject, device) for validation.")] = None,
    nan: Annotated[str, typer.Option(help="reject | fill: what to do with NaN/inf.")] = "reject",
    decimal: Decimal = None,
    *,
    shared: dict,
):
    """Search, train, export and report on your data.

    Example: seqeq fit walks.parquet --budget-kb 8 --trials 30 --out runs/walks
    """
    with _user_errors():
        dc, cfg = _configs(shared, path=str(path), test_path=None if test is None else str(test),
                           fmt=fmt, id_col=id_col, time_col=time_col, label_col=label_col,
                           group_col=group_col, nan=nan, decimal=decimal)
        _run_command(dc, cfg, shared)


@app.command()
@_shared_options
def bench(
    name: Annotated[str, typer.Argument(metavar="NAME",
                                        help="Benchmark name (see `seqeq datasets`).",
                                        autocompletion=_complete_benchmarks)],
    data_dir: Annotated[str | None, typer.Option(
        "--data-dir", help="Data directory (default $SEQEQ_DATA_DIR or ~/.cache/seqeq/data).")
    ] = None,
    *,
    shared: dict,
):
    """The same as `fit` on a built-in benchmark.

    Example: seqeq bench har2 --budget-kb 20 --trials 8
    """
    with _user_errors():
        dc, cfg = _configs(shared, benchmark=name, data_dir=data_dir)
        _run_command(dc, cfg, shared)


@app.command()
def export(
    out_path: Annotated[Path, typer.Argument(
        metavar="OUT",
        help="Where to write the model: NAME.onnx, or NAME.c (and NAME.h beside it) for C "
        "source for microcontrollers.")],
    run: Annotated[Path | None, typer.Option(help="Run directory (default: the latest "
                                             "finished run under runs/).")] = None,
    quantize: ExportQuantize = None,
    target: Annotated[str | None, typer.Option(
        help="Export target (default: chosen by OUT's suffix; onnx for .onnx).",
        autocompletion=_complete_targets)] = None,
    streaming: Annotated[bool, typer.Option(
        help="Write one time step (x_t and state in; state_next, logits, probabilities out), "
        "a graph without Loop for runtimes and converters that have none.")] = False,
    trial: Annotated[int | None, typer.Option(
        metavar="N", help="Export trial N's configuration instead of the winner: retrained on "
        "train+validation as the winner was (kept in RUN/trials/N for the next export).")
    ] = None,
    max_kb: Annotated[float | None, typer.Option(
        "--max-kb", metavar="K", help="Export the best completed trial whose exported model "
        "fits K KiB (a point of the report's size/score Pareto front), retrained as --trial.")
    ] = None,
    as_json: AsJson = False,
):
    """Export the best model of a run (or another of its trials) to ONNX, C source, or another
    registered export target.

    Example: seqeq export best.onnx --run runs/har2 --quantize int8
    """
    from . import api
    from .export.targets import target_for

    with _user_errors():
        target = api.streaming_target(target, streaming)
        chosen = target_for(out_path, target)  # the option, else the output's suffix
        if out_path.is_dir():
            raise SeqeqError(f"{out_path} is a directory",
                             f"Name the output file *{(chosen.suffixes or ('.onnx',))[0]}")
        info = api.export(out_path, run_dir=run, quantize=quantize, target=target,
                          trial=trial, max_kb=max_kb, quiet=as_json)
        what = _export_origin(info)
        step = (f", one time step with a state of {info['state_size']} floats"
                if "state_size" in info else "")
        if as_json:
            _print_json({"out_path": str(out_path), **info})
            return
        typer.echo(f"wrote {out_path} ({info.get('file_bytes', 0) / 1024:.1f} KiB{step}): "
                   f"{what}", err=True)


def _export_origin(info: dict) -> str:
    """Which model an export wrote, in words."""
    run_dir = info["run_dir"]
    if info["origin"] == "search":
        return (f"trial {info['trial']}'s model from the search of {run_dir}, not retrained or "
                "tested: that run was interrupted (the same command plus --resume finishes it)")
    if info["origin"] == "final":
        return (f"the final model of {run_dir}" if info.get("trial") is None else
                f"the final model of {run_dir} (trial {info['trial']} is the run's winner)")
    spec = info["spec"]
    test = info.get("test_score")
    scores = info.get("test_scores") or []
    tested = (f"; test {test:.4f}" if test is not None else "") + (
        f" (its {len(scores)} seeds' mean {sum(scores) / len(scores):.4f})"
        if len(scores) > 1 else "")
    how = ("retrained on train+validation as the winner was" if info["retrained"]
           else f"retrained earlier, kept in {info['model_dir']}")
    return (f"trial {info['trial']} of {run_dir} ({_describe_spec(spec)}, "
            f"{info['size_bytes'] / 1024:.2f} KiB {info['precision']}), {how}{tested}")


def _print_evaluation(ev: dict) -> None:
    cm = ev["confusion_matrix"]
    names, counts = cm["class_names"], cm["counts"]
    acc = ev["accuracy"]
    lines = [f"accuracy {acc:.4f} on {ev['n_labelled']} labelled series" if acc is not None
             else "no series carries a label the model knows"]
    if ev["unknown_labels"]:
        lines.append(f"labels the model does not know (not counted): "
                     f"{', '.join(ev['unknown_labels'])}")
    w = max([len(n) for n in names] + [len(str(v)) for row in counts for v in row] + [4])
    lines.append("confusion matrix (rows: true, columns: predicted)")
    lines.append(" " * (w + 1) + " ".join(n.rjust(w) for n in names))
    lines += [n.rjust(w) + " " + " ".join(str(v).rjust(w) for v in row)
              for n, row in zip(names, counts, strict=True)]
    typer.echo("\n".join(lines), err=True)


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(metavar="MODEL",
                                          help="A .onnx model written by seqeq.")],
    data: Annotated[Path, typer.Argument(metavar="DATA",
                                         help="Data to label: .csv or .parquet.")],
    out: Annotated[Path | None, typer.Option(help="preds.csv or preds.parquet "
                                             "(default: CSV on stdout).")] = None,
    proba: Annotated[bool, typer.Option(help="Add class probabilities.")] = False,
    fmt: Annotated[str | None, typer.Option("--format", help="long | wide | nested.")] = None,
    id_col: Annotated[str | None, typer.Option(
        "--id-col", help="Series id column (long layout).")] = None,
    time_col: Annotated[str | None, typer.Option("--time-col", help="Time/order column.")] = None,
    label_col: Annotated[str | None, typer.Option(
        "--label-col", help="Label column, if the data has one (it is not read for the "
        "predictions).")] = None,
    nan: Annotated[str, typer.Option(help="reject | fill.")] = "reject",
    decimal: Decimal = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object on stdout: the predictions (unless --out "
        "writes them), and the accuracy and confusion matrix where DATA has labels.")] = False,
):
    """Label every series of DATA with an exported model (onnxruntime only, no torch).

    Example: seqeq predict runs/har2/best.onnx new.parquet --out preds.csv --proba
    """
    from . import api

    with _user_errors():
        if not model.is_file():
            raise SeqeqError(f"model file {model} not found", "Give the path of a .onnx file")
        if out is not None and (out.suffix not in (".csv", ".parquet") or out.is_dir()):
            raise SeqeqError(f"--out {out} is not a .csv or .parquet file name",
                             "Use e.g. --out preds.csv or --out preds.parquet")
        df = api.predict(model, data, proba=proba, fmt=fmt, id_col=id_col, time_col=time_col,
                         label_col=label_col, nan=nan, decimal=decimal)
        ev = df.attrs.get("evaluation")
        if as_json and out is None:
            _print_json({"model": str(model), "n_series": len(df), "out": None,
                         "predictions": json.loads(df.to_json(orient="records")),
                         "evaluation": ev})
            return
        if out is None:
            df.to_csv(sys.stdout, index=False)
            sys.stdout.flush()
        else:
            from ._io import atomic_write_bytes

            if out.suffix == ".parquet":
                buf = io.BytesIO()
                df.to_parquet(buf, index=False)
                atomic_write_bytes(out, buf.getvalue())
            else:
                atomic_write_bytes(out, df.to_csv(index=False).encode("utf-8"))
        if as_json:
            _print_json({"model": str(model), "n_series": len(df), "out": str(out),
                         "evaluation": ev})
            return
        if ev is not None:  # after the predictions, on stderr: stdout stays their CSV
            _print_evaluation(ev)


@app.command()
def datasets(
    data_dir: Annotated[str | None, typer.Option(
        "--data-dir", help="Folder of the staged benchmark data (default: $SEQEQ_DATA_DIR, "
        "else ~/.cache/seqeq/data).")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the list as JSON on stdout.")] = False,
):
    """List the built-in benchmarks and whether their data is present.

    Example: seqeq datasets --data-dir ~/data/seqeq
    """
    from rich.console import Console
    from rich.table import Table

    from .datasets import list_benchmarks

    with _user_errors():
        found = list_benchmarks(data_dir)
        if as_json:
            import dataclasses

            _print_json([dataclasses.asdict(b) for b in found])
            return
        t = Table(title="seqeq benchmarks")
        for col in ("name", "present", "shape", "description"):
            t.add_column(col)
        for b in found:
            t.add_row(b.name, "yes" if b.present else f"no ({b.file})", str(b.shape or ""),
                      b.description)
        Console().print(t)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory.")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the report (report.json's content) and the HTML file's path as "
        "JSON on stdout.")] = False,
):
    """Regenerate report.html from a run's report.json.

    Example: seqeq report runs/har2
    """
    from .report import read_report, write_html

    with _user_errors():
        rep = read_report(run_dir / "report.json")
        path = write_html(rep, run_dir)
        if as_json:
            _print_json({"report_html": str(path), "report": rep})
            return
        typer.echo(f"wrote {path}", err=True)


def main() -> None:
    """Console entry point: usage errors, too, are one line and exit code 2."""
    try:  # typer >= 0.16 vendors click as typer._click
        from typer._click.exceptions import NoArgsIsHelpError, UsageError
    except ImportError:  # pragma: no cover - older typer
        from click.exceptions import NoArgsIsHelpError, UsageError

    try:
        rv = app(standalone_mode=False)
    except NoArgsIsHelpError as e:
        # building the error rendered the help: typer's rich help is already on the screen
        # (its text is then empty); plain click's is the message
        if e.format_message().strip():
            typer.echo(e.format_message())
        sys.exit(0)
    except UsageError as e:
        cmd = e.ctx.command_path if e.ctx is not None else "seqeq"
        msg = " ".join(e.format_message().split()).rstrip(".")
        typer.echo(f"error: {msg}. See `{cmd} --help`", err=True)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        try:
            _quiet_broken_pipe()
        except typer.Exit as e:
            sys.exit(e.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
