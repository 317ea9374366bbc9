"""A/B splits: which arm a new chat joins, decided once and kept for the chat's life."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from shared.routing.targets import ExperimentRecord, RoutingTables, Target

CONTROL = "control"
VARIANT = "variant"


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment: ExperimentRecord
    arm: str
    target: Target


def bucket(experiment_id: int, chat_id: uuid.UUID) -> float:
    """A uniform number in [0, 1) fixed by the experiment and chat: the same chat always
    lands in the same arm, with no state to keep."""
    digest = hashlib.sha256(f"{experiment_id}:{chat_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(tables: RoutingTables, target: Target, chat_id: uuid.UUID) -> Assignment | None:
    experiment = tables.experiment_for(target)
    if experiment is None:
        return None
    if bucket(experiment.id, chat_id) < experiment.variant_share:
        return Assignment(experiment, VARIANT, experiment.variant)
    return Assignment(experiment, CONTROL, experiment.control)
