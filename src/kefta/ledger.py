"""The offset ledger: one commit point per partition for every output of the worker.

The worker reads a partition up to some offset; every output (the priced and
dead-letter topics, Elasticsearch, the lake) reports a *safe offset*: the offset
below which everything it was given is durable, or None when it holds nothing
undurable of that partition. The commit point of a partition is the lowest of its
read offset and of every output's safe offset: everything below it is durable
everywhere. Dead-lettered and filtered messages hold nothing, so they advance the
commit point like written ones, and there is no phantom lag.

The worker commits commit points itself instead of acknowledging messages through
Faust: no message object has to be kept until a lake file closes (which may take
minutes), and Faust's known gap bugs in its acknowledgement bookkeeping never apply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from kefta.errors import OffsetRewind
from kefta.sinks.base import TopicPartition

SafeOffset = Callable[[TopicPartition], int | None]
"""An output's safe offset for a partition; None when it holds nothing of it."""


class Ledger:
    """Read offsets, committed offsets, and the rule that gives commit points."""

    def __init__(self, outputs: Iterable[SafeOffset] = ()) -> None:
        self._outputs = list(outputs)
        self._read: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def read(
        self,
        upto: Mapping[TopicPartition, int],
        first: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        """Record that ``upto[tp]`` is the next offset to read of each partition.

        ``first`` holds the first offset read of each partition in this batch: for a
        partition new to the ledger, it is where consumption resumed, the last
        commit. Call it only once every output was given the messages below ``upto``.
        """
        self.check(first or {})
        for tp, offset in (first or {}).items():
            self._committed.setdefault(tp, offset)
        self._read.update(upto)

    def check(self, first: Mapping[TopicPartition, int]) -> None:
        """Raise :class:`~kefta.errors.OffsetRewind` if a batch starting at
        ``first[tp]`` goes back behind what was already read of its partition."""
        for tp, offset in first.items():
            read = self._read.get(tp)
            if read is not None and offset < read:
                raise OffsetRewind(
                    f"partition {tp.topic}/{tp.partition} was read again from offset "
                    f"{offset} after {read} without a rebalance; restart the worker "
                    "to resume from the last commit"
                )

    def commit_points(self) -> dict[TopicPartition, int]:
        """Commit points that moved past the last committed offset, per partition."""
        points = {}
        for tp in self._read:
            point = self.commit_point(tp)
            if point is not None and point > self._committed.get(tp, -1):
                points[tp] = point
        return points

    def commit_point(self, tp: TopicPartition) -> int | None:
        """The offset below which everything read of ``tp`` is durable everywhere;
        None for a partition not read since it was assigned."""
        read = self._read.get(tp)
        if read is None:
            return None
        limits = [s for s in (output(tp) for output in self._outputs) if s is not None]
        return min([read, *limits])

    def committed(self, points: Mapping[TopicPartition, int]) -> None:
        """Record that Kafka accepted the commit of ``points``."""
        self._committed.update(points)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """Drop revoked partitions; their new owner continues from the last commit."""
        for tp in tps:
            self._read.pop(tp, None)
            self._committed.pop(tp, None)

    def uncommitted(self) -> dict[TopicPartition, int]:
        """Messages read but not committed, per partition: what a crash replays."""
        return {
            tp: read - self._committed.get(tp, read) for tp, read in self._read.items()
        }
