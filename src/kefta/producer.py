"""Sending simulated or replayed ride requests to Kafka, fast or at a steady rate.

:func:`produce` is what ``kefta produce`` runs: one idempotent aiokafka producer
(``acks=all``), messages keyed by ride id, sent without waiting for each delivery.
Deliveries are awaited in chunks, oldest first, so memory stays bounded and the
statistics count only what the brokers acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import RecordMetadata

from kefta.errors import ConfigError, SinkUnavailable
from kefta.kafka import client_options, unreachable
from kefta.settings import Settings
from kefta.simulator import SimMessage

log = logging.getLogger(__name__)

MAX_BATCH_BYTES: Final = 256 * 1024
LINGER_MS: Final = 5
SLICE: Final = 512
"""Most messages handed to the producer between two looks at the clock."""
MAX_PENDING: Final = 8192
"""Unacknowledged sends kept in flight; past it the oldest are awaited."""
MIN_SLEEP: Final = 0.01
"""Shortest pause of a paced producer: it sleeps in chunks, never per message."""
PROGRESS_EVERY: Final = 0.5

_Pending = deque[tuple[SimMessage, "asyncio.Future[RecordMetadata]"]]


@dataclass(slots=True)
class ProduceStats:
    """What the brokers acknowledged so far, and how long it took.

    ``valid`` and ``invalid`` split ``sent`` by :attr:`SimMessage.valid`; ``kinds``
    counts acknowledged messages per :attr:`SimMessage.kind`; ``bytes`` sums the
    acknowledged values' sizes.
    """

    sent: int = 0
    valid: int = 0
    invalid: int = 0
    bytes: int = 0
    seconds: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)

    def rate(self) -> float:
        """Acknowledged messages per second; 0 before any time has elapsed."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


async def produce(
    messages: Iterable[SimMessage],
    settings: Settings,
    rate: float | None = None,
    duration: float | None = None,
    progress: Callable[[ProduceStats], None] | None = None,
    record: Path | None = None,
) -> ProduceStats:
    """Send ``messages`` to ``settings.topic`` and wait until all are acknowledged.

    ``rate`` paces sending to that many messages per second (as fast as possible when
    None); ``duration`` stops after that many seconds, for endless streams. Each
    message's key is its :attr:`SimMessage.key`, and its partition the one Kafka's
    default partitioner gives that key. ``progress`` is called with the stats about
    every 0.5 s and once at the end; it gets the very object :func:`produce` updates
    and returns, so it must copy what it keeps. With ``record``, one NDJSON line per
    acknowledged message, valid or not (``ride_id``, ``key``, ``valid``, ``kind``,
    ``partition``, ``offset``), is appended to that file.

    Raises ConfigError when no broker answers at ``settings.bootstrap`` or refuses the
    connection settings, when the topic does not exist, when ``record`` cannot be
    opened, or for a non-positive ``rate`` or ``duration``; raises SinkUnavailable
    when Kafka does not acknowledge a message.
    """
    _check_positive("rate", rate)
    _check_positive("duration", duration)
    async with AsyncExitStack() as stack:
        ledger = None if record is None else stack.enter_context(_open_ledger(record))
        producer = await _start(settings)
        stack.push_async_callback(producer.stop)
        run = _Run(producer, settings.topic, ledger, progress)
        await run.check_topic(settings)
        await run.send_all(iter(messages), rate, duration)
        return run.stats


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{name} {value} is not positive; pass a number > 0 or none")


async def _start(settings: Settings) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        **client_options(settings),
        enable_idempotence=True,
        acks="all",
        linger_ms=LINGER_MS,
        max_batch_size=MAX_BATCH_BYTES,
    )
    try:
        await producer.start()
    except KafkaConnectionError as exc:
        await producer.stop()
        raise unreachable(settings, exc) from exc
    except KafkaError as exc:
        await producer.stop()
        raise ConfigError(
            f"Kafka at {settings.bootstrap} refused the producer ({exc!r}); check "
            "KEFTA_KAFKA_SECURITY_PROTOCOL, KEFTA_KAFKA_SASL_MECHANISM and the "
            "credentials"
        ) from exc
    log.info(
        "producer started bootstrap=%s topic=%s protocol=%s",
        settings.bootstrap,
        settings.topic,
        settings.kafka_security_protocol,
    )
    return producer


def _open_ledger(path: Path) -> IO[bytes]:
    try:
        return path.open("ab")
    except OSError as exc:
        raise ConfigError(
            f"record file {path} cannot be opened ({exc.strerror}); "
            "check the folder exists and is writable"
        ) from exc


class _Run:
    """One call of :func:`produce`: the producer, what is in flight, the stats."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        ledger: IO[bytes] | None,
        progress: Callable[[ProduceStats], None] | None,
    ) -> None:
        self.producer, self.topic = producer, topic
        self.ledger, self.progress = ledger, progress
        self.pending: _Pending = deque()
        self.partitions: list[int] = []
        self.stats = ProduceStats()
        self.started = time.monotonic()
        self.next_progress = self.started + PROGRESS_EVERY

    async def check_topic(self, settings: Settings) -> None:
        try:
            self.partitions = sorted(await self.producer.partitions_for(self.topic))
        except KafkaError as exc:
            raise ConfigError(
                f"topic {self.topic!r} is not available at {settings.bootstrap} "
                f"({exc!r}); create it (kefta's worker does at start-up) or set "
                "KEFTA_TOPIC"
            ) from exc

    async def send_all(
        self, messages: Iterator[SimMessage], rate: float | None, duration: float | None
    ) -> None:
        """Send until ``messages`` runs out or ``duration`` elapses, then settle."""
        deadline = None if duration is None else self.started + duration
        issued = 0
        while deadline is None or time.monotonic() < deadline:
            budget = self._budget(rate, issued)
            if budget == 0:
                await self._settle(MAX_PENDING)
                await asyncio.sleep(self._pause(rate, issued, deadline))
                continue
            sent = await self._send_slice(messages, budget)
            if sent == 0:
                break
            issued += sent
            await self._settle(MAX_PENDING)
        await self._settle(0)
        self._report(force=True)

    def _budget(self, rate: float | None, issued: int) -> int:
        """How many messages may go now: a token bucket filled at ``rate``."""
        if rate is None:
            return SLICE
        allowed = int(rate * (time.monotonic() - self.started)) + 1 - issued
        return max(0, min(SLICE, allowed))

    def _pause(self, rate: float | None, issued: int, deadline: float | None) -> float:
        """Seconds until the next token, at least MIN_SLEEP, at most to ``deadline``."""
        assert rate is not None, "only a paced run waits for tokens"
        now = time.monotonic()
        wait = max(MIN_SLEEP, self.started + issued / rate - now)
        return wait if deadline is None else max(0.0, min(wait, deadline - now))

    async def _send_slice(self, messages: Iterator[SimMessage], budget: int) -> int:
        batch = list(islice(messages, budget))
        places = key_partitions([m.key for m in batch], self.partitions)
        send, topic, pending = self.producer.send, self.topic, self.pending
        for message, partition in zip(batch, places, strict=True):
            future = await send(topic, message.value, message.key, partition)
            pending.append((message, future))
        return len(batch)

    async def _settle(self, keep: int) -> None:
        """Collect acknowledgements, oldest first, until at most ``keep`` are left.

        Deliveries already done are collected too, so the stats stay current.
        """
        pending = self.pending
        while pending and (len(pending) > keep or pending[0][1].done()):
            message, future = pending.popleft()
            try:
                metadata = await future
            except KafkaError as exc:
                raise SinkUnavailable(
                    f"Kafka did not acknowledge a message to {self.topic!r} "
                    f"({exc!r}); check the brokers' health, then produce again"
                ) from exc
            self._count(message, metadata)
        self._report(force=False)

    def _count(self, message: SimMessage, metadata: RecordMetadata) -> None:
        stats = self.stats
        stats.sent += 1
        stats.bytes += len(message.value)
        if message.valid:
            stats.valid += 1
        else:
            stats.invalid += 1
        stats.kinds[message.kind] = stats.kinds.get(message.kind, 0) + 1
        if self.ledger is not None:
            self.ledger.write(_ledger_line(message, metadata))

    def _report(self, force: bool) -> None:
        now = time.monotonic()
        self.stats.seconds = now - self.started
        if force or now >= self.next_progress:
            self.next_progress = now + PROGRESS_EVERY
            if self.progress is not None:
                self.progress(self.stats)
        if force:
            log.info(
                "produced sent=%d valid=%d invalid=%d bytes=%d seconds=%.2f rate=%.0f",
                self.stats.sent,
                self.stats.valid,
                self.stats.invalid,
                self.stats.bytes,
                self.stats.seconds,
                self.stats.rate(),
            )


def _ledger_line(message: SimMessage, metadata: RecordMetadata) -> bytes:
    line = {
        "ride_id": message.ride_id,
        "key": message.key.decode(),
        "valid": message.valid,
        "kind": message.kind,
        "partition": metadata.partition,
        "offset": metadata.offset,
    }
    return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)


# -- partitioning ----------------------------------------------------------------------
# aiokafka's default partitioner hashes each key in pure Python, which costs more than
# everything else a send does; hashing a slice of keys at once with numpy gives the
# same partitions (Kafka's murmur2, as every Kafka client computes it) much faster.

_MURMUR_SEED: Final = 0x9747B28C
_MURMUR_M: Final = np.uint32(0x5BD1E995)


def key_partitions(keys: Sequence[bytes], partitions: Sequence[int]) -> list[int]:
    """The partition Kafka's default partitioner picks for each key.

    ``partitions`` are the topic's partition ids, sorted; the result for a key is
    ``partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]``, as in the Java
    client and aiokafka, so the same ride id always lands in the same partition
    whichever client sent it.
    """
    by_length: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(index)
    hashes = np.empty(len(keys), dtype=np.uint32)
    for length, indexes in by_length.items():
        hashes[indexes] = murmur2([keys[i] for i in indexes], length)
    chosen = (hashes & np.uint32(0x7FFFFFFF)) % np.uint32(len(partitions))
    return [partitions[i] for i in chosen.tolist()]


def murmur2(keys: Sequence[bytes], length: int) -> npt.NDArray[np.uint32]:
    """Kafka's murmur2 hash of each of ``keys``, which all have ``length`` bytes."""
    data = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), length)
    words = np.ascontiguousarray(data[:, : length // 4 * 4]).view("<u4")
    h = np.full(len(keys), (_MURMUR_SEED ^ length) & 0xFFFFFFFF, dtype=np.uint32)
    for column in words.T:
        k = column * _MURMUR_M
        k ^= k >> np.uint32(24)
        k *= _MURMUR_M
        h *= _MURMUR_M
        h ^= k
    tail, extra = length & ~3, length % 4
    for offset in range(extra - 1, -1, -1):
        h ^= data[:, tail + offset].astype(np.uint32) << np.uint32(8 * offset)
    if extra:
        h *= _MURMUR_M
    h ^= h >> np.uint32(13)
    h *= _MURMUR_M
    h ^= h >> np.uint32(15)
    return h


def run_produce(
    settings: Settings,
    count: int | None,
    duration: float | None,
    rate: float | None,
    seed: int | None,
    bad_fraction: float,
    legacy_fraction: float,
    from_file: Path | None,
    record: Path | None,
) -> ProduceStats:
    """``kefta produce``: create the topics if missing, send, show progress, sum up."""
    from kefta.kafka import ensure_topics
    from kefta.simulator import Simulation, replay_file

    if from_file is not None:
        messages: Iterable[SimMessage] = replay_file(from_file)
    else:
        simulation = Simulation(
            seed=seed,
            bad_fraction=bad_fraction,
            legacy_fraction=legacy_fraction,
            live=seed is None,
        )
        if count is None and duration is None:
            count = 1000
        messages = simulation.messages(count)
    progress = _ProgressLine(sys.stderr, count)

    async def main() -> ProduceStats:
        await ensure_topics(settings)
        return await produce(messages, settings, rate, duration, progress, record)

    stats = asyncio.run(main())
    progress.finish(stats)
    return stats


class _ProgressLine:
    """A one-line progress display on a terminal, plain lines otherwise."""

    def __init__(self, stream: Any, total: int | None) -> None:
        self._stream, self._total = stream, total
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last = 0.0

    def __call__(self, stats: ProduceStats) -> None:
        now = time.monotonic()
        if not self._tty and now - self._last < 5:
            return
        self._last = now
        end = "\r" if self._tty else "\n"
        self._stream.write(self._line(stats) + end)
        self._stream.flush()

    def _line(self, stats: ProduceStats) -> str:
        if self._total:
            share = stats.sent / self._total
            bar = "#" * int(share * 30)
            return (
                f"produce [{bar:<30}] {stats.sent}/{self._total} {stats.rate():,.0f}/s"
            )
        return f"produce {stats.sent} sent {stats.rate():,.0f}/s"

    def finish(self, stats: ProduceStats) -> None:
        """End the progress line; the summary is the module's INFO log line."""
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
