"""ONNX export: parity with PyTorch, graph shape, size, metadata, int8, torch-free runtime.

Parametrised over the cell registry, so a new cell gets every check by registering (and over its
``example_hparams`` for the configuration sweep). Models are small and random, with every weight
perturbed (no two equal tensors, no all-zero bias) and non-trivial normalisation statistics.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from _models import perturbed_model

import seqeq
from seqeq import SeqeqError
from seqeq.cells import get_cell_class, list_cells
from seqeq.export import export_onnx, int8_size_bytes, quantization_plan, quantize_model_weights
from seqeq.export.exporter import count_nodes, int_storage_dtype
from seqeq.export.quantize import MIN_VECTOR_NUMEL, quantize_array
from seqeq.export.runtime import OnnxClassifier
from seqeq.models import ModelSpec, build_model, spec_param_count

D_IN, HIDDEN, C = 3, 12, 3
CLASSES = ["walk", "run", "sit"]
CHANNELS = ["acc_x", "acc_y", "gyro_z"]
MEAN = np.array([-3.0, 0.5, 7.0])
STD = np.array([0.5, 2.0, 4.0])
TOL = 1e-4  # on logits of order 1; relative RTOL beyond (a DIRNN's running-sum state grows with T)
RTOL = 1e-5
CELLS = list_cells()


def _examples(name):
    hook = getattr(get_cell_class(name), "example_hparams", None)
    return hook() if hook is not None else [{}]


CONFIGS = [(n, hp) for n in CELLS for hp in _examples(n)]
CONFIG_IDS = [f"{n}-{i}" for n in CELLS for i, _ in enumerate(_examples(n))]


def make_model(cell, hp=None, hidden=HIDDEN, seed=0):
    spec = ModelSpec(cell, D_IN, hidden, C, cell_kwargs=dict(hp or {}))
    return spec, perturbed_model(spec, MEAN, STD, seed)


def raw(B, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.as_tensor(MEAN, dtype=torch.float32)
            + torch.as_tensor(STD, dtype=torch.float32) * torch.randn(B, T, D_IN, generator=g))


def torch_logits(model, x, lengths):
    with torch.no_grad():
        return model(x, torch.as_tensor(lengths, dtype=torch.int64)).numpy()


def close(got, want) -> bool:
    return bool(np.all(np.abs(got - want) <= TOL + RTOL * np.abs(want)))


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_logits(sess, x, lengths):
    return sess.run(["logits"], {"x": np.asarray(x, np.float32),
                                 "lengths": np.asarray(lengths, np.int64)})[0]


def export(model, spec, path, **kw):
    return export_onnx(model, spec, path, class_names=CLASSES, channel_names=CHANNELS, **kw)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One fp32 export per cell (default hyperparameters), shared by the tests below."""
    cache = {}

    def get(cell):
        if cell not in cache:
            spec, model = make_model(cell)
            path = tmp_path_factory.mktemp("onnx") / f"{cell}.onnx"
            info = export(model, spec, path, metadata={"dataset": "toy", "accuracy": 0.5})
            cache[cell] = (spec, model, path, info)
        return cache[cell]

    return get


# ---- parity -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
def test_parity_with_torch(cell, exported):
    spec, model, path, info = exported(cell)
    assert info["max_abs_error"] is not None and info["max_abs_error"] <= TOL
    sess = session(path)
    for T in (1, 7, 20, 80):
        for B in (1, 33):
            x = raw(B, T, seed=T + B)
            lengths = np.full(B, T)
            want = torch_logits(model, x, lengths)
            got = ort_logits(sess, x, lengths)
            assert close(got, want), (cell, T, B, np.abs(got - want).max())
    # unequal lengths, including 1 and the full length, with garbage in the padding
    rng = np.random.default_rng(0)
    lengths = np.concatenate([[1, 80, 2], rng.integers(1, 81, size=30)])
    x = raw(33, 80, seed=5)
    want = torch_logits(model, x, lengths)
    x_pad = x.clone()
    for i, n in enumerate(lengths):
        x_pad[i, n:] = 1e3
    got, probs = session(path).run(None, {"x": x_pad.numpy(), "lengths": lengths})
    assert close(got, want)
    e = np.exp(want - want.max(1, keepdims=True))
    assert np.abs(probs - e / e.sum(1, keepdims=True)).max() <= TOL


@pytest.mark.parametrize("cell,hp", CONFIGS, ids=CONFIG_IDS)
def test_parity_every_example_config(cell, hp, tmp_path):
    """fp32 and int8 exports of each example configuration on one batch of unequal lengths."""
    spec, model = make_model(cell, hp, seed=1)
    T, lengths = 9, np.array([9, 1, 4, 7, 9])
    x = raw(len(lengths), T, seed=2)
    for quantize, ref in ((None, model), ("int8", quantize_model_weights(model))):
        path = tmp_path / f"{quantize}.onnx"
        export(model, spec, path, quantize=quantize, verify=False)
        got = ort_logits(session(path), x, lengths)
        assert close(got, torch_logits(ref, x, lengths)), quantize


# ---- graph --------------------------------------------------------------------------------------
def _op_types(graph) -> list[str]:
    out = []
    for n in graph.node:
        out.append(n.op_type)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out += ["["] + _op_types(a.g) + ["]"]
    return out


def _loops(graph):
    return [n for n in graph.node if n.op_type in ("Loop", "Scan")]


@pytest.mark.parametrize("cell", CELLS)
def test_graph_is_a_loop_and_independent_of_length(cell, exported, tmp_path):
    spec, model, path, info = exported(cell)
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    assert len(_loops(m.graph)) == 1
    assert info["num_nodes"] == count_nodes(m.graph)
    # tracing at another length gives the same graph: nothing is unrolled over time
    other = export(model, spec, tmp_path / "t11.onnx", _trace_length=11, verify=False)
    assert other["num_nodes"] == info["num_nodes"]
    assert _op_types(onnx.load(str(tmp_path / "t11.onnx")).graph) == _op_types(m.graph)
    # inputs/outputs with dynamic batch and time
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(m.graph.input) + list(m.graph.output)}
    assert dims == {"x": ["batch", "time", D_IN], "lengths": ["batch"],
                    "logits": ["batch", C], "probabilities": ["batch", C]}


@pytest.mark.parametrize("cell", CELLS)
def test_file_size_within_target(cell, tmp_path):
    """At a realistic size (d=9, D=64) weights dominate; the graph adds a few KiB at most."""
    spec = ModelSpec(cell, 9, 64, 2)
    model = build_model(spec)
    info = export_onnx(model, spec, tmp_path / "m.onnx", class_names=["a", "b"],
                       channel_names=[f"c{i}" for i in range(9)], verify=False)
    n = spec_param_count(spec)
    assert info["param_count"] == n
    # integer tables (permutation indices) are stored in the narrowest type that holds them
    buffers = sum(b.numel() * int_storage_dtype(b.numpy()).itemsize for b in model.buffers())
    assert info["weight_bytes"] == 4 * n + buffers
    assert info["file_bytes"] == (tmp_path / "m.onnx").stat().st_size
    assert info["file_bytes"] <= 1.1 * info["weight_bytes"] + 64 * 1024
    assert info["file_bytes"] - 4 * n <= 16 * 1024, "graph overhead grew: weights stored twice?"
    q = export_onnx(model, spec, tmp_path / "q.onnx", class_names=["a", "b"],
                    channel_names=[f"c{i}" for i in range(9)], quantize="int8", verify=False)
    assert q["weight_bytes"] == int8_size_bytes(model) + buffers
    assert q["file_bytes"] <= 1.1 * q["weight_bytes"] + 64 * 1024
    assert q["file_bytes"] - int8_size_bytes(model) <= 16 * 1024


# ---- metadata and runtime -------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
def test_metadata_round_trips(cell, exported):
    spec, model, path, info = exported(cell)
    clf = OnnxClassifier(path, batch_size=8)
    assert clf.class_names == CLASSES and clf.channel_names == CHANNELS
    assert ModelSpec.from_dict(clf.spec) == spec
    assert clf.seqeq_version == seqeq.__version__
    assert clf.metadata == {"dataset": "toy", "accuracy": 0.5}
    assert clf.quantize == "none" and info["quantize"] == "none"
    m = onnx.load(str(path))
    assert m.opset_import[0].version == info["opset"]
    props = {p.key: p.value for p in m.metadata_props}
    assert json.loads(props["seqeq.class_names"]) == CLASSES
    # predictions in batches of 8 over unequal lengths agree with torch
    lengths = np.array([20, 3, 17, 1, 20, 9, 11, 2, 20, 5, 14])
    x = raw(len(lengths), 20, seed=9)
    want = torch_logits(model, x, lengths)
    assert close(clf.predict_logits(x.numpy(), lengths), want)
    p = clf.predict_proba(x.numpy(), lengths)
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)
    assert list(clf.predict(x.numpy(), lengths)) == [CLASSES[i] for i in want.argmax(1)]


def test_runtime_rejects_bad_input(exported):
    _, _, path, _ = exported(CELLS[0])
    clf = OnnxClassifier(path)
    x = raw(2, 6).numpy()
    with pytest.raises(SeqeqError) as e:
        clf.predict(x[:, :, :2])
    assert "acc_x" in str(e.value) and "<column 1>" in str(e.value)
    with pytest.raises(SeqeqError) as e:
        clf.predict(x, channel_names=["acc_x", "gyro_z", "acc_y"])
    assert "['acc_x', 'gyro_z', 'acc_y']" in str(e.value) and "reorder" in str(e.value)
    with pytest.raises(SeqeqError):
        clf.check_channels(["a", "b", "c"])
    clf.check_channels(CHANNELS)
    with pytest.raises(SeqeqError, match="lengths"):
        clf.predict(x, np.array([7, 3]))
    bad = x.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(SeqeqError, match="NaN"):
        clf.predict(bad)
    # NaN in the padding is never read
    bad[1, 2:, :] = np.nan
    assert np.allclose(clf.predict_logits(bad, np.array([6, 2])),
                       clf.predict_logits(x[:, :], np.array([6, 2])))
    with pytest.raises(SeqeqError, match="no ONNX model"):
        OnnxClassifier(path.parent / "missing.onnx")


def test_runtime_reads_lazy_arrays_batch_by_batch(exported):
    class Lazy:  # shape, dtype and row slicing only, like seqeq.datasets' LazySeries
        def __init__(self, a):
            self.a, self.shape, self.dtype, self.reads = a, a.shape, a.dtype, []

        def __getitem__(self, key):
            self.reads.append(key)
            return self.a[key]

    _, model, path, _ = exported(CELLS[0])
    clf = OnnxClassifier(path, batch_size=4)
    x = raw(10, 7, seed=6).numpy()
    lazy = Lazy(x)
    lengths = np.array([7, 2, 5, 7, 1, 3, 7, 6, 4, 2])
    assert close(clf.predict_logits(lazy, lengths), torch_logits(model, torch.from_numpy(x),
                                                                 lengths))
    assert lazy.reads == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert close(clf.predict_logits(x.tolist()), clf.predict_logits(x))


def test_runtime_imports_without_torch(exported, tmp_path):
    spec, model, path, _ = exported(CELLS[0])
    lengths = np.array([5, 2, 8])
    x = raw(3, 8, seed=3)
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "lengths.npy", lengths)
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        import numpy as np
        import seqeq.export
        from seqeq.export.runtime import OnnxClassifier
        clf = seqeq.export.OnnxClassifier({str(path)!r})
        x = np.load({str(tmp_path / "x.npy")!r}); n = np.load({str(tmp_path / "lengths.npy")!r})
        np.save({str(tmp_path / "out.npy")!r}, clf.predict_logits(x, n))
        print(clf.predict(x, n).tolist(), clf.spec["cell"])
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    want = torch_logits(model, x, lengths)
    assert close(np.load(tmp_path / "out.npy"), want)
    assert spec.cell in r.stdout


# ---- int8 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("quantize,opset", [(None, 17), ("int8", 19)])
@pytest.mark.parametrize("cell", CELLS)
def test_runs_in_the_reference_evaluator(cell, quantize, opset, tmp_path):
    """The time loop has an explicit true condition: ``onnx.reference``, which follows the spec
    to the letter, ran a Loop whose cond input was empty zero times (all logits the head's bias).
    (Its DequantizeLinear starts at opset 19, so the int8 file is written at 19 here.)"""
    from onnx.reference import ReferenceEvaluator

    spec, model = make_model(cell, seed=5)
    path = tmp_path / "m.onnx"
    export(model, spec, path, quantize=quantize, opset=opset)
    loop = next(n for n in onnx.load(str(path)).graph.node if n.op_type == "Loop")
    assert loop.input[1], "the Loop's condition input is empty"
    lengths = np.array([9, 1, 4])
    x = raw(3, 9, seed=6).numpy()
    got = ReferenceEvaluator(str(path)).run(["logits"], {"x": x, "lengths": lengths})[0]
    assert close(got, ort_logits(session(path), x, lengths))
    ref = quantize_model_weights(model) if quantize else model
    assert close(got, torch_logits(ref, torch.as_tensor(x), lengths))


@pytest.mark.parametrize("cell", CELLS)
def test_int8_matches_fake_quantised_torch(cell, tmp_path):
    spec, model = make_model(cell, seed=3)
    path = tmp_path / "q.onnx"
    info = export(model, spec, path, quantize="int8")
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    fq = quantize_model_weights(model)
    lengths = np.array([20, 1, 13, 20, 7])
    x = raw(5, 20, seed=4)
    got = ort_logits(session(path), x, lengths)
    assert close(got, torch_logits(fq, x, lengths))
    assert info["max_abs_error"] <= TOL
    # every quantised weight is stored as int8 with its scales; the rest stays as it was
    plan = {k: v for k, v in quantization_plan(model).items() if v is not None}
    inits = {t.name: t for t in m.graph.initializer}
    int8 = {n for n, t in inits.items() if t.data_type == onnx.TensorProto.INT8}
    deq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    assert int8 and len(deq) == len(int8) <= len(plan)
    n_int8 = sum(int(np.prod(inits[n].dims)) for n in int8)
    assert n_int8 <= sum(q.q.size for q in plan.values())
    for t in inits.values():  # float tensors left: normalisation, small vectors, scales
        if t.data_type == onnx.TensorProto.FLOAT and not t.name.endswith(".scale"):
            assert (t.name in ("mean", "std", "seqeq/h0_row")
                    or int(np.prod(t.dims)) < MIN_VECTOR_NUMEL), t.name
    assert info["quantize"] == OnnxClassifier(path).quantize == "int8"


def test_int8_file_is_about_4x_smaller(tmp_path):
    """GRU d=9, D=256 (~200k weights): 1 byte per weight + 4 per row scale -> ~3.9x."""
    spec = ModelSpec("gru", 9, 256, 6)
    model = build_model(spec)
    kw = dict(class_names=list("abcdef"), channel_names=[f"c{i}" for i in range(9)], verify=False)
    fp = export_onnx(model, spec, tmp_path / "f.onnx", **kw)
    q = export_onnx(model, spec, tmp_path / "q.onnx", quantize="int8", **kw)
    assert 3.75 <= fp["file_bytes"] / q["file_bytes"] <= 4.0
    assert q["file_bytes"] <= int8_size_bytes(model) + 8 * 1024


def test_quantisation_rule_and_size_formula():
    # per-row scales for matrices, one scale for long vectors, small vectors and scalars kept
    w = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 1.0, -2.0]], np.float32)
    qt = quantize_array(w)
    assert qt.axis == 0 and qt.q.dtype == np.int8 and qt.scale.shape == (3,)
    assert np.array_equal(qt.q[0], [64, -127, 32]) and not qt.q[1].any()
    assert np.abs(qt.dequantize() - w).max() <= (np.abs(w).max(1) / 127 / 2).max() + 1e-7
    v = np.linspace(-1, 2, MIN_VECTOR_NUMEL, dtype=np.float32)
    assert quantize_array(v).axis is None and quantize_array(v).scale.shape == ()
    assert quantize_array(v[:-1]) is None and quantize_array(np.float32(0.3)) is None
    assert quantize_array(np.ones((MIN_VECTOR_NUMEL - 1, 1), np.float32)) is None
    # rnn, d=9, D=32, C=2: W_ih 32x9, W_hh 32x32, b_ih, b_hh (32 each), head 2x32 + bias 2
    spec = ModelSpec("rnn", 9, 32, 2)
    model = build_model(spec)
    want = (32 * 9 + 4 * 32) + (32 * 32 + 4 * 32) + 2 * (32 + 4) + (2 * 32 + 4 * 2) + 4 * 2
    assert int8_size_bytes(model) == want
    assert int8_size_bytes(model) < spec_param_count(spec) * 4 / 3
    fq = quantize_model_weights(model)
    for (name, p), (_, p0) in zip(fq.named_parameters(), model.named_parameters(), strict=True):
        err = (p - p0).abs().max().item()
        if name == "head.bias":
            assert err == 0.0
        else:
            rows = p0.detach().abs().reshape(p0.shape[0], -1).amax(1) if p0.ndim > 1 else None
            bound = (rows.max() if rows is not None else p0.abs().max()).item() / 254
            assert 0 < err <= bound + 1e-7, name
    assert fq is not model and not torch.equal(fq.cell.rnn.weight_hh_l0,
                                               model.cell.rnn.weight_hh_l0)


# ---- errors -------------------------------------------------------------------------------------
def test_export_rejects_bad_arguments(tmp_path):
    spec, model = make_model(CELLS[0])
    with pytest.raises(SeqeqError, match="class names"):
        export_onnx(model, spec, tmp_path / "a.onnx", class_names=["a"], channel_names=CHANNELS)
    with pytest.raises(SeqeqError, match="channel names"):
        export_onnx(model, spec, tmp_path / "a.onnx", class_names=CLASSES, channel_names=["x"])
    with pytest.raises(SeqeqError, match="quantisation"):
        export(model, spec, tmp_path / "a.onnx", quantize="int4")
    with pytest.raises(SeqeqError, match="JSON"):
        export(model, spec, tmp_path / "a.onnx", metadata={"x": object()})
    assert not (tmp_path / "a.onnx").exists()


def test_torch_export_fallback_tracer(tmp_path):
    """The torch.export-based tracer, used when the TorchScript exporter is gone (it is
    deprecated), gives the same graph contract."""
    cell = "irnn" if "irnn" in CELLS else CELLS[0]
    spec, model = make_model(cell, {"K": 2} if cell == "irnn" else None)
    info = export(model, spec, tmp_path / "d.onnx", backend="dynamo")
    assert info["max_abs_error"] <= TOL
    m = onnx.load(str(tmp_path / "d.onnx"))
    assert len(_loops(m.graph)) == 1
    lengths = np.array([11, 1, 6])
    x = raw(3, 11, seed=8)
    got = ort_logits(session(tmp_path / "d.onnx"), x, lengths)
    assert close(got, torch_logits(model, x, lengths))


def test_cell_limited_to_short_series(tmp_path):
    """A cell with per-timestep weights for T0 steps (iRNN ``n_timesteps``) rejects longer series:
    it is traced at a length it accepts, and the runtime reports longer input as a SeqeqError."""
    spec, model = make_model("irnn", {"K": 2, "n_timesteps": 3})
    info = export(model, spec, tmp_path / "m.onnx")
    assert info["max_abs_error"] <= TOL
    clf = OnnxClassifier(tmp_path / "m.onnx")
    x, lengths = raw(4, 3, seed=1), np.array([3, 1, 2, 3])
    assert close(clf.predict_logits(x.numpy(), lengths), torch_logits(model, x, lengths))
    with pytest.raises(ValueError):
        torch_logits(model, raw(2, 4), np.array([4, 4]))
    with pytest.raises(SeqeqError, match="length 4"):
        clf.predict(raw(2, 4).numpy())


def test_export_targets_are_one_registration_each_chosen_by_suffix(tmp_path):
    """The seam a new deployment format joins through (issue 19): ONNX is one registration;
    the output's suffix chooses it; an unknown suffix or name is a clear error."""
    from seqeq.errors import SeqeqError
    from seqeq.export.targets import ExportTarget, list_targets, register_target, target_for

    assert [t.name for t in list_targets()][:1] == ["onnx"]
    assert target_for("m.ONNX").name == "onnx" and target_for("x.bin", "onnx").name == "onnx"
    with pytest.raises(SeqeqError, match=r"does not end in \.onnx"):
        target_for("m.txt")
    with pytest.raises(SeqeqError, match="unknown export target 'tflite'"):
        target_for("m.onnx", "tflite")
    with pytest.raises(ValueError, match="already chooses export target 'onnx'"):
        register_target(ExportTarget("other", (".onnx",), "", lambda *a, **k: {}))
