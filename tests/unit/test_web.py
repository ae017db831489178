"""The live view's feed and events, health, metrics and the map, without a worker.

The pages are served from a plain aiohttp app here (the handlers are aiohttp
handlers; Faust's server only mounts them), and the pipeline is a real
:class:`~kefta.pipeline.Pipeline` whose counters are set by hand.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import faust
import fsspec
import numpy as np
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kefta.engine import PricedRide, price_rides
from kefta.metrics import metrics_registry
from kefta.pipeline import DeadLetters, Pipeline
from kefta.pricing import TIERS, load_tariff
from kefta.rides import RideRequest, Source, decode_message
from kefta.settings import Settings
from kefta.simulator import Simulation
from kefta.sinks.base import TopicPartition
from kefta.sinks.elasticsearch import EsStats
from kefta.sinks.lake import LakeSink
from kefta.web import (
    NEW_YORK,
    LiveFeed,
    LiveSite,
    MapBox,
    density_png,
    live_event,
    readiness,
    register_web,
    sink_states,
    sse,
)

TP = TopicPartition("rides", 0)


class Producer:
    async def send(self, topic: str, key: bytes, value: bytes, headers: Any) -> Any:
        raise AssertionError("nothing is sent in these tests")


class EsLikeSink:
    """Enough of the Elasticsearch sink for the pages: a name and its stats."""

    name = "elasticsearch"

    def __init__(self) -> None:
        self.stats = EsStats()

    async def start(self) -> None: ...
    async def add(self, rides: Any, upto: Any) -> None: ...
    async def tick(self) -> None: ...
    async def close(self) -> None: ...

    def safe_offset(self, tp: TopicPartition) -> int | None:
        return None

    def revoke(self, tps: Any) -> None: ...


class FakeApp:
    """The two things the health check asks a Faust app."""

    def __init__(self, assigned: int = 0, producer_started: bool = False) -> None:
        self.consumer = type("C", (), {"assignment": lambda _: set(range(assigned))})()
        self.producer = type("P", (), {"started": producer_started, "crashed": False})()


def rides(count: int, seed: int = 7) -> list[PricedRide]:
    start = datetime(2026, 3, 1, 8, tzinfo=UTC)
    requests = []
    for offset, message in enumerate(Simulation(seed, start=start).messages(count)):
        decoded = decode_message(message.value, Source("rides", 0, offset))
        requests += [r for r in decoded if isinstance(r, RideRequest)]
    return price_rides(requests, load_tariff())


def pipeline(*sinks: Any) -> Pipeline:
    return Pipeline(
        tariff=load_tariff(),
        producer=Producer(),
        priced_topic="rides.priced",
        dead_letters=DeadLetters(Producer(), "rides.dlq"),
        sinks=[(sink, list) for sink in sinks],
    )


def lake() -> LakeSink:
    return LakeSink(fsspec.filesystem("memory"), f"/lake-{uuid.uuid4().hex}")


def scrape(pipe: Pipeline, app: Any = None) -> dict[str, dict[tuple[Any, ...], float]]:
    """``/metrics`` parsed: sample name -> {label values: value}."""
    text = generate_latest(metrics_registry(pipe, app)).decode()
    found: dict[str, dict[tuple[Any, ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            found.setdefault(sample.name, {})[key] = sample.value
    return found


# -- the feed ---------------------------------------------------------------------


def test_feed_keeps_only_the_last_rides_and_adds_nothing_unwatched() -> None:
    feed = LiveFeed(capacity=50)
    batch = rides(120)

    feed.on_batch(batch)

    assert list(feed.recent) == batch[-50:]
    assert feed.rides == 0
    assert set(feed.revenue.values()) == {0.0}


def test_feed_adds_fares_per_tier_while_a_page_is_open() -> None:
    feed = LiveFeed()
    before, during, after = rides(30, 1), rides(40, 2), rides(20, 3)
    feed.on_batch(before)
    viewer = feed.join(priced=0, now=0.0)
    feed.on_batch(during)
    feed.leave(viewer)
    feed.on_batch(after)

    expected = {
        t: sum(r["prix_travel"] for r in during if r["tier"] == t) for t in TIERS
    }

    assert feed.rides == len(during)
    assert feed.revenue == pytest.approx(expected)
    assert feed.viewers == 0


def test_event_counts_revenue_since_the_page_opened_and_the_rate() -> None:
    pipe = pipeline()
    feed = LiveFeed()
    feed.join(priced=0, now=0.0)
    feed.on_batch(rides(10, 4))
    late = feed.join(priced=100, now=10.0)
    batch = rides(25, 5)
    feed.on_batch(batch)
    pipe.counters.priced = 150

    event = live_event(feed, late, pipe, now=12.0)

    assert event["rate"] == 25.0
    assert event["rides"] == 150
    assert event["revenue_rides"] == 25
    assert sum(event["revenue"].values()) == pytest.approx(
        sum(r["prix_travel"] for r in batch), abs=0.02
    )
    assert (late.priced, late.at) == (150, 12.0)


def test_event_points_are_positions_and_tier_without_names() -> None:
    feed = LiveFeed(capacity=5)
    batch = rides(8)
    feed.on_batch(batch)

    event = live_event(feed, feed.join(0, 0.0), pipeline(), now=1.0)
    text = orjson.dumps(event).decode()

    assert len(event["points"]) == 5
    first = batch[3]
    assert event["points"][0] == [
        pytest.approx(first["client_lat"], abs=1e-5),
        pytest.approx(first["client_lon"], abs=1e-5),
        pytest.approx(first["driver_lat"], abs=1e-5),
        pytest.approx(first["driver_lon"], abs=1e-5),
        TIERS.index(first["tier"]),
    ]
    assert all(NEW_YORK.contains(p[0], p[1]) for p in event["points"])
    assert not any(r["nomclient"] and r["nomclient"] in text for r in batch)
    assert not any(r["telephoneClient"] and r["telephoneClient"] in text for r in batch)


def test_event_reports_dead_letters_and_commit_lag() -> None:
    pipe = pipeline()
    pipe.dead_letters.count = 3
    pipe.dead_letters.by_class.update({"json": 2, "range": 1})
    pipe.ledger.committed({TP: 0})
    pipe.ledger.read({TP: 40})

    event = live_event(LiveFeed(), LiveFeed().join(0, 0.0), pipe, now=1.0)

    assert event["dead_letters"] == {"total": 3, "by_class": {"json": 2, "range": 1}}
    assert event["uncommitted"] == 40


def test_sink_states_say_since_when_a_sink_is_down() -> None:
    es = EsLikeSink()
    es.stats.down_since = 100.0

    states = sink_states([es, lake()], now=130.0)

    assert states[0]["ok"] is False
    assert states[0]["down_seconds"] == 30.0
    assert datetime.fromisoformat(states[0]["down_since"]).tzinfo is not None
    assert states[1] == {"name": "lake", "ok": True}


def test_sse_is_one_event_with_one_data_line() -> None:
    message = sse("live", {"a": [1, 2], "b": "x"})

    assert message == b'event: live\ndata: {"a":[1,2],"b":"x"}\n\n'


# -- health -----------------------------------------------------------------------


def test_ready_when_partitions_are_assigned_and_sinks_up() -> None:
    ready, body = readiness(FakeApp(assigned=3), pipeline(EsLikeSink(), lake()))

    assert ready
    assert body["status"] == "ok"
    assert body["kafka"] == {"assigned_partitions": 3, "producer_started": False}


def test_ready_with_a_running_producer_and_no_assignment() -> None:
    ready, _ = readiness(FakeApp(producer_started=True), pipeline())

    assert ready


def test_not_ready_lists_what_is_down() -> None:
    es = EsLikeSink()
    es.stats.down_since = 1.0

    ready, body = readiness(FakeApp(), pipeline(es, lake()))

    assert not ready
    assert body["status"] == "unavailable"
    assert [d["name"] for d in body["down"]] == ["kafka", "elasticsearch"]


# -- metrics ------------------------------------------------------------------------


def test_metrics_read_the_pipeline_and_sinks_at_scrape_time() -> None:
    es, store = EsLikeSink(), lake()
    pipe = pipeline(es, store)
    pipe.counters.messages, pipe.counters.priced = 1000, 990
    pipe.dead_letters.by_class.update({"json.invalid": 7, "range": 3})
    pipe.ledger.committed({TP: 0})
    pipe.ledger.read({TP: 25})
    es.stats.indexed, es.stats.bulks, es.stats.last_took_ms = 980, 4, 41.0
    es.stats.statuses.update({201: 980, 400: 10})
    es.stats.down_since = 0.0
    store.stats.files, store.stats.bytes_written = 2, 12345
    store.stats.rotations.update({"age": 1, "rows": 1})

    found = scrape(pipe, FakeApp(assigned=6))

    assert found["kefta_messages_total"] == {(): 1000}
    assert found["kefta_rides_priced_total"] == {(): 990}
    assert found["kefta_dead_letters_total"] == {
        (("error_class", "json.invalid"),): 7,
        (("error_class", "range"),): 3,
    }
    assert found["kefta_uncommitted_messages"] == {
        (("partition", "0"), ("topic", "rides")): 25
    }
    assert found["kefta_es_items_total"] == {
        (("status", "201"),): 980,
        (("status", "400"),): 10,
    }
    assert found["kefta_es_bulk_last_seconds"] == {(): 0.041}
    assert found["kefta_sink_down"] == {
        (("sink", "elasticsearch"),): 1,
        (("sink", "lake"),): 0,
    }
    assert found["kefta_lake_written_bytes_total"] == {(): 12345}
    assert found["kefta_lake_rotations_total"][(("reason", "age"),)] == 1
    assert found["kefta_lake_buffered_bytes"] == {(): 0}
    assert found["kefta_kafka_assigned_partitions"] == {(): 6}
    assert "process_resident_memory_bytes" in found


def test_metrics_move_between_scrapes() -> None:
    pipe = pipeline()
    first = scrape(pipe)["kefta_rides_priced_total"][()]
    pipe.counters.priced += 5

    second = scrape(pipe)["kefta_rides_priced_total"][()]

    assert second - first == 5


# -- the map --------------------------------------------------------------------------


def decode_png(data: bytes) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """The RGBA pixels of a PNG written by :func:`kefta.web.encode_png`."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, {}
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(
            ">I", data[position + 8 + length : position + 12 + length]
        )
        assert zlib.crc32(kind + body) == crc
        chunks[kind] = body
        position += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 6)
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8)
    rows = raw.reshape(height, width * 4 + 1)
    assert set(rows[:, 0].tolist()) == {0}
    return rows[:, 1:].reshape(height, width, 4)


def test_box_keeps_its_aspect_and_projects_corners() -> None:
    width, height = NEW_YORK.size(640)

    assert 600 < height < 640
    assert NEW_YORK.project(NEW_YORK.north, NEW_YORK.west, width, height) == (0, 0)
    assert NEW_YORK.project(NEW_YORK.south, NEW_YORK.east, width, height) == (
        pytest.approx(width),
        pytest.approx(height),
    )


def test_background_is_bright_where_pickups_are() -> None:
    box = MapBox(south=0.0, west=0.0, north=1.0, east=1.0)
    dense = np.full((500, 2), 0.25)
    points = np.vstack([dense, [[0.9, 0.9]]])

    pixels = decode_png(density_png(points, box, 100))
    height = pixels.shape[0]

    assert pixels.shape == (100, 100, 4)
    assert pixels[height - 1 - 25, 25, 3] > 200
    assert 0 < pixels[height - 1 - 90, 90, 3] < pixels[height - 1 - 25, 25, 3]
    assert pixels[height - 1 - 60, 10, 3] == 0


# -- the pages, served by plain aiohttp -----------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[Any, Any], LiveSite]]:
    es = EsLikeSink()
    site = LiveSite(pipeline(es, lake()), FakeApp(assigned=1), interval=0.05)
    application = web.Application()
    for path, handler in site.routes():
        application.router.add_get(path, handler)
    async with TestClient(TestServer(application)) as test_client:
        yield test_client, site


async def test_page_and_assets_are_served_with_a_self_only_policy(
    client: tuple[TestClient[Any, Any], LiveSite],
) -> None:
    http, _ = client

    page = await http.get("/live/")
    script = await http.get("/live/live.js")
    style = await http.get("/live/live.css")
    html = await page.text()

    assert page.status == script.status == style.status == 200
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert "http://" not in html
    assert "https://" not in html
    assert "http" not in await script.text()


async def test_live_without_slash_redirects_to_the_page(
    client: tuple[TestClient[Any, Any], LiveSite],
) -> None:
    http, _ = client

    response = await http.get("/live", allow_redirects=False)

    assert response.status == 301
    assert response.headers["Location"] == "/live/"


async def test_events_stream_config_then_live_events(
    client: tuple[TestClient[Any, Any], LiveSite],
) -> None:
    http, site = client
    site.feed.on_batch(rides(12))

    response = await http.get("/live/events")
    received: list[tuple[str, Any]] = []
    event = ""
    async for line in response.content:
        text = line.decode().strip()
        if text.startswith("event: "):
            event = text[7:]
        elif text.startswith("data: "):
            received.append((event, orjson.loads(text[6:])))
        if len(received) == 3:
            break
    viewers = site.feed.viewers
    response.close()

    assert response.headers["Content-Type"] == "text/event-stream"
    assert [name for name, _ in received] == ["config", "live", "live"]
    assert received[0][1]["box"]["south"] == NEW_YORK.south
    assert len(received[1][1]["points"]) == 12
    assert viewers == 1


async def test_health_answers_503_with_the_sink_that_is_down(
    client: tuple[TestClient[Any, Any], LiveSite],
) -> None:
    http, site = client
    healthy = await http.get("/health")
    site.pipeline.sinks[0].stats.down_since = 0.0  # type: ignore[attr-defined]

    unhealthy = await http.get("/health")
    alive = await http.get("/health/live")

    assert healthy.status == 200
    assert unhealthy.status == 503
    assert (await unhealthy.json())["down"][0]["name"] == "elasticsearch"
    assert alive.status == 200


async def test_metrics_page_is_prometheus_text(
    client: tuple[TestClient[Any, Any], LiveSite],
) -> None:
    http, _ = client

    response = await http.get("/metrics")

    assert response.headers["Content-Type"].startswith("text/plain; version=")
    assert "kefta_messages_total 0.0" in await response.text()


async def test_background_png_is_served(
    client: tuple[TestClient[Any, Any], LiveSite],
) -> None:
    http, _ = client

    response = await http.get("/live/background.png")
    pixels = decode_png(await response.read())

    assert response.content_type == "image/png"
    assert pixels.shape[1] == 640
    assert pixels[..., 3].max() > 200


# -- mounting on Faust ----------------------------------------------------------------


def faust_app() -> faust.App:
    return faust.App(
        f"t-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:1", web_enabled=True
    )


def test_register_web_mounts_the_pages_and_turns_off_table_endpoints() -> None:
    app = faust_app()
    pipe = pipeline()

    register_web(app, pipe, Settings())

    assert app.conf.web_tables_enabled is False
    assert app.conf.web_router_enabled is False
    assert {"/live/", "/live/events", "/metrics", "/health", "/health/live"} <= set(
        app.web.views
    )
    assert len(pipe._watchers) == 1


def test_register_web_refuses_an_app_whose_server_exists() -> None:
    app = faust_app()
    assert app.web is not None

    with pytest.raises(RuntimeError, match="call it right after building the app"):
        register_web(app, pipeline(), Settings())
