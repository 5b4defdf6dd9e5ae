"""Checks every registered cell must pass, parametrised over the registry (a new cell gets them all
by registering and listing small settings in ``example_hparams``).

Tiny float64 tensors throughout; the equations themselves are checked in test_cell_equations.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqeq.cells import Cell, create_cell, get_cell_class, list_cells
from seqeq.cells._params import DenseMap, LowRankMap, PermDiagMap
from seqeq.models import (
    ModelSpec,
    build_model,
    gradient_norm_ratio,
    load_model,
    save_model,
    spec_param_count,
)

D_IN, D_H, C = 4, 6, 3
CASES = [(name, hp) for name in list_cells() for hp in get_cell_class(name).example_hparams()]
IDS = [f"{name}-{i}" for name in list_cells()
       for i, _ in enumerate(get_cell_class(name).example_hparams())]
# parameters that the paper counts but that provably never reach the output (see dirnn.py):
# gamma_L weighs layer L's state for layers above L, and there are none.
LAST_ENTRY_UNUSED = {("dirnn", "gamma"), ("tinyrnn", "gamma")}


def build(name, hp, d=D_IN, D=D_H, seed=0) -> Cell:
    torch.manual_seed(seed)
    return create_cell(name, d, D, **hp).double()


def series(B=3, T=5, d=D_IN, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, d, generator=g, dtype=torch.float64)


def n_learnable(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ---- the examples themselves ----------------------------------------------------------------
@pytest.mark.parametrize("name", list_cells())
def test_examples_cover_capabilities(name):
    cls = get_cell_class(name)
    examples = cls.example_hparams()
    assert examples, name
    kinds = set()
    for hp in examples:
        cell = create_cell(name, D_IN, D_H, **hp)
        for m in cell.modules():
            kinds |= {"dense"} if isinstance(m, DenseMap) else set()
            kinds |= {"lowrank"} if isinstance(m, LowRankMap) else set()
            kinds |= {"permdiag"} if isinstance(m, PermDiagMap) else set()
        # config() rebuilds the same cell
        again = _rebuild(cell)
        assert again.config() == cell.config()
        assert n_learnable(again) == n_learnable(cell)
    if kinds:  # cells built from the shared maps: every declared kind is exercised
        assert set(cls.weight_kinds) <= kinds, (cls.weight_kinds, kinds)
    else:
        assert cls.weight_kinds == ("dense",)
    if cls.has_steps:
        assert len({hp.get("K") for hp in examples}) >= 2
    if cls.deep:
        Ls = {hp.get("L") for hp in examples}
        assert len(Ls) >= 2 and any((L or 0) >= 2 for L in Ls)


def _rebuild(cell: Cell) -> Cell:
    cfg = dict(cell.config())
    name = cfg.pop("cell")
    return create_cell(name, cfg.pop("input_size"), cfg.pop("hidden_size"), **cfg)


# ---- shapes, sizes --------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
def test_shapes(name, hp):
    cell = build(name, hp)
    x = series()
    B, T, _ = x.shape
    u = cell.prepare(x)
    assert u.dim() == 3 and u.shape[:2] == (B, T)
    h = cell.init_state(B)
    assert h.shape == (B, cell.state_size) and h.dtype == torch.float64
    assert cell.state_size == type(cell).state_size_for(D_H, **hp)
    h1 = cell.step(u[:, 0], h)
    assert h1.shape == h.shape
    out = cell.forward_sequence(x)
    assert out.shape == (B, cell.readout_size)
    assert cell.readout_size == type(cell).readout_size_for(D_H, **hp)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
@pytest.mark.parametrize(("d", "D"), [(4, 6), (2, 7), (9, 3)])
def test_count_params_exact(name, hp, d, D):
    cell = build(name, hp, d=d, D=D)
    assert type(cell).count_params(d, D, **hp) == n_learnable(cell)
    # from the stored hyperparameters too (what config() / the search hand back)
    assert type(cell).count_params(d, D, **cell.hparams) == n_learnable(cell)


@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
def test_spec_param_count_matches_model(name, hp):
    spec = ModelSpec(name, D_IN, D_H, C, dict(hp))
    model = build_model(spec)
    assert spec_param_count(spec) == n_learnable(model)


@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
def test_every_parameter_gets_a_gradient(name, hp):
    torch.manual_seed(0)
    model = build_model(ModelSpec(name, D_IN, D_H, C, dict(hp))).double()
    x = series(T=6)
    logits = model(x, torch.tensor([6, 4, 2]))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    for pname, p in model.named_parameters():
        if (name, pname.split(".")[-1]) in LAST_ENTRY_UNUSED and pname.startswith("cell."):
            # gamma_L never reaches the output (documented); gamma_1..gamma_{L-1} all do
            if p.numel() == 1:
                assert p.grad is None or p.grad.item() == 0, pname
            else:
                assert p.grad[-1] == 0 and (p.grad[:-1] != 0).all(), pname
            continue
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
def test_same_seed_same_output(name, hp):
    x = series()
    a = build(name, hp, seed=3).forward_sequence(x)
    b = build(name, hp, seed=3).forward_sequence(x)
    c = build(name, hp, seed=4).forward_sequence(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
@pytest.mark.parametrize("pad", ["garbage", "zeros"])
def test_padding_invariance(name, hp, pad):
    cell = build(name, hp)
    x = series(T=5)
    lengths = torch.tensor([5, 3, 1])
    extra = 3
    filler = (torch.randn(3, 5 + extra, D_IN, dtype=torch.float64) * 3 if pad == "garbage"
              else torch.zeros(3, 5 + extra, D_IN, dtype=torch.float64))
    xp = filler.clone()
    for b, n in enumerate(lengths.tolist()):
        xp[b, :n] = x[b, :n]
    padded = cell.forward_sequence(xp, lengths)
    alone = torch.cat([cell.forward_sequence(x[b:b + 1, :n])
                       for b, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(padded, alone, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
def test_forward_is_step_of_prepare(name, hp):
    cell = build(name, hp)
    x = series(T=3)
    h = torch.randn(3, cell.state_size, dtype=torch.float64)
    for t in range(3):
        ref = cell.step(cell.prepare(x[:, t:t + 1])[:, 0], h)
        torch.testing.assert_close(cell(x[:, t], h), ref, rtol=0, atol=0)


def _overrides_forward_sequence(name) -> bool:
    return get_cell_class(name).forward_sequence is not Cell.forward_sequence


@pytest.mark.parametrize("name", [n for n in list_cells() if _overrides_forward_sequence(n)])
@pytest.mark.parametrize("lengths", [None, [6, 2, 4]])
def test_fused_matches_step_loop(name, lengths):
    assert {"gru", "lstm", "rnn"} <= {n for n in list_cells() if _overrides_forward_sequence(n)}
    cell = build(name, {})
    x = series(T=6)
    lt = None if lengths is None else torch.tensor(lengths)
    fused = cell.forward_sequence(x, lt)
    loop = Cell.forward_sequence(cell, x, lt)  # the generic prepare/step loop with masking
    torch.testing.assert_close(fused, loop, rtol=1e-10, atol=1e-10)
    # and the loop really steps: states agree at every time step
    out, _ = cell.rnn(x)
    for t, h in enumerate(cell.states(x)):
        torch.testing.assert_close(out[:, t], cell.readout(h), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
def test_gradient_norm_ratio(name, hp):
    torch.manual_seed(0)
    model = build_model(ModelSpec(name, D_IN, D_H, C, dict(hp))).double()
    model.train()
    x = series(B=2, T=5)
    r = gradient_norm_ratio(model, x)
    assert isinstance(r, np.ndarray) and r.shape == (5,)
    assert np.isfinite(r).all() and (r >= 0).all()
    assert r[-1] > 0  # d readout / d h_T is never zero
    assert model.training  # the diagnostic leaves the mode as it found it


# ---- properties from the papers -------------------------------------------------------------
@pytest.mark.parametrize(("d", "D", "L", "C_"), [(9, 128, 5, 2), (45, 16, 3, 19), (3, 5, 1, 4),
                                                  (6, 4, 6, 3)])
def test_tinyrnn_size_formula(d, D, L, C_):
    spec = ModelSpec("tinyrnn", d, D, C_, {"L": L})
    expected = (2 * D + 4) * L + D * C_ + C_
    assert spec_param_count(spec) == expected
    assert n_learnable(build_model(spec)) == expected
    assert get_cell_class("tinyrnn").count_params(d, D, L=L) == (2 * D + 4) * L


def test_tinyrnn_maps_are_weighted_selections():
    cell = build("tinyrnn", {"L": 3, "seed": 5}, d=4, D=10)
    for l in range(3):
        assert sorted(cell.U[l].index.tolist()) == list(range(10))  # B_l: a permutation of [D]
        assert set(cell.W[l].index.tolist()) == set(range(4))  # D_l: every feature used, d <= D
        for m in (cell.U[l].matrix(), cell.W[l].matrix()):
            assert ((m != 0).sum(dim=1) <= 1).all()  # one entry per row: diag(a) P
    assert cell.b is None
    assert not any(cell.U[0].index.equal(cell.U[l].index) for l in (1, 2))  # own draw per layer


def test_srnn_without_input_is_a_shift_then_relu():
    cell = build("srnn", {"hyper_size": 5})
    last = cell.fr[-1]
    with torch.no_grad():  # f_r == 0, hence b(x) == 0 whatever the gate says
        last.weight.zero_()
        last.bias.zero_()
    h = torch.randn(2, D_H, dtype=torch.float64)
    x = series(B=2, T=4)
    torch.testing.assert_close(cell(x[:, 0], h), torch.relu(torch.roll(h, 1, dims=1)),
                               rtol=0, atol=0)
    out = cell.forward_sequence(x, h0=h)
    torch.testing.assert_close(out, torch.roll(torch.relu(h), 4, dims=1), rtol=0, atol=0)


def test_tinyrnn_permutations_survive_save_load(tmp_path):
    spec = ModelSpec("tinyrnn", 5, 8, 3, {"L": 2, "K": 2, "seed": 1234})
    torch.manual_seed(0)
    model = build_model(spec)
    idx = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("index")}
    assert len(idx) == 4  # U_l and W_l of 2 layers
    with torch.no_grad():  # trained-looking weights
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_model(model, spec, tmp_path / "m")
    loaded, spec2, _ = load_model(tmp_path / "m")
    assert spec2 == spec
    fresh = build_model(spec2)
    for k, v in idx.items():
        assert torch.equal(loaded.state_dict()[k], v), k
        assert torch.equal(fresh.state_dict()[k], v), k  # same seed -> same draw
        assert loaded.state_dict()[k].dtype == torch.long
    x = torch.randn(2, 7, 5)
    model.eval()
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    other = build_model(ModelSpec("tinyrnn", 5, 8, 3, {"L": 2, "K": 2, "seed": 99}))
    assert any(not torch.equal(other.state_dict()[k], v) for k, v in idx.items())


def test_tarnn_code_variant_reads_previous_input():
    """variant="code" depends on x_{t-1} (through W2); the paper variant does not."""
    x = series(B=2, T=4)
    x2 = x.clone()
    x2[:, 1] += 1.0  # changes x_2 and hence the step at t = 3 through x_{t-1}
    for variant, affected in (("code", True), ("paper", False)):
        cell = build("tarnn", {"K": 2, "variant": variant})
        u, u2 = cell.prepare(x), cell.prepare(x2)
        assert not torch.allclose(u[:, 1], u2[:, 1])
        assert (not torch.allclose(u[:, 2], u2[:, 2])) == affected


@pytest.mark.parametrize("name", ["irnn", "ernn", "tarnn"])
def test_per_timestep_eta_rejects_longer_series(name):
    cell = build(name, {"K": 2, "n_timesteps": 4})
    assert cell.eta.shape == (2, 4)
    cell.forward_sequence(series(T=4))
    with pytest.raises(ValueError, match="per timestep"):
        cell.forward_sequence(series(T=5))


def test_regularization_default_is_zero():
    for name in list_cells():
        r = build(name, get_cell_class(name).example_hparams()[0]).regularization()
        assert r.shape == () and float(r) == 0.0


def test_unknown_variant_and_bad_depth_raise():
    with pytest.raises(ValueError):
        create_cell("tarnn", 3, 4, variant="tf")
    with pytest.raises(ValueError):
        create_cell("dirnn", 3, 4, L=0)

