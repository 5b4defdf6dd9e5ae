"""What a run hands back: :class:`RunResult`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RunResult"]


@dataclass
class RunResult:
    """What a search produced."""

    run_dir: str
    best_spec: dict
    size_bytes: int
    val_score: float
    metric: str
    test_mean: float | None
    test_std: float | None
    test_scores: list[float]
    onnx_path: str
    report_json: str
    report_html: str
    model_dir: str
    n_trials: int
    n_pruned: int
    seconds: float
    #: None (fp32) or "int8": the precision ``size_bytes`` is counted at (what was budgeted)
    quantize: str | None = None
    #: the exported model's own test score (an ensemble's, or the chosen seed's); None untested
    test_score: float | None = None
    #: models averaged into the exported one (1: a single model)
    ensemble: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def size_kib(self) -> float:
        return self.size_bytes / 1024

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extra"] = {k: v for k, v in self.extra.items() if k != "model"}
        d["size_kib"] = self.size_kib
        return d
