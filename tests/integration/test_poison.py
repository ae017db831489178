"""Poison messages through a real worker: each is dead-lettered, nothing stalls.

The fuzz corpus of ``tests/unit/test_fuzz_rides.py`` (one message of each poison
kind), interleaved with valid rides, goes into a real topic; a real worker with both
sinks (Elasticsearch and a local lake) must dead-letter every poison message with a
reason, price every valid ride, stay alive and commit everything within a bound.

Kafka's limits decide what "huge" can mean: a topic accepts records up to the
broker's ``message.max.bytes`` (1 048 588 bytes by default) and a producer sends up
to its ``max_request_size`` (1 MiB by default). A 10 MB message therefore never
reaches kefta on a default topic: the producer refuses it (MessageSizeTooLarge).
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError

from kefta.kafka import read_topic
from kefta.settings import Settings
from kefta.simulator import BAD_KINDS, Simulation
from kefta.testing import Endpoints, worker_env
from support.counting import fully_committed, header
from support.sinks import es_client
from support.worker import WorkerProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cleanup_topics")]

MiB = 1024 * 1024
LIMIT_SECONDS = 120


def poison_corpus() -> dict[str, bytes]:
    """One message of each poison kind: the simulator's and the fuzzer's."""
    corpus: dict[str, bytes] = {}
    for message in Simulation(seed=31, bad_fraction=1.0, legacy_fraction=0.3).messages(
        2000
    ):
        corpus.setdefault(message.kind, message.value)
    assert set(corpus) == set(BAD_KINDS)
    canonical = orjson.loads(next(Simulation(seed=32).messages(1)).value)
    rng = random.Random(33)
    bad_ride = {"confort": "luxe", "properties-client": {"latitude": 1}}
    return corpus | {
        "deep_arrays_10000": b"[" * 10_000 + b"]" * 10_000,
        "deep_arrays_in_data": b'{"data":[' + b"[" * 1000 + b"]" * 1000 + b"]}",
        "deep_objects_in_ride": b'{"data":[{"confort":"low","properties-client":'
        + b'{"a":' * 300
        + b"1"
        + b"}" * 300
        + b"}]}",
        "event_time_overflow": orjson.dumps(
            canonical | {"event_time": "0001-01-01T00:00:00+14:00"}
        ),
        "infinity_literal": orjson.dumps(canonical).replace(
            orjson.dumps(canonical["client_lat"]), b"Infinity", 1
        ),
        "invalid_utf8": orjson.dumps(canonical).replace(b"client_name", b"\xff\xfe", 1),
        "random_bytes": rng.randbytes(4096),
        "empty_data": b'{"data":[]}',
        "json_null": b"null",
        "wrapper_of_50_bad_rides": orjson.dumps({"data": [bad_ride] * 50}),
        "garbage_512k": rng.randbytes(512 * 1024),
    }


def valid_edge_cases() -> list[bytes]:
    """Valid rides that once took a sink down: a four-digit year below 1000."""
    canonical = orjson.loads(next(Simulation(seed=34).messages(1)).value)
    return [orjson.dumps(canonical | {"event_time": "0005-06-07T08:09:10.123Z"})]


async def send_all(
    settings: Settings, values: list[bytes], max_request_size: int = MiB
) -> list[tuple[int, int]]:
    """Send ``values`` in order; returns (partition, offset) of each."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        enable_idempotence=True,
        acks="all",
        max_request_size=max_request_size,
    )
    await producer.start()
    try:
        places = []
        for index, value in enumerate(values):
            future = await producer.send(settings.topic, value, key=str(index).encode())
            metadata = await future
            places.append((metadata.partition, metadata.offset))
        return places
    finally:
        await producer.stop()


async def create_topics(settings: Settings, max_message_bytes: int | None) -> None:
    config = (
        {}
        if max_message_bytes is None
        else {"max.message.bytes": str(max_message_bytes)}
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(t, 3, 1, topic_configs=config)
                for t in (settings.topic, settings.priced_topic, settings.dlq_topic)
            ]
        )
    finally:
        await admin.close()


def start_worker(
    settings: Settings, services: Endpoints, names: dict[str, str], tmp: Path
) -> WorkerProcess:
    env = worker_env(
        settings,
        tmp / "data",
        es_url=services.es_url,
        es_index_prefix=names["es_index_prefix"],
        lake_url=str(tmp / "lake"),
        lake_max_seconds="2",
        lake_idle_seconds="1",
        es_flush_seconds="0.5",
    )
    return WorkerProcess(env, tmp / "worker.log").start()


@pytest.fixture
def es_cleanup(services: Endpoints, names: dict[str, str]) -> Any:
    yield
    es = es_client(services.es_url)
    es.indices.delete(index=f"{names['es_index_prefix']}-*", allow_no_indices=True)


async def settle(worker: WorkerProcess, settings: Settings) -> float:
    """Wait until everything is committed or the worker died; seconds taken."""
    started = time.monotonic()

    async def done() -> bool:
        return not worker.alive() or await fully_committed(settings)

    await wait_until(done, LIMIT_SECONDS, "all committed", interval=0.5)
    return time.monotonic() - started


@pytest.mark.usefixtures("es_cleanup")
async def test_every_poison_message_is_dead_lettered_and_nothing_stalls(
    settings: Settings,
    services: Endpoints,
    names: dict[str, str],
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    corpus = poison_corpus()
    valid = [m.value for m in Simulation(seed=35).messages(len(corpus) * 3)]
    valid += valid_edge_cases()
    values: list[bytes] = []
    kinds: list[str] = []
    for kind, value in corpus.items():
        values += [valid.pop(), value, valid.pop()]
        kinds += ["valid", kind, "valid"]
    values += valid
    kinds += ["valid"] * len(valid)
    await create_topics(settings, None)
    places = await send_all(settings, values)

    worker = start_worker(settings, services, names, tmp_path)
    workers.append(worker)
    seconds = await settle(worker, settings)
    dead = await read_topic(settings, settings.dlq_topic)
    priced = await read_topic(settings, settings.priced_topic)
    reasons: dict[tuple[int, int], list[str]] = {}
    for record in dead:
        where = (
            int(header(record, "kefta.source.partition") or -1),
            int(header(record, "kefta.source.offset") or -1),
        )
        reasons.setdefault(where, []).append(header(record, "kefta.reason") or "")
    poison = {place: kind for place, kind in zip(places, kinds, strict=True)}
    poison = {place: kind for place, kind in poison.items() if kind != "valid"}

    assert worker.alive(), worker.log_text()[-3000:]
    assert "pricing agent failed" not in worker.log_text()
    assert await fully_committed(settings), f"not all committed in {seconds:.0f} s"
    assert set(reasons) == set(poison), {poison[p] for p in set(poison) - set(reasons)}
    assert all(r.strip() for rs in reasons.values() for r in rs)
    wrapper = next(p for p, k in poison.items() if k == "wrapper_of_50_bad_rides")
    assert len(reasons[wrapper]) == 50
    assert len(priced) == kinds.count("valid")
    shutil.rmtree(tmp_path / "lake", ignore_errors=True)


@pytest.mark.parametrize("size", [10 * MiB, 12 * MiB])
async def test_a_message_over_the_default_limit_never_reaches_kefta(
    settings: Settings, size: int
) -> None:
    await create_topics(settings, None)

    with pytest.raises(MessageSizeTooLargeError):
        await send_all(settings, [b"x" * size])


@pytest.mark.parametrize(
    ("value_bytes", "topic_limit"),
    [(1_048_400, None), (10 * MiB, 12 * MiB)],
    ids=["largest-default", "10MB-raised-topic"],
)
@pytest.mark.usefixtures("es_cleanup")
async def test_the_largest_poison_message_kafka_accepts_is_dead_lettered(
    settings: Settings,
    services: Endpoints,
    names: dict[str, str],
    workers: list[WorkerProcess],
    tmp_path: Path,
    value_bytes: int,
    topic_limit: int | None,
) -> None:
    valid = [m.value for m in Simulation(seed=36).messages(2)]
    await create_topics(settings, topic_limit)
    await send_all(
        settings, [valid[0], b"[" * value_bytes, valid[1]], max_request_size=16 * MiB
    )

    worker = start_worker(settings, services, names, tmp_path)
    workers.append(worker)
    await settle(worker, settings)
    dead = await read_topic(settings, settings.dlq_topic)

    assert worker.alive()
    assert await fully_committed(settings)
    assert len(dead) == 1
    assert header(dead[0], "kefta.reason")
    assert header(dead[0], "kefta.original_bytes") == str(value_bytes)
    assert header(dead[0], "kefta.truncated") == "true"
