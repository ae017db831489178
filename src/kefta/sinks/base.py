"""The sink contract.

The stream app hands each sink the priced rides of a batch with :meth:`Sink.add`,
tells it how far each partition was read with the ``upto`` argument, and asks it for
its :meth:`Sink.safe_offset` before moving the offset ledger. A sink never commits
offsets itself and never imports the stream app.

* ``start`` is called once, in the worker's event loop, before the first ride:
  prepare the destination (an index template, say); wait while it is down.
* ``add`` buffers rides and may write; it may wait (back-pressure) while the
  destination is down, but never drops a ride. It raises only for a bug.
* ``tick`` is called about once a second: flush by age, close idle files, probe a
  destination that was down.
* ``safe_offset`` is the offset below which every ride given for that partition is
  durable at the destination (or was dead-lettered by the sink itself).
* ``revoke`` forgets buffered rides of partitions the worker no longer owns; they
  will be consumed again by the new owner from the last commit.
* ``close`` writes everything buffered; called on graceful shutdown.

A sink whose writes are not idempotent (the lake: a file name may be reused with
other content) also has a ``fence`` attribute, an :data:`OwnershipCheck` it calls
before each write: a worker the group has moved on from (one that was frozen past
its session timeout, say) must not overwrite what the new owner wrote.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

from kefta.engine import PricedRide


class TopicPartition(NamedTuple):
    topic: str
    partition: int


OwnershipCheck = Callable[[TopicPartition], Awaitable[bool]]
"""Asks the broker whether this worker still owns a partition; False when the group
has moved it to another member (or is moving it right now)."""


class Sink(Protocol):
    """A destination that makes priced rides durable and says how far it got."""

    name: str

    async def start(self) -> None: ...

    async def add(
        self, rides: Sequence[PricedRide], upto: Mapping[TopicPartition, int]
    ) -> None: ...

    async def tick(self) -> None: ...

    def safe_offset(self, tp: TopicPartition) -> int | None: ...

    def revoke(self, tps: Iterable[TopicPartition]) -> None: ...

    async def close(self) -> None: ...


def source_tp(ride: PricedRide) -> TopicPartition:
    """The Kafka partition a priced ride was read from."""
    return TopicPartition(ride["source_topic"], ride["source_partition"])
