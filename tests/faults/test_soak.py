"""A soak run: a steady stream for ten minutes through kills and restarts.

A producer sends rides at a steady rate (500/s by default) for ``KEFTA_SOAK_SECONDS``
(600). Meanwhile, at seeded random moments, the worker is SIGKILLed and restarted
several times, and Elasticsearch, the storage emulator and the Kafka broker are each
restarted once (``scripts/services restart``). At the end, reading everything back:

* every message in the ride topic is either priced or dead-lettered, never both;
* Elasticsearch and the lake hold every valid ride exactly once;
* after each fault the committed offsets move again, and the time that took is
  recorded (from the end of the fault, such as the restart command returning).

Figures go to ``artifacts/faults/soak.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from integration.conftest import SinkRun
from kefta.errors import SinkUnavailable
from kefta.kafka import ensure_topics, read_topic
from kefta.producer import produce
from kefta.rides import RideRequest, Source, decode_message
from kefta.settings import Settings
from kefta.simulator import Simulation
from kefta.testing import Endpoints, gcs_filesystem
from support.counting import committed_total, header, produced_total
from support.services import ROOT, run_services
from support.sinks import duplicates, es_client, es_rides, lake_table
from support.worker import WorkerProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.soak,
    pytest.mark.usefixtures("cleanup_topics"),
]

SECONDS = float(os.environ.get("KEFTA_SOAK_SECONDS", "600"))
RATE = float(os.environ.get("KEFTA_SOAK_RATE", "500"))
SEED = int(os.environ.get("KEFTA_SOAK_SEED", "20261203"))
KILLS = 4
RECOVERY_LIMIT = 240.0
DRAIN_LIMIT = 300.0


@dataclass
class Fault:
    kind: str
    at: float
    """Seconds after the start of the stream."""
    seconds: float = 0.0
    """How long the fault itself took (a restart command, say)."""
    recovered_after: float | None = None
    """Seconds from the end of the fault until commits moved again."""


@dataclass
class Soak(SinkRun):
    started: float = field(default_factory=time.monotonic)
    producer_restarts: int = 0
    unexpected_exits: int = 0
    refused_starts: int = 0
    """Workers that exited at start-up because the broker was down (by design:
    ``kefta worker`` exits 1 when it cannot reach Kafka; a supervisor restarts it)."""
    peak_rss_mb: list[float] = field(default_factory=list)

    def start_worker(self) -> WorkerProcess:
        env = self.env(self.tmp / "data", lake_max_seconds="10", lake_idle_seconds="5")
        log = self.tmp / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess(env, log).start()
        self.workers.append(worker)
        return worker

    @property
    def worker(self) -> WorkerProcess:
        return self.workers[-1]

    def kill_worker(self) -> None:
        self._note_rss()
        self.worker.kill()
        self.start_worker()

    def check_worker(self) -> None:
        """Restart a worker that exited on its own (and count it)."""
        if not self.worker.alive():
            if "cannot reach Kafka" in self.worker.log_text():
                self.refused_starts += 1
            else:
                self.unexpected_exits += 1
            self.start_worker()

    def _note_rss(self) -> None:
        with contextlib.suppress(OSError, StopIteration):
            self.peak_rss_mb.append(self.worker.peak_rss_mb())


def schedule(rng: random.Random) -> list[Fault]:
    """The faults in a seeded order, at seeded moments at least 45 s apart."""
    kinds = ["kill"] * KILLS + ["es", "gcs", "kafka"]
    rng.shuffle(kinds)
    first, last = 30.0, SECONDS - 60.0
    slot = (last - first) / len(kinds)
    return [
        Fault(kind, first + i * slot + rng.uniform(0, max(0.0, slot - 45.0)))
        for i, kind in enumerate(kinds)
    ]


async def feed(soak: Soak) -> None:
    """Produce at RATE for SECONDS; keep going through broker outages."""
    simulation = Simulation(seed=SEED, bad_fraction=0.02, legacy_fraction=0.05)
    messages = simulation.messages()
    deadline = soak.started + SECONDS
    while (left := deadline - time.monotonic()) > 1:
        try:
            await produce(messages, soak.settings, rate=RATE, duration=left)
        except SinkUnavailable:
            # The broker did not acknowledge in time; what was sent may be in the
            # topic or not: the checks read the topic itself, not this stream.
            soak.producer_restarts += 1
            await asyncio.sleep(1)


async def inject(soak: Soak, fault: Fault) -> None:
    await asyncio.sleep(max(0.0, soak.started + fault.at - time.monotonic()))
    soak.check_worker()
    began = time.monotonic()
    if fault.kind == "kill":
        soak.kill_worker()
    else:
        await asyncio.to_thread(run_services, "restart", fault.kind)
    fault.seconds = time.monotonic() - began
    fault.recovered_after = await _time_to_progress(soak)
    soak.check_worker()


async def _time_to_progress(soak: Soak) -> float | None:
    ended = time.monotonic()
    before = await _committed(soak)
    while time.monotonic() - ended < RECOVERY_LIMIT:
        await asyncio.sleep(0.25)
        soak.check_worker()
        if (now := await _committed(soak)) is not None and now > (before or 0):
            return time.monotonic() - ended
    return None


async def _committed(soak: Soak) -> int | None:
    try:
        return await committed_total(soak.settings)
    except Exception:  # the broker itself may be restarting
        return None


async def drain(soak: Soak) -> float:
    """Wait until every produced message is committed; seconds it took."""
    began = time.monotonic()
    while time.monotonic() - began < DRAIN_LIMIT:
        soak.check_worker()
        try:
            if await committed_total(soak.settings) == await produced_total(
                soak.settings
            ):
                return time.monotonic() - began
        except Exception:
            pass
        await asyncio.sleep(1)
    raise AssertionError(f"not everything was committed {DRAIN_LIMIT:.0f} s after")


async def expected(settings: Settings) -> tuple[set[str], set[tuple[int, int]], int]:
    """Valid ride ids and invalid (partition, offset)s of what the topic holds."""
    valid: set[str] = set()
    invalid: set[tuple[int, int]] = set()
    records = await read_topic(settings, settings.topic)
    for record in records:
        source = Source(settings.topic, record.partition, record.offset)
        for result in decode_message(record.value, source):
            if isinstance(result, RideRequest):
                valid.add(result.ride_id)
            else:
                invalid.add((record.partition, record.offset))
    return valid, invalid, len(records)


@pytest.fixture
def soak(
    settings: Settings,
    services: Endpoints,
    names: dict[str, str],
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> Any:
    run = Soak.create(settings, services, names, tmp_path, workers)
    yield run
    for service in ("kafka", "es", "gcs"):
        run_services("up", service)
    es_client(services.es_url).indices.delete(
        index=f"{run.prefix}-*", allow_no_indices=True
    )
    with contextlib.suppress(FileNotFoundError):
        gcs_filesystem(services.gcs_endpoint).rm(run.lake_root, recursive=True)


@pytest.mark.timeout(SECONDS + 1200)
async def test_soak_through_kills_and_restarts_loses_and_duplicates_nothing(
    soak: Soak,
) -> None:
    await ensure_topics(soak.settings)
    faults = schedule(random.Random(SEED))
    soak.start_worker()
    soak.started = time.monotonic()

    await asyncio.gather(feed(soak), *(inject(soak, f) for f in faults))
    drained = await drain(soak)
    soak._note_rss()
    valid, invalid, produced = await expected(soak.settings)
    priced = [
        json.loads(r.value)["ride_id"]
        for r in await read_topic(soak.settings, soak.settings.priced_topic)
    ]
    dead = {
        (
            int(header(r, "kefta.source.partition") or -1),
            int(header(r, "kefta.source.offset") or -1),
        )
        for r in await read_topic(soak.settings, soak.settings.dlq_topic)
    }
    documents = es_rides(es_client(soak.services.es_url), soak.prefix)
    table, files = lake_table(
        gcs_filesystem(soak.services.gcs_endpoint), soak.lake_root
    )
    lake_ids = table.column("ride_id").to_pylist()
    figures = {
        "seconds": SECONDS,
        "rate": RATE,
        "seed": SEED,
        "produced": produced,
        "valid": len(valid),
        "priced_distinct": len(set(priced)),
        "priced_records": len(priced),
        "dead_lettered_distinct": len(dead),
        "es_documents": len(documents),
        "lake_rows": len(lake_ids),
        "lake_files": len(files),
        "lake_duplicates": len(duplicates(lake_ids)),
        "seconds_to_drain_after_the_stream": drained,
        "producer_restarts": soak.producer_restarts,
        "worker_unexpected_exits": soak.unexpected_exits,
        "worker_starts_refused_while_kafka_down": soak.refused_starts,
        "worker_peak_rss_mb": soak.peak_rss_mb,
        "faults": [asdict(f) for f in faults],
    }
    folder = ROOT / "artifacts" / "faults"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "soak.json").write_text(json.dumps(figures, indent=2))

    assert produced == len(valid) + len(invalid)
    assert set(priced) == valid
    assert dead == invalid
    assert len(set(priced)) + len(dead) == produced
    assert set(documents) == valid
    assert duplicates(lake_ids) == []
    assert set(lake_ids) == valid
    assert all(f.recovered_after is not None for f in faults), figures["faults"]
    assert soak.unexpected_exits == 0
