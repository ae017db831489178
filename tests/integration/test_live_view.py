"""The live view of a real worker, in headless Chromium, and what it costs.

A ``kefta worker`` process runs with its web server on a free port, Elasticsearch
and a local lake; rides are produced to its topics while the page is open. The page
must show points in New York, counters that move, and load nothing from outside
127.0.0.1; ``/metrics`` and ``/health`` must agree with what was produced. A second
test measures the worker's throughput on 20 000 rides with nobody watching and with
an event-stream client connected.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from kefta.kafka import ensure_topics
from kefta.producer import produce
from kefta.settings import Settings
from kefta.simulator import Simulation
from kefta.testing import Endpoints, worker_env
from kefta.web import NEW_YORK
from support.counting import Expected, expected_outcome, fully_committed
from support.services import ROOT
from support.sinks import es_client, record_figures
from support.worker import WorkerProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cleanup_topics")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = ROOT / "artifacts" / "live-view.png"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_worker(
    settings: Settings, services: Endpoints, folder: Path, port: int
) -> WorkerProcess:
    env = worker_env(
        settings,
        folder / "data",
        web_enabled="true",
        web_port=str(port),
        es_url=services.es_url,
        es_index_prefix=f"{settings.group}-rides",
        es_flush_seconds="0.5",
        lake_url=str(folder / "lake"),
        lake_idle_seconds="2",
        lake_max_seconds="4",
    )
    return WorkerProcess(env, folder / f"{settings.group}.log").start()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def metrics(base: str) -> dict[str, float]:
    """``/metrics`` summed per sample name (labels added up)."""
    _, text = await get(f"{base}/metrics")
    summed: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            summed[sample.name] = summed.get(sample.name, 0.0) + sample.value
    return summed


async def healthy(base: str) -> bool:
    try:
        status, _ = await get(f"{base}/health")
    except aiohttp.ClientError:
        return False
    return status == 200


@pytest.fixture
def es_cleanup(services: Endpoints) -> Iterator[list[str]]:
    """Index prefixes a test used; their indices and templates are deleted after."""
    prefixes: list[str] = []
    yield prefixes
    es = es_client(services.es_url)
    for prefix in prefixes:
        es.indices.delete(index=f"{prefix}-*", allow_no_indices=True)
        if es.indices.exists_index_template(name=prefix):
            es.indices.delete_index_template(name=prefix)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Debian Chromium driven by Playwright, with a fresh profile."""
    if not CHROMIUM.exists():  # noqa: ASYNC240 (one stat, before anything runs)
        pytest.fail(
            f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` "
            "(Playwright's own browser download does not work here)"
        )
    from playwright.async_api import async_playwright

    profile = tempfile.mkdtemp(prefix="kefta-chromium-")
    async with async_playwright() as playwright:
        # CSP is bypassed for Playwright's own evaluated scripts only; the page's
        # requests are still recorded and checked.
        context = await playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 800},
            bypass_csp=True,
        )
        yield context
        await context.close()
    shutil.rmtree(profile, ignore_errors=True)


async def produce_recorded(
    settings: Settings, count: int, folder: Path, rate: float | None
) -> Expected:
    messages = list(Simulation(seed=41, bad_fraction=0.03).messages(count))
    record = folder / f"{settings.topic}.ndjson"
    await produce(messages, settings, rate=rate, record=record)
    return expected_outcome(messages, record, settings.topic)


async def test_live_view_shows_rides_in_new_york_and_moving_counters(
    settings: Settings,
    services: Endpoints,
    workers: list[WorkerProcess],
    browser: Any,
    es_cleanup: list[str],
    tmp_path: Path,
) -> None:
    await ensure_topics(settings)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    es_cleanup.append(f"{settings.group}-rides")
    workers.append(start_worker(settings, services, tmp_path, port))
    await wait_until(lambda: healthy(base), 90, "the worker's /health to answer 200")
    page = await browser.new_page()
    requests: list[str] = []
    statuses: list[int] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("response", lambda response: statuses.append(response.status))

    await page.goto(f"{base}/live/")
    await page.wait_for_function("window.keftaLive && window.keftaLive.events >= 1")
    feeding = asyncio.create_task(produce_recorded(settings, 2000, tmp_path, 400))
    await page.wait_for_function("window.keftaLive.event.rides > 0", timeout=60_000)
    first = await page.evaluate("window.keftaLive.event.rides")
    await asyncio.sleep(2.5)
    second = await page.evaluate("window.keftaLive.event.rides")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)
    expected = await feeding
    await page.wait_for_function(
        f"window.keftaLive.event.rides >= {expected.valid}", timeout=60_000
    )
    await page.wait_for_timeout(1500)
    view = await page.evaluate(
        """() => ({
            points: window.keftaLive.points,
            outside: window.keftaLive.outside,
            shown: Number(document.getElementById('map').dataset.points),
            width: document.getElementById('map').width,
            height: document.getElementById('map').height,
            event: window.keftaLive.event,
            tiers: [...document.querySelectorAll('#revenue .row')]
                .map((row) => row.dataset.tier),
            sinks: [...document.querySelectorAll('#sinks li')]
                .map((li) => [li.dataset.sink, li.dataset.ok]),
        })"""
    )
    await page.close()
    await wait_until(lambda: fully_committed(settings), 120, "all offsets committed")
    found = await metrics(base)
    health_status, _ = await get(f"{base}/health")
    tables, _ = await get(f"{base}/table/")
    router, _ = await get(f"{base}/router/")

    assert 0 < first < second
    assert 0 < len(view["points"]) == view["shown"] <= 500
    assert view["outside"] < 0.05 * (len(view["points"]) + view["outside"])
    for point in view["points"]:
        x, y = NEW_YORK.project(
            point["lat"], point["lon"], view["width"], view["height"]
        )
        assert NEW_YORK.contains(point["lat"], point["lon"]), point
        assert 0 <= point["x"] <= view["width"], point
        assert 0 <= point["y"] <= view["height"], point
        assert (point["x"], point["y"]) == (pytest.approx(x), pytest.approx(y))
    assert view["tiers"] == ["low", "medium", "high"]
    assert sorted(view["sinks"]) == [["elasticsearch", "true"], ["lake", "true"]]
    assert view["event"]["rides"] == expected.valid
    assert view["event"]["dead_letters"]["total"] == expected.invalid
    assert {urlsplit(url).hostname for url in requests} == {"127.0.0.1"}
    assert set(statuses) == {200}
    assert found["kefta_messages_total"] == 2000
    assert found["kefta_rides_priced_total"] == expected.valid
    assert found["kefta_dead_letters_total"] == expected.invalid
    assert found["kefta_es_indexed_total"] == expected.valid
    assert found["kefta_lake_rows_total"] == expected.valid
    assert found["kefta_sink_down"] == 0
    assert found["kefta_uncommitted_messages"] == 0
    assert found["kefta_kafka_assigned_partitions"] == settings.partitions
    assert health_status == 200
    assert (tables, router) == (404, 404)


# -- overhead -------------------------------------------------------------------------


async def watch(base: str, received: list[int]) -> None:
    """An event-stream client, as a page would be: counts rides per event."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{base}/live/events") as response,
    ):
        async for line in response.content:
            if line.startswith(b"data: {") and b'"rides"' in line:
                received.append(len(line))


async def delete_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        names = [settings.topic, settings.priced_topic, settings.dlq_topic]
        existing = set(await admin.list_topics())
        await admin.delete_topics([n for n in names if n in existing])
    finally:
        await admin.close()


async def timed_run(
    services: Endpoints,
    folder: Path,
    workers: list[WorkerProcess],
    es_cleanup: list[str],
    watched: bool,
) -> dict[str, Any]:
    """Rides per second from first consumed to last indexed, for 20 000 rides."""
    run = f"ov-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        bootstrap=services.bootstrap,
        topic=run,
        priced_topic=f"{run}.priced",
        dlq_topic=f"{run}.dlq",
        group=run,
    )
    es_cleanup.append(f"{run}-rides")
    await ensure_topics(settings)
    expected = await produce_recorded(settings, 20_000, folder, rate=None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    received: list[int] = []
    worker = start_worker(settings, services, folder, port)
    workers.append(worker)
    try:
        await wait_until(lambda: healthy(base), 90, "the worker's web server")
        viewer = asyncio.create_task(watch(base, received)) if watched else None
        started, finished = await _consumption_window(base, expected.valid)
        if viewer:
            viewer.cancel()
        worker.stop()
    finally:
        await delete_topics(settings)
    seconds = finished - started
    return {
        "watched": watched,
        "rides": expected.valid,
        "seconds": round(seconds, 2),
        "rides_per_second": round(expected.valid / seconds),
        "events_received": len(received),
        "event_bytes": statistics.mean(received) if received else 0,
    }


async def _consumption_window(base: str, valid: int) -> tuple[float, float]:
    """Times of the first consumed message and of the last ride indexed."""
    started = finished = None
    deadline = time.monotonic() + 300
    while finished is None and time.monotonic() < deadline:
        found = await metrics(base)
        now = time.monotonic()
        if started is None and found["kefta_messages_total"] > 0:
            started = now
        if found.get("kefta_es_indexed_total", 0) >= valid:
            finished = now
        await asyncio.sleep(0.1)
    assert started is not None, "the worker consumed nothing in 300 s"
    assert finished is not None, "the worker did not index every ride in 300 s"
    return started, finished


async def test_live_view_costs_little_throughput(
    services: Endpoints,
    workers: list[WorkerProcess],
    es_cleanup: list[str],
    tmp_path: Path,
) -> None:
    runs = []
    for watched in (False, True, False, True):
        runs.append(await timed_run(services, tmp_path, workers, es_cleanup, watched))
    unwatched = statistics.median(r["rides_per_second"] for r in runs[::2])
    watched = statistics.median(r["rides_per_second"] for r in runs[1::2])
    record_figures(
        "live_view_overhead",
        {
            "measured_on": "shared 2-core machine, worker with Elasticsearch and a "
            "local lake, 20 000 pre-produced rides per run",
            "runs": runs,
            "median_rides_per_second_unwatched": unwatched,
            "median_rides_per_second_watched": watched,
            "overhead_percent": round(100 * (1 - watched / unwatched), 1),
        },
    )

    assert all(r["events_received"] >= 1 for r in runs[1::2])
    assert all(r["events_received"] == 0 for r in runs[::2])
    # A loose bound: the machine is shared, so run-to-run noise is large.
    assert watched > 0.7 * unwatched
