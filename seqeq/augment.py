"""Training-time augmentation: random rotations of the x/y/z channels of a sensor, and random
amplitude distortions (scaling, smooth magnitude warping, jitter) that suit any series.

A phone or wearable is never worn at quite the same angle twice, so a model that must work on new
people sees each person's data in a slightly rotated frame. Training on randomly rotated copies
of the 3-axis signals (accelerometer, gyroscope, magnetometer) teaches it to ignore that. Measured
on HAR-2 (``benchmarks/augment_har2.py``, 3 seeds, end of a 25-epoch schedule): GRU 93.5 -> 95.9 %
and TARNN 92.7 -> 96.0 % with rotations up to 30 degrees (90 degrees is too much: 93.5 %), while
amplitude scaling, jitter and time shifts did not help.

Amplitude distortions (:func:`warp_magnitudes`) need no knowledge of the channels: each series
is scaled per channel, multiplied by a smooth random curve through a few knots, and given a
little noise, all in units of the channel's standard deviation. Measured on one GRU
configuration over 3 seeds (``benchmarks/augment_small.py``, RESULTS.md "Amplitude
augmentation"): OSULeaf 57.9 -> 62.4 %, ArrowHead 58.3 -> 55.6 %; a prototype cost ACSF1,
whose appliances differ in power, 5 points; scaling and jitter did not help HAR-2's 7,000
series. Searched on or off (``--augment
auto``, below ``AUGMENT_BELOW`` training series) they did not lift the development suite (median
ratio 0.928 -> 0.883 in one run per problem, worst 0.582 -> 0.648), so they are off unless asked
for (``--augment 0.1``).

Which channels form a vector, and which vectors share one device (and so one rotation), is
described by ``SeqData.vectors``: a tuple of *bodies*, each a tuple of channel-index triplets
``(x, y, z)``. The built-in benchmarks know theirs; for files :func:`detect_vectors` finds
triplets from channel names (``acc_x, acc_y, acc_z``; ``T_xacc, T_yacc, T_zacc``) and
:func:`parse_vectors` reads a user's ``--vectors`` description.
"""

from __future__ import annotations

import math

import torch

from .errors import SeqeqError, opt

__all__ = ["Vectors", "random_rotations", "rotate_vectors", "warp_magnitudes", "warp_time",
           "mix_series",
           "detect_vectors",
           "parse_vectors", "describe_vectors", "ROTATE_CHOICES", "AUGMENT_STRENGTH", "MIXUP_ALPHA",
           "AUGMENT_BELOW", "WARP_KNOTS", "TIME_WARP_STRENGTH"]

#: a tuple of bodies; a body is a tuple of (x, y, z) channel-index triplets rotated together
Vectors = tuple[tuple[tuple[int, int, int], ...], ...]

#: maximum rotation angles (degrees) the search tries when the data has vectors
ROTATE_CHOICES = (0, 15, 30, 45)


#: the default strength of the amplitude distortions (:func:`warp_magnitudes`): the standard
#: deviation of the scale and of the warp's knots around 1; the jitter's is 0.3 of it
AUGMENT_STRENGTH = 0.1
#: training sets of fewer series than this get the amplitude distortions by default
AUGMENT_BELOW = 1000
#: mixup's Beta parameter where ``--mixup auto`` turns it on (``seqeq.augment.mix_series``)
MIXUP_ALPHA = 0.5
#: the strength of the time warping (:func:`warp_time`) that ``--time-warp auto`` searches
TIME_WARP_STRENGTH = 0.1
#: knots of the smooth magnitude warp, spread evenly over a series' own length
WARP_KNOTS = 6


def _knot_curve(knots: torch.Tensor, lengths: torch.Tensor, T: int) -> torch.Tensor:
    """Curves ``(B, M, T)`` linear between ``knots (B, M, K)`` spread evenly over each series'
    own length: position t of a series of L steps reads the knots at t / (L - 1) of their span
    (past its end, the last knot)."""
    B, M, K = knots.shape
    L = lengths.to("cpu").clamp(min=2).to(torch.float32)
    pos = (torch.arange(T, dtype=torch.float32)[None, :] / (L[:, None] - 1)).clamp(max=1)
    pos = pos * (K - 1)
    lo = pos.floor().long().clamp(max=K - 2)
    frac = (pos - lo)[:, None, :]
    idx = lo[:, None, :].expand(B, M, T)
    return torch.gather(knots, 2, idx) * (1 - frac) + torch.gather(knots, 2, idx + 1) * frac


def warp_magnitudes(x: torch.Tensor, lengths: torch.Tensor, mean: torch.Tensor,
                    std: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Raw ``x (B, T, C)`` with random amplitude distortions around each channel's mean
    ``mean (C,)``, of strength ``strength`` in units of its ``std (C,)`` (the model's
    normalisation): ``mean + (x - mean) * s * w(t) + e`` with one scale ``s ~ N(1, strength)``
    per series and channel, a warp ``w`` linear between :data:`WARP_KNOTS` knots
    ``~ N(1, strength)`` spread over the series' own steps, and jitter
    ``e ~ N(0, (0.3 strength std)^2)`` per step. Steps past a series' length are left as they
    were. (Around the mean, not zero: a 10 % gain on an offset as large as gravity would move a
    channel by several of its standard deviations.)"""
    if strength <= 0:
        return x
    B, T, C = x.shape
    cpu = dict(generator=gen)
    scale = 1 + strength * torch.randn(B, 1, C, **cpu)
    knots = 1 + strength * torch.randn(B, C, WARP_KNOTS, **cpu)
    warp = _knot_curve(knots, lengths, T)
    noise = 0.3 * strength * torch.randn(B, T, C, **cpu) * std.to("cpu", torch.float32)
    m = mean.to(x)
    out = m + (x - m) * (scale * warp.transpose(1, 2)).to(x) + noise.to(x)
    live = (torch.arange(T, device=x.device)[None, :] < lengths[:, None].to(x.device))[:, :, None]
    return torch.where(live, out, x)


def warp_time(x: torch.Tensor, lengths: torch.Tensor, strength: float,
              gen: torch.Generator) -> torch.Tensor:
    """Raw ``x (B, T, C)`` read at a random smooth pace: each series (all its channels alike)
    is resampled along a monotone time map whose speed is linear between :data:`WARP_KNOTS`
    knots ``~ N(1, strength)`` (at least 0.1) spread over the series' own steps, scaled so the
    map runs from its first step to its last: events keep their order and the series its length
    and ends, but parts of it are stretched and others squeezed. Values between two steps are
    interpolated linearly; steps past a series' length are left as they were."""
    if strength <= 0:
        return x
    B, T, C = x.shape
    if T < 2:
        return x
    knots = (1 + strength * torch.randn(B, 1, WARP_KNOTS, generator=gen)).clamp(min=0.1)
    speed = _knot_curve(knots, lengths, T)[:, 0]
    L = lengths.to("cpu").clamp(min=2)
    Lf = L.to(torch.float32)
    # the source position of output step t: the speed summed over steps 1..t, scaled so the
    # last live step reads the series' last step
    src = torch.cat([torch.zeros(B, 1), torch.cumsum(speed[:, 1:], 1)], 1)
    end = torch.gather(src, 1, (L - 1)[:, None])
    src = (src / end * (Lf[:, None] - 1)).clamp(min=0)
    src = torch.minimum(src, Lf[:, None] - 1)
    i0 = src.floor().long().clamp(max=T - 2)
    w = (src - i0)[:, :, None].to(x)
    i0 = i0.to(x.device)[:, :, None].expand(B, T, C)
    out = torch.gather(x, 1, i0) * (1 - w) + torch.gather(x, 1, i0 + 1) * w
    live = (torch.arange(T, device=x.device)[None, :] < lengths[:, None].to(x.device))[:, :, None]
    return torch.where(live, out, x)


def mix_series(x: torch.Tensor, lengths: torch.Tensor, alpha: float, gen: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mixup of a batch of raw series ``x (B, T, C)``: each series blended with a random other of
    the batch, ``lam * x_i + (1 - lam) * x_j``, one ``lam ~ Beta(alpha, alpha)`` per batch.
    Returns ``(mixed, lengths, partner index, lam)``; the loss weighs the two labels by ``lam``
    and ``1 - lam``. Series of unequal length are blended where both run; where one has ended
    the other's values are taken alone (padding is never mixed in), and a mixed series is as
    long as the longer of the two."""
    B, T, _ = x.shape
    j = torch.randperm(B, generator=gen).to(x.device)
    a = torch.tensor(float(alpha))
    lam = float(torch.distributions.Beta(a, a).sample()) if B > 1 else 1.0
    t = torch.arange(T, device=x.device)[None, :]
    L = lengths.to(x.device)
    wi = lam * (t < L[:, None]).to(x.dtype)[:, :, None]
    wj = (1 - lam) * (t < L[j][:, None]).to(x.dtype)[:, :, None]
    mixed = (wi * x + wj * x[j]) / (wi + wj).clamp_min(1e-12)
    return mixed, torch.maximum(lengths, lengths[j.to(lengths.device)]), j, lam


def random_rotations(n: int, max_deg: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` random 3x3 rotation matrices (float32, CPU): a uniformly random axis and an angle
    uniform in ``[-max_deg, max_deg]`` degrees (Rodrigues' formula)."""
    axis = torch.randn(n, 3, generator=gen)
    axis = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-12)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_deg)
    k = torch.zeros(n, 3, 3)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(1, 2)  # the cross-product matrix of the axis
    s, c = angle.sin()[:, None, None], angle.cos()[:, None, None]
    return torch.eye(3).expand(n, 3, 3) + s * k + (1 - c) * (k @ k)


def rotate_vectors(x: torch.Tensor, vectors: Vectors, max_deg: float,
                   gen: torch.Generator) -> torch.Tensor:
    """``x (B, T, C)`` with every body's triplets turned by one random rotation per series
    (other channels untouched). Padding stays zero: a rotation maps 0 to 0."""
    if max_deg <= 0 or not vectors:
        return x
    out = x.clone()
    for body in vectors:
        r = random_rotations(x.shape[0], max_deg, gen).to(device=x.device, dtype=x.dtype)
        for trip in body:
            idx = list(trip)
            out[..., idx] = torch.einsum("bij,btj->bti", r, x[..., idx])
    return out


def _triplet_templates(names: list[str]) -> list[tuple[str, tuple[int, int, int]]]:
    """``(template, (ix, iy, iz))`` for every name whose one ``x``/``X`` letter can be swapped
    for ``y`` and ``z`` to give two other channels; the last such letter wins (``max_x``)."""
    where = {n: i for i, n in enumerate(names)}
    found, used = [], set()
    for i, n in enumerate(names):
        for p in range(len(n) - 1, -1, -1):
            if n[p] not in "xX":
                continue
            y = n[:p] + ("y" if n[p] == "x" else "Y") + n[p + 1:]
            z = n[:p] + ("z" if n[p] == "x" else "Z") + n[p + 1:]
            if y in where and z in where and not {i, where[y], where[z]} & used:
                trip = (i, where[y], where[z])
                used.update(trip)
                found.append((n[:p] + "{}" + n[p + 1:], trip))
                break
    return found


def detect_vectors(channel_names: list[str]) -> Vectors:
    """x/y/z triplets found in the channel names; ``()`` when there are none.

    When the axis letter leads the sensor's name (``T_xacc``, ``RA_xgyro``: DSA-19's style), what
    precedes it names the device, and each device is its own body. Otherwise (``body_acc_x``,
    ``gyro_x``) all triplets are one body: one phone or wearable, the common case. Anything else
    (several devices named the second way) needs ``--vectors``."""
    found = _triplet_templates(list(channel_names))
    if not found:
        return ()
    heads = [t.split("{}")[0] for t, _ in found]
    if all(t.split("{}")[1] for t, _ in found) and len(set(heads)) > 1:
        order = list(dict.fromkeys(heads))
        return tuple(tuple(trip for (_, trip), h in zip(found, heads, strict=True) if h == head)
                     for head in order)
    return (tuple(trip for _, trip in found),)


def parse_vectors(text: str, channel_names: list[str]) -> Vectors:
    """``--vectors``: ``auto`` (:func:`detect_vectors`), ``none``, or bodies separated by ``;``,
    each a comma-separated list of channel names in x, y, z order, three per sensor:
    ``"acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z; wrist_x,wrist_y,wrist_z"``."""
    text = text.strip()
    if text.lower() == "auto":
        return detect_vectors(channel_names)
    if text.lower() in ("none", "off", ""):
        return ()
    where = {n: i for i, n in enumerate(channel_names)}
    bodies, seen = [], set()
    for part in text.split(";"):
        cols = [c.strip() for c in part.split(",") if c.strip()]
        if not cols:
            continue
        unknown = [c for c in cols if c not in where]
        if unknown:
            raise SeqeqError(f"{opt('vectors')} names unknown channel(s) "
                             f"{', '.join(map(repr, unknown))}",
                             f"Use channel names of the data: {', '.join(channel_names[:12])}"
                             + (", ..." if len(channel_names) > 12 else ""))
        if len(cols) % 3:
            raise SeqeqError(f"{opt('vectors')} body {part.strip()!r} has {len(cols)} channels, "
                             "not a multiple of 3",
                             "List each sensor's x, y and z channels, in order")
        twice = [c for c in cols if c in seen]
        if twice or len(set(cols)) != len(cols):
            raise SeqeqError(f"{opt('vectors')} lists channel {(twice or cols)[0]!r} twice",
                             "Name every channel in at most one triplet")
        seen.update(cols)
        idx = [where[c] for c in cols]
        bodies.append(tuple((idx[k], idx[k + 1], idx[k + 2]) for k in range(0, len(idx), 3)))
    return tuple(bodies)


def describe_vectors(vectors: Vectors, channel_names: list[str]) -> str:
    """The ``--vectors`` text that gives ``vectors`` back (shown in reports and logs)."""
    return "; ".join(",".join(channel_names[i] for t in body for i in t) for body in vectors)
