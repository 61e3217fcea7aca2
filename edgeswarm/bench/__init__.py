"""Benchmarks: ``python -m edgeswarm.bench SUITE [--json]``."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["BenchResult"]


@dataclass(frozen=True)
class BenchResult:
    """One measurement; ``--json`` prints it as one JSON object."""

    bench: str
    """Suite name."""
    case: str
    """What was measured within the suite."""
    metric: str
    """Name of the quantity, e.g. ``steps_per_s``."""
    value: float
    """The measured number."""
    unit: str
    """Unit of ``value``, e.g. ``agent_steps/s``."""

    def to_dict(self) -> dict[str, str | float]:
        return asdict(self)
