"""Augmentation: rotations of x/y/z sensor channels (the maths, the channel grouping, the wiring)
and the amplitude distortions that suit any series."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from seqeq.augment import (
    describe_vectors,
    detect_vectors,
    parse_vectors,
    random_rotations,
    rotate_vectors,
    warp_magnitudes,
)
from seqeq.config import RunConfig
from seqeq.errors import SeqeqError

HAR = ["body_acc_x", "body_acc_y", "body_acc_z", "body_gyro_x", "body_gyro_y", "body_gyro_z",
       "total_acc_x", "total_acc_y", "total_acc_z"]
DSA = [f"{u}_{a}{s}" for u in ("T", "RA", "LA") for s in ("acc", "gyro", "mag") for a in "xyz"]


@pytest.mark.parametrize("max_deg", [0.0, 10.0, 45.0, 180.0])
def test_random_rotations_are_rotations_within_the_angle(max_deg):
    r = random_rotations(500, max_deg, torch.Generator().manual_seed(0)).double()
    eye = torch.eye(3, dtype=torch.float64).expand(500, 3, 3)
    assert torch.allclose(r @ r.transpose(1, 2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(500, dtype=torch.float64), atol=1e-5)
    # trace = 1 + 2 cos(angle)
    angle = torch.rad2deg(torch.arccos(((r.diagonal(dim1=1, dim2=2).sum(1) - 1) / 2)
                                       .clamp(-1, 1)))
    assert float(angle.max()) <= max_deg + 0.1
    if max_deg >= 10:  # the angles fill the range, not only its start
        assert float(angle.max()) > 0.8 * max_deg


def _x(B=6, T=5, C=11, seed=0):
    return torch.randn(B, T, C, generator=torch.Generator().manual_seed(seed))


def test_one_rotation_per_body_and_series_and_other_channels_untouched():
    x = _x()
    x[0, 3:] = 0  # padding
    vectors = (((0, 1, 2), (3, 4, 5)), ((6, 7, 8),))
    y = rotate_vectors(x, vectors, 60, torch.Generator().manual_seed(1))
    for trip in ((0, 1, 2), (3, 4, 5), (6, 7, 8)):  # lengths of every vector kept
        assert torch.allclose(y[..., list(trip)].norm(dim=-1), x[..., list(trip)].norm(dim=-1),
                              atol=1e-5)
        assert not torch.allclose(y[..., list(trip)], x[..., list(trip)])
    assert torch.equal(y[..., 9:], x[..., 9:])  # channels in no triplet
    assert torch.equal(y[0, 3:], torch.zeros_like(y[0, 3:]))  # padding stays zero

    def dots(t, a, b):
        return (t[..., list(a)] * t[..., list(b)]).sum(-1)

    # one body turns as one: angles between its vectors are kept ...
    assert torch.allclose(dots(y, (0, 1, 2), (3, 4, 5)), dots(x, (0, 1, 2), (3, 4, 5)), atol=1e-5)
    # ... and two bodies turn independently
    assert not torch.allclose(dots(y, (0, 1, 2), (6, 7, 8)), dots(x, (0, 1, 2), (6, 7, 8)),
                              atol=1e-3)
    # the same series at the same time step is turned by one matrix at every step
    r = torch.linalg.lstsq(x[1, :, 0:3].double(), y[1, :, 0:3].double()).solution
    assert torch.allclose(r.T @ r, torch.eye(3, dtype=torch.float64), atol=1e-4)


def test_rotation_off_or_without_vectors_is_the_identity():
    x = _x()
    g = torch.Generator().manual_seed(0)
    assert rotate_vectors(x, (((0, 1, 2),),), 0, g) is x
    assert rotate_vectors(x, (), 30, g) is x


def test_detects_triplets_from_channel_names():
    assert detect_vectors(HAR) == (((0, 1, 2), (3, 4, 5), (6, 7, 8)),)  # one phone
    assert detect_vectors(DSA) == (((0, 1, 2), (3, 4, 5), (6, 7, 8)),  # one body per unit
                                   ((9, 10, 11), (12, 13, 14), (15, 16, 17)),
                                   ((18, 19, 20), (21, 22, 23), (24, 25, 26)))
    assert detect_vectors(["AccX", "AccY", "AccZ", "hr"]) == (((0, 1, 2),),)
    assert detect_vectors(["z", "x", "y"]) == (((1, 2, 0),),)  # x, y, z order, wherever they are
    assert detect_vectors(["max", "may", "temp"]) == ()  # no z: no triplet
    assert detect_vectors(["value"]) == ()
    assert detect_vectors(["c0", "c1", "c2"]) == ()


def test_parses_a_users_vectors_and_refuses_bad_ones():
    names = ["ax", "ay", "az", "gx", "gy", "gz", "wx", "wy", "wz", "hr"]
    v = parse_vectors("ax,ay,az,gx,gy,gz; wx,wy,wz", names)
    assert v == (((0, 1, 2), (3, 4, 5)), ((6, 7, 8),))
    assert describe_vectors(v, names) == "ax,ay,az,gx,gy,gz; wx,wy,wz"
    assert parse_vectors(describe_vectors(v, names), names) == v
    assert parse_vectors("none", names) == ()
    assert parse_vectors("auto", names) == detect_vectors(names)
    with pytest.raises(SeqeqError, match="unknown channel.*'bx'"):
        parse_vectors("bx,ay,az", names)
    with pytest.raises(SeqeqError, match="not a multiple of 3"):
        parse_vectors("ax,ay", names)
    with pytest.raises(SeqeqError, match="twice"):
        parse_vectors("ax,ay,az;ax,gy,gz", names)


def test_seqdata_checks_and_keeps_its_vectors(walks):
    d = walks(n=12, T=6, C=3)
    with pytest.raises(ValueError, match="triplets"):
        replace(d, vectors=(((0, 1, 5),),))  # no channel 5
    d = replace(d, vectors=(((0, 1, 2),),))
    assert d.subset(np.arange(4)).vectors == (((0, 1, 2),),)


def _train(data, rotate, seed=0):
    from seqeq.models import ModelSpec, build_model
    from seqeq.train import TrainConfig, train_model

    model = build_model(ModelSpec("gru", data.n_channels, 6, 2), seed=0)
    train_model(model, data, TrainConfig(epochs=2, batch_size=16, seed=seed, rotate_deg=rotate))
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_training_rotates_only_data_with_vectors_and_is_seeded(walks):
    plain = walks(n=48, T=8, C=3)
    vec = replace(plain, vectors=(((0, 1, 2),),))
    assert torch.equal(_train(plain, 30), _train(plain, 0))  # nothing to turn
    assert torch.equal(_train(vec, 0), _train(plain, 0))  # off
    assert not torch.equal(_train(vec, 30), _train(vec, 0))
    assert torch.equal(_train(vec, 30), _train(vec, 30))  # same seed, same rotations
    assert not torch.equal(_train(vec, 30, seed=1), _train(vec, 30, seed=0))


@pytest.mark.parametrize("rotate", [None, 20.0])
def test_search_searches_or_fixes_the_rotation_and_the_final_model_uses_it(
        tmp_path, walks, monkeypatch, rotate):
    import seqeq.search  # noqa: F401  (bound to the real train_model before the spy)
    import seqeq.train
    from seqeq.api import run_on

    used = []
    real = seqeq.train.train_model

    def spy(model, train, cfg, val=None, **kw):
        used.append(cfg.rotate_deg)
        return real(model, train, cfg, val=val, **kw)

    monkeypatch.setattr(seqeq.train, "train_model", spy)  # the final retrain
    data = replace(walks(n=90, T=10, C=3, seed=3), vectors=(((0, 1, 2),),))
    cfg = RunConfig.of(budget_kb=3, trials=3, epochs=1, final_seeds=1, cells=("gru",),
                       device="cpu", rotate=rotate)
    res = run_on(data, walks(n=30, T=10, C=3, seed=4), cfg, tmp_path / "r")
    report = json.loads(open(res.report_json).read())
    best = report["best"]["train"]["rotate_deg"]
    assert used == [best]
    for t in report["trials"]:
        assert ("rotate_deg" in t["params"]) == (rotate is None)
    if rotate is not None:
        assert best == rotate
    else:
        assert best in (0, 15, 30, 45)


def test_search_without_vectors_has_no_rotation_axis(tmp_path, walks):
    from seqeq.api import run_on

    cfg = RunConfig.of(budget_kb=3, trials=2, epochs=1, final_seeds=1, cells=("gru",),
                       device="cpu")
    res = run_on(walks(n=60, T=10, seed=3), None, cfg, tmp_path / "r")
    report = json.loads(open(res.report_json).read())
    assert all("rotate_deg" not in t["params"] for t in report["trials"])
    assert report["best"]["train"]["rotate_deg"] == 0


def test_rotate_out_of_range_is_a_clear_error():
    with pytest.raises(SeqeqError, match="rotate=200 is not an angle"):
        RunConfig.of(rotate=200)


@pytest.mark.parametrize("args, msg", [
    (["--rotate", "lots"], "--rotate 'lots' is neither auto nor an angle"),
    (["--rotate", "-5"], "--rotate -5 is not an angle"),
    (["--vectors", "ax,ay"], "unknown channel"),
])
def test_cli_refuses_bad_rotation_options_in_one_line(tmp_path, walks, args, msg):
    from typer.testing import CliRunner

    from seqeq.cli import app

    d = walks(n=30, T=6, C=2)
    rows = [{"series": i, "t": t, "c0": float(d.X[i, t, 0]), "c1": float(d.X[i, t, 1]),
             "label": d.class_names[d.y[i]]} for i in range(d.n_series) for t in range(6)]
    import pandas as pd

    path = tmp_path / "d.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    r = CliRunner().invoke(app, ["fit", str(path), "--trials", "1", "--epochs", "1",
                                 "--out", str(tmp_path / "o"), *args])
    assert r.exit_code != 0
    assert msg in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_sklearn_estimator_takes_vectors_by_index(tmp_path, walks):
    from seqeq import SeqeqClassifier

    d = walks(n=60, T=8, C=4, seed=2)
    clf = SeqeqClassifier(budget_kb=2, trials=1, epochs=1, cells="gru", device="cpu",
                          rotate=30, vectors=[[(0, 1, 2)]], out=str(tmp_path / "sk"))
    clf.fit(d.X, d.y)
    report = json.loads(open(clf.result_.report_json).read())
    assert report["data"]["vectors"] == "ch0,ch1,ch2"
    assert report["best"]["train"]["rotate_deg"] == 30
    with pytest.raises(SeqeqError, match="vectors="):
        SeqeqClassifier(vectors=[[(0, 1, 9)]], trials=1, epochs=1).fit(d.X, d.y)


# ---- amplitude distortions ---------------------------------------------------------------------
def test_warp_magnitudes_distorts_real_steps_around_the_mean_in_units_of_std():
    gen = torch.Generator().manual_seed(0)
    B, T = 400, 50
    mean = torch.tensor([5.0, -100.0])
    std = torch.tensor([1.0, 40.0])
    x = mean + std * torch.randn(B, T, 2, generator=gen)
    lengths = torch.randint(2, T + 1, (B,), generator=gen)
    lengths[0] = T
    x[torch.arange(T)[None, :] >= lengths[:, None]] = 0.0  # padding
    out = warp_magnitudes(x, lengths, mean, std, 0.1, torch.Generator().manual_seed(1))
    live = torch.arange(T)[None, :] < lengths[:, None]
    assert torch.equal(out[~live], x[~live])  # padding untouched
    # the same distortion in each channel's own units: relative change ~ strength, not offset
    rel = ((out - x) / std)[live]
    assert 0.05 < float(rel.std()) < 0.3
    assert abs(float(((out - mean) / std)[live].mean())) < 0.1  # around the mean, not zero
    # seeded, and off at strength 0
    again = warp_magnitudes(x, lengths, mean, std, 0.1, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    assert warp_magnitudes(x, lengths, mean, std, 0.0, gen) is x
    # smooth: neighbouring steps of one series are scaled alike (no per-step gain noise)
    z = torch.ones(1, 200, 1)
    w = warp_magnitudes(z + 1, torch.tensor([200]), torch.zeros(1), torch.full((1,), 1e-9),
                        0.2, torch.Generator().manual_seed(2))
    assert float((w[0, 1:] - w[0, :-1]).abs().max()) < 0.05 < float((w - 2).abs().max())


def test_augment_default_follows_the_data_size_and_can_be_fixed_or_refused():
    import optuna

    from seqeq.augment import AUGMENT_BELOW, AUGMENT_STRENGTH
    from seqeq.search import _suggest_augment

    def trial():
        return optuna.create_study().ask()

    assert RunConfig.of().search.augment == 0.0  # off by default
    auto = RunConfig.of(augment=None)
    t = trial()
    assert _suggest_augment(t, auto, AUGMENT_BELOW - 1) in (0.0, AUGMENT_STRENGTH)
    assert "augment" in t.params  # searched on small data
    t = trial()
    assert _suggest_augment(t, auto, AUGMENT_BELOW) == 0.0 and "augment" not in t.params
    assert _suggest_augment(trial(), RunConfig.of(augment=0.0), 10) == 0.0
    assert _suggest_augment(trial(), RunConfig.of(augment=0.3), 10_000) == 0.3
    with pytest.raises(SeqeqError, match="augment=2 is not a strength"):
        RunConfig.of(augment=2)
    with pytest.raises(ValueError):
        from seqeq.train import TrainConfig

        TrainConfig(augment=-1)


def test_the_search_and_the_final_model_train_with_the_amplitude_distortions(
        tmp_path, walks, monkeypatch):
    import seqeq.search  # noqa: F401  (bound to the real train_model before the spy)
    import seqeq.train
    from seqeq.api import run_on

    used, calls = [], []
    real = seqeq.train.train_model
    real_warp = seqeq.train.warp_magnitudes

    def spy(model, train, cfg, val=None, **kw):
        used.append(cfg.augment)
        return real(model, train, cfg, val=val, **kw)

    def warp_spy(*a, **kw):
        calls.append(a[4])
        return real_warp(*a, **kw)

    monkeypatch.setattr(seqeq.train, "train_model", spy)  # the final retrain
    monkeypatch.setattr(seqeq.train, "warp_magnitudes", warp_spy)
    cfg = RunConfig.of(budget_kb=3, trials=2, epochs=1, final_seeds=1, cells=("gru",),
                       device="cpu", augment=0.2)
    res = run_on(walks(n=60, T=10, seed=3), None, cfg, tmp_path / "r")
    report = json.loads(open(res.report_json).read())
    assert report["best"]["train"]["augment"] == 0.2 and used == [0.2]
    assert all("augment" not in t["params"] for t in report["trials"])  # fixed: not searched
    assert set(calls) == {0.2} and len(calls) > 2  # the trials and the final model distort


def test_cli_takes_augment_auto_or_a_strength_and_refuses_others(tmp_path, walks):
    from typer.testing import CliRunner

    from seqeq.cli import app

    d = walks(n=30, T=6, C=2)
    import pandas as pd

    rows = [{"series": i, "t": t, "c0": float(d.X[i, t, 0]), "c1": float(d.X[i, t, 1]),
             "label": d.class_names[d.y[i]]} for i in range(d.n_series) for t in range(6)]
    path = tmp_path / "d.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    for bad, msg in (("lots", "--augment 'lots' is neither auto nor a strength"),
                     ("3", "--augment 3 is not a strength")):
        r = CliRunner().invoke(app, ["fit", str(path), "--trials", "1", "--epochs", "1",
                                     "--out", str(tmp_path / "o"), "--augment", bad])
        assert r.exit_code != 0 and msg in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["fit", str(path), "--trials", "1", "--epochs", "1",
                                 "--final-seeds", "1", "--out", str(tmp_path / "o"),
                                 "--augment", "auto", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["best"]["train"]["augment"] in (0, 0.1)
    assert all("augment" in t["params"] for t in report["trials"])  # searched


def test_mix_series_blends_pairs_where_both_run_and_never_mixes_in_padding():
    from seqeq.augment import mix_series

    x = torch.zeros(2, 6, 1)
    x[0, :, 0] = 1.0  # 6 steps of 1
    x[1, :3, 0] = 3.0  # 3 steps of 3, then padding
    lengths = torch.tensor([6, 3])
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        mixed, L, j, lam = mix_series(x, lengths, 0.5, gen)
        assert 0 <= lam <= 1 and sorted(j.tolist()) == [0, 1]
        for i in range(2):
            k = int(j[i])
            assert L[i] == max(lengths[i], lengths[k])
            if k == i:  # blended with itself: unchanged
                torch.testing.assert_close(mixed[i, : L[i]], x[i, : L[i]])
                continue
            a, b = (lam, 1 - lam)
            both = min(int(lengths[i]), int(lengths[k]))
            want = (a * x[i, :both] + b * x[k, :both]) / (a + b)
            torch.testing.assert_close(mixed[i, :both], want)
            # where one series has ended, the other's values alone (never its padding zeros)
            longer = i if lengths[i] > lengths[k] else k
            torch.testing.assert_close(mixed[i, both: L[i]], x[longer, both: L[i]])


def test_mixup_default_and_the_trials_and_final_model_train_with_it(tmp_path, walks,
                                                                    monkeypatch):
    import seqeq.search  # noqa: F401
    import seqeq.train
    from seqeq.api import run_on
    from seqeq.augment import AUGMENT_BELOW, MIXUP_ALPHA
    from seqeq.search import _mixup_for

    assert _mixup_for(RunConfig.of(mixup=None), AUGMENT_BELOW - 1) == MIXUP_ALPHA
    assert _mixup_for(RunConfig.of(mixup=None), AUGMENT_BELOW) == 0.0
    assert _mixup_for(RunConfig.of(mixup=0.3), 10_000) == 0.3
    with pytest.raises(SeqeqError, match="mixup=20 is not a Beta parameter"):
        RunConfig.of(mixup=20)
    calls = []
    real = seqeq.train.mix_series

    def spy(*a, **kw):
        calls.append(a[2])
        return real(*a, **kw)

    monkeypatch.setattr(seqeq.train, "mix_series", spy)
    cfg = RunConfig.of(budget_kb=3, trials=2, epochs=1, final_seeds=1, cells=("gru",),
                       device="cpu", mixup=0.4)
    res = run_on(walks(n=60, T=10, seed=3), None, cfg, tmp_path / "r")
    report = json.loads(open(res.report_json).read())
    assert report["best"]["train"]["mixup"] == 0.4 and set(calls) == {0.4} and len(calls) > 2
    assert "mixup" in open(res.report_html).read()  # the chosen model's training says so


@pytest.mark.parametrize("cell", ["gru", "dirnn", "ernn"])
def test_one_forward_pass_over_a_batch_and_its_mixed_copy_is_two_passes(cell):
    """train_model sends a batch and its mixed copy through the model as one batch of 2B: that
    is the two-pass loss only if no series' output depends on the rest of its batch."""
    from seqeq.augment import mix_series
    from seqeq.models import ModelSpec, build_model

    model = build_model(ModelSpec(cell, 2, 6, 3, conv=4, pool=2), seed=0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 9, 2, generator=gen)
    lengths = torch.tensor([9, 4, 7, 1, 9])
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = 0.0
    xm, Lm, _, _ = mix_series(x, lengths, 0.5, gen)
    both = model(torch.cat([x, xm]), torch.cat([lengths, Lm]))
    torch.testing.assert_close(both[:5], model(x, lengths), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(both[5:], model(xm, Lm), rtol=1e-5, atol=1e-6)


def test_resuming_a_run_recorded_before_mixup_keeps_it_off(tmp_path):
    """A run of a version without ``mixup`` in its run.json trained without it: resuming it
    under today's default (auto) is refused, naming the setting it trained with."""
    import json

    from seqeq.config import RunConfig
    from seqeq.errors import SeqeqError
    from seqeq.run.rundir import _check_resume_matches

    cfg = RunConfig.of(budget_kb=4)
    old = {k: v for k, v in cfg.flat().items() if k not in ("mixup", "augment")}
    (tmp_path / "run.json").write_text(json.dumps({"search": old}))
    with pytest.raises(SeqeqError, match="used 0") as e:
        _check_resume_matches(tmp_path, cfg)
    assert "mixup auto" in e.value.problem and "mixup 0" in e.value.fix
    _check_resume_matches(tmp_path, RunConfig.of(budget_kb=4, mixup=0.0))  # as it trained


def test_warp_time_reads_each_series_at_a_smooth_pace_keeping_order_ends_and_length():
    from seqeq.augment import warp_time

    B, T = 6, 40
    x = torch.arange(T, dtype=torch.float32)[None, :, None].repeat(B, 1, 2)
    x[:, :, 1] *= -2  # the second channel, a multiple of the first: warped alike
    lengths = torch.tensor([40, 40, 25, 10, 2, 1])
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = 0.0
    out = warp_time(x, lengths, 0.3, torch.Generator().manual_seed(3))
    assert out.shape == x.shape
    for b, n in enumerate(lengths.tolist()):
        live = out[b, :n, 0]
        assert live[0] == 0 and torch.isclose(live[-1], torch.tensor(float(n - 1)))  # ends kept
        assert (live.diff() >= 0).all()  # order kept (the map is monotone)
        torch.testing.assert_close(out[b, :n, 1], -2 * live)
        assert (out[b, n:] == 0).all()  # padding untouched
    assert not torch.allclose(out[0, :, 0], x[0, :, 0])  # and it did move the middle
    again = warp_time(x, lengths, 0.3, torch.Generator().manual_seed(3))
    assert torch.equal(again, out)
    assert warp_time(x, lengths, 0.0, torch.Generator()) is x


def test_the_search_and_the_final_model_train_with_time_warping(tmp_path, walks, monkeypatch):
    import seqeq.train
    from seqeq.api import run_on

    calls = []
    real = seqeq.train.warp_time

    def spy(x, lengths, strength, gen):
        calls.append(strength)
        return real(x, lengths, strength, gen)

    monkeypatch.setattr(seqeq.train, "warp_time", spy)
    cfg = RunConfig.of(budget_kb=3, trials=2, epochs=1, final_seeds=1, cells=("gru",),
                       device="cpu", time_warp=0.2)
    res = run_on(walks(n=60, T=10, seed=3), None, cfg, tmp_path / "r")
    report = json.loads(open(res.report_json).read())
    assert report["best"]["train"]["time_warp"] == 0.2 and set(calls) == {0.2}
    assert "time warping of strength 0.2" in open(res.report_html).read()
    with pytest.raises(SeqeqError, match="time_warp=2 is not a strength in 0..1"):
        RunConfig.of(time_warp=2)


def test_time_warp_auto_is_searched_on_small_data_and_fixed_or_refused_otherwise(tmp_path):
    import optuna
    from typer.testing import CliRunner

    from seqeq.augment import AUGMENT_BELOW, TIME_WARP_STRENGTH
    from seqeq.cli import app
    from seqeq.config import search_options
    from seqeq.search import _suggest_time_warp

    auto = RunConfig.of(**search_options({"time_warp": "auto"}))
    assert auto.search.time_warp is None
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = {_suggest_time_warp(study.ask(), auto, AUGMENT_BELOW - 1) for _ in range(20)}
    assert drawn == {0.0, TIME_WARP_STRENGTH}
    assert _suggest_time_warp(study.ask(), auto, AUGMENT_BELOW) == 0.0  # large data: none
    fixed = RunConfig.of(**search_options({"time_warp": "0.2"}))
    assert _suggest_time_warp(study.ask(), fixed, 10) == 0.2
    with pytest.raises(SeqeqError, match="neither auto nor a strength"):
        search_options({"time_warp": "fast"})
    out = CliRunner().invoke(app, ["bench", "har2", "--time-warp", "fast", "--out",
                                   str(tmp_path / "r")])
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert "--time-warp 'fast' is neither auto nor a strength" in out.output
