"""Fast paths against the ground truth: every cell's fused time loop (``Cell.fast_loop``, CPU) and
the GPU kernels (``seqeq.cells._triton``, CUDA only) must give the ``step`` loop's outputs and
gradients -- w.r.t. the inputs, the initial state and every parameter -- up to float rounding.

Float64, every registered cell with each of its ``example_hparams``, equal and unequal lengths.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch

from seqeq.cells import Cell, create_cell, get_cell_class, list_cells
from seqeq.cells._fast import WORKSPACE, fast_loops_enabled, use_fast_loops
from seqeq.models import ModelSpec, build_model

D_IN, D_H = 4, 6
CASES = [(name, hp) for name in list_cells() for hp in get_cell_class(name).example_hparams()]
IDS = [f"{name}-{i}" for name in list_cells()
       for i, _ in enumerate(get_cell_class(name).example_hparams())]
#: cells that train through torch's fused kernels and so need no loop of their own
FUSED = {"gru", "lstm", "rnn"}


def perturbed(name, hp, d=D_IN, D=D_H, seed=0, dtype=torch.float64, device="cpu") -> Cell:
    """A cell with every parameter moved off its init (no zero biases, no ties, eta != 0.01)."""
    torch.manual_seed(seed)
    cell = create_cell(name, d, D, **hp).to(device=device, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=dtype).to(device))
    return cell


def run(cell, x, lengths, h0, fast: bool):
    """(readout, grads w.r.t. x, h0 and every parameter) of a random projection of the output."""
    with use_fast_loops(fast):
        out = cell.forward_sequence(x, lengths, h0)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    params = list(cell.parameters())
    grads = torch.autograd.grad((out * w.to(out.device)).sum(), [x, h0, *params],
                                allow_unused=True)
    return out.detach(), [torch.zeros_like(t) if g is None else g
                          for g, t in zip(grads, [x, h0, *params], strict=True)]


def assert_same(cell, x, lengths, h0, rtol=1e-9, atol=1e-11):
    out_f, g_f = run(cell, x, lengths, h0, True)
    out_r, g_r = run(cell, x, lengths, h0, False)
    torch.testing.assert_close(out_f, out_r, rtol=rtol, atol=atol + rtol * float(out_r.abs().max()))
    names = ["x", "h0"] + [n for n, _ in cell.named_parameters()]
    for n, a, b in zip(names, g_f, g_r, strict=True):
        scale = float(b.abs().max()) if b.numel() else 0.0
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol + rtol * scale, msg=n)


def inputs(cell, B=3, T=7, seed=2, device="cpu", dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, cell.input_size, generator=g, dtype=dtype).to(device)
    h0 = 0.3 * torch.randn(B, cell.state_size, generator=g, dtype=dtype).to(device)
    return x.requires_grad_(), h0.requires_grad_()


@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
@pytest.mark.parametrize("lengths", [None, [7, 3, 1]], ids=["full", "unequal"])
def test_fast_loop_matches_step_loop(name, hp, lengths):
    cell = perturbed(name, hp)
    x, h0 = inputs(cell)
    assert_same(cell, x, None if lengths is None else torch.tensor(lengths), h0)


@pytest.mark.parametrize("name", [n for n in list_cells() if n not in FUSED])
def test_every_seed_cell_has_a_fast_loop_that_never_calls_step(name, monkeypatch):
    for hp in get_cell_class(name).example_hparams():
        cell = perturbed(name, hp)
        assert cell.fast_loop() is not None, (name, hp)
        x, h0 = inputs(cell)
        ref = cell.reference_sequence(x, torch.tensor([7, 2, 5]), h0)

        def boom(*_a, **_k):
            raise AssertionError("the fast path fell back to the step loop")

        monkeypatch.setattr(cell, "step", boom)
        torch.testing.assert_close(cell.forward_sequence(x, torch.tensor([7, 2, 5]), h0), ref,
                                   rtol=1e-9, atol=1e-11)
        monkeypatch.undo()


@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
def test_inference_path_matches(name, hp):
    """Under no_grad the loop keeps nothing for a backward; same numbers."""
    cell = perturbed(name, hp)
    x, h0 = inputs(cell, B=2, T=5)
    with torch.no_grad():
        fast = cell.forward_sequence(x, None, h0)
        with use_fast_loops(False):
            ref = cell.forward_sequence(x, None, h0)
    torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", ["irnn", "tinyrnn", "tarnn", "ernn"])
@pytest.mark.parametrize(("B", "T"), [(1, 1), (1, 9), (5, 1)])
def test_edge_shapes(name, B, T):
    cell = perturbed(name, {"K": 2})
    x, h0 = inputs(cell, B=B, T=T)
    assert_same(cell, x, None, h0)


def test_two_forwards_before_one_backward():
    """Recycled buffers are only reused after the backward that reads them (gradient
    accumulation over two batches must see both batches' saved tensors)."""
    for name in ("irnn", "dirnn", "tarnn"):
        cell = perturbed(name, {"K": 2})
        grads = []
        for fast in (True, False):
            cell.zero_grad()
            with use_fast_loops(fast):
                a = cell.forward_sequence(inputs(cell, seed=3)[0]).pow(2).sum()
                b = cell.forward_sequence(inputs(cell, seed=4)[0]).sin().sum()
            (a + b).backward()
            grads.append([p.grad.clone() for p in cell.parameters()])
        for gf, gr in zip(*grads, strict=True):
            torch.testing.assert_close(gf, gr, rtol=1e-9, atol=1e-11)


def test_workspace_buffers_are_recycled():
    cell = perturbed("irnn", {"K": 3})
    x, h0 = inputs(cell, B=4, T=16)
    cell.forward_sequence(x, None, h0).sum().backward()
    free = list(WORKSPACE._free)
    assert free, "the backward handed its buffers back"
    ids = {t.data_ptr() for t in free}
    cell.forward_sequence(x, None, h0).sum().backward()
    assert ids & {t.data_ptr() for t in WORKSPACE._free}


def test_training_steps_match_reference():
    """A few Adam steps of a whole model: the same trajectory either way (float64)."""
    spec = ModelSpec("tinyrnn", D_IN, D_H, 3, {"L": 2, "K": 2})
    x = torch.randn(8, 9, D_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 3
    lengths = torch.tensor([9, 9, 4, 7, 9, 2, 9, 5])
    states = []
    for fast in (True, False):
        torch.manual_seed(0)
        model = build_model(spec).double()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        with use_fast_loops(fast):
            for _ in range(5):
                loss = torch.nn.functional.cross_entropy(model(x, lengths), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        states.append(model.state_dict())
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k], rtol=1e-9, atol=1e-11, msg=k)


def test_switch_restores_state():
    assert fast_loops_enabled()
    with use_fast_loops(False):
        assert not fast_loops_enabled()
        with use_fast_loops(True):
            assert fast_loops_enabled()
        assert not fast_loops_enabled()
    assert fast_loops_enabled()


def test_traced_export_path_uses_step():
    """Tracing (ONNX export, torch.jit.trace) follows the step loop, never the fast loop."""
    class Seq(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = perturbed("irnn", {"K": 2}, dtype=torch.float32)

        def forward(self, v):
            return self.cell.forward_sequence(v)

    m, x = Seq(), torch.randn(2, 5, D_IN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated; the exporter still uses it
        traced = torch.jit.trace(m, (x,), check_trace=False)
    graph = str(traced.graph)
    assert "prim::PythonOp" not in graph  # no opaque autograd.Function: the loop is unrolled
    assert graph.count("aten::relu") == 2 * 5  # K x T Euler steps of the step loop
    torch.testing.assert_close(traced(x), m.cell.reference_sequence(x))


def test_training_runs_with_one_cpu_thread(walks, monkeypatch):
    from seqeq.train import TrainConfig, train_model

    monkeypatch.delenv("SEQEQ_CPU_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []
    try:
        model = build_model(ModelSpec("irnn", 2, 5, 2, {"K": 2}))
        train_model(model, walks(n=16, T=6), TrainConfig(epochs=2, batch_size=8),
                    on_epoch=lambda e, r: seen.append(torch.get_num_threads()))
        assert seen == [1, 1]
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(before)


def test_triton_kernels_in_the_interpreter():
    """The Triton kernels' semantics on CPU, through Triton's interpreter (TRITON_INTERPRET=1),
    where Triton is installed (it is not a CPU dependency: skipped otherwise)."""
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    code = """
import torch
from seqeq.cells import create_cell, _triton
from seqeq.cells._fast import use_fast_loops
torch.manual_seed(0)
for name, hp in (("irnn", {"K": 1, "u_kind": "lowrank", "u_rank": 4}),
                 ("irnn", {"K": 3, "activation": "tanh"}),
                 ("irnn", {"K": 2, "u_kind": "permdiag", "activation": "sigmoid"}),
                 ("irnn", {"K": 2, "n_timesteps": 6}),
                 ("tinyrnn", {"L": 3, "K": 2}),
                 ("dirnn", {"L": 2, "K": 3, "activation": "tanh"}),
                 ("dirnn", {"L": 3, "K": 1, "u_kind": "lowrank", "u_rank": 3}),
                 ("dirnn", {"L": 1, "K": 2, "u_kind": "permdiag", "activation": "sigmoid"}),
                 ("ernn", {"K": 1}),
                 ("ernn", {"K": 2, "u_kind": "lowrank", "u_rank": 2, "v_kind": "permdiag",
                           "activation": "tanh"}),
                 ("ernn", {"K": 2, "n_timesteps": 6, "eta_init": -0.3}),
                 ("tarnn", {"K": 3}),
                 ("tarnn", {"K": 2, "u_kind": "permdiag", "w_kind": "lowrank", "w_rank": 2,
                            "activation": "tanh"}),
                 ("tarnn", {"K": 2, "n_timesteps": 6}),
                 ("srnn", {"hyper_size": 5}),
                 ("srnn", {"hyper_size": 3, "activation": "tanh", "no_gate": True})):
    assert name in _triton.KERNELS
    cell = create_cell(name, 5, 20, **hp)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = torch.randn(19, 6, 5, requires_grad=True)
    h0 = (0.3 * torch.randn(19, cell.state_size)).requires_grad_()
    lengths = torch.randint(1, 7, (19,))
    ps = [x, h0, *cell.parameters()]
    out = cell.readout(_triton.sequence(cell, cell.prepare(x), h0, lengths))
    w = torch.randn_like(out)
    got = torch.autograd.grad((out * w).sum(), ps, allow_unused=True)
    with use_fast_loops(False):
        ref = cell.forward_sequence(x, lengths, h0)
    want = torch.autograd.grad((ref * w).sum(), ps, allow_unused=True)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    for a, b in zip(got, want):
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))
"""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=600)


def test_cpu_never_imports_the_gpu_kernels():
    import subprocess
    import sys

    code = ("import sys, torch; from seqeq.models import ModelSpec, build_model; "
            "m = build_model(ModelSpec('irnn', 3, 5, 2, {'K': 2})); "
            "m(torch.randn(2, 4, 3)).sum().backward(); "
            "assert 'seqeq.cells._triton' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- GPU: the Triton kernels and CUDA-graph fallback (skipped without CUDA) ------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize(("name", "hp"), CASES, ids=IDS)
@pytest.mark.parametrize("lengths", [None, [7, 3, 1]], ids=["full", "unequal"])
def test_gpu_path_matches_step_loop(name, hp, lengths):
    """Whatever path a cell takes on the GPU (Triton kernel, CUDA graph, fast loop), float64."""
    cell = perturbed(name, hp, device="cuda")
    x, h0 = inputs(cell, device="cuda")
    lt = None if lengths is None else torch.tensor(lengths, device="cuda")
    assert_same(cell, x, lt, h0)


TRITON_CASES = [("irnn", {"K": K, "u_kind": u, "activation": a})
                for K in (1, 2, 3) for u in ("dense", "lowrank", "permdiag")
                for a in ("relu", "tanh")]
TRITON_CASES += [("irnn", {"K": 2, "n_timesteps": 50}), ("tinyrnn", {"L": 3, "K": 3}),
                 ("tinyrnn", {"L": 3, "K": 1}), ("dirnn", {"L": 3, "K": 3}),
                 ("dirnn", {"L": 2, "K": 2, "u_kind": "lowrank", "u_rank": 4,
                            "activation": "tanh"}),
                 ("ernn", {"K": 1}), ("ernn", {"K": 2}), ("tarnn", {"K": 1}), ("tarnn", {"K": 3}),
                 ("srnn", {})]


@pytest.mark.gpu
@cuda
def test_every_seed_cell_but_tarnn_code_has_a_kernel():
    pytest.importorskip("triton")
    from seqeq.cells import _triton

    x = torch.zeros(2, 3, 9, device="cuda")
    for name in ("irnn", "dirnn", "tinyrnn", "ernn", "tarnn", "srnn"):
        assert _triton.supports(create_cell(name, 9, 16).cuda(), x), name
    assert not _triton.supports(create_cell("tarnn", 9, 16, variant="code").cuda(), x)
    assert not _triton.supports(create_cell("irnn", 9, 16).cuda(), x.double())
    assert not _triton.supports(create_cell("irnn", 9, 16, h_sign=-1).cuda(), x)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize(("name", "hp"), TRITON_CASES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(TRITON_CASES)])
def test_triton_kernel_float32(name, hp):
    """The fused kernels themselves, float32 at a training shape (D = 80), against the step
    loop."""
    pytest.importorskip("triton")
    from seqeq.cells import _triton

    if hp.get("u_kind") == "lowrank":
        hp = {**hp, "u_rank": hp.get("u_rank", 4)}
    cell = perturbed(name, hp, d=9, D=80, dtype=torch.float32, device="cuda")
    x, h0 = inputs(cell, B=64, T=50, device="cuda", dtype=torch.float32)
    assert _triton.supports(cell, x), (name, hp)
    lt = torch.randint(1, 51, (64,), device="cuda")
    with _triton.use_gpu_kernels(True):
        assert_same(cell, x, lt, h0, rtol=2e-4, atol=2e-5)
        assert_same(cell, x, None, h0, rtol=2e-4, atol=2e-5)


@pytest.mark.gpu
@cuda
def test_triton_kernel_is_used_when_enabled(monkeypatch):
    pytest.importorskip("triton")
    from seqeq.cells import _triton

    cell = perturbed("irnn", {"K": 2}, dtype=torch.float32, device="cuda")
    x, h0 = inputs(cell, device="cuda", dtype=torch.float32)
    calls = []
    real = _triton.sequence
    monkeypatch.setattr(_triton, "sequence", lambda *a: calls.append(1) or real(*a))
    with _triton.use_gpu_kernels(True):
        cell.forward_sequence(x, None, h0)
    with _triton.use_gpu_kernels(False):
        cell.forward_sequence(x, None, h0)
    assert calls == [1]


def test_gpu_kernels_are_a_hook_on_the_cell_not_a_name_list():
    """Like ``fast_loop()``, each cell says whether its configuration has a Triton kernel
    (issue 19); _triton.py never asks a cell's name."""
    from seqeq.cells import _triton, list_cells

    with_kernel = {n for n in list_cells() if create_cell(n, 3, 8).gpu_kernel() is not None}
    assert with_kernel == set(_triton.KERNELS) == {"irnn", "dirnn", "tinyrnn", "ernn", "tarnn",
                                                   "srnn"}
    assert create_cell("irnn", 3, 8, h_sign=-1).gpu_kernel() is None
    assert create_cell("tarnn", 3, 8, variant="code").gpu_kernel() is None
    src = (Path(_triton.__file__)).read_text()
    assert "cell.name ==" not in src and "cell.name in" not in src


# ---- The Triton kernels without a GPU (skipped without Triton, as on CI's CPU-only torch) ----
needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None,
    reason="Triton is not installed (it ships with CUDA builds of torch; pip install triton)")
#: shared memory a block may use on an H100 / H200 (sm_90), the GPUs the kernels are sized for
HOPPER_SHARED_BYTES = 232448


@needs_triton
@pytest.mark.slow
def test_triton_kernels_fit_in_hopper_shared_memory():
    """Every kernel, compiled for sm_90 (no GPU needed) with its launch options at the largest
    width it runs (D = MAX_D) and a deep configuration (L = 3, K = 3), fits in an H200's shared
    memory: on the H200, Triton's default pipelining of the DIRNN and TARNN kernels asked for
    264-520 KiB and failed to launch."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from seqeq.cells import _triton

    names = [n for n in dir(_triton) if n.endswith(("_fwd", "_bwd"))]
    assert len(names) == 10, names
    consts = {"L": 3, "K": 3, "ACT": 0, "SAVE": True, "BLOCK_B": 16, "BLOCK_D": _triton.MAX_D,
              "BLOCK_L": 4}
    for name in names:
        fn = getattr(_triton, name)
        sig = {a: ("*i32" if a == "len_ptr" else "*fp32") if a.endswith("_ptr")
               else "i32" if a in ("B", "T", "D") or a.startswith("stride") else "constexpr"
               for a in fn.arg_names}
        cx = {(fn.arg_names.index(k),): v for k, v in consts.items() if k in fn.arg_names}
        assert len(cx) == sum(v == "constexpr" for v in sig.values()), name
        kernel = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=cx),
                                target=GPUTarget("cuda", 90, 32),
                                options=dict(_triton.LAUNCH_OPTIONS.get(name, {})))
        assert kernel.metadata.shared <= HOPPER_SHARED_BYTES, (name, kernel.metadata.shared)

