"""Which consumed events a worker still acts on around a rebalance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kefta.app import Ownership

P0, P1 = ("rides", 0), ("rides", 1)


@dataclass
class FakeConsumer:
    assigned: set[Any] = field(default_factory=set)

    def assignment(self) -> set[Any]:
        return self.assigned


@dataclass
class FakeApp:
    consumer: FakeConsumer
    consumer_generation_id: int


@dataclass
class FakeMessage:
    tp: Any
    generation_id: int | None


@dataclass
class FakeEvent:
    message: FakeMessage


def event(tp: Any, generation: int | None) -> FakeEvent:
    return FakeEvent(FakeMessage(tp, generation))


def app_with(assigned: set[Any], generation: int) -> FakeApp:
    return FakeApp(FakeConsumer(assigned), generation)


def test_events_of_the_current_generation_and_assignment_count() -> None:
    ownership = Ownership(app_with({P0, P1}, 3))
    events = [event(P0, 3), event(P1, 3), event(P0, None)]

    assert ownership.select(events) == events


def test_events_of_unassigned_partitions_or_older_generations_do_not_count() -> None:
    ownership = Ownership(app_with({P0}, 4))
    events = [event(P1, 4), event(P0, 3), event(P0, 4)]

    assert ownership.select(events) == [event(P0, 4)]


def test_nothing_counts_between_a_revoke_and_the_next_assignment() -> None:
    app = app_with({P0, P1}, 5)
    ownership = Ownership(app)
    buffered = [event(P0, 5), event(P1, 5)]

    ownership.revoked()
    between = ownership.select(buffered)
    app.consumer_generation_id = 6
    app.consumer.assigned = {P1}
    after = ownership.select([*buffered, event(P1, 6)])

    assert between == []
    assert after == [event(P1, 6)]
