"""The stream app: the only module that knows Faust.

One Faust agent consumes the ride topic as raw bytes (decoding in the agent, so a
poison message can never stall Faust's own deserializer), prices each batch, sends
priced rides and dead letters to Kafka and hands the rides to the sinks. Faust's own
acknowledgements are switched off for the ride topic: a timer commits the commit
points of the offset ledger instead; see :mod:`kefta.ledger` for when.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust

from kefta.pipeline import Pipeline
from kefta.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Worker:
    """A configured Faust app and the pipeline its agent drives."""

    app: faust.App
    pipeline: Pipeline


def faust_settings(settings: Settings) -> dict[str, Any]:
    """Faust configuration for the worker, from kefta's settings."""
    return {
        "broker": [f"kafka://{host}" for host in settings.bootstrap.split(",")],
        "broker_credentials": _credentials(settings),
        "value_serializer": "raw",
        "key_serializer": "raw",
        "store": "memory://",
        "datadir": str(settings.data_dir),
        "topic_disable_leader": True,
        "topic_allow_declare": False,
        "consumer_auto_offset_reset": "earliest",
        # Offsets are committed from the ledger, not from Faust's acknowledgements,
        # so there is nothing for a rebalance or a shutdown to wait for.
        "stream_wait_empty": False,
        "stream_buffer_maxsize": settings.batch_size * 4,
        "broker_commit_interval": 1.0,
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": settings.session_timeout / 5,
        "broker_max_poll_records": settings.batch_size,
        "producer_acks": -1,
        "producer_linger_ms": 5,
        "producer_max_batch_size": 256 * 1024,
        "web_enabled": settings.web_enabled,
        "web_port": settings.web_port,
        "web_bind": settings.web_bind,
        "web_host": "127.0.0.1",
    }


def _credentials(settings: Settings) -> Any:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if protocol in ("SSL", "SASL_SSL"):
        ca = str(settings.kafka_ca_file) if settings.kafka_ca_file else None
        ssl_context = faust.auth.ssl.create_default_context(cafile=ca)
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    password = settings.kafka_password
    return faust.SASLCredentials(
        username=settings.kafka_username,
        password=password.get_secret_value() if password else None,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=ssl_context,
    )


def create_worker(
    settings: Settings, pipeline: Pipeline, scheduler: Any | None = None
) -> Worker:
    """Build the Faust app with its agent, timers and rebalance hooks.

    ``scheduler`` (a :class:`kefta.warehouse.TrainingScheduler`) retrains k-means on
    its interval and after every N lake files, off the event loop.
    """
    app = faust.App(settings.group, **faust_settings(settings))
    topic = app.topic(settings.topic, value_type=bytes, key_type=bytes, acks=False)

    async def commit(points: Mapping[Any, int]) -> bool:
        # Only partitions still assigned can be committed; around a rebalance the
        # rest would leave an empty commit, which aiokafka rejects by crashing the
        # consumer thread.
        assigned = app.consumer.assignment()
        owned = {tp: offset for tp, offset in points.items() if tp in assigned}
        if not owned:
            return False
        # Faust has no public call to commit given offsets; this is the one its
        # own committer ends in, and it reports whether Kafka accepted them.
        return bool(await app.consumer._commit(owned))

    pipeline.fence_writes(commit)
    ownership = Ownership(app)

    @app.agent(topic, concurrency=1)
    async def price(stream: faust.Stream) -> None:
        batches = stream.take_events(settings.batch_size, within=settings.batch_seconds)
        try:
            async for events in batches:
                await pipeline.process(events, ownership.select)
        except Exception as exc:
            # Nothing of the failed batch was committed; stop the worker rather than
            # leave a live process that consumes nothing.
            log.exception("pricing agent failed; stopping the worker")
            await app.crash(exc)
            raise

    lake_files = _FileCounter(pipeline)

    @app.timer(1.0)
    async def tick() -> None:
        await pipeline.tick()
        await pipeline.commit(commit)
        if scheduler is not None:
            scheduler.note_files_written(lake_files.new())

    @app.task
    async def announce() -> None:
        # Logged from inside the app: Faust sets up logging only once it starts.
        log.info(
            "kefta worker started sinks=%s %s",
            ",".join(s.name for s in pipeline.sinks) or "none",
            settings.describe(),
        )

    @app.timer(settings.log_every)
    async def summary() -> None:
        pipeline.log_summary(_lag(app))

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
        ownership.revoked()
        await pipeline.revoke(revoked, commit)

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: set[Any], **_: Any) -> None:
        await pipeline.assign(assigned)
        if scheduler is not None:
            await scheduler.start()

    @app.on_before_shutdown.connect
    async def on_shutdown(app: faust.App, **_: Any) -> None:
        started = time.monotonic()
        await pipeline.close(commit)
        if scheduler is not None:
            await scheduler.stop()
        log.info("worker stopped took_ms=%d", (time.monotonic() - started) * 1000)

    if settings.web_enabled:
        from kefta.web import register_web

        register_web(app, pipeline, settings)
    return Worker(app, pipeline)


class _FileCounter:
    """New lake files since the previous call, from the lake sink's totals."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._lakes: list[Any] = [s for s in pipeline.sinks if s.name == "lake"]
        self._seen = 0

    def new(self) -> int:
        total = int(sum(s.stats.files for s in self._lakes))
        new, self._seen = total - self._seen, total
        return new


class Ownership:
    """Which consumed events this worker may still act on.

    An event counts only if its partition is assigned to this worker in the consumer
    generation it was fetched in. Its partition is replayed from the last commit by
    whoever owns it afterwards (this worker included), so acting on it too would put
    the same rides in the lake twice. Two windows need care: events fetched before a
    rebalance reach the agent after it (Faust's take buffer outlives the revoke), and
    from the revoke until the next assignment the old generation still looks current.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._void: int | None = None

    def revoked(self) -> None:
        """The current generation ends: none of its events counts any more."""
        self._void = self._app.consumer_generation_id

    def select(self, events: Sequence[Any]) -> list[Any]:
        """The events that still count."""
        generation = self._app.consumer_generation_id
        if generation == self._void:
            kept = []
        else:
            assignment = self._app.consumer.assignment()
            kept = [
                e
                for e in events
                if e.message.tp in assignment
                and e.message.generation_id in (None, generation)
            ]
        if len(kept) < len(events):
            log.info(
                "skipped %d messages fetched before the rebalance; "
                "their partition's owner reads them again from the last commit",
                len(events) - len(kept),
            )
        return kept


def _lag(app: faust.App) -> int | None:
    try:
        consumer = app.consumer
        total = 0
        for tp in consumer.assignment():
            read = consumer._read_offset.get(tp)
            total += max(
                0, consumer.highwater(tp) - (read + 1 if read is not None else 0)
            )
        return total
    except Exception:
        return None
