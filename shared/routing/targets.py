"""The routing configuration as every process holds it, with the provider catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

POOL_PREFIX = "pool:"
AUTO_CHEAPEST = "auto:cheapest"


@dataclass(frozen=True, slots=True, order=True)
class Target:
    provider: str
    model: str

    def as_json(self) -> dict[str, str]:
        return {"provider": self.provider, "model": self.model}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        return cls(str(data["provider"]), str(data["model"]))

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class Deployment:
    target: Target
    weight: int


@dataclass(frozen=True, slots=True)
class ExperimentRecord:
    id: int
    name: str
    control: Target
    variant: Target
    variant_share: float


@dataclass(frozen=True, slots=True)
class RoutingTables:
    """Admin-edited routing rows: enabled pool deployments and active experiments only."""

    chains: dict[Target, tuple[Target, ...]] = field(default_factory=dict)
    pools: dict[str, tuple[Deployment, ...]] = field(default_factory=dict)
    experiments: tuple[ExperimentRecord, ...] = ()

    def experiment_for(self, target: Target) -> ExperimentRecord | None:
        return next((e for e in self.experiments if e.control == target), None)
