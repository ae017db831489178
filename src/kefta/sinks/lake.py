"""The lake sink: exactly-once Parquet files on any fsspec filesystem.

Layout: ``<root>/dt=YYYY-MM-DD/hour=HH/<topic>-<partition>-<first offset>.parquet``,
partitioned by the ride's event time. One file is open per source partition and
event hour. A file is closed when it reaches ``max_rows`` rows or ``max_bytes``
buffered bytes, ``max_seconds`` after its first row, or ``idle_seconds`` after its
last; and early, largest first, when all open files together pass the memory budget.

Exactly once: an object's name comes from its source partition, event hour and first
offset, and every closed file is recorded in a per-partition manifest
(``<root>/_kefta/manifests/<topic>-<partition>.json``) with its offset range. After a
restart the worker replays from the last commit; a replayed ride whose offset lies in
the range of a recorded file of its hour is skipped (it is already in that file), and
a file that was uploaded but not recorded is rewritten under the same name. Uploads
are atomic: an object appears whole or not at all, and local files are renamed into
place.

Before every attempt to write a file or a manifest, the :attr:`LakeSink.fence` asks
the broker whether this worker still owns the partition. A worker that was frozen
past its session timeout wakes up with open files for partitions the group gave to
another worker; writing them would overwrite the new owner's file of the same name.
It keeps them instead, until the rebalance that follows revokes them.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from kefta.engine import PricedRide
from kefta.lake_schema import RIDE_SCHEMA
from kefta.sinks.base import OwnershipCheck, TopicPartition, source_tp

log = logging.getLogger(__name__)

_CONVERT_EVERY: Final = 4096
_ROW_ESTIMATE: Final = 900
"""Bytes a ride takes while still a Python dict (measured roughly with tracemalloc)."""
_MANIFEST_KEEP: Final = 200
_FIELDS: Final = RIDE_SCHEMA.names


@dataclass
class LakeStats:
    """Totals of the sink since start, for logs and metrics."""

    files: int = 0
    rows: int = 0
    bytes_written: int = 0
    skipped_replayed: int = 0
    fenced: int = 0
    """Closes held back because the partition had moved to another worker."""
    rotations: dict[str, int] = field(default_factory=dict)
    down_since: float | None = None
    outages: int = 0


@dataclass
class _Open:
    """An open file: rides of one source partition and event hour."""

    tp: TopicPartition
    hour: str
    first_offset: int
    opened: float
    last_add: float
    rows: list[PricedRide] = field(default_factory=list)
    batches: list[pa.RecordBatch] = field(default_factory=list)
    batch_bytes: int = 0
    count: int = 0
    last_offset: int = -1

    def size(self) -> int:
        return self.batch_bytes + len(self.rows) * _ROW_ESTIMATE


class LakeSink:
    """Buffers priced rides into Parquet files; see the module docstring."""

    name = "lake"

    def __init__(
        self,
        fs: Any,
        root: str,
        *,
        max_rows: int = 100_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_seconds: float = 60.0,
        idle_seconds: float = 30.0,
        memory_budget: int = 128 * 1024 * 1024,
        compression: str = "zstd",
        max_backoff: float = 10.0,
    ) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.stats = LakeStats()
        self._max_rows, self._max_bytes = max_rows, max_bytes
        self._max_seconds, self._idle_seconds = max_seconds, idle_seconds
        self._budget, self._compression = memory_budget, compression
        self._max_backoff = max_backoff
        self._open: dict[tuple[TopicPartition, str], _Open] = {}
        self._manifests: dict[TopicPartition, list[dict[str, Any]]] = {}
        self._local = "file" in _protocols(fs)
        self.fence: OwnershipCheck | None = None
        """Confirms ownership of a partition before its file is written."""
        self._held: set[TopicPartition] = set()
        """Partitions the fence refused since the last tick: not asked again before."""

    # -- the sink contract ---------------------------------------------------------

    async def start(self) -> None:
        log.info("lake ready root=%s filesystem=%s", self.root, _protocols(self.fs)[0])

    async def assign(self, tps: Iterable[TopicPartition]) -> None:
        """Load the manifests of newly assigned partitions (replay detection); one
        already loaded since the assignment (by :meth:`add`) is kept."""
        for tp in tps:
            if tp not in self._manifests:
                await self._load_manifest(tp)

    async def _load_manifest(self, tp: TopicPartition) -> None:
        self._manifests[tp] = await self._retrying(lambda: self._read_manifest(tp))

    async def add(
        self, rides: Sequence[PricedRide], upto: Mapping[TopicPartition, int]
    ) -> None:
        # A ride may arrive before the assignment hook has run (Faust resumes the
        # stream concurrently with it): load a missing manifest before deciding.
        for tp in {source_tp(r) for r in rides} - self._manifests.keys():
            await self._load_manifest(tp)
        now = time.monotonic()
        for ride in rides:
            tp = source_tp(ride)
            hour = f"dt={ride['event_time'][:10]}/hour={ride['event_time'][11:13]}"
            if self._already_written(tp, hour, ride["source_offset"]):
                self.stats.skipped_replayed += 1
                continue
            current = self._append(tp, hour, ride, now)
            if current.count >= self._max_rows:
                await self._close(current, "rows")
            elif current.size() >= self._max_bytes:
                await self._close(current, "bytes")
        await self._enforce_budget()

    async def tick(self) -> None:
        self._held.clear()
        now = time.monotonic()
        for current in list(self._open.values()):
            if now - current.opened >= self._max_seconds:
                await self._close(current, "age")
            elif now - current.last_add >= self._idle_seconds:
                await self._close(current, "idle")

    def safe_offset(self, tp: TopicPartition) -> int | None:
        firsts = [o.first_offset for o in self._open.values() if o.tp == tp]
        return min(firsts) if firsts else None

    def revoke(self, tps: Iterable[TopicPartition]) -> None:
        gone = set(tps)
        self._open = {k: o for k, o in self._open.items() if o.tp not in gone}
        for tp in gone:
            self._manifests.pop(tp, None)
        self._held -= gone

    async def close(self) -> None:
        self._held.clear()
        for current in list(self._open.values()):
            await self._close(current, "shutdown")

    def buffered_bytes(self) -> int:
        """Estimated bytes held by all open files."""
        return sum(o.size() for o in self._open.values())

    # -- buffering -----------------------------------------------------------------

    def _already_written(self, tp: TopicPartition, hour: str, offset: int) -> bool:
        return any(
            entry["hour"] == hour and entry["first"] <= offset <= entry["last"]
            for entry in self._manifests.get(tp, ())
        )

    def _append(
        self, tp: TopicPartition, hour: str, ride: PricedRide, now: float
    ) -> _Open:
        current = self._open.get((tp, hour))
        if current is None:
            offset = ride["source_offset"]
            current = self._open[(tp, hour)] = _Open(tp, hour, offset, now, now)
        current.rows.append(ride)
        current.count += 1
        current.last_offset = ride["source_offset"]
        current.last_add = now
        if len(current.rows) >= _CONVERT_EVERY:
            self._compact(current)
        return current

    def _compact(self, current: _Open) -> None:
        batch = to_record_batch(current.rows)
        current.batches.append(batch)
        current.batch_bytes += batch.nbytes
        current.rows = []

    async def _enforce_budget(self) -> None:
        while self._open and self.buffered_bytes() > self._budget:
            largest = max(self._open.values(), key=_Open.size)
            if not await self._close(largest, "memory"):
                return

    # -- writing -------------------------------------------------------------------

    async def _close(self, current: _Open, reason: str) -> bool:
        """Write and record ``current``; False if the fence held it back."""
        if current.tp in self._held:
            return False
        started = time.monotonic()
        if current.rows:
            self._compact(current)
        table = pa.Table.from_batches(current.batches, RIDE_SCHEMA)
        path = self._path(current)
        data = self._encode(table, current)
        try:
            await self._retrying(lambda: self._owned_upload(current.tp, path, data))
            await self._record(current, path)
        except _Moved:
            self._hold(current, reason)
            return False
        del self._open[(current.tp, current.hour)]
        self._count(reason, current.count, len(data))
        log.info(
            "lake file closed path=%s rows=%d bytes=%d reason=%s took_ms=%.0f",
            path,
            current.count,
            len(data),
            reason,
            (time.monotonic() - started) * 1000,
        )
        return True

    def _hold(self, current: _Open, reason: str) -> None:
        self._held.add(current.tp)
        self.stats.fenced += 1
        log.warning(
            "lake file not written: partition %s/%d is no longer this worker's "
            "(a rebalance is moving it); rows=%d reason=%s",
            current.tp.topic,
            current.tp.partition,
            current.count,
            reason,
        )

    async def _owned_upload(self, tp: TopicPartition, path: str, data: bytes) -> None:
        # Asked before every attempt, not once: while storage is down, the group may
        # move the partition on.
        if self.fence is not None and not await self.fence(tp):
            raise _Moved(tp)
        await self._upload(path, data)

    def _path(self, current: _Open) -> str:
        tp = current.tp
        name = f"{tp.topic}-{tp.partition:03d}-{current.first_offset:020d}.parquet"
        return f"{self.root}/{current.hour}/{name}"

    def _encode(self, table: pa.Table, current: _Open) -> bytes:
        metadata = {
            **(table.schema.metadata or {}),
            b"kefta.source.topic": current.tp.topic.encode(),
            b"kefta.source.partition": str(current.tp.partition).encode(),
            b"kefta.source.first_offset": str(current.first_offset).encode(),
            b"kefta.source.last_offset": str(current.last_offset).encode(),
            b"kefta.rows": str(current.count).encode(),
        }
        sink = io.BytesIO()
        pq.write_table(
            table.replace_schema_metadata(metadata), sink, compression=self._compression
        )
        return sink.getvalue()

    async def _upload(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(self._upload_blocking, path, data)

    def _upload_blocking(self, path: str, data: bytes) -> None:
        if not self._local:
            self.fs.pipe_file(path, data)
            return
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        partial = f"{path}.partial"
        self.fs.pipe_file(partial, data)
        self.fs.mv(partial, path)

    async def _record(self, current: _Open, path: str) -> None:
        entry = {
            "hour": current.hour,
            "first": current.first_offset,
            "last": current.last_offset,
            "rows": current.count,
            "path": path,
        }
        entries = [*self._manifests.get(current.tp, []), entry][-_MANIFEST_KEEP:]
        body = orjson.dumps({"files": entries})
        await self._retrying(
            lambda: self._owned_upload(
                current.tp, self._manifest_path(current.tp), body
            )
        )
        self._manifests[current.tp] = entries

    def _manifest_path(self, tp: TopicPartition) -> str:
        return f"{self.root}/_kefta/manifests/{tp.topic}-{tp.partition:03d}.json"

    async def _read_manifest(self, tp: TopicPartition) -> list[dict[str, Any]]:
        path = self._manifest_path(tp)
        try:
            raw = await asyncio.to_thread(self.fs.cat_file, path)
        except FileNotFoundError:
            return []
        files: list[dict[str, Any]] = orjson.loads(raw)["files"]
        return files

    def _count(self, reason: str, rows: int, size: int) -> None:
        self.stats.files += 1
        self.stats.rows += rows
        self.stats.bytes_written += size
        self.stats.rotations[reason] = self.stats.rotations.get(reason, 0) + 1

    # -- outages -------------------------------------------------------------------

    async def _retrying(self, call: Any) -> Any:
        """Run ``call`` until storage accepts it; an outage pauses, never crashes."""
        attempt = 0
        while True:
            try:
                result = await call()
            except (OSError, TimeoutError) as exc:
                if isinstance(
                    exc, FileNotFoundError | PermissionError | IsADirectoryError
                ):
                    raise
                attempt += 1
                self._outage(exc)
                await asyncio.sleep(min(self._max_backoff, 0.2 * 2 ** min(attempt, 10)))
                continue
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                attempt += 1
                self._outage(exc)
                await asyncio.sleep(min(self._max_backoff, 0.2 * 2 ** min(attempt, 10)))
                continue
            if self.stats.down_since is not None:
                log.warning(
                    "lake storage available again after %.1f s",
                    time.monotonic() - self.stats.down_since,
                )
                self.stats.down_since = None
            return result

    def _outage(self, exc: BaseException) -> None:
        if self.stats.down_since is None:
            self.stats.down_since = time.monotonic()
            self.stats.outages += 1
            log.warning(
                "lake storage unavailable, writes paused, open_files=%d: %r",
                len(self._open),
                exc,
            )


class _Moved(Exception):
    """The fence says the partition is no longer this worker's."""


def to_record_batch(rows: Sequence[PricedRide]) -> pa.RecordBatch:
    """Rides as an Arrow record batch of :data:`kefta.lake_schema.RIDE_SCHEMA`."""
    columns = []
    for name in _FIELDS:
        values = [r[name] for r in rows]  # type: ignore[literal-required]
        kind = RIDE_SCHEMA.field(name).type
        if pa.types.is_timestamp(kind):
            columns.append(pa.array(values, pa.string()).cast(kind))
        else:
            columns.append(pa.array(values, kind))
    return pa.RecordBatch.from_arrays(columns, schema=RIDE_SCHEMA)


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = getattr(fs, "protocol", ())
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _is_transient(exc: BaseException) -> bool:
    """Network and server-side storage errors that a retry can fix."""
    names = {type(e).__name__ for e in _chain(exc)}
    transient = {
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ClientOSError",
        "ServerTimeoutError",
        "HttpError",
        "TransportError",
        "ClientError",
        "ClientPayloadError",
        "RetryError",
    }
    status = getattr(exc, "code", None) or getattr(exc, "status", None)
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
        return False
    return bool(names & transient)


def _chain(exc: BaseException | None) -> Iterable[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__
