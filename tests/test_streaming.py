"""The streaming (one time step) ONNX model: equal to the whole-series model, sample by sample.

Parametrised over the cell registry and both precisions. The real-data check steps every test
series of the staged JapaneseVowels (12 channels, 7-26 steps: unequal lengths) through the file
and compares each series' logits after its last sample with ``best.onnx``'s on the padded batch.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from _models import perturbed_model

from seqeq import SeqeqError
from seqeq.cells import list_cells
from seqeq.export import _format as F
from seqeq.export import export_onnx
from seqeq.export.quantize import quantize_model_weights
from seqeq.export.streaming import export_streaming_onnx, state_layout
from seqeq.models import ModelSpec

CELLS = list_cells()
TOL = 1e-5


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def stream(path, X, lengths):
    """Logits of each series after its own last sample, stepping the whole batch together."""
    sess = _session(path)
    meta = onnx.load(str(path)).metadata_props
    props = {p.key: p.value for p in meta}
    state = np.tile(np.asarray(json.loads(props[F.KEY_INITIAL_STATE]), np.float32),
                    (len(X), 1))
    out = np.zeros((len(X), len(json.loads(props[F.KEY_CLASS_NAMES]))), np.float32)
    for t in range(int(lengths.max())):
        state, logits = sess.run([F.OUTPUT_STATE, F.OUTPUT_LOGITS],
                                 {F.INPUT_X_T: np.ascontiguousarray(X[:, t], np.float32),
                                  F.INPUT_STATE: state})
        done = lengths == t + 1
        out[done] = logits[done]
    return out


def whole(path, X, lengths):
    return _session(path).run([F.OUTPUT_LOGITS], {F.INPUT_X: X.astype(np.float32),
                                                  F.INPUT_LENGTHS: lengths.astype(np.int64)})[0]


@pytest.fixture(scope="module")
def vowels(staged):
    from seqeq.datasets import load_benchmark

    staged("ucr_uea/JapaneseVowels.npz")  # skips where the staged data is absent
    tr, te = load_benchmark("ucr:JapaneseVowels")
    assert te.lengths.min() < te.lengths.max()  # the point: unequal lengths
    return tr, te


@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize("cell", CELLS)
def test_streaming_equals_the_whole_series_model_on_real_data(cell, quantize, vowels, tmp_path):
    tr, te = vowels
    spec = ModelSpec(cell, tr.n_channels, 10, tr.n_classes)
    model = perturbed_model(spec, *tr.channel_stats())
    names = dict(class_names=tr.class_names, channel_names=tr.channel_names, quantize=quantize)
    info = export_streaming_onnx(model, spec, tmp_path / "step.onnx", **names)
    export_onnx(model, spec, tmp_path / "best.onnx", **names)
    assert info["max_abs_error"] <= TOL and info["state_size"] == model.cell.state_size
    X, L = te.X, te.lengths
    got, want = stream(tmp_path / "step.onnx", X, L), whole(tmp_path / "best.onnx", X, L)
    assert np.abs(got - want).max() <= TOL * max(1.0, float(np.abs(want).max()))
    assert np.array_equal(got.argmax(1), want.argmax(1))
    ref = quantize_model_weights(model) if quantize else model
    with torch.no_grad():
        torch_logits = ref(torch.as_tensor(X), torch.as_tensor(L)).numpy()
    assert np.abs(got - torch_logits).max() <= 1e-4


@pytest.mark.parametrize("pool,conv,members,first", [
    (3, 4, 1, True), (1, 4, 2, True), (4, 0, 3, True), (2, 3, 2, True),
    (3, 4, 1, False), (2, 3, 2, False)])  # False: models saved before conv_first
@pytest.mark.parametrize("cell", ["gru", "dirnn", "ernn"])
def test_front_ends_and_ensembles_stream_block_by_block(cell, pool, conv, members, first,
                                                        tmp_path):
    """Pooling: a step on each full block, and logits from the partial block (its filters'
    largest values, or its mean) in between (what the whole-series model does with a series that
    ends there); convolution: its window of the last inputs is in the state."""
    spec = ModelSpec(cell, 3, 8, 4, pool=pool, conv=conv, members=members, conv_first=first)
    model = perturbed_model(spec, np.array([1.0, -2, 3]), np.array([0.5, 2, 3]))
    names = dict(class_names=list("abcd"), channel_names=list("xyz"))
    export_streaming_onnx(model, spec, tmp_path / "s.onnx", **names)
    export_onnx(model, spec, tmp_path / "w.onnx", **names)
    rng = np.random.default_rng(0)
    n, T = 24, 17
    X = (np.array([1.0, -2, 3]) + rng.normal(size=(n, T, 3)) * [0.5, 2, 3]).astype(np.float32)
    L = np.concatenate([np.arange(1, T + 1), rng.integers(1, T + 1, n - T)])
    got, want = stream(tmp_path / "s.onnx", X, L), whole(tmp_path / "w.onnx", X, L)
    assert np.abs(got - want).max() <= TOL
    lay = state_layout(model)
    assert ("window" in lay) == bool(conv) and ("block" in lay) == (pool > 1)


@pytest.mark.parametrize("cell", CELLS)
def test_graph_has_no_control_flow_and_a_dynamic_batch(cell, tmp_path):
    spec = ModelSpec(cell, 2, 6, 3)
    model = perturbed_model(spec, np.zeros(2), np.ones(2))
    path = tmp_path / "s.onnx"
    info = export_streaming_onnx(model, spec, path, class_names=list("abc"),
                                 channel_names=["u", "v"], quantize="int8")
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    ops = {n.op_type for n in m.graph.node}
    assert not ops & {"Loop", "Scan", "If"}
    assert [i.name for i in m.graph.input] == [F.INPUT_X_T, F.INPUT_STATE]
    assert [o.name for o in m.graph.output] == [F.OUTPUT_STATE, F.OUTPUT_LOGITS,
                                                F.OUTPUT_PROBABILITIES]
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    props = {p.key: p.value for p in m.metadata_props}
    assert props[F.KEY_FORMAT] == F.FORMAT_STREAMING and props[F.KEY_QUANTIZE] == "int8"
    assert json.loads(props[F.KEY_STREAMING])["state_size"] == info["state_size"]
    assert len(json.loads(props[F.KEY_INITIAL_STATE])) == info["state_size"]
    assert json.loads(props[F.KEY_CHANNEL_NAMES]) == ["u", "v"]
    s0 = np.tile(np.asarray(json.loads(props[F.KEY_INITIAL_STATE]), np.float32), (5, 1))
    state, logits, probs = _session(path).run(None, {F.INPUT_X_T: np.ones((5, 2), np.float32),
                                                     F.INPUT_STATE: s0})
    assert state.shape == (5, info["state_size"]) and logits.shape == probs.shape == (5, 3)
    assert np.allclose(probs.sum(1), 1, atol=1e-6)


def test_a_cell_with_per_timestep_step_sizes_is_refused(tmp_path):
    spec = ModelSpec("ernn", 2, 6, 3, cell_kwargs={"n_timesteps": 20})
    model = perturbed_model(spec, np.zeros(2), np.ones(2))
    with pytest.raises(SeqeqError, match="depend on the step's position"):
        export_streaming_onnx(model, spec, tmp_path / "s.onnx", class_names=list("abc"),
                              channel_names=["u", "v"])
    assert not (tmp_path / "s.onnx").exists()


def test_cli_exports_the_streaming_model_of_a_run(tmp_path, walks):
    from typer.testing import CliRunner

    from seqeq.api import run_on
    from seqeq.cli import app
    from seqeq.config import RunConfig

    cfg = RunConfig.of(budget_kb=3, trials=1, epochs=1, final_seeds=1, cells=("gru",),
                       device="cpu")
    data = walks(n=40, T=9, seed=1, unequal=True)
    run_on(data, None, cfg, tmp_path / "run")
    out = tmp_path / "step.onnx"
    r = CliRunner().invoke(app, ["export", str(out), "--run", str(tmp_path / "run"),
                                 "--streaming", "--quantize", "int8"])
    assert r.exit_code == 0, r.output
    assert "one time step with a state of" in r.output
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props[F.KEY_FORMAT] == F.FORMAT_STREAMING and props[F.KEY_QUANTIZE] == "int8"
    r = CliRunner().invoke(app, ["export", str(tmp_path / "x.onnx"), "--run",
                                 str(tmp_path / "run"), "--streaming", "--target", "onnx"])
    assert r.exit_code != 0 and "--streaming writes the onnx-streaming target" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "x.onnx").exists()


def _tract_runner(path):
    tract = pytest.importorskip("tract", reason="tract (pip install tract) is not installed")
    runnable = tract.onnx().load(str(path)).into_model().into_runnable()
    return lambda x, s: [o.to_numpy() for o in runnable.run([x, s])]


def _openvino_runner(path):
    ov = pytest.importorskip("openvino", reason="OpenVINO (pip install openvino) is not "
                             "installed")
    core = ov.Core()
    # its CPU plugin computes in bf16 by default where the processor has it: ask for f32
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda x, s: [np.asarray(v) for v in compiled([x, s]).values()]


@pytest.mark.parametrize("runtime", ["tract", "openvino"])
@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize("cell", CELLS)
def test_other_runtimes_step_it_as_onnxruntime_does(cell, quantize, runtime, tmp_path):
    """tract (the Rust engine for embedded Linux) has no Loop at all, so the whole-series model
    does not load there; the streaming model does, in it and in OpenVINO."""
    spec = ModelSpec(cell, 3, 8, 4)
    model = perturbed_model(spec, np.array([1.0, -2, 3]), np.array([0.5, 2, 3]), seed=2)
    path = tmp_path / "s.onnx"
    export_streaming_onnx(model, spec, path, class_names=list("abcd"),
                          channel_names=list("xyz"), quantize=quantize)
    other = (_tract_runner if runtime == "tract" else _openvino_runner)(path)
    if (cell, quantize, runtime) == ("srnn", "int8", "openvino"):
        # OpenVINO 2026.4's CPU plugin computes SRNN's int8 step 2e-3 away from onnxruntime,
        # torch and tract (with f32 precision; not its scales' rounding, not DequantizeLinear:
        # Cast + Mul gives the same); its whole-series Loop graph differs alike
        pytest.xfail("OpenVINO: SRNN int8 differs by ~2e-3 (known, see the comment)")
    sess = _session(path)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    s_ref = s_other = np.tile(np.asarray(json.loads(props[F.KEY_INITIAL_STATE]), np.float32),
                              (5, 1))
    rng = np.random.default_rng(1)
    for _ in range(12):
        x = (np.array([1.0, -2, 3]) + rng.normal(size=(5, 3)) * [0.5, 2, 3]).astype(np.float32)
        s_ref, logits_ref, _ = sess.run(None, {F.INPUT_X_T: x, F.INPUT_STATE: s_ref})
        s_other, logits_other, _ = other(x, np.ascontiguousarray(s_other, np.float32))
        assert np.abs(logits_other - logits_ref).max() <= 1e-5
        assert np.abs(s_other - s_ref).max() <= 1e-5 * max(1.0, float(np.abs(s_ref).max()))


def test_the_runtime_predicts_with_a_streaming_file_as_with_the_whole_series_one(tmp_path):
    from seqeq.export.runtime import OnnxClassifier

    spec = ModelSpec("tarnn", 3, 8, 4, pool=2, conv=3)
    model = perturbed_model(spec, np.array([1.0, -2, 3]), np.array([0.5, 2, 3]))
    names = dict(class_names=list("abcd"), channel_names=list("xyz"))
    export_streaming_onnx(model, spec, tmp_path / "s.onnx", **names)
    export_onnx(model, spec, tmp_path / "w.onnx", **names)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(9, 11, 3)).astype(np.float32)
    L = rng.integers(1, 12, 9)
    s, w = OnnxClassifier(tmp_path / "s.onnx", batch_size=4), OnnxClassifier(tmp_path / "w.onnx")
    assert s.streaming and not w.streaming
    assert np.abs(s.predict_proba(X, L) - w.predict_proba(X, L)).max() <= TOL
    assert list(s.predict(X, L)) == list(w.predict(X, L))


def _configs():
    from seqeq.cells import get_cell_class

    return [(n, hp) for n in CELLS for hp in get_cell_class(n).example_hparams()]


@pytest.mark.parametrize("cell,hp", _configs(), ids=[f"{n}-{i}" for n, hps in
                         [(n, [h for c, h in _configs() if c == n]) for n in CELLS]
                         for i, _ in enumerate(hps)])
def test_every_example_configuration_streams_or_is_refused(cell, hp, tmp_path):
    """Every weight kind, K and L the cells test with; TARNN's code variant reads the previous
    input in its time-parallel part (kept in the state); per-timestep step sizes are refused."""
    spec = ModelSpec(cell, 3, 8, 4, cell_kwargs=hp)
    model = perturbed_model(spec, np.array([1.0, -2, 3]), np.array([0.5, 2, 3]))
    names = dict(class_names=list("abcd"), channel_names=list("xyz"))
    if hp.get("n_timesteps"):
        with pytest.raises(SeqeqError, match="depend on the step's position"):
            export_streaming_onnx(model, spec, tmp_path / "s.onnx", **names)
        return
    export_streaming_onnx(model, spec, tmp_path / "s.onnx", **names)
    export_onnx(model, spec, tmp_path / "w.onnx", **names)
    rng = np.random.default_rng(5)
    X = (np.array([1.0, -2, 3]) + rng.normal(size=(10, 9, 3)) * [0.5, 2, 3]).astype(np.float32)
    L = np.array([1, 2, 3, 9, 9, 5, 4, 7, 8, 6])
    got, want = stream(tmp_path / "s.onnx", X, L), whole(tmp_path / "w.onnx", X, L)
    assert np.abs(got - want).max() <= TOL * max(1.0, float(np.abs(want).max()))
