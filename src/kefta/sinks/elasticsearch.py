"""The Elasticsearch sink: idempotent bulk indexing with a per-status policy.

Rides go to daily indices ``<prefix>-YYYY.MM.DD`` chosen by the ride's *event* date,
with ``_id = ride_id``: a replayed ride lands in the same index under the same id and
overwrites itself, so replays never duplicate. Daily indices (rather than one index or
a data stream) keep retention a matter of deleting old indices, and data streams do
not allow overwriting a document by id.

Per bulk item: 429, 503 and ``es_rejected_execution_exception`` are retried with
jittered exponential backoff for up to ``retry_seconds``; mapping errors (400-class)
go to the dead-letter topic with Elasticsearch's reason; anything else is retried like
an outage. A cluster that cannot be reached is a state, not a crash: the sink logs the
outage once, probes with growing pauses, logs its end once, and meanwhile holds its
buffer (so the ledger commits nothing it has not indexed) and applies back-pressure.

Throughput: each ride is serialized once, when it is added, and the client's bulk
helper sends that text as it is; one bulk request is in flight while the worker
prepares the next batch (a full buffer waits for the request before it, so at most
two bulks' worth are held).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import orjson
from elasticsearch import ApiError, AsyncElasticsearch, TransportError
from elasticsearch import ConnectionError as EsConnectionError
from elasticsearch.helpers import async_streaming_bulk

from kefta.engine import PricedRide
from kefta.sinks.base import TopicPartition, source_tp

log = logging.getLogger(__name__)

DeadLetter = Callable[[PricedRide, str, str], Awaitable[None]]

RETRIABLE_STATUS: Final = frozenset({429, 502, 503, 504})
RETRIABLE_TYPES: Final = frozenset(
    {"es_rejected_execution_exception", "circuit_breaking_exception"}
)


def index_template(prefix: str, replicas: int = 0) -> dict[str, Any]:
    """The composable index template of the ride indices ``<prefix>-*``."""
    keyword = {"type": "keyword"}
    number = {"type": "double"}
    return {
        "index_patterns": [f"{prefix}-*"],
        "priority": 200,
        "template": {
            "settings": {
                "number_of_shards": 1,
                "number_of_replicas": replicas,
                "refresh_interval": "1s",
            },
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "ride_id": keyword,
                    "event_time": {"type": "date"},
                    "agent_timestamp": {"type": "date"},
                    "nomclient": keyword,
                    "telephoneClient": keyword,
                    "locationClient": {"type": "geo_point"},
                    "client_lat": number,
                    "client_lon": number,
                    "nomDriver": keyword,
                    "telephoneDriver": keyword,
                    "locationDriver": {"type": "geo_point"},
                    "driver_lat": number,
                    "driver_lon": number,
                    "distance": number,
                    "confort": keyword,
                    "tier": keyword,
                    "rate_per_km": number,
                    "prix_travel": number,
                    "source_topic": keyword,
                    "source_partition": {"type": "integer"},
                    "source_offset": {"type": "long"},
                },
            },
        },
        "_meta": {"managed_by": "kefta", "schema": "ride/1"},
    }


def index_name(prefix: str, event_time: str) -> str:
    """``kefta-rides-2026.12.03`` for an event time ``2026-12-03T...``."""
    return f"{prefix}-{event_time[:4]}.{event_time[5:7]}.{event_time[8:10]}"


@dataclass
class EsStats:
    """Totals of the sink since start, for logs and metrics."""

    indexed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    bulks: int = 0
    outages: int = 0
    down_since: float | None = None
    statuses: dict[int, int] = field(default_factory=dict)
    last_took_ms: float = 0.0


@dataclass(slots=True)
class _Item:
    ride: PricedRide
    index: str
    source: str
    """The document, serialized once when the ride is added."""
    first_try: float = 0.0

    @property
    def size(self) -> int:
        return len(self.source) + _ACTION_BYTES

    def action(self) -> dict[str, Any]:
        return {
            "_op_type": "index",
            "_index": self.index,
            "_id": self.ride["ride_id"],
            "_source": self.source,
        }


_ACTION_BYTES: Final = 100
"""About what a bulk action line adds to a document."""


class ElasticsearchSink:
    """Buffers priced rides and indexes them in bulk; see the module docstring."""

    name = "elasticsearch"

    def __init__(
        self,
        client: AsyncElasticsearch,
        dead_letter: DeadLetter,
        *,
        prefix: str = "kefta-rides",
        bulk_docs: int = 2000,
        bulk_bytes: int = 5 * 1024 * 1024,
        flush_seconds: float = 1.0,
        retry_seconds: float = 300.0,
        max_backoff: float = 10.0,
        replicas: int = 0,
    ) -> None:
        self.client = client
        self.stats = EsStats()
        self._dead_letter = dead_letter
        self._prefix = prefix
        self._replicas = replicas
        self._bulk_docs, self._bulk_bytes = bulk_docs, bulk_bytes
        self._flush_seconds, self._retry_seconds = flush_seconds, retry_seconds
        self._max_backoff = max_backoff
        self._buffer: list[_Item] = []
        self._bytes = 0
        self._oldest = 0.0
        self._sending: list[_Item] = []
        self._inflight: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # One INFO line per bulk request from the client would drown the sink's own
        # summary line per flush.
        logging.getLogger("elastic_transport.transport").setLevel(logging.WARNING)
        await self.install_template(self._replicas)

    async def install_template(self, replicas: int = 0) -> None:
        """Create or update the index template (idempotent); waits for the cluster."""
        body = index_template(self._prefix, replicas)
        await self._until_available(
            lambda: self.client.indices.put_index_template(name=self._prefix, **body)
        )
        log.info(
            "index template installed name=%s pattern=%s-*", self._prefix, self._prefix
        )

    async def add(
        self, rides: Sequence[PricedRide], upto: Mapping[TopicPartition, int]
    ) -> None:
        if rides and not self._buffer:
            self._oldest = time.monotonic()
        for ride in rides:
            item = _Item(
                ride,
                index_name(self._prefix, ride["event_time"]),
                orjson.dumps(ride).decode(),
            )
            self._buffer.append(item)
            self._bytes += item.size
            if len(self._buffer) >= self._bulk_docs or self._bytes >= self._bulk_bytes:
                await self._dispatch()
        if self._buffer and time.monotonic() - self._oldest >= self._flush_seconds:
            await self._dispatch()

    async def tick(self) -> None:
        if self._inflight is not None and self._inflight.done():
            await self._reap()
        if self._buffer and time.monotonic() - self._oldest >= self._flush_seconds:
            await self._dispatch()

    def safe_offset(self, tp: TopicPartition) -> int | None:
        offsets = [
            i.ride["source_offset"]
            for items in (self._sending, self._buffer)
            for i in items
            if source_tp(i.ride) == tp
        ]
        return min(offsets) if offsets else None

    def revoke(self, tps: Iterable[TopicPartition]) -> None:
        # A bulk already in flight finishes; its ids are deterministic, so the new
        # owner's replay of the same rides overwrites them.
        gone = set(tps)
        self._buffer = [i for i in self._buffer if source_tp(i.ride) not in gone]
        self._bytes = sum(i.size for i in self._buffer)

    async def close(self) -> None:
        await self.flush()

    async def flush(self) -> None:
        """Index everything buffered; returns once each item is indexed or refused.

        Waits through outages and retriable item errors; see the module docstring.
        """
        await self._dispatch()
        await self._reap()

    async def _dispatch(self) -> None:
        """Wait for the bulk in flight, then send the buffer as the next one."""
        await self._reap()
        if not self._buffer:
            return
        self._sending, self._buffer, self._bytes = self._buffer, [], 0
        self._inflight = asyncio.create_task(self._index_all(self._sending))

    async def _reap(self) -> None:
        """Wait for the bulk in flight; its exception (a bug) is raised here."""
        task, self._inflight = self._inflight, None
        if task is not None:
            try:
                await task
            finally:
                self._sending = []

    async def _index_all(self, items: list[_Item]) -> None:
        attempt = 0
        while items:
            started = time.monotonic()
            retry = await self._until_available(partial(self._bulk, items))
            self._log_flush(len(items) - len(retry), len(retry), started)
            items = retry
            if retry:
                attempt += 1
                await asyncio.sleep(self._backoff(attempt))

    async def _bulk(self, items: list[_Item]) -> list[_Item]:
        """One pass of bulk requests over ``items``; returns the items to retry.

        The helper yields one result per action, in order (``max_retries=0``: the
        retry policy is the sink's own, per status).
        """
        retry: list[_Item] = []
        results = async_streaming_bulk(
            self.client,
            (i.action() for i in items),
            chunk_size=self._bulk_docs,
            max_chunk_bytes=self._bulk_bytes,
            raise_on_error=False,
            raise_on_exception=True,
            max_retries=0,
        )
        position = 0
        async for ok, result in results:
            item = items[position]
            position += 1
            if await self._settle(item, ok, result) == "retry":
                retry.append(item)
        self.stats.bulks += 1
        return retry

    async def _settle(self, item: _Item, ok: bool, result: Mapping[str, Any]) -> str:
        detail = next(iter(result.values()))
        status = int(detail.get("status", 0))
        self.stats.statuses[status] = self.stats.statuses.get(status, 0) + 1
        if ok:
            self.stats.indexed += 1
            return "done"
        error = detail.get("error") or {}
        kind = error.get("type", "") if isinstance(error, dict) else str(error)
        if status in RETRIABLE_STATUS or kind in RETRIABLE_TYPES or status >= 500:
            return await self._retry_or_give_up(item, status, kind)
        reason = error.get("reason", kind) if isinstance(error, dict) else kind
        await self._dead_letter(
            item.ride,
            f"elasticsearch refused the ride: {reason}",
            f"elasticsearch.{kind or status}",
        )
        self.stats.dead_lettered += 1
        return "done"

    async def _retry_or_give_up(self, item: _Item, status: int, kind: str) -> str:
        now = time.monotonic()
        item.first_try = item.first_try or now
        if now - item.first_try < self._retry_seconds:
            self.stats.retried += 1
            return "retry"
        await self._dead_letter(
            item.ride,
            f"elasticsearch kept answering {status} {kind} for "
            f"{self._retry_seconds:.0f} s; re-drive it once the cluster copes",
            f"elasticsearch.{kind or status}",
        )
        self.stats.dead_lettered += 1
        return "done"

    async def _until_available(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``call``; while the cluster is unreachable, wait and probe."""
        attempt = 0
        while True:
            try:
                result = await call()
            except ApiError as exc:
                if exc.status_code not in RETRIABLE_STATUS:
                    raise
                attempt += 1
                self._outage_started(exc)
                await asyncio.sleep(self._backoff(attempt))
                continue
            except (EsConnectionError, TransportError) as exc:
                attempt += 1
                self._outage_started(exc)
                await asyncio.sleep(self._backoff(attempt))
                continue
            self._outage_ended()
            return result

    def _outage_started(self, exc: Exception) -> None:
        if self.stats.down_since is None:
            self.stats.down_since = time.monotonic()
            self.stats.outages += 1
            log.warning(
                "elasticsearch unavailable, indexing paused, buffered=%d: %s",
                len(self._buffer) + len(self._sending),
                exc,
            )

    def _outage_ended(self) -> None:
        if self.stats.down_since is not None:
            log.warning(
                "elasticsearch available again after %.1f s",
                time.monotonic() - self.stats.down_since,
            )
            self.stats.down_since = None

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._max_backoff, 0.2 * 2 ** min(attempt, 10))
        return random.uniform(ceiling / 2, ceiling)

    def _log_flush(self, settled: int, retried: int, started: float) -> None:
        took = (time.monotonic() - started) * 1000
        self.stats.last_took_ms = took
        log.info(
            "bulk indexed=%d retried=%d dead_lettered=%d took_ms=%.0f",
            settled,
            retried,
            self.stats.dead_lettered,
            took,
        )
