"""Kafka plumbing shared by the worker and the simulator: client options, topics."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from kefta.errors import ConfigError
from kefta.settings import Settings

log = logging.getLogger(__name__)


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured servers and security."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        ca = str(settings.kafka_ca_file) if settings.kafka_ca_file else None
        options["ssl_context"] = create_ssl_context(cafile=ca)
    if settings.kafka_security_protocol.startswith("SASL"):
        password = settings.kafka_password
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_username,
            "sasl_plain_password": password.get_secret_value() if password else None,
        }
    return options


def unreachable(settings: Settings, exc: BaseException) -> ConfigError:
    """The error to raise when no broker answers."""
    return ConfigError(
        f"cannot reach Kafka at {settings.bootstrap} ({exc}); start it with "
        "`scripts/services up` or point KEFTA_BOOTSTRAP at your brokers"
    )


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the ride, priced and dead-letter topics if missing; returns the new ones.

    Topics get ``settings.partitions`` partitions and ``settings.replication``
    replicas. Existing topics are left as they are.
    """
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        raise unreachable(settings, exc) from exc
    try:
        existing = set(await admin.list_topics())
        wanted = [settings.topic, settings.priced_topic, settings.dlq_topic]
        missing = [t for t in wanted if t not in existing]
        if missing:
            await _create(admin, missing, settings)
        return missing
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, names: list[str], s: Settings) -> None:
    topics = [NewTopic(n, s.partitions, s.replication) for n in names]
    try:
        await admin.create_topics(topics)
    except TopicAlreadyExistsError:
        log.debug("topics were created concurrently names=%s", ",".join(names))
    log.info(
        "topics created names=%s partitions=%d replication=%d",
        ",".join(names),
        s.partitions,
        s.replication,
    )


async def partitions_of(settings: Settings, topic: str) -> list[int]:
    """The partition numbers of ``topic``; empty when it does not exist."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(
        p["partition"]
        for t in described
        if t["error_code"] == 0
        for p in t["partitions"]
    )


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The next offset to be written, per partition of ``topic``."""
    from aiokafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in await partitions_of(settings, topic)]
    if not tps:
        return {}
    consumer = await _started_consumer(settings)
    try:
        ends = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def committed_offsets(
    settings: Settings, group: str, topic: str
) -> dict[int, int]:
    """The offsets ``group`` committed on ``topic``, per partition (0 when none)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset
        for tp, meta in offsets.items()
        if tp.topic == topic and meta.offset >= 0
    }


async def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic`` from the beginning to its current end."""
    from aiokafka import TopicPartition

    ends = await end_offsets(settings, topic)
    consumer = await _started_consumer(settings)
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        while not await _reached(consumer, tps, ends):
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for partition_records in batch.values():
                records.extend(partition_records)
        return records
    finally:
        await consumer.stop()


async def _reached(consumer: Any, tps: list[Any], ends: dict[int, int]) -> bool:
    for tp in tps:
        if await consumer.position(tp) < ends[tp.partition]:
            return False
    return True


async def _started_consumer(settings: Settings) -> Any:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    # Let the consumer's background task begin: stopping it before its first step
    # raises CancelledError out of aiokafka's close().
    await asyncio.sleep(0.01)
    return consumer
