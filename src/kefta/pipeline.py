"""What the worker does with each batch, independent of Faust.

:class:`Pipeline` decodes a batch of consumed messages, prices the valid rides with
the engine, sends priced rides and dead letters to Kafka, hands the rides to the sinks,
and acknowledges through the :class:`~kefta.ledger.Ledger` what every output holds
durably. The stream app calls it; tests drive it with plain objects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson

from kefta.engine import PricedRide, price_rides
from kefta.ledger import Ledger
from kefta.pricing import Tariff
from kefta.privacy import Protector
from kefta.rides import Rejection, RideRequest, Source, decode_message
from kefta.sinks.base import Sink, TopicPartition

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
MAX_DEAD_LETTER_BYTES: Final = 512 * 1024
"""Original bytes kept in a dead letter; larger messages are cut (and say so), so a
poison message near Kafka's size limit cannot make its own dead letter too big."""
Committer = Callable[[Mapping[TopicPartition, int]], Awaitable[bool]]
"""Commits offsets to Kafka; True when the broker accepted them."""


class Message(Protocol):
    topic: str
    partition: int
    offset: int
    timestamp: float
    headers: Any


class Event(Protocol):
    """A consumed Kafka message as the stream hands it over (a Faust event)."""

    value: bytes
    message: Message


class Producer(Protocol):
    """Sends one record; the returned awaitable resolves once Kafka acknowledged it."""

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: Headers
    ) -> Awaitable[Any]: ...


@dataclass
class Counters:
    """Totals since the worker started."""

    messages: int = 0
    priced: int = 0
    started: float = field(default_factory=time.monotonic)

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.priced / elapsed if elapsed > 0 else 0.0


class DeadLetters:
    """The dead-letter topic: every rejected message, with why and where from."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self.count = 0
        self.by_class: Counter[str] = Counter()
        """Dead letters sent since start, by error class."""
        self._producer = producer
        self._topic = topic

    async def reject(self, rejection: Rejection, event: Event) -> Awaitable[Any]:
        """Queue the original bytes of a rejected message; await the result to know
        Kafka has it."""
        source = rejection.source
        headers = dead_letter_headers(
            rejection.reason, rejection.error_class, source, rejection.index
        )
        key = (
            f"{source.topic}/{source.partition}/{source.offset}/{rejection.index or 0}"
        )
        original = list(event.message.headers or [])
        value = event.value or b""
        if len(value) > MAX_DEAD_LETTER_BYTES:
            headers += [
                ("kefta.truncated", b"true"),
                ("kefta.original_bytes", str(len(value)).encode()),
            ]
            value = value[:MAX_DEAD_LETTER_BYTES]
        self.count += 1
        self.by_class[rejection.error_class] += 1
        return await self._producer.send(
            self._topic, key.encode(), value, original + headers
        )

    async def refused(self, ride: PricedRide, reason: str, error_class: str) -> None:
        """Send a priced ride that a sink refused, and wait until Kafka has it."""
        source = Source(
            ride["source_topic"], ride["source_partition"], ride["source_offset"]
        )
        headers = dead_letter_headers(reason, error_class, source, None)
        headers.append(("kefta.ride_id", ride["ride_id"].encode()))
        future = await self._producer.send(
            self._topic, ride["ride_id"].encode(), orjson.dumps(ride), headers
        )
        await future
        self.count += 1
        self.by_class[error_class] += 1


@dataclass
class _Batch:
    rides: list[RideRequest] = field(default_factory=list)
    rejections: list[tuple[Rejection, Event]] = field(default_factory=list)
    upto: dict[TopicPartition, int] = field(default_factory=dict)
    first: dict[TopicPartition, int] = field(default_factory=dict)


class Pipeline:
    """Decode, price, fan out, and move the ledger, one batch at a time."""

    def __init__(
        self,
        tariff: Tariff,
        producer: Producer,
        priced_topic: str,
        dead_letters: DeadLetters,
        sinks: Sequence[tuple[Sink, Protector]] = (),
        priced_protector: Protector = list,
    ) -> None:
        self.tariff = tariff
        self.counters = Counters()
        self.dead_letters = dead_letters
        self._producer = producer
        self._priced_topic = priced_topic
        self._sinks = list(sinks)
        self._protect_priced = priced_protector
        self.ledger = Ledger(sink.safe_offset for sink, _ in sinks)
        self._lock = asyncio.Lock()
        self._started = False
        self._watchers: list[Callable[[Sequence[PricedRide]], None]] = []
        self._last_summary = (time.monotonic(), 0, 0)

    def watch(self, callback: Callable[[Sequence[PricedRide]], None]) -> None:
        """Call ``callback`` with the priced rides of every batch (before privacy is
        applied per output); it must be quick and must not raise."""
        self._watchers.append(callback)

    @property
    def sinks(self) -> list[Sink]:
        return [sink for sink, _ in self._sinks]

    async def process(
        self,
        events: Sequence[Event],
        keep: Callable[[Sequence[Event]], Sequence[Event]] | None = None,
    ) -> None:
        """Handle one batch; returns once its Kafka outputs are acknowledged.

        ``keep`` selects, once no rebalance hook can run any more, the events this
        worker still owns; the others are left to the partition's owner.
        """
        async with self._lock:
            if keep is not None:
                events = keep(events)
            if not events:
                return
            await self._start_sinks()
            batch = self._decode(events)
            self.ledger.check(batch.first)
            priced = price_rides(batch.rides, self.tariff)
            for watcher in self._watchers:
                watcher(priced)
            await self._send(batch, priced)
            for sink, protect in self._sinks:
                await sink.add(protect(priced), batch.upto)
            self.ledger.read(batch.upto, batch.first)

    def _decode(self, events: Sequence[Event]) -> _Batch:
        batch = _Batch()
        for event in events:
            message = event.message
            tp = TopicPartition(message.topic, message.partition)
            batch.upto[tp] = message.offset + 1
            batch.first.setdefault(tp, message.offset)
            source = Source(
                message.topic,
                message.partition,
                message.offset,
                int(message.timestamp * 1000) if message.timestamp else None,
            )
            for result in decode_message(event.value, source):
                if isinstance(result, RideRequest):
                    batch.rides.append(result)
                else:
                    batch.rejections.append((result, event))
        self.counters.messages += len(events)
        return batch

    async def _send(self, batch: _Batch, priced: list[PricedRide]) -> None:
        pending = [
            await self._producer.send(
                self._priced_topic, ride["ride_id"].encode(), orjson.dumps(ride), []
            )
            for ride in self._protect_priced(priced)
        ]
        for rejection, event in batch.rejections:
            pending.append(await self.dead_letters.reject(rejection, event))
        await asyncio.gather(*pending)
        self.counters.priced += len(priced)

    async def tick(self) -> None:
        """Let the sinks flush by age and close idle files."""
        async with self._lock:
            for sink in self.sinks:
                await sink.tick()

    async def commit(self, commit: Committer) -> int:
        """Commit every partition's commit point that moved; returns how many moved."""
        points = self.ledger.commit_points()
        if points and await commit(points):
            self.ledger.committed(points)
            return len(points)
        return 0

    def fence_writes(self, commit: Committer) -> None:
        """Make sinks with a ``fence`` confirm, before each write, that this worker
        still owns the partition: by committing its commit point, which the broker
        refuses from a member the group has moved on from."""

        async def still_owned(tp: TopicPartition) -> bool:
            point = self.ledger.commit_point(tp)
            if point is None or not await commit({tp: point}):
                return False
            self.ledger.committed({tp: point})
            return True

        for sink in self.sinks:
            if hasattr(sink, "fence"):
                sink.fence = still_owned

    async def assign(self, tps: Iterable[Any]) -> None:
        """Partitions were assigned: start the sinks the first time, and let sinks that
        recover state per partition do so."""
        assigned = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        async with self._lock:
            await self._start_sinks()
            for sink in self.sinks:
                recover = getattr(sink, "assign", None)
                if recover is not None:
                    await recover(assigned)
        log.info(
            "partitions assigned partitions=%s",
            ",".join(f"{tp.topic}/{tp.partition}" for tp in sorted(assigned)) or "none",
        )

    async def _start_sinks(self) -> None:
        # Faust may hand over the first events while the assignment hook still
        # runs; whichever comes first starts the sinks (under the lock).
        if not self._started:
            for sink in self.sinks:
                await sink.start()
            self._started = True

    async def revoke(self, tps: Iterable[Any], commit: Committer) -> None:
        """Commit what is durable, then forget revoked partitions: their new owner
        replays the rest."""
        revoked = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        async with self._lock:
            await self.commit(commit)
            replayed = sum(
                n for tp, n in self.ledger.uncommitted().items() if tp in revoked
            )
            for sink in self.sinks:
                sink.revoke(revoked)
            self.ledger.forget(revoked)
        log.info(
            "partitions revoked partitions=%d replayed_by_next_owner=%d",
            len(revoked),
            replayed,
        )

    async def close(self, commit: Committer) -> None:
        """Write everything buffered and commit it (graceful shutdown)."""
        async with self._lock:
            for sink in self.sinks:
                await sink.close()
            await self.commit(commit)
        log.info(
            "pipeline closed uncommitted=%d", sum(self.ledger.uncommitted().values())
        )

    def log_summary(self, lag: int | None) -> None:
        """One INFO line: totals, and the rate since the previous line."""
        now = time.monotonic()
        then, messages, priced = self._last_summary
        c = self.counters
        dead = self.dead_letters.count
        rate = (c.priced - priced) / (now - then) if now > then else 0.0
        if c.messages != messages or lag:
            log.info(
                "summary messages=%d priced=%d dead_lettered=%d rate=%.0f/s lag=%s "
                "uncommitted=%d",
                c.messages,
                c.priced,
                dead,
                rate,
                "?" if lag is None else lag,
                sum(self.ledger.uncommitted().values()),
            )
        self._last_summary = (now, c.messages, c.priced)


def dead_letter_headers(
    reason: str, error_class: str, source: Source, index: int | None
) -> Headers:
    """Headers that say why and where from, on every dead letter."""
    headers = [
        ("kefta.reason", reason.encode()),
        ("kefta.error_class", error_class.encode()),
        ("kefta.source.topic", source.topic.encode()),
        ("kefta.source.partition", str(source.partition).encode()),
        ("kefta.source.offset", str(source.offset).encode()),
    ]
    if index is not None:
        headers.append(("kefta.ride_index", str(index).encode()))
    return headers
