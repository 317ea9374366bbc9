"""A/B arms: a share of new chats bound for the control join the variant, each for good."""

from __future__ import annotations

import random
import uuid

from shared.routing.experiments import CONTROL, VARIANT, assign
from shared.routing.targets import ExperimentRecord, RoutingTables, Target
from tests.routing.conftest import tolerance

CONTROL_TARGET = Target("echo", "echo-1")
VARIANT_TARGET = Target("echo", "echo-2")
CHATS = 2_000


def _tables(share: float = 0.3, experiment_id: int = 1) -> RoutingTables:
    return RoutingTables(
        experiments=(
            ExperimentRecord(experiment_id, "echo-2 trial", CONTROL_TARGET, VARIANT_TARGET, share),
        )
    )


def _chat_ids(n: int, seed: int = 15) -> list[uuid.UUID]:
    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(n)]


def test_the_variant_gets_its_share_of_new_chats() -> None:
    tables = _tables(0.3)
    arms = [assign(tables, CONTROL_TARGET, chat_id) for chat_id in _chat_ids(CHATS)]
    assert all(a is not None for a in arms)
    variant = sum(1 for a in arms if a is not None and a.arm == VARIANT)
    assert abs(variant / CHATS - 0.3) <= tolerance(0.3, CHATS)
    # Each arm's target is its side of the experiment.
    for a in arms:
        assert a is not None
        assert a.target == (VARIANT_TARGET if a.arm == VARIANT else CONTROL_TARGET)
        assert a.experiment.name == "echo-2 trial"


def test_a_chat_always_gets_the_same_arm() -> None:
    ids = _chat_ids(200, seed=3)
    first = [assign(_tables(), CONTROL_TARGET, i) for i in ids]
    # Asked again (another process, a reloaded catalog): the same answer.
    again = [assign(_tables(), CONTROL_TARGET, i) for i in ids]
    assert [a.arm for a in first if a] == [a.arm for a in again if a]
    assert {a.arm for a in first if a} == {CONTROL, VARIANT}


def test_another_experiment_splits_the_same_chats_independently() -> None:
    ids = _chat_ids(CHATS, seed=8)
    one = [assign(_tables(0.5, 1), CONTROL_TARGET, i) for i in ids]
    two = [assign(_tables(0.5, 2), CONTROL_TARGET, i) for i in ids]
    same = sum(1 for a, b in zip(one, two, strict=True) if a and b and a.arm == b.arm)
    assert abs(same / CHATS - 0.5) <= tolerance(0.5, CHATS)


def test_shares_of_0_and_1_send_every_chat_to_one_arm() -> None:
    ids = _chat_ids(300, seed=4)
    assert {assign(_tables(0.0), CONTROL_TARGET, i).arm for i in ids} == {CONTROL}  # type: ignore[union-attr]
    assert {assign(_tables(1.0), CONTROL_TARGET, i).arm for i in ids} == {VARIANT}  # type: ignore[union-attr]


def test_no_experiment_for_the_target_means_no_arm() -> None:
    chat_id = uuid.uuid4()
    assert assign(RoutingTables(), CONTROL_TARGET, chat_id) is None
    # The variant's own target, or any other, is not the control.
    assert assign(_tables(), VARIANT_TARGET, chat_id) is None
    assert assign(_tables(), Target("openai", "gpt-4"), chat_id) is None
