"""Ensembles (``--ensemble N``): N models averaging their logits, built, sized, saved, exported
and searched as one model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seqeq.cells import get_cell_class, list_cells
from seqeq.config import RunConfig
from seqeq.errors import SeqeqError
from seqeq.export.quantize import int8_size_bytes
from seqeq.models import (
    ModelSpec,
    build_model,
    combine_models,
    load_model,
    save_model,
    spec_param_count,
    spec_size_bytes,
)
from seqeq.search import candidate_cells


def _members(cell: str, n: int = 3):
    hp = get_cell_class(cell).example_hparams()[-1]
    spec = ModelSpec(cell, 3, 6, 4, hp)
    models = [build_model(spec, seed=10 + i) for i in range(n)]
    for m in models:
        m.set_normalisation(np.array([1.0, -2.0, 0.5]), np.array([2.0, 0.5, 3.0]))
        with torch.no_grad():  # a non-zero head bias, so the shared bias is exercised
            m.head.bias.normal_()
    return spec, models


@pytest.mark.parametrize("cell", list_cells())
def test_an_ensemble_predicts_the_mean_of_its_members_logits(cell):
    spec, models = _members(cell)
    ens, espec = combine_models(models, spec)
    assert espec.members == 3 and espec.cell == cell
    x = torch.randn(5, 9, 3) * 2
    lengths = torch.tensor([9, 4, 1, 7, 9])
    want = torch.stack([m.eval()(x, lengths) for m in models]).mean(0)
    with torch.no_grad():
        assert torch.allclose(ens(x, lengths), want, atol=1e-5)
        # the step loop (what ONNX runs) agrees with the members' own fast paths
        ref = ens.head(ens.cell.reference_sequence(ens.normalise(x), lengths))
    assert torch.allclose(ref, want, atol=1e-4)


@pytest.mark.parametrize("cell", list_cells())
def test_ensemble_size_is_exact_and_at_most_n_members(cell):
    spec, models = _members(cell)
    ens, espec = combine_models(models, spec)
    n_params = sum(p.numel() for p in ens.parameters())
    assert spec_param_count(espec) == n_params
    assert spec_param_count(espec) == 3 * spec_param_count(spec) - 2 * spec.num_classes
    assert spec_size_bytes(espec, 1) == int8_size_bytes(ens) <= 3 * spec_size_bytes(spec, 1)


def test_ensemble_save_load_round_trip(tmp_path):
    spec, models = _members("irnn")
    ens, espec = combine_models(models, spec)
    save_model(ens, espec, tmp_path / "m")
    loaded, spec2, _ = load_model(tmp_path / "m")
    assert spec2 == espec and spec2.members == 3
    x = torch.randn(2, 5, 3)
    assert torch.equal(ens(x), loaded(x))
    # a spec asking for an absurd number of members is refused before anything is built
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["spec"]["members"] = 10_000
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(SeqeqError, match="members=10000 is outside"):
        load_model(tmp_path / "m")


def test_members_must_share_their_normalisation():
    spec, models = _members("gru", 2)
    models[1].set_normalisation(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="normalisation"):
        combine_models(models, spec)
    with pytest.raises(ValueError, match="two or more"):
        combine_models(models[:1], spec)


@pytest.mark.parametrize("cell,quantize", [("gru", None), ("irnn", "int8"), ("lstm", "int8")])
def test_ensemble_exports_to_one_onnx_graph(tmp_path, cell, quantize):
    from seqeq.export import export_onnx, quantize_model_weights
    from seqeq.export.runtime import OnnxClassifier

    spec, models = _members(cell)
    ens, espec = combine_models(models, spec)
    path = tmp_path / "e.onnx"
    info = export_onnx(ens, espec, path, class_names=list("abcd"), channel_names=list("xyz"),
                       quantize=quantize)
    assert info["param_count"] == spec_param_count(espec)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 9, 3)).astype(np.float32)  # (a cell may learn 9 per-step sizes)
    lengths = np.array([9, 3, 1, 8, 9, 5])
    ref = quantize_model_weights(ens) if quantize else ens
    with torch.no_grad():
        want = torch.softmax(ref(torch.as_tensor(X), torch.as_tensor(lengths)), 1).numpy()
    got = OnnxClassifier(path).predict_proba(X, lengths)
    assert np.abs(got - want).max() < 1e-4


def test_the_budget_covers_the_whole_ensemble():
    cfg = RunConfig.of(budget_kb=6, ensemble=3)
    assert cfg.member_budget_bytes == 2 * 1024
    for n in (0, 17):
        with pytest.raises(SeqeqError, match="ensemble must be 1..16"):
            RunConfig.of(ensemble=n)
    # a budget one model fits but three do not: the error names the ensemble and the way out
    from seqeq.search_spaces import smallest_size

    size, _ = smallest_size(["gru"], 9, 2)
    assert candidate_cells(RunConfig.of(budget_kb=size / 1024, cells=("gru",)), 9, 2)
    with pytest.raises(SeqeqError, match="an ensemble of 3 models .* lower ensemble"):
        candidate_cells(RunConfig.of(budget_kb=size / 1024, cells=("gru",), ensemble=3), 9, 2)


@pytest.mark.slow
def test_a_search_exports_and_reports_the_ensemble(tmp_path, walks):
    """--ensemble 2 with --final-seeds 1: two final models are trained, every trial fits half
    the budget, the exported model is their average (its ONNX file says so), and the report
    separates the ensemble's test score from the single models'."""
    from seqeq.api import run_on
    from seqeq.export.runtime import OnnxClassifier
    from seqeq.train import score

    data, test = walks(n=120, T=20, seed=3), walks(n=40, T=20, seed=4)
    cfg = RunConfig.of(budget_kb=3, trials=2, epochs=2, final_seeds=1, ensemble=2,
                       cells=("gru", "irnn"), device="cpu")
    res = run_on(data, test, cfg, tmp_path / "r")
    report = json.loads(open(res.report_json).read())
    assert all(t["size_bytes"] <= 3 * 1024 // 2 for t in report["trials"])
    ens = report["final"]["ensemble"]
    assert ens["members"] == 2 and ens["seeds"] == report["final"]["seeds"] == [1000, 1001]
    assert report["best"]["spec"]["members"] == 2 and res.ensemble == 2
    assert res.size_bytes == report["best"]["size_bytes"] <= 3 * 1024
    assert report["final"]["chosen_seed"] is None and report["search"]["ensemble"] == 2
    assert len(res.test_scores) == 2 and res.test_score == report["final"]["chosen_test_score"]
    probs = OnnxClassifier(res.onnx_path).predict_proba(test.X, test.lengths)
    assert score(test.y, probs.argmax(1)) == pytest.approx(res.test_score)
    _, spec, meta = load_model(res.model_dir)
    assert spec.members == 2 and meta["member_seeds"] == [1000, 1001]
    html = open(res.report_html).read()
    assert "ensemble of 2" in html and "single models" in html
    jsonschema = pytest.importorskip("jsonschema")
    from seqeq.report import SCHEMA_PATH

    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()),
                        cls=jsonschema.Draft202012Validator)
