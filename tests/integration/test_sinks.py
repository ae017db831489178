"""Elasticsearch and the GCS lake, end to end and through faults, by counting."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from integration.conftest import SinkRun
from kefta.kafka import ensure_topics, read_topic
from kefta.producer import produce
from kefta.settings import Settings
from kefta.simulator import SimMessage, Simulation
from kefta.testing import Endpoints, gcs_filesystem
from support.counting import Expected, expected_outcome, fully_committed, header
from support.services import run_services
from support.sinks import (
    NEW_YORK,
    duplicates,
    es_client,
    es_rides,
    es_sum,
    lake_table,
    record_figures,
)
from support.worker import WorkerProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cleanup_topics")]


class Run(SinkRun):
    def start_worker(self, name: str) -> WorkerProcess:
        env = self.env(
            self.tmp,
            lake_idle_seconds="2",
            lake_max_seconds="4",
            es_flush_seconds="0.5",
        )
        worker = WorkerProcess(env, self.tmp / f"{name}.log").start()
        self.workers.append(worker)
        return worker

    async def all_committed(self) -> float:
        """Wait until every produced message is committed; returns the seconds."""
        return await wait_until(
            lambda: fully_committed(self.settings), 300, "all committed"
        )


@pytest.fixture
def run(
    settings: Settings,
    services: Endpoints,
    names: dict[str, str],
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> Run:
    return Run.create(settings, services, names, tmp_path, workers)


async def produce_recorded(
    run: Run, messages: list[SimMessage], rate: float | None = None
) -> Expected:
    await ensure_topics(run.settings)
    record = run.tmp / "produced.ndjson"
    await produce(messages, run.settings, rate=rate, record=record)
    return expected_outcome(messages, record, run.settings.topic)


def check_exactly_once(
    run: Run, expected: Expected, refused: int = 0
) -> dict[str, Any]:
    """ES and the lake hold each valid ride once; sums agree; returns figures."""
    es = es_client(run.services.es_url)
    documents = es_rides(es, run.prefix)
    table, files = lake_table(gcs_filesystem(run.services.gcs_endpoint), run.lake_root)
    lake_ids = table.column("ride_id").to_pylist()
    total = round(sum(expected.fares.values()), 2)

    assert duplicates(lake_ids) == []
    assert set(lake_ids) == set(expected.fares)
    assert len(documents) == expected.valid - refused
    assert set(documents) <= set(expected.fares)
    assert round(sum(table.column("prix_travel").to_pylist()), 2) == total
    if not refused:
        revenue = es_sum(es, run.prefix)["aggregations"]["revenue"]["value"]
        assert round(revenue, 2) == total
    return {
        "rides": expected.valid,
        "es_documents": len(documents),
        "lake_files": len(files),
        "lake_bytes": sum(f["bytes"] for f in files),
        "lake_rows": len(lake_ids),
        "revenue": total,
    }


async def dead_letters(run: Run) -> list[Any]:
    return await read_topic(run.settings, run.settings.dlq_topic)


async def test_sinks_hold_every_valid_ride_exactly_once(run: Run) -> None:
    messages = list(
        Simulation(seed=21, bad_fraction=0.03, legacy_fraction=0.05).messages(50_000)
    )
    expected = await produce_recorded(run, messages)

    started = time.monotonic()
    worker = run.start_worker("worker")
    await run.all_committed()
    seconds = time.monotonic() - started
    peak_mb = worker.peak_rss_mb()
    figures = check_exactly_once(run, expected)
    dead = await dead_letters(run)
    es = es_client(run.services.es_url)
    in_new_york = es_sum(
        es, run.prefix, {"geo_bounding_box": {"locationClient": NEW_YORK}}
    )
    sample = next(iter(es_rides(es, run.prefix).values()))

    report = _warehouse_report(run)
    assert len(dead) == expected.invalid
    assert all(header(r, "kefta.reason") for r in dead)
    assert in_new_york["hits"]["total"]["value"] == expected.valid
    assert sum(row.rides for row in report.revenue) == expected.valid
    assert round(sum(row.revenue for row in report.revenue), 2) == figures["revenue"]
    assert {row.centroid_id for row in report.revenue} <= set(range(1, 9))
    assert sample["nomclient"] is None or len(sample["nomclient"]) == 32
    record_figures(
        "sinks_50k",
        figures
        | {
            "seconds_from_worker_start_to_all_committed": seconds,
            "rides_per_second_into_both_sinks": expected.valid / seconds,
            "dead_letters": len(dead),
            "worker_peak_rss_mb": peak_mb,
        },
    )


async def test_sinks_survive_three_worker_kills(run: Run) -> None:
    messages = list(Simulation(seed=22, bad_fraction=0.02).messages(30_000))
    feeding = asyncio.create_task(produce_recorded(run, messages, rate=1000))
    recoveries = []
    worker = run.start_worker("w0")
    for kill in range(3):
        await asyncio.sleep(8)
        worker.kill()
        worker = run.start_worker(f"w{kill + 1}")
        recoveries.append(await _time_to_progress(run))
    expected = await feeding
    await run.all_committed()

    figures = check_exactly_once(run, expected)
    assert len(await _distinct_dead(run)) == expected.invalid
    record_figures("fault_kill3", figures | {"seconds_to_resume": recoveries})


@pytest.mark.parametrize("service", ["es", "gcs"])
async def test_sinks_survive_a_30_second_outage(run: Run, service: str) -> None:
    messages = list(Simulation(seed=23, bad_fraction=0.02).messages(30_000))
    feeding = asyncio.create_task(produce_recorded(run, messages, rate=1000))
    worker = run.start_worker("worker")
    await asyncio.sleep(8)
    run_services("stop", service)
    await asyncio.sleep(30)
    run_services("start", service)
    back = time.monotonic()
    expected = await feeding
    await run.all_committed()
    drained = time.monotonic() - back

    figures = check_exactly_once(run, expected)
    log = worker.log_text()
    assert worker.alive()
    assert len(await _distinct_dead(run)) == expected.invalid
    if service == "es":
        assert log.count("elasticsearch unavailable") == 1
        assert log.count("elasticsearch available again") == 1
    # gcsfs retries for a while on its own; a short storage outage may show up
    # only as a slow upload, the sink's own outage state past that.
    record_figures(
        f"fault_{service}_outage",
        figures
        | {
            "seconds_from_restart_to_all_committed": drained,
            "outage_logged": "storage unavailable" in log
            or "elasticsearch unavail" in log,
        },
    )


async def test_mapping_conflict_dead_letters_only_the_conflicting_rides(
    run: Run,
) -> None:
    es = es_client(run.services.es_url)
    es.indices.create(
        index=f"{run.prefix}-2026.01.01",
        mappings={"properties": {"locationClient": {"type": "long"}}},
    )
    old = Simulation(seed=24, start=datetime(2026, 1, 1, 8, tzinfo=UTC)).messages(500)
    new = Simulation(seed=25).messages(5000)
    expected = await produce_recorded(run, [*old, *new])

    run.start_worker("worker")
    await run.all_committed()

    check_exactly_once(run, expected, refused=500)
    refused = [
        r
        for r in await dead_letters(run)
        if (header(r, "kefta.error_class") or "").startswith("elasticsearch.")
    ]
    assert len(refused) == 500
    assert all("failed to parse" in (header(r, "kefta.reason") or "") for r in refused)


def _warehouse_report(run: Run) -> Any:
    """The local warehouse's report over the GCS lake the worker wrote."""
    from kefta.worker import open_warehouse

    settings = Settings(
        lake_url=f"gs://{run.lake_root}",
        gcs_endpoint=run.services.gcs_endpoint,
        warehouse_path=run.tmp / "warehouse.duckdb",
    )
    store = open_warehouse(settings)
    try:
        store.train()
        return store.report()
    finally:
        store.close()


async def _time_to_progress(run: Run) -> float:
    from support.counting import committed_total

    before = await committed_total(run.settings)

    async def moved() -> bool:
        now = await committed_total(run.settings)
        return now > before or await fully_committed(run.settings)

    return await wait_until(moved, 120, "commits after restart", interval=0.25)


async def _distinct_dead(run: Run) -> set[tuple[str | None, str | None]]:
    return {
        (header(r, "kefta.source.partition"), header(r, "kefta.source.offset"))
        for r in await dead_letters(run)
    }


async def joined(worker: WorkerProcess) -> bool:
    return "partitions assigned" in worker.log_text()


async def test_two_workers_share_the_partitions_exactly_once(run: Run) -> None:
    messages = list(Simulation(seed=26, bad_fraction=0.02).messages(20_000))
    feeding = asyncio.create_task(produce_recorded(run, messages, rate=2000))
    first = run.start_worker("first")
    await asyncio.sleep(4)
    second = run.start_worker("second")
    expected = await feeding
    await run.all_committed()

    assert first.alive()
    assert second.alive()
    assert "Crashed" not in first.log_text() + second.log_text()
    record_figures("two_workers", check_exactly_once(run, expected))


async def test_workers_joining_and_leaving_keep_both_sinks_exactly_once(
    run: Run,
) -> None:
    # Four rebalances while rides flow: two workers join, then both leave again.
    messages = list(Simulation(seed=27, bad_fraction=0.02).messages(24_000))
    feeding = asyncio.create_task(produce_recorded(run, messages, rate=1500))
    first = run.start_worker("first")
    await asyncio.sleep(3)
    second = run.start_worker("second")
    await asyncio.sleep(4)
    third = run.start_worker("third")
    await asyncio.sleep(4)
    for leaving in (second, third):
        await wait_until(partial(joined, leaving), 120, "the worker to join")
        assert await asyncio.to_thread(leaving.stop) == 0
        await asyncio.sleep(4)
    expected = await feeding
    await run.all_committed()
    logs = first.log_text() + second.log_text() + third.log_text()

    assert first.alive()
    assert "Crashed" not in logs
    assert logs.count("partitions revoked") >= 4
    record_figures("rebalance_churn", check_exactly_once(run, expected))


async def test_a_frozen_worker_that_wakes_up_overwrites_nothing(run: Run) -> None:
    # SIGSTOP past the session timeout: the group moves the frozen worker's
    # partitions on, and when it wakes it still holds open lake files for them.
    messages = list(Simulation(seed=28, bad_fraction=0.02).messages(24_000))
    feeding = asyncio.create_task(produce_recorded(run, messages, rate=1500))
    first = run.start_worker("first")
    await asyncio.sleep(3)
    second = run.start_worker("second")
    await wait_until(partial(joined, second), 120, "the second worker to join")
    await asyncio.sleep(2)
    os.kill(first.pid, signal.SIGSTOP)
    await asyncio.sleep(run.settings.session_timeout * 1.6)
    os.kill(first.pid, signal.SIGCONT)
    expected = await feeding
    await run.all_committed()

    assert first.alive()
    assert second.alive()
    held_back = first.log_text().count("lake file not written")
    figures = check_exactly_once(run, expected)
    record_figures("frozen_worker", figures | {"closes_held_back": held_back})
