"""The learned front end (issue 20): a causal convolution of the (pooled) input that the cell reads
instead of the raw channels, counted in the size, exported in the graph, kept per ensemble
member."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqeq.cells import list_cells
from seqeq.models import (
    CONV_KERNEL,
    ModelSpec,
    build_model,
    combine_models,
    conv_param_count,
    spec_param_count,
)

CELLS = [c for c in list_cells() if c != "ensemble"]


def _batch(seed=0, C=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(5, 23, C)).astype(np.float32)
    L = np.array([23, 17, 4, 9, 1])
    return X, L


@pytest.mark.parametrize("cell", CELLS)
def test_the_front_end_counts_exactly_and_an_ensemble_averages_its_members(cell):
    spec = ModelSpec(cell, 2, 8, 3, pool=2, conv=16)
    members = [build_model(spec, seed=k).eval() for k in range(3)]
    assert sum(p.numel() for p in members[0].parameters()) == spec_param_count(spec)
    assert conv_param_count(2, 16) == 16 * (2 * CONV_KERNEL + 1)
    ens, espec = combine_models(members, spec)
    assert sum(p.numel() for p in ens.parameters()) == spec_param_count(espec)
    X, L = _batch()
    x, lengths = torch.as_tensor(X), torch.as_tensor(L)
    with torch.no_grad():
        want = torch.stack([m(x, lengths) for m in members]).mean(0)
        assert torch.allclose(ens(x, lengths), want, atol=1e-5)


def test_the_front_end_is_causal_and_never_reads_padding():
    spec = ModelSpec("gru", 2, 8, 3, conv=16)
    model = build_model(spec, seed=0).eval()
    X, L = _batch()
    x = torch.as_tensor(X)
    with torch.no_grad():
        u, _ = model.inputs(x)
        y = x.clone()
        y[:, 10:] = 7.0  # the future: steps before 10 must not change
        v, _ = model.inputs(y)
        assert torch.equal(u[:, :10], v[:, :10])
        padded = x.clone()
        for i, n in enumerate(L):
            padded[i, n:] = 1e3
        assert torch.allclose(model(x, torch.as_tensor(L)), model(padded, torch.as_tensor(L)),
                              atol=1e-6)


@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize("cell", ["gru", "dirnn", "tarnn", "fastgrnn"])
def test_an_ensemble_with_front_ends_exports_with_the_same_outputs(cell, quantize, tmp_path):
    from seqeq.export import export_onnx, quantize_model_weights
    from seqeq.export.runtime import OnnxClassifier

    spec = ModelSpec(cell, 2, 8, 3, pool=2, conv=16)
    ens, espec = combine_models([build_model(spec, seed=k).eval() for k in range(2)], spec)
    X, L = _batch(1)
    ref = quantize_model_weights(ens) if quantize else ens
    with torch.no_grad():
        want = torch.softmax(ref(torch.as_tensor(X), torch.as_tensor(L)), 1).numpy()
    export_onnx(ens, espec, tmp_path / "m.onnx", class_names=["a", "b", "c"],
                channel_names=["u", "v"], quantize=quantize)
    got = OnnxClassifier(tmp_path / "m.onnx").predict_proba(X, L)
    assert np.abs(got - want).max() < 1e-5


def test_the_search_fits_the_front_end_in_the_budget(walks, tmp_path):
    """Opening trials on data of few channels read it through 16 filters; the cell gets what the
    budget leaves beside them, and every trial fits the budget with them."""
    import json

    from seqeq.api import run_on
    from seqeq.config import RunConfig
    from seqeq.models import ModelSpec as Spec
    from seqeq.models import spec_size_bytes

    cfg = RunConfig.of(budget_kb=3, trials=2, epochs=2, final_seeds=1, cells=("gru",),
                       device="cpu")
    res = run_on(walks(n=60, T=20, seed=1), None, cfg, tmp_path / "r", html=False)
    report = json.loads(open(res.report_json).read())
    opening = report["trials"][0]
    assert opening["opening"] and opening["spec"]["conv"] == 16
    for t in report["trials"]:
        if t["spec"]:
            assert spec_size_bytes(Spec.from_dict(t["spec"])) <= 3 * 1024


def test_a_saved_front_end_loads(tmp_path):
    from seqeq.models import load_model, save_model

    spec = ModelSpec("tarnn", 3, 6, 2, conv=16, pool=2)
    m = build_model(spec, seed=0).eval()
    save_model(m, spec, tmp_path / "m")
    m2, spec2, _ = load_model(tmp_path / "m")
    X, L = _batch(2, C=3)
    with torch.no_grad():
        assert torch.equal(m(torch.as_tensor(X), torch.as_tensor(L)),
                           m2(torch.as_tensor(X), torch.as_tensor(L)))
    assert spec2.conv == 16


def test_the_convolution_reads_every_step_and_each_block_keeps_its_largest_responses():
    """conv_first (the default): the filters run at the input's rate and a block of ``pool``
    steps is each filter's largest ReLU response in it (padding past a series' end never
    counts); a series that ends inside a block reads that partial block."""
    spec = ModelSpec("gru", 2, 8, 3, pool=4, conv=5)
    model = build_model(spec, seed=0).eval()
    X, L = _batch()
    x, lengths = torch.as_tensor(X), torch.as_tensor(L)
    with torch.no_grad():
        f = model.convolve(model.normalise(x))  # (B, T, 5), every step
        u, Lu = model.inputs(x, lengths)
        assert u.shape == (5, 6, 5) and Lu.tolist() == [6, 5, 1, 3, 1]
        for i, n in enumerate(L):
            for k in range(-(-int(n) // 4)):
                assert torch.equal(u[i, k], f[i, 4 * k: min(4 * k + 4, n)].max(0).values)
        padded = x.clone()
        for i, n in enumerate(L):
            padded[i, n:] = 1e3
        assert torch.equal(model.inputs(padded, lengths)[0][:, :1], u[:, :1])
        assert torch.allclose(model(padded, lengths), model(x, lengths), atol=1e-6)


def test_a_model_saved_before_conv_first_loads_as_it_was_trained(tmp_path):
    """A spec without ``conv_first`` (every model.json before it) pools the input first and then
    convolves the block means, as it did when it was trained; a new spec convolves first."""
    import json

    from seqeq.models import load_model, pool_time, save_model

    old = ModelSpec("gru", 2, 8, 3, pool=3, conv=4, conv_first=False)
    m = build_model(old, seed=0).eval()
    save_model(m, old, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    del meta["spec"]["conv_first"]
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    m2, spec2, _ = load_model(tmp_path / "m")
    assert spec2.conv_first is False and ModelSpec("gru", 2, 8, 3).conv_first is True
    X, L = _batch(3)
    x, lengths = torch.as_tensor(X), torch.as_tensor(L)
    with torch.no_grad():
        pooled, Lp = pool_time(m2.normalise(x), lengths, 3)
        assert torch.equal(m2.inputs(x, lengths)[0], m2.convolve(pooled))
        assert torch.equal(m2(x, lengths), m(x, lengths))
