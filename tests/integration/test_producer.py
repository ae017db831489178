"""The producer against a real broker: everything sent arrives, keyed and counted.

Needs Kafka at ``KEFTA_BOOTSTRAP`` (127.0.0.1:9092 by default): ``scripts/services up
kafka`` starts one. Each test gets its own uuid-named topic, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import DefaultPartitioner

from kefta.errors import ConfigError
from kefta.producer import ProduceStats, key_partitions, produce
from kefta.rides import RideRequest, Source, decode_message
from kefta.settings import Settings
from kefta.simulator import SimMessage, Simulation

pytestmark = pytest.mark.integration

BOOTSTRAP = os.environ.get("KEFTA_BOOTSTRAP", "127.0.0.1:9092")
START = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
PARTITIONS = 6
CONSUME_SECONDS = 60.0


@pytest.fixture(scope="session")
async def admin() -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        await client.start()
    except KafkaConnectionError as exc:
        await client.close()
        pytest.skip(
            f"no Kafka broker at {BOOTSTRAP} ({exc}); start one with "
            "`scripts/services up kafka` or set KEFTA_BOOTSTRAP"
        )
    yield client
    await client.close()


@pytest.fixture
async def topic(admin: AIOKafkaAdminClient) -> AsyncIterator[str]:
    name = f"kefta-test-{uuid.uuid4().hex}"
    await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    yield name
    await admin.delete_topics([name])


def settings_for(topic: str) -> Settings:
    return Settings(bootstrap=BOOTSTRAP, topic=topic)


async def consume(topic: str, count: int) -> list[ConsumerRecord]:
    """The first ``count`` records of ``topic``, from every partition."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + CONSUME_SECONDS
    try:
        while len(records) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            records.extend(r for batch in batches.values() for r in batch)
    finally:
        await consumer.stop()
    return records


async def test_produce_everything_arrives_keyed_and_counted(
    topic: str, tmp_path: Path
) -> None:
    simulation = Simulation(seed=3, bad_fraction=0.05, legacy_fraction=0.1, start=START)
    messages = list(simulation.messages(5000))
    reports: list[ProduceStats] = []
    ledger = tmp_path / "ledger.ndjson"

    stats = await produce(
        messages, settings_for(topic), progress=reports.append, record=ledger
    )
    records = await consume(topic, len(messages))

    produced = {(m.key, m.value): m for m in messages}
    arrived = [produced[(r.key, r.value)] for r in records]
    assert len(records) == len(messages) == stats.sent
    assert Counter((r.key, r.value) for r in records) == Counter(
        (m.key, m.value) for m in messages
    )
    assert all(m.key == m.ride_id.encode() for m in arrived if m.ride_id is not None)
    assert all(r.partition == _default_partition(r.key) for r in records)
    assert stats.kinds == Counter(m.kind for m in arrived)
    assert stats.invalid == sum(not m.valid for m in arrived) > 150
    assert stats.valid == sum(_accepted(r) for r in records)
    assert stats.bytes == sum(len(r.value or b"") for r in records)
    assert reports[-1] == stats
    assert _ledger_places(ledger) == {(r.partition, r.offset) for r in records}


def _default_partition(key: bytes | None) -> int:
    partitions = list(range(PARTITIONS))
    partition: int = DefaultPartitioner()(key, partitions, partitions)
    return partition


def _accepted(record: ConsumerRecord) -> bool:
    source = Source(record.topic, record.partition, record.offset, record.timestamp)
    results = decode_message(record.value or b"", source)
    return all(isinstance(r, RideRequest) for r in results)


def _ledger_places(path: Path) -> set[tuple[int, int]]:
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert {line["kind"] for line in lines} >= {"canonical", "legacy", "empty"}
    assert all(line["key"] == line["ride_id"] for line in lines if line["ride_id"])
    return {(line["partition"], line["offset"]) for line in lines}


async def test_produce_paced_takes_the_expected_time(topic: str) -> None:
    messages = list(Simulation(seed=4, start=START).messages(1000))

    stats = await produce(messages, settings_for(topic), rate=2000.0)

    assert stats.sent == 1000
    assert 0.4 < stats.seconds < 1.5


async def test_produce_duration_stops_an_endless_stream(topic: str) -> None:
    endless = Simulation(seed=5, start=START).messages(None)

    stats = await produce(endless, settings_for(topic), rate=500.0, duration=1.0)

    assert 1.0 <= stats.seconds < 2.0
    assert 400 <= stats.sent <= 600


async def test_produce_slow_rate_stops_at_the_duration(topic: str) -> None:
    endless = Simulation(seed=7, start=START).messages(None)

    stats = await produce(endless, settings_for(topic), rate=2.0, duration=1.2)

    assert 2 <= stats.sent <= 4
    assert stats.seconds < 1.6


async def test_produce_max_rate_reports_progress(topic: str) -> None:
    messages = list(Simulation(seed=6, start=START).messages(50_000))
    reports: list[ProduceStats] = []

    stats = await produce(
        messages, settings_for(topic), progress=lambda s: reports.append(_copy(s))
    )

    assert stats.sent == 50_000
    assert [r.sent for r in reports] == sorted(r.sent for r in reports)
    assert stats.rate() > 1000


def _copy(stats: ProduceStats) -> ProduceStats:
    return ProduceStats(
        stats.sent, stats.valid, stats.invalid, stats.bytes, stats.seconds
    )


async def test_produce_unreachable_broker_raises_config_error() -> None:
    settings = Settings(bootstrap="127.0.0.1:1", topic="rides")
    messages: list[SimMessage] = []

    with pytest.raises(ConfigError, match=r"cannot reach Kafka at 127\.0\.0\.1:1"):
        await asyncio.wait_for(produce(messages, settings), timeout=30)


@pytest.mark.parametrize("count", [1, 6, 7, 12])
def test_key_partitions_match_the_default_partitioner(count: int) -> None:
    rng = random.Random(count)
    keys = [rng.randbytes(rng.randrange(0, 41)) for _ in range(5000)]
    partitions = list(range(count))

    chosen = key_partitions(keys, partitions)

    assert chosen == [DefaultPartitioner()(k, partitions, partitions) for k in keys]
