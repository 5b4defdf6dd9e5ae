"""C source export: it compiles as strict C99 and gives best.onnx's logits, sample by sample.

Parametrised over the cell registry and both precisions. Each test builds the generated
``model.c`` with a small harness that classifies whole windows from stdin, with
``gcc -std=c99 -Wall -Wextra -Werror -pedantic``; tests skip, saying so, where gcc is absent.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import onnxruntime as ort
import pytest
from _models import perturbed_model

from seqeq import SeqeqError
from seqeq.cells import list_cells
from seqeq.export import export_onnx
from seqeq.export.c_source import c_identifier, export_c
from seqeq.models import ModelSpec

CELLS = list_cells()
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]

HARNESS = r"""
/* stdin: int32 n, T, C; float32 X[n*T*C]; int32 lengths[n]. stdout: float32 logits[n*K] */
#include <stdio.h>
#include <stdlib.h>
#include "PREFIX.h"
int main(void) {
    int hdr[3], i;
    if (fread(hdr, sizeof(int), 3, stdin) != 3) return 2;
    {
        size_t n = (size_t)hdr[0], T = (size_t)hdr[1], C = (size_t)hdr[2];
        float *X = malloc(sizeof(float) * (n * T * C + 1));
        int *L = malloc(sizeof(int) * (n + 1));
        float logits[UPPER_CLASSES];
        if (!X || !L || C != UPPER_CHANNELS) return 3;
        if (fread(X, sizeof(float), n * T * C, stdin) != n * T * C) return 2;
        if (fread(L, sizeof(int), n, stdin) != n) return 2;
        for (i = 0; i < (int)n; ++i) {
            if (PREFIX_classify(X + (size_t)i * T * C, L[i], logits) < 0) return 4;
            fwrite(logits, sizeof(float), UPPER_CLASSES, stdout);
        }
        free(X);
        free(L);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def gcc():
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (gcc) on this machine: the C export is not compiled")
    return cc


def build(gcc, c_path, prefix, extra=()):
    d = c_path.parent
    (d / "harness.c").write_text(HARNESS.replace("PREFIX", prefix)
                                 .replace("UPPER", prefix.upper()))
    exe = d / "run"
    r = subprocess.run([gcc, *STRICT, "-O1", *extra, str(c_path), str(d / "harness.c"),
                        "-o", str(exe), "-lm"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[:3000]
    return exe


def run_c(exe, X, lengths, K, env=None):
    X = np.ascontiguousarray(X, np.float32)
    payload = (np.array(X.shape, np.int32).tobytes() + X.tobytes()
               + np.asarray(lengths, np.int32).tobytes())
    r = subprocess.run([str(exe)], input=payload, capture_output=True, env=env)
    assert r.returncode == 0, r.stderr.decode()[:3000]
    return np.frombuffer(r.stdout, np.float32).reshape(len(X), K)


def onnx_logits(path, X, lengths):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"x": np.asarray(X, np.float32),
                                 "lengths": np.asarray(lengths, np.int64)})[0]


@pytest.fixture(scope="module")
def vowels(staged):
    from seqeq.datasets import load_benchmark

    staged("ucr_uea/JapaneseVowels.npz")  # skips where the staged data is absent
    return load_benchmark("ucr:JapaneseVowels")


@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize("cell", CELLS)
def test_c_gives_best_onnx_logits_on_real_series_of_unequal_length(cell, quantize, vowels,
                                                                   gcc, tmp_path):
    tr, te = vowels
    spec = ModelSpec(cell, tr.n_channels, 10, tr.n_classes)
    model = perturbed_model(spec, *tr.channel_stats())
    names = dict(class_names=tr.class_names, channel_names=tr.channel_names, quantize=quantize)
    info = export_c(model, spec, tmp_path / "vowels.c", **names)
    export_onnx(model, spec, tmp_path / "best.onnx", **names)
    got = run_c(build(gcc, tmp_path / "vowels.c", "vowels"), te.X, te.lengths, tr.n_classes)
    want = onnx_logits(tmp_path / "best.onnx", te.X, te.lengths)
    same = float(np.mean(got.argmax(1) == want.argmax(1)))
    if quantize is None:
        assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))
        assert same == 1.0
    else:  # the same int8 weights: the same numbers up to float rounding
        assert same >= 0.995
        assert np.abs(got - want).max() <= 1e-3 * max(1.0, float(np.abs(want).max()))
    assert info["weight_bytes"] > 0 and info["state_size"] == model.cell.state_size


@pytest.mark.parametrize("cell,hp,pool,conv,members", [
    ("gru", {}, 3, 4, 1), ("dirnn", {"L": 2, "K": 1}, 2, 3, 2), ("ernn", {}, 4, 0, 3),
    ("gru", {"legacy": True}, 3, 4, 2),  # saved before conv_first: pooled, then convolved
    ("tarnn", {"K": 1, "variant": "code"}, 1, 0, 1),  # reads x_{t-1}: kept in the state
    ("tarnn", {"K": 3, "variant": "code", "u_kind": "lowrank", "u_rank": 2,
               "w_kind": "permdiag"}, 3, 4, 2),
    ("fastgrnn", {"u_kind": "permdiag", "w_kind": "permdiag", "activation": "relu", "seed": 2},
     1, 4, 1),
])
@pytest.mark.parametrize("quantize", [None, "int8"])
def test_front_ends_ensembles_and_weight_kinds_compile_and_agree(cell, hp, pool, conv, members,
                                                                 quantize, gcc, tmp_path):
    hp = dict(hp)
    first = not hp.pop("legacy", False)
    spec = ModelSpec(cell, 3, 8, 4, cell_kwargs=hp, pool=pool, conv=conv, members=members,
                     conv_first=first)
    mean, std = np.array([1.0, -2, 3]), np.array([0.5, 2, 3])
    model = perturbed_model(spec, mean, std)
    names = dict(class_names=list("abcd"), channel_names=list("xyz"), quantize=quantize)
    export_c(model, spec, tmp_path / "m.c", **names)
    export_onnx(model, spec, tmp_path / "m.onnx", **names)
    rng = np.random.default_rng(0)
    X = (mean + rng.normal(size=(30, 17, 3)) * std).astype(np.float32)
    L = np.concatenate([np.arange(1, 18), rng.integers(1, 18, 13)])
    got = run_c(build(gcc, tmp_path / "m.c", "m"), X, L, 4)
    want = onnx_logits(tmp_path / "m.onnx", X, L)
    assert np.abs(got - want).max() <= 1e-4
    assert np.array_equal(got.argmax(1), want.argmax(1))


def test_under_address_and_undefined_behaviour_sanitizers(vowels, gcc, tmp_path):
    """One build with ASan and UBSan (any report aborts the run), on the real test series."""
    probe = subprocess.run([gcc, "-fsanitize=address,undefined", "-x", "c", "-", "-o",
                            str(tmp_path / "probe")], input="int main(void){return 0;}",
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"this gcc cannot build with sanitizers: {probe.stderr.strip()[:200]}")
    tr, te = vowels
    spec = ModelSpec("tarnn", tr.n_channels, 12, tr.n_classes, pool=2, conv=4,
                     cell_kwargs={"K": 2, "variant": "code"})
    model = perturbed_model(spec, *tr.channel_stats())
    names = dict(class_names=tr.class_names, channel_names=tr.channel_names, quantize="int8")
    export_c(model, spec, tmp_path / "san.c", **names)
    export_onnx(model, spec, tmp_path / "san.onnx", **names)
    exe = build(gcc, tmp_path / "san.c", "san",
                ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"])
    got = run_c(exe, te.X[:60], te.lengths[:60], tr.n_classes,
                env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1"})
    want = onnx_logits(tmp_path / "san.onnx", te.X[:60], te.lengths[:60])
    assert np.array_equal(got.argmax(1), want.argmax(1))


def test_source_is_self_contained_and_its_header_describes_the_model(gcc, tmp_path):
    spec = ModelSpec("gru", 2, 6, 3)
    model = perturbed_model(spec, np.zeros(2), np.ones(2))
    classes = ['say "hi"', "café", "a\\b"]
    info = export_c(model, spec, tmp_path / "My-Model 1.c", class_names=classes,
                    channel_names=["acc x", "gyro?"], quantize="int8")
    prefix = c_identifier("My-Model 1")
    assert prefix == "my_model_1" and info["prefix"] == prefix
    src = (tmp_path / "My-Model 1.c").read_text()
    hdr = (tmp_path / "My-Model 1.h").read_text()
    assert set(re.findall(r"#include\s*[<\"]([^>\"]+)", src)) == {"stdint.h", "math.h",
                                                                   "My-Model 1.h"}
    assert not re.search(r"\b(malloc|calloc|realloc|free|printf)\b", src)
    assert re.search(r"static const int8_t q\d+\[", src)  # int8 weights, in flash
    for macro, value in (("CHANNELS", 2), ("CLASSES", 3), ("STATE_SIZE", 6),
                         ("WEIGHT_BYTES", info["weight_bytes"]),
                         ("STATE_BYTES", info["state_bytes"]),
                         ("SCRATCH_BYTES", info["scratch_bytes"])):
        assert f"#define MY_MODEL_1_{macro} {value}\n" in hdr
    # the class and channel names reach C byte for byte (quotes, backslashes, UTF-8)
    (tmp_path / "names.c").write_text(
        '#include <stdio.h>\n#include "My-Model 1.h"\nint main(void) { int i;\n'
        " for (i = 0; i < MY_MODEL_1_CLASSES; ++i) printf(\"%s\\n\", my_model_1_class_names[i]);\n"
        " for (i = 0; i < MY_MODEL_1_CHANNELS; ++i) printf(\"%s\\n\", "
        "my_model_1_channel_names[i]);\n return 0; }\n")
    exe = tmp_path / "names"
    r = subprocess.run([gcc, *STRICT, str(tmp_path / "My-Model 1.c"), str(tmp_path / "names.c"),
                        "-o", str(exe), "-lm"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True).stdout.decode("utf-8")
    assert out.split("\n")[:5] == classes + ["acc x", "gyro?"]


def test_cli_writes_model_c_and_h_and_refuses_what_it_cannot(tmp_path, walks, gcc):
    from typer.testing import CliRunner

    from seqeq.api import run_on
    from seqeq.cli import app
    from seqeq.config import RunConfig

    cfg = RunConfig.of(budget_kb=3, trials=1, epochs=1, final_seeds=1, cells=("gru",),
                       device="cpu")
    run_on(walks(n=40, T=9, seed=1, unequal=True), None, cfg, tmp_path / "run")
    r = CliRunner().invoke(app, ["export", str(tmp_path / "walks.c"), "--run",
                                 str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "walks.c").is_file() and (tmp_path / "walks.h").is_file()
    r = subprocess.run([gcc, *STRICT, "-c", str(tmp_path / "walks.c"), "-o",
                        str(tmp_path / "walks.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = CliRunner().invoke(app, ["export", str(tmp_path / "x.c"), "--run",
                                 str(tmp_path / "run"), "--streaming"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "*.onnx" in r.output and not (tmp_path / "x.c").exists()


def test_a_cell_that_cannot_stream_is_refused_for_c(tmp_path):
    spec = ModelSpec("ernn", 2, 6, 3, cell_kwargs={"n_timesteps": 20})
    model = perturbed_model(spec, np.zeros(2), np.ones(2))
    with pytest.raises(SeqeqError, match="depend on the step's position"):
        export_c(model, spec, tmp_path / "m.c", class_names=list("abc"),
                 channel_names=["u", "v"])
    assert not (tmp_path / "m.c").exists() and not (tmp_path / "m.h").exists()
