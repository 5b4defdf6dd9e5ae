"""Never trust a file seqeq did not write (issue 8).

* Model and data files are read without executing code: a malicious pickle planted wherever seqeq
  might look is refused (exit 2, one line) or never read, and its payload never runs.
* Names from the data (series ids, labels, channels, --study-name) never become paths: a run with
  hostile names writes nothing outside its run directory and the paths the user named.
* Artifacts are written atomically: a crash (an exception, or SIGKILL) mid-write leaves the previous
  file intact.
"""

from __future__ import annotations

import builtins
import os
import pickle
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from seqeq.cli import app
from seqeq.errors import SeqeqError

REPO = Path(__file__).resolve().parents[1]
FAST = ["--trials", "1", "--epochs", "1", "--final-seeds", "1", "--cells", "gru",
        "--budget-kb", "4", "--device", "cpu", "--quiet"]


# ---- malicious pickles -----------------------------------------------------------------------
class Payload:
    """Unpickling this creates ``marker`` (builtins.open in write mode): proof code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def evil_bytes(marker: Path) -> bytes:
    return pickle.dumps({"state_dict": Payload(marker)})


def test_the_payload_works(tmp_path):
    """Control: the planted bytes really do run code when unpickled (so the tests below can
    fail)."""
    marker = tmp_path / "ran"
    pickle.loads(evil_bytes(marker)).clear()
    assert marker.exists()


def one_error_line(res) -> str:
    assert "Traceback" not in res.stderr + res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


@pytest.fixture
def model_dir(tmp_path):
    """A run directory with an intact saved model (no training needed)."""
    from seqeq.models import ModelSpec, build_model, save_model

    spec = ModelSpec("gru", input_size=2, hidden_size=4, num_classes=2)
    run = tmp_path / "run"
    extra = {"class_names": ["calm", "wild"], "channel_names": ["a", "b"]}
    save_model(build_model(spec), spec, run / "model", extra=extra)
    save_model(build_model(spec), spec, run / "checkpoint", extra={**extra, "trial": 0})
    return run


def plant_beside(run: Path, marker: Path) -> None:
    """Pickles wherever a loader might look besides seqeq's own files."""
    for rel in ("model/model.pt", "model/model.pkl", "model/model.pth", "model/pytorch_model.bin",
                "model.pt", "model.pkl", "checkpoint/model.pt", "checkpoint/checkpoint.pkl",
                "model/model.npy"):
        (run / rel).write_bytes(evil_bytes(marker))


def test_pickles_beside_an_intact_model_are_never_read(model_dir, tmp_path):
    from seqeq.models import load_model

    marker = tmp_path / "ran"
    plant_beside(model_dir, marker)
    res = CliRunner().invoke(app, ["export", str(tmp_path / "m.onnx"), "--run", str(model_dir)])
    assert res.exit_code == 0, res.output
    load_model(model_dir / "model")
    load_model(model_dir / "checkpoint")
    assert not marker.exists()


@pytest.mark.parametrize("where", [
    "model/model.safetensors",    # the weights replaced by a pickle
    "model/model.json",           # the description replaced by a pickle
    "json-points-to-pickle",      # model.json naming a pickle, the safetensors file gone
    "torch-zip",                  # a torch.save() archive (zip + pickle) as the weights
])
def test_pickled_model_files_are_refused(model_dir, tmp_path, where):
    import json

    from seqeq.models import load_model

    marker = tmp_path / "ran"
    plant_beside(model_dir, marker)
    m = model_dir / "model"
    if where == "json-points-to-pickle":
        meta = json.loads((m / "model.json").read_text())
        meta.update(weights="model.pkl", path=str(m / "model.pkl"), state_dict="model.pt")
        (m / "model.json").write_text(json.dumps(meta))
        (m / "model.safetensors").unlink()
    elif where == "torch-zip":
        import torch

        torch.save({"w": Payload(marker)}, m / "model.safetensors")
    else:
        (model_dir / where).write_bytes(evil_bytes(marker))
    for ckpt in ("model.safetensors", "model.json"):  # the checkpoint too
        (model_dir / "checkpoint" / ckpt).write_bytes(evil_bytes(marker))
    res = CliRunner().invoke(app, ["export", str(tmp_path / "m.onnx"), "--run", str(model_dir)])
    assert res.exit_code == 2
    line = one_error_line(res)
    assert re.search(r"cannot read the model|no saved model|describes \d+ parameters", line), line
    for d in ("model", "checkpoint"):
        with pytest.raises(SeqeqError):
            load_model(model_dir / d)
    assert not (tmp_path / "m.onnx").exists()
    assert not marker.exists()


def test_pickled_report_and_onnx_are_refused(model_dir, tmp_path):
    marker = tmp_path / "ran"
    (model_dir / "report.json").write_bytes(evil_bytes(marker))
    res = CliRunner().invoke(app, ["report", str(model_dir)])
    assert res.exit_code == 2 and "not valid JSON" in one_error_line(res)
    assert not (model_dir / "report.html").exists()
    data = tmp_path / "d.csv"
    pd.DataFrame({"series_id": [0, 0, 1], "a": [1.0, 2, 3], "b": [0.0, 1, 2]}).to_csv(data)
    for name in ("best.onnx", "model.pkl"):
        (tmp_path / name).write_bytes(evil_bytes(marker))
        res = CliRunner().invoke(app, ["predict", str(tmp_path / name), str(data)])
        assert res.exit_code == 2 and "cannot load" in one_error_line(res)
    assert not marker.exists()


def test_foreign_model_json_is_refused_before_allocating(model_dir):
    """A model.json seqeq did not write: wrong format tag, or a spec far larger than the weights
    file (a GRU with D = 10^6 would allocate 12 TB) -- refused from the file sizes alone."""
    import json

    from seqeq.models import load_model

    path = model_dir / "model" / "model.json"
    meta = json.loads(path.read_text())
    for bad, msg in (({**meta, "format": "other/1"}, "not a seqeq model description"),
                     ({**meta, "spec": {**meta["spec"], "hidden_size": 10**6}},
                      "parameters but model.safetensors holds only"),
                     ({**meta, "spec": {**meta["spec"], "cell": "os.system"}}, "cannot read"),
                     ({**meta, "spec": {**meta["spec"], "hidden_size": -4}}, "cannot read"),
                     ({**meta, "class_names": ["../x"]}, "cannot read"),
                     # K and L cost compute, not parameters: a Euler loop of 10^9 steps per
                     # time step would hang predict, so they are bounded explicitly
                     ({**meta, "spec": {**meta["spec"], "cell_kwargs": {"K": 10**9}}},
                      "K=1000000000 is outside 1..64"),
                     ({**meta, "spec": {**meta["spec"], "cell_kwargs": {"L": 0}}},
                      "L=0 is outside"),
                     ([1, 2], "not a seqeq model description")):
        path.write_text(json.dumps(bad))
        with pytest.raises(SeqeqError, match=re.escape(msg)):
            load_model(model_dir / "model")


def test_benchmark_file_with_pickled_objects_is_refused(tmp_path, monkeypatch):
    """A data file dropped into the data dir is not trusted either: object arrays (pickles inside
    an .npz) and a bare pickle named like the archive are refused; nothing is unpickled."""
    marker = tmp_path / "ran"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    monkeypatch.setenv("SEQEQ_OFFLINE", "1")
    arr = np.empty(2, dtype=object)
    arr[:] = [Payload(marker), "x"]
    for content in ("npz", "pickle"):
        if content == "npz":
            np.savez(data_dir / "uci_har.npz", X_train=np.zeros((2, 3, 9), np.float32),
                     class_names=arr, class2_names=arr, channel_names=arr)
        else:
            (data_dir / "uci_har.npz").write_bytes(evil_bytes(marker))
        res = CliRunner().invoke(app, ["bench", "har2", "--data-dir", str(data_dir), *FAST,
                                       "--out", str(tmp_path / "run")])
        assert res.exit_code == 2, res.output
        assert "cannot read" in one_error_line(res) and "uci_har.npz" in res.stderr
        assert not (tmp_path / "run").exists()
    assert not marker.exists()


def test_no_unsafe_deserialisation_in_the_source():
    """pickle/joblib/torch.load are not used to read anything, and every np.load says
    allow_pickle=False."""
    hits = []
    for path in (REPO / "seqeq").rglob("*.py"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"^\s*(import|from)\s+(pickle|cPickle|dill|joblib|shelve|marshal)\b|"
                         r"\b(pickle|dill|joblib|marshal)\.loads?\(|torch\.load\(|shelve\.open|"
                         r"read_pickle\(|allow_pickle\s*=\s*True|weights_only\s*=\s*False",
                         code):
                hits.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
            if re.search(r"\bnp\.load\(", code) and "allow_pickle=False" not in code:
                hits.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)


# ---- hostile names never become paths --------------------------------------------------------
def test_hostile_names_stay_inside_the_run_dir(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    absolute = tmp_path / "abs_label"
    labels = ["../../escaped_label", str(absolute)]
    ids = ["../../escaped_id", str(tmp_path / "abs_id"), "ü\u202ex/..\\..\\win", "CON", ".",
           "..", "a/b/c", "~", "$HOME", "s" * 300]
    channels = ["../../escaped_chan", "<img src=x onerror=alert(1)>"]
    rng = np.random.default_rng(0)
    rows = []
    for k in range(24):
        sid = ids[k] if k < len(ids) else f"s{k}"
        for t in range(6):
            rows.append({"series_id": sid, "time": t, "label": labels[k % 2],
                         channels[0]: rng.normal() * (1 + k % 2), channels[1]: rng.normal()})
    data = tmp_path / "hostile.csv"
    pd.DataFrame(rows).to_csv(data, index=False)
    run, onnx, preds = tmp_path / "run", tmp_path / "exp.onnx", tmp_path / "preds.csv"
    for args in (["fit", str(data), *FAST, "--out", str(run), "--study-name",
                  "../../escaped_study"],
                 ["export", str(onnx), "--run", str(run)],
                 ["predict", str(onnx), str(data), "--out", str(preds), "--proba"],
                 ["report", str(run)]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, (args[0], res.output, res.exception)
    # nothing outside the run dir but what the user named; nothing in the cwd
    written = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert {p for p in written if run not in p.parents} == {data, onnx, preds}
    assert not any(cwd.iterdir()) and not absolute.exists()
    assert not list(tmp_path.parent.glob("escaped*")) and not list(tmp_path.glob("escaped*"))
    for p in written:
        assert ".." not in p.relative_to(tmp_path).parts
    # the names went through as data, unchanged
    out = pd.read_csv(preds, keep_default_na=False)
    assert set(out["id"]) == {*ids, *(f"s{k}" for k in range(len(ids), 24))}
    assert set(out["label"]) <= set(labels)
    assert {f"p_{c}" for c in labels} <= set(out.columns)
    html = (run / "report.html").read_text()
    assert "<img src=x onerror=alert(1)>" not in html  # escaped in the report


# ---- atomic writes -------------------------------------------------------------------------
@pytest.mark.parametrize("fail_at", ["write", "fsync", "replace", "interrupt"])
def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch, fail_at):
    import seqeq._io as io_mod

    target = tmp_path / "best.onnx"
    io_mod.atomic_write_bytes(target, b"good" * 1000)

    def boom(*a, **k):
        raise KeyboardInterrupt() if fail_at == "interrupt" else OSError(28, "No space left")

    if fail_at == "write":
        real_fdopen = os.fdopen

        class Half:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def fileno(self):
                return self.f.fileno()

            def write(self, data):
                self.f.write(data[: len(data) // 2])
                self.f.flush()
                boom()

        monkeypatch.setattr(io_mod.os, "fdopen", lambda fd, mode: Half(real_fdopen(fd, mode)))
    else:
        monkeypatch.setattr(io_mod.os, "fsync" if fail_at == "fsync" else "replace", boom)
    with pytest.raises((OSError, KeyboardInterrupt)):
        io_mod.atomic_write_bytes(target, b"new!" * 5000)
    assert target.read_bytes() == b"good" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["best.onnx"]  # no partial file left


KILL_DRIVER = """
import os, sys, time
import seqeq._io as io_mod
real_fsync = os.fsync
def slow_fsync(fd):
    real_fsync(fd)
    print("written", flush=True)
    time.sleep(60)  # killed here: the new bytes are on disk, the rename has not happened
io_mod.os.fsync = slow_fsync
io_mod.atomic_write_bytes(sys.argv[1], b"new" * 1_000_000)
"""


def test_sigkill_mid_write_leaves_the_previous_file_and_resume_sweeps_the_debris(tmp_path):
    from seqeq._io import atomic_write_bytes, atomic_write_json
    from seqeq.config import RunConfig
    from seqeq.run.rundir import prepare_run_dir as _prepare_run_dir

    run = tmp_path / "run"
    atomic_write_json(run / "run.json", {"ok": 1})
    target = run / "report.json"
    atomic_write_bytes(target, b'{"good": true}')
    p = subprocess.Popen([sys.executable, "-c", KILL_DRIVER, str(target)], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "written"
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    assert target.read_bytes() == b'{"good": true}'
    debris = list(run.glob(".report.json.*.tmp"))
    assert len(debris) == 1 and debris[0].stat().st_size == 3_000_000
    _prepare_run_dir(run, RunConfig.of(resume=True))  # what `--resume` does first
    assert sorted(p.name for p in run.iterdir()) == ["report.json", "run.json"]


def test_new_files_get_normal_permissions_and_existing_ones_keep_theirs(tmp_path):
    from seqeq._io import _umask, atomic_write_bytes

    new = tmp_path / "new.onnx"
    atomic_write_bytes(new, b"x")
    assert new.stat().st_mode & 0o777 == 0o666 & ~_umask()
    os.chmod(new, 0o640)
    atomic_write_bytes(new, b"y")
    assert new.stat().st_mode & 0o777 == 0o640 and new.read_bytes() == b"y"
