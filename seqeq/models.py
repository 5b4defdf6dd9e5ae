"""The one sequence model: normalise, unroll any :class:`~seqeq.cells.Cell` over time, classify.

``SequenceClassifier(x (B, T, d), lengths (B,)) -> logits (B, C)``. Per-channel normalisation
statistics (from training data) are buffers of the model, so they travel with the weights and into
the ONNX graph. The head reads each series' state at its own last real step.

A model is described by a :class:`ModelSpec` (JSON-serialisable); its size in bytes is known from
the spec alone (:func:`spec_size_bytes`). A spec with ``members > 1`` is an ensemble: N models of
that configuration averaging their logits, built as one model whose cell runs the N member cells
side by side (:class:`~seqeq.cells._ensemble.Ensemble`, :func:`combine_models`). Models are
saved as ``model.safetensors`` + ``model.json`` and loaded without unpickling anything.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .cells import Cell, create_cell, get_cell_class

__all__ = [
    "front_end_names",
    "ModelSpec",
    "SequenceClassifier",
    "build_model",
    "combine_models",
    "spec_param_count",
    "spec_size_bytes",
    "save_model",
    "load_model",
    "gradient_norm_ratio",
]


@dataclass(frozen=True)
class ModelSpec:
    """What to build: a registered cell, its hyperparameters, and the classification task."""

    cell: str
    input_size: int
    hidden_size: int
    num_classes: int
    cell_kwargs: dict[str, Any] = field(default_factory=dict)
    #: the time-parallel front end: blocks of ``pool`` steps, so the recurrence runs over
    #: ``ceil(T / pool)`` steps (1: every step; no parameters). A block is the masked mean of
    #: the input's steps, or, where the convolution reads the input first (``conv_first``), each
    #: filter's largest response in the block
    pool: int = 1
    #: the learned front end: this many causal convolution filters (``CONV_KERNEL`` steps wide,
    #: ReLU), which the cell then reads instead of the raw channels (0: none). Its weights count
    #: in the size like any other
    conv: int = 0
    #: models of this configuration averaged (1: a single model)
    members: int = 1
    #: with both front ends: True, the convolution reads the input at its own rate and the
    #: blocks pool its filters (max); False, it reads the block means (models saved before this
    #: field existed read so, and load so)
    conv_first: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(
            cell=str(d["cell"]),
            input_size=int(d["input_size"]),
            hidden_size=int(d["hidden_size"]),
            num_classes=int(d["num_classes"]),
            cell_kwargs=dict(d.get("cell_kwargs", {})),
            pool=int(d.get("pool", 1)),
            conv=int(d.get("conv", 0)),
            members=int(d.get("members", 1)),
            conv_first=bool(d.get("conv_first", False)),
        )


def spec_param_count(spec: ModelSpec) -> int:
    """Exact learnable scalars of the whole model (cell + linear head), before building it. An
    ensemble's members share one head bias (their N heads are one linear layer)."""
    cls = get_cell_class(spec.cell)
    kw = {k: v for k, v in spec.cell_kwargs.items() if v is not None}
    cell = cls.count_params(spec.conv or spec.input_size, spec.hidden_size, **kw)
    r = cls.readout_size_for(spec.hidden_size, **kw)
    return (spec.members * (conv_param_count(spec.input_size, spec.conv) + cell
                            + r * spec.num_classes) + spec.num_classes)


#: the width in (pooled) steps of the front end's causal convolution
CONV_KERNEL = 5


def front_end_names(spec: dict) -> list[str]:
    """A model's front ends in short, as a result line or table names them: ``["conv 16",
    "pool 6"]`` (``spec``: ``ModelSpec.to_dict()``'s form; [] where the cell reads the series)."""
    names = []
    if spec.get("conv"):
        names.append(f"conv {spec['conv']}")
    if (spec.get("pool") or 1) > 1:
        names.append(f"pool {spec['pool']}")
    return names


def conv_param_count(channels: int, filters: int) -> int:
    """Learnable scalars of one model's convolution front end (weights and biases)."""
    return filters * (channels * CONV_KERNEL + 1) if filters else 0


def spec_size_bytes(spec: ModelSpec, bytes_per_param: int = 4) -> int:
    """Stored size of the model's parameters (incl. the head).

    ``bytes_per_param=4``: fp32, 4 bytes per learnable scalar (exact, from the formula).
    ``bytes_per_param=1``: int8 as exported by ``--quantize int8`` -- the honest size, exact:
    1 byte per quantised weight, 4 bytes per per-row scale, 4 bytes per parameter kept in fp32.
    """
    if bytes_per_param == 4:
        return spec_param_count(spec) * 4
    if bytes_per_param == 1:
        return _int8_size(json.dumps(spec.to_dict(), sort_keys=True))
    raise ValueError("bytes_per_param must be 4 (fp32) or 1 (int8)")


@functools.lru_cache(maxsize=4096)
def _int8_size(spec_json: str) -> int:
    from .export.quantize import int8_size_bytes

    return int8_size_bytes(build_model(ModelSpec.from_dict(json.loads(spec_json)), seed=0))


def pool_time(x: torch.Tensor, lengths: torch.Tensor | None, pool: int
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``x (B, T, d)`` as the mean of each block of ``pool`` steps over the series' real steps
    only (a block past a series' end is 0, so padding never changes a value), with the blocks'
    lengths ``ceil(L / pool)``: ``(B, ceil(T / pool), d)``. Causal: block k reads steps
    ``k*pool .. k*pool + pool - 1``."""
    if pool <= 1:
        return x, lengths
    B, T, _ = x.shape
    m = (torch.ones(B, T, 1, dtype=x.dtype, device=x.device) if lengths is None
         else (torch.arange(T, device=x.device)[None, :, None] < lengths[:, None, None]
               ).to(x.dtype))
    avg = functools.partial(nn.functional.avg_pool1d, kernel_size=pool, stride=pool,
                            ceil_mode=True)
    num = avg((x * m).transpose(1, 2)).transpose(1, 2)  # (B, T', d): the mean of x*m ...
    den = avg(m.transpose(1, 2)).transpose(1, 2)  # ... over the mean of m: the masked mean
    out = num / den.clamp_min(1e-6)
    return out, (None if lengths is None else torch.div(lengths + (pool - 1), pool,
                                                        rounding_mode="floor"))


def max_pool_time(f: torch.Tensor, lengths: torch.Tensor | None, pool: int
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Non-negative features ``f (B, T, d)`` (the convolution's ReLU outputs) as each block of
    ``pool`` steps' largest value over the series' real steps (a step past its end counts as 0,
    which never exceeds a real one), with the blocks' lengths: ``(B, ceil(T / pool), d)``.
    Causal, as :func:`pool_time`."""
    if pool <= 1:
        return f, lengths
    T = f.shape[1]
    if lengths is not None:
        real = torch.arange(T, device=f.device)[None, :, None] < lengths[:, None, None]
        f = f * real.to(f.dtype)
    out = nn.functional.max_pool1d(f.transpose(1, 2), pool, pool, ceil_mode=True)
    return out.transpose(1, 2), (None if lengths is None else torch.div(
        lengths + (pool - 1), pool, rounding_mode="floor"))


class SequenceClassifier(nn.Module):
    def __init__(self, cell: Cell, num_classes: int, pool: int = 1, conv: int = 0,
                 channels: int | None = None, members: int = 1, conv_first: bool = True):
        super().__init__()
        self.cell = cell
        self.pool = int(pool)
        #: the convolution reads the input at its own rate, the blocks pool its filters
        #: (``ModelSpec.conv_first``); without a convolution, the blocks are the input's means
        self.conv_first = bool(conv_first) and bool(conv)
        # the convolution front end of each member, side by side (member k reads filters
        # k*conv .. (k+1)*conv - 1: the ensemble cell splits its input)
        channels = cell.input_size if channels is None else int(channels)
        self.front = (nn.Conv1d(channels, conv * members, CONV_KERNEL) if conv else None)
        #: the raw input's channels (the cell reads the front end's filters where it has one)
        self.input_size = channels
        self.head = nn.Linear(cell.readout_size, num_classes)
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def set_normalisation(self, mean: np.ndarray, std: np.ndarray) -> None:
        std = np.where(np.asarray(std) > 1e-8, std, 1.0)
        self.mean.copy_(torch.as_tensor(np.asarray(mean), dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(np.asarray(std), dtype=self.std.dtype))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inputs(self, x: torch.Tensor, lengths: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the recurrence reads: raw ``x (B, T, d)`` normalised, through the convolution
        front end and pooled (:func:`max_pool_time`), or (no convolution, or a model saved
        before ``conv_first``) pooled (:func:`pool_time`) and then convolved; with its lengths.
        The convolution is causal (zeros before the first step), so a real step never reads
        padding."""
        x = self.normalise(x)
        if self.conv_first:
            return max_pool_time(self.convolve(x), lengths, self.pool)
        x, lengths = pool_time(x, lengths, self.pool)
        return (x if self.front is None else self.convolve(x)), lengths

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution front end's ReLU filters over ``x (B, T, d)``, causal: (B, T, F)."""
        z = nn.functional.pad(x.transpose(1, 2), (CONV_KERNEL - 1, 0))
        return torch.relu(self.front(z)).transpose(1, 2)

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.cell.forward_sequence(*self.inputs(x, lengths))  # (B, R)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, lengths))  # (B, C)

    def regularization(self) -> torch.Tensor:
        """Extra training loss the cell asks for (0 for most cells)."""
        return self.cell.regularization()


def build_model(spec: ModelSpec, seed: int | None = None) -> SequenceClassifier:
    """The model ``spec`` describes, initialised from torch's global generator, or with ``seed``
    from its own (the same weights whatever ran before in the process; the global generator is
    left untouched)."""
    if seed is None:
        d = spec.conv or spec.input_size  # what the cell reads
        if spec.members > 1:
            from .cells._ensemble import Ensemble

            cell = Ensemble(d, spec.hidden_size, member=spec.cell, members=spec.members,
                            **({"split_input": True} if spec.conv else {}), **spec.cell_kwargs)
        else:
            cell = create_cell(spec.cell, d, spec.hidden_size, **spec.cell_kwargs)
        return SequenceClassifier(cell, spec.num_classes, pool=spec.pool, conv=spec.conv,
                                  channels=spec.input_size, members=spec.members,
                                  conv_first=spec.conv_first)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec)


def combine_models(models: list[SequenceClassifier], spec: ModelSpec
                   ) -> tuple[SequenceClassifier, ModelSpec]:
    """N trained models of one single-model ``spec`` (same normalisation) as one ensemble model
    whose logits are the mean of theirs; returns it with its spec (``members=N``)."""
    import dataclasses

    if spec.members != 1 or len(models) < 2:
        raise ValueError("combine_models takes two or more single models of one spec")
    for m in models[1:]:
        if not (torch.equal(m.mean, models[0].mean) and torch.equal(m.std, models[0].std)):
            raise ValueError("ensemble members must share their input normalisation")
    espec = dataclasses.replace(spec, members=len(models))
    ens = build_model(espec, seed=0).to(models[0].mean.device)
    with torch.no_grad():
        for cell, m in zip(ens.cell.cells, models, strict=True):
            cell.load_state_dict(m.cell.state_dict())
        ens.head.weight.copy_(torch.cat([m.head.weight for m in models], dim=1) / len(models))
        ens.head.bias.copy_(torch.stack([m.head.bias for m in models]).mean(0))
        if ens.front is not None:
            ens.front.weight.copy_(torch.cat([m.front.weight for m in models]))
            ens.front.bias.copy_(torch.cat([m.front.bias for m in models]))
        ens.mean.copy_(models[0].mean)
        ens.std.copy_(models[0].std)
    return ens.eval(), espec


def save_model(model: SequenceClassifier, spec: ModelSpec, path: str | Path,
               extra: dict[str, Any] | None = None) -> None:
    """Write ``<path>/model.safetensors`` and ``<path>/model.json`` (atomically)."""
    from safetensors.torch import save as st_save

    from ._io import atomic_write_bytes

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path / "model.safetensors", st_save(tensors))
    meta = {"format": "seqeq-model/1", "spec": spec.to_dict(), **(extra or {})}
    atomic_write_bytes(path / "model.json", json.dumps(meta, indent=2).encode())


#: the largest Euler-step count K or depth L a saved model may ask for (the search uses <= 6)
MAX_STEPS = 64
#: the largest pooling front end a saved model may ask for
MAX_POOL = 4096
#: the most front-end filters a saved model may ask for
MAX_CONV = 1024


def load_model(path: str | Path) -> tuple[SequenceClassifier, ModelSpec, dict[str, Any]]:
    """Load a model saved by :func:`save_model`. No pickle is ever read."""
    from safetensors.torch import load_file

    from .errors import SeqeqError

    path = Path(path)
    jpath, wpath = path / "model.json", path / "model.safetensors"
    if not jpath.is_file() or not wpath.is_file():
        raise SeqeqError(f"no saved model in {path}",
                         "Expected model.json and model.safetensors written by seqeq")
    # Neither file is trusted: model.json must be seqeq's, its spec must describe no more
    # parameters than the weights file can hold (before anything is allocated), and the weights
    # are read by safetensors (tensors only, never code).
    try:
        meta = json.loads(jpath.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != "seqeq-model/1":
            raise SeqeqError(f"{jpath} is not a seqeq model description (format "
                             f"{meta.get('format') if isinstance(meta, dict) else None!r})",
                             "Point at the model/ folder of a seqeq run")
        spec = ModelSpec.from_dict(meta["spec"])
        if min(spec.input_size, spec.hidden_size, spec.num_classes) < 1:
            raise ValueError(f"non-positive sizes in {spec}")
        from .cells._ensemble import MAX_MEMBERS

        if not 1 <= spec.members <= MAX_MEMBERS:
            raise ValueError(f"members={spec.members} is outside 1..{MAX_MEMBERS}")
        if not 1 <= spec.pool <= MAX_POOL:
            raise ValueError(f"pool={spec.pool} is outside 1..{MAX_POOL}")
        if not 0 <= spec.conv <= MAX_CONV:
            raise ValueError(f"conv={spec.conv} is outside 0..{MAX_CONV}")
        for key in ("K", "L"):  # free in parameters, not in compute: bound them explicitly
            v = spec.cell_kwargs.get(key)
            if v is not None and not (isinstance(v, int) and 1 <= v <= MAX_STEPS):
                raise ValueError(f"{key}={v!r} is outside 1..{MAX_STEPS}")
        try:
            n_params, n_bytes = spec_param_count(spec), wpath.stat().st_size
        except SeqeqError as e:  # e.g. an unknown cell: about the file, not the user's flags
            raise ValueError(f"{e.problem} in its spec") from None
        if 4 * n_params > n_bytes:
            raise SeqeqError(f"{jpath.name} in {path} describes {n_params} parameters but "
                             f"{wpath.name} holds only {n_bytes} bytes",
                             "The files do not belong together; re-run the search")
        for key, n in (("class_names", spec.num_classes), ("channel_names", spec.input_size)):
            names = meta.get(key)
            if names is not None and not (isinstance(names, list) and len(names) == n
                                          and all(isinstance(c, str) for c in names)):
                raise ValueError(f"{key} must be {n} strings")
        state = load_file(str(wpath))
        model = build_model(spec)
        model.load_state_dict(state)
    except SeqeqError:
        raise
    except Exception as e:  # corrupt or foreign files
        msg = " ".join(str(e).split())[:300]
        raise SeqeqError(f"cannot read the model in {path} ({type(e).__name__}: {msg})",
                         "Re-run the search or export from an intact run directory") from None
    model.eval()
    return model, spec, meta


#: the gradient diagnostic is exact up to this many readout units, estimated beyond
GRADIENT_PROBES = 64


def gradient_norm_ratio(model: SequenceClassifier, x: torch.Tensor) -> np.ndarray:
    """The papers' diagnostic ``||dh_T / dh_t||`` for t = 1..T (iRNN Fig. 3/8).

    ``x``: an unpadded batch (B, T, d) of raw inputs. Returns an array of length T (the
    recurrence's steps): the Frobenius norm of the Jacobian of the final readout state w.r.t.
    each intermediate state, averaged over the batch. Exact (one backward pass per output unit)
    up to :data:`GRADIENT_PROBES` units; a wider readout (an ensemble of three 133-unit ERNNs has
    399, and the exact diagnostic took 44 s of a 5-minute run) is estimated from a seeded sample
    of that many units, their squared norms scaled to all (unbiased). The model's train/eval mode
    is restored.
    """
    was_training = model.training
    model.eval()
    try:
        return _gradient_norm_ratio(model, x)
    finally:
        model.train(was_training)


def _gradient_norm_ratio(model: SequenceClassifier, x: torch.Tensor) -> np.ndarray:
    with torch.enable_grad():
        xs = model.inputs(x.detach())[0]
        u = model.cell.prepare(xs).detach()
        h = model.cell.init_state(x.shape[0], x.device, x.dtype)
        hs = []
        for t in range(u.shape[1]):  # (pooled: the recurrence's steps, not the input's)
            h = h.detach().requires_grad_(True) if t == 0 else h
            hs.append(h)
            h = model.cell.step(u[:, t], h)
            h.retain_grad()
        # hs[t] is the state entering step t (h_{t}); final feature readout of h_T
        hs = hs[1:] + [h]
        hT = model.cell.readout(h)
        R = hT.shape[1]
        sq = torch.zeros(len(hs), x.shape[0], dtype=x.dtype, device=x.device)
        units = np.arange(R)
        if R > GRADIENT_PROBES:  # a seeded sample of the units, its sum scaled to all of them
            units = np.sort(np.random.default_rng(0).choice(R, GRADIENT_PROBES, replace=False))
        for j in units:
            grads = torch.autograd.grad(hT[:, j].sum(), hs, retain_graph=True, allow_unused=True)
            for t, g in enumerate(grads):
                if g is not None:
                    sq[t] += (g**2).sum(dim=1)
        sq *= R / len(units)
    return sq.sqrt().mean(dim=1).detach().cpu().numpy()
