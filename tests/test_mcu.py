"""The C export on an emulated Cortex-M4F (QEMU mps2-an386): same predictions as the host, and
the flash, RAM and instruction figures. Skips, saying what to install, without the Arm
cross toolchain or QEMU."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from _models import perturbed_model

from seqeq.export import export_onnx, mcu
from seqeq.export.c_source import export_c
from seqeq.models import ModelSpec


def _need(*names):
    tc = mcu.toolchain()
    gone = [n for n in names if tc[n] is None]
    if gone:
        pytest.skip(f"needs {' and '.join(gone)} (Debian: gcc-arm-none-eabi "
                    "libnewlib-arm-none-eabi qemu-system-arm)")


@pytest.fixture(scope="module")
def vowels(staged):
    from seqeq.datasets import load_benchmark

    staged("ucr_uea/JapaneseVowels.npz")
    return load_benchmark("ucr:JapaneseVowels")


@pytest.mark.parametrize("cell,hp,quantize", [
    ("gru", {}, None), ("tarnn", {"K": 2, "variant": "code"}, "int8"), ("dirnn", {}, "int8"),
    ("fastgrnn", {"u_kind": "permdiag", "w_kind": "permdiag", "seed": 2}, None),
])
def test_the_firmware_on_the_emulated_m4_predicts_as_the_host(cell, hp, quantize, vowels,
                                                             tmp_path):
    _need("gcc", "qemu")
    tr, te = vowels
    spec = ModelSpec(cell, tr.n_channels, 12, tr.n_classes, cell_kwargs=hp)
    model = perturbed_model(spec, *tr.channel_stats())
    names = dict(class_names=tr.class_names, channel_names=tr.channel_names, quantize=quantize)
    export_c(model, spec, tmp_path / "m.c", **names)
    export_onnx(model, spec, tmp_path / "m.onnx", **names)
    X, L = te.X[:8], te.lengths[:8]
    (tmp_path / "fw").mkdir()
    elf = mcu.build_firmware(tmp_path / "m.c", X, L, tmp_path / "fw")
    got, _ = mcu.run_firmware(elf, tr.n_classes, timeout=120)
    want = ort.InferenceSession(str(tmp_path / "m.onnx")).run(
        ["logits"], {"x": X.astype(np.float32), "lengths": L.astype(np.int64)})[0]
    assert got.shape == want.shape
    assert np.array_equal(got.argmax(1), want.argmax(1))
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_flash_ram_and_instructions_per_step_are_measured(tmp_path):
    _need("gcc", "size", "qemu")
    spec = ModelSpec("gru", 3, 16, 4)
    model = perturbed_model(spec, np.array([1.0, -2, 3]), np.array([0.5, 2, 3]))
    info = export_c(model, spec, tmp_path / "g.c", class_names=list("abcd"),
                    channel_names=list("xyz"), quantize="int8")
    fr = mcu.measure_flash_ram(tmp_path / "g.c")
    assert fr["available"] and fr["flash_bytes"] > info["weight_bytes"]
    assert fr["static_ram_bytes"] == 0  # the state is the caller's; scratch is on the stack
    assert fr["stack_bytes"] >= info["scratch_bytes"]
    x = np.random.default_rng(0).normal(size=(24, 3)).astype(np.float32)
    a = mcu.instructions_per_step(tmp_path / "g.c", x, 4)
    b = mcu.instructions_per_step(tmp_path / "g.c", x, 4)
    assert a["available"] and a == b  # counted, so the same every time
    # at least one instruction per multiply-accumulate, and not absurdly more
    assert info["macs_per_step"] < a["instructions_per_step"] < 100 * info["macs_per_step"]


def test_missing_toolchain_is_said_not_raised(monkeypatch, tmp_path):
    monkeypatch.setattr(mcu, "toolchain", lambda: {"gcc": None, "size": None, "qemu": None})
    (tmp_path / "m.c").write_text("void m_reset(void *s) { (void)s; }\n")
    r = mcu.measure_flash_ram(tmp_path / "m.c")
    assert r == {"available": False, "why": r["why"]} and "gcc-arm-none-eabi" in r["why"]
    r = mcu.instructions_per_step(tmp_path / "m.c", np.zeros((5, 1), np.float32), 2)
    assert not r["available"] and "qemu-system-arm" in r["why"]


@pytest.mark.deployment
def test_a_run_reports_its_models_deployment_figures(tmp_path, walks):
    import json

    import jsonschema

    from seqeq.api import run_on
    from seqeq.config import RunConfig
    from seqeq.report import SCHEMA_PATH

    cfg = RunConfig.of(budget_kb=3, trials=1, epochs=1, final_seeds=1, cells=("gru",),
                       device="cpu", quantize="int8")
    res = run_on(walks(n=40, T=16, seed=1), None, cfg, tmp_path / "r")
    report = json.loads(open(res.report_json).read())
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()),
                        cls=jsonschema.Draft202012Validator)
    dep = report["deployment"]
    assert dep["quantize"] == "int8" and dep["macs_per_step"] > 0
    assert dep["ram_bytes"] >= dep["state_bytes"] > 0
    html = open(res.report_html).read()
    assert 'id="deployment"' in html and "multiply-accumulates per sample" in html
    tc = mcu.toolchain()
    if tc["gcc"] and tc["size"] and tc["qemu"]:
        assert dep["flash_bytes"] > dep["weight_bytes"] and dep["instructions_per_step"] > 0
        assert dep["ms_per_window"] == pytest.approx(
            dep["instructions_per_step"] * 16 / (mcu.CLOCK_MHZ * 1e3), rel=1e-3)
    else:
        assert dep["flash_bytes"] is None and dep["unmeasured"]


def test_device_cost_is_the_c_exports_and_grows_with_the_hidden_size():
    spec = ModelSpec("gru", 3, 16, 4)
    model = perturbed_model(spec, np.zeros(3), np.ones(3))
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        info = export_c(model, spec, Path(tmp) / "m.c", class_names=list("abcd"),
                        channel_names=list("xyz"))
    cost = mcu.device_cost(spec)
    assert cost == {"ram_bytes": info["state_bytes"] + info["scratch_bytes"],
                    "macs_per_step": info["macs_per_step"]}
    small = mcu.device_cost(ModelSpec("gru", 3, 8, 4))
    assert small["ram_bytes"] < cost["ram_bytes"] and small["macs_per_step"] < cost["macs_per_step"]


def test_the_search_trains_nothing_over_the_device_limits(tmp_path, walks):
    import optuna

    from seqeq import SeqeqError
    from seqeq.api import run_on
    from seqeq.config import RunConfig

    data = walks(n=40, T=10, seed=2)
    cfg = RunConfig.of(budget_kb=8, trials=4, epochs=1, final_seeds=1, cells=("gru", "tarnn"),
                       device="cpu", ram_kb=0.5, max_macs_per_step=400, opening=False)
    res = run_on(data, None, cfg, tmp_path / "r")
    study = optuna.load_study(study_name="seqeq", storage=f"sqlite:///{res.run_dir}/study.db")
    trained = [t for t in study.trials if "device" in t.user_attrs]
    assert trained
    for t in trained:
        assert t.user_attrs["device"]["ram_bytes"] <= 512
        assert t.user_attrs["device"]["macs_per_step"] <= 400
    assert any("adjusted.hidden_size" in t.user_attrs for t in trained)  # 8 KiB would not fit
    best = ModelSpec.from_dict(res.best_spec)
    assert mcu.device_cost(best)["ram_bytes"] <= 512
    import json

    html = open(res.report_html).read()
    assert "device limits" in html and "0.5 KiB" in html
    assert json.loads(open(res.report_json).read())["search"]["ram_kb"] == 0.5
    # a limit no model meets: nothing is trained, and the run says so
    cfg = RunConfig.of(budget_kb=8, trials=2, epochs=1, final_seeds=1, cells=("gru",),
                       device="cpu", ram_kb=0.01, opening=False)
    with pytest.raises(SeqeqError, match="completed no trial"):
        run_on(data, None, cfg, tmp_path / "r2")
    with pytest.raises(SeqeqError, match="ram_kb must be a positive number"):
        RunConfig.of(ram_kb=-1)
