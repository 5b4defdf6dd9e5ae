"""A model other than the winner: a run's trial, chosen by number (``seqeq export --trial N``) or
as the best trial whose exported model fits ``K`` KiB (``--max-kb K``, a point of the report's
size/score Pareto front), retrained the way the run retrained its winner.

The search keeps no trial's weights (only the best-so-far checkpoint an interrupted run falls
back on), so a picked trial's configuration is trained again, as the final stage trains the
winner: on train+validation, with the run's final seeds and schedule, averaged into an ensemble
where the run made one, the test set evaluated once per model. The data is read again as the
run's ``run.json`` names it and must give the same split (its fingerprint is checked). The
retrained model is kept in ``RUN/trials/N/``, so a second export of the same trial trains
nothing.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from .._progress import console
from ..config import DataConfig, RunConfig
from ..errors import SeqeqError, opt

__all__ = ["pick_trial", "trial_model", "TRIALS_DIR"]

#: where a run keeps the models of trials retrained after it (``RUN/trials/N/``)
TRIALS_DIR = "trials"


def _run_json(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SeqeqError(f"{run_dir} has no readable run.json",
                         "Pass the directory of a seqeq run with --run") from None


def run_config(run_dir: Path) -> RunConfig:
    """The settings a run was searched and retrained under (its run.json)."""
    settings = dict(_run_json(run_dir).get("search") or {})
    known = {f.name for part in ("search", "final", "export", "run")
             for f in dataclasses.fields(type(getattr(RunConfig.of(), part)))}
    return RunConfig.of(**{k: v for k, v in settings.items() if k in known})


def _load_study(run_dir: Path, cfg: RunConfig):
    import optuna

    url = cfg.run.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    if cfg.run.storage is None and not (run_dir / "study.db").is_file():
        raise SeqeqError(f"{run_dir} has no study.db", "Pass the directory of a seqeq run")
    try:
        return optuna.load_study(study_name=cfg.run.study_name or "seqeq", storage=url)
    except Exception as e:
        raise SeqeqError(f"cannot open the study of {run_dir} ({type(e).__name__})",
                         f"Check that its storage is reachable ({opt('storage')})") from None


def exported_size_bytes(trial, cfg: RunConfig) -> int:
    """The size of what exporting this trial writes: its configuration as the run exports it
    (an ensemble of ``--ensemble`` members where the run made one), in the run's precision."""
    from ..models import ModelSpec, spec_size_bytes

    spec = ModelSpec.from_dict(trial.user_attrs["spec"])
    if cfg.final.ensemble > 1:
        spec = dataclasses.replace(spec, members=cfg.final.ensemble)
    return spec_size_bytes(spec, cfg.bytes_per_param)


def pick_trial(run_dir: Path, trial: int | None = None, max_kb: float | None = None):
    """(study, trial, cfg): trial number ``trial`` of the run (completed, or pruned: its
    configuration is retrained whole), or the best completed trial whose exported model is at
    most ``max_kb`` KiB (the run's ranking: validation score, then loss, size, number)."""
    import optuna

    from ..search import rank_key

    if (trial is None) == (max_kb is None):
        raise SeqeqError(f"give one of {opt('trial')} and {opt('max-kb')}",
                         f"Use {opt('trial')} N for trial N, or {opt('max-kb')} K for the best "
                         "trial within K KiB")
    cfg = run_config(run_dir)
    study = _load_study(run_dir, cfg)
    S = optuna.trial.TrialState
    trials = [t for t in study.get_trials(deepcopy=False) if "spec" in t.user_attrs
              and "train" in t.user_attrs]
    if trial is not None:
        t = next((t for t in trials if t.number == trial), None)
        if t is None or t.state not in (S.COMPLETE, S.PRUNED):
            done = sorted(t.number for t in trials if t.state in (S.COMPLETE, S.PRUNED))
            raise SeqeqError(f"{run_dir} has no finished trial {trial}",
                             "Use one of the trials the report lists: "
                             + (", ".join(map(str, done[:30])) or "none finished")
                             + (" ..." if len(done) > 30 else ""))
        return study, t, cfg
    if not (max_kb > 0 and math.isfinite(max_kb)):
        raise SeqeqError(f"{opt('max-kb', max_kb)} is not a size", "Give a size in KiB, e.g. 4")
    fits = [t for t in trials if t.state == S.COMPLETE and t.value is not None
            and exported_size_bytes(t, cfg) <= max_kb * 1024]
    if not fits:
        sizes = [exported_size_bytes(t, cfg) for t in trials if t.state == S.COMPLETE]
        raise SeqeqError(f"no completed trial of {run_dir} fits {max_kb:g} KiB",
                         f"The smallest is {min(sizes) / 1024:.2f} KiB" if sizes
                         else "The run completed no trial")
    return study, max(fits, key=rank_key), cfg


def _chosen_trial(run_dir: Path) -> int | None:
    """The trial whose configuration the run's final model is (report.json's ``best``)."""
    try:
        rep = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
        return None if rep.get("final") is None else int(rep["best"]["trial"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def trial_model(run_dir: Path, trial: int | None = None, max_kb: float | None = None,
                data=None, quiet: bool = False) -> tuple[Path, dict]:
    """The model folder to export for a picked trial, and what it is: the run's own final model
    where the trial is the run's chosen one, else the trial's configuration retrained
    (once; ``RUN/trials/N/`` keeps it). ``data``: the run's ``(train_all, test)`` in memory,
    for a run whose data was not read from a file or benchmark (``run_on``)."""
    from ..models import save_model
    from ..search import spec_of
    from ..train import resolve_device

    run_dir = Path(run_dir)
    study, t, cfg = pick_trial(run_dir, trial, max_kb)
    info = {"trial": t.number, "spec": t.user_attrs["spec"],
            "size_bytes": exported_size_bytes(t, cfg), "precision": cfg.export.quantize or "fp32"}
    if t.number == _chosen_trial(run_dir) and (run_dir / "model" / "model.json").is_file():
        return run_dir / "model", {**info, "origin": "final", "retrained": False}
    folder = run_dir / TRIALS_DIR / str(t.number)
    if (folder / "model.json").is_file():
        meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        return folder, {**info, "origin": "trial", "retrained": False,
                        "test_score": meta.get("test_score"),
                        "test_scores": meta.get("test_scores")}
    train_all, test = data if data is not None else _reload_data(run_dir)
    train, val = _same_split(run_dir, train_all)
    device = resolve_device(cfg.run.device)
    spec = spec_of(t)
    n = max(cfg.final.final_seeds, cfg.final.ensemble)

    from .._progress import RunProgress
    from .final import final_models

    if not quiet:
        console.print(f"retraining trial {t.number}'s configuration ({spec.cell}, "
                      f"D={spec.hidden_size}) on train+validation: {n} model(s)")
    with RunProgress(0, cfg.search.metric, quiet=quiet) as progress:
        _, _, espec, _, finals, chosen, ensemble = final_models(
            study, train, val, test, cfg, device, run_dir, quiet=True, trial=t,
            progress=progress)
    scores = [f["test_score"] for f in finals if "test_score" in f]
    extra = {"class_names": train.class_names, "channel_names": train.channel_names,
             "metric": cfg.search.metric, "trial": t.number, "seed": chosen["seed"],
             "retrained": {"final_seeds": n, "ensemble": cfg.final.ensemble},
             "test_score": chosen.get("test_score"), "test_scores": scores,
             **({"member_seeds": ensemble["seeds"]} if ensemble else {})}
    save_model(chosen["model"].cpu(), espec, folder, extra=extra)
    return folder, {**info, "origin": "trial", "retrained": True,
                    "test_score": chosen.get("test_score"), "test_scores": scores}


def _reload_data(run_dir: Path):
    from .data import load_data

    rj = _run_json(run_dir)
    conf = (rj.get("data") or {}).get("config")
    if not conf:
        raise SeqeqError(f"{run_dir}'s data was passed in memory, so seqeq cannot read it again",
                         "Retrain from Python: seqeq.api.export(..., trial=N, "
                         "data=(train, test))")
    dc = DataConfig(**{k: v for k, v in conf.items()
                       if k in {f.name for f in dataclasses.fields(DataConfig)}})
    train_all, test, _ = load_data(dc, seed=int(rj["search"].get("seed", 0)))
    return train_all, test


def _same_split(run_dir: Path, train_all):
    """The run's train/validation split of ``train_all``, refused where the data has changed."""
    from .data import split_validation

    rj = _run_json(run_dir)
    conf = (rj.get("data") or {}).get("config") or {}
    train, val, _ = split_validation(train_all, float(conf.get("val_frac", 0.2)),
                                     int(rj["search"].get("seed", 0)))
    fp = f"{train.fingerprint()}-{val.fingerprint()}"
    if rj.get("data_fingerprint") not in (None, fp):
        raise SeqeqError(f"the data {run_dir} was searched on has changed since the run",
                         "Restore the run's data files, or start a new run on the new data")
    return train, val
