"""The worker's own web pages: a live view, Prometheus metrics and health checks.

:func:`register_web` adds these pages to the Faust app's web server (aiohttp):

* ``/live/``: a page that draws the recent rides on a map of New York and shows
  revenue per tier, rides per second, dead letters and the state of each sink,
  updated once a second by server-sent events from ``/live/events``. Everything it
  needs ships with kefta (no tiles, no CDN): the map background is rendered from the
  bundled pickups (:func:`kefta.simulator.nyc_pickups`) on first request.
* ``/metrics``: Prometheus text format, read from the pipeline at scrape time.
* ``/health``: 200 when ready (Kafka assigned or connected, no sink down), else 503
  with what is down; ``/health/live``: 200 while the event loop runs.

Cost: the pipeline calls :meth:`LiveFeed.on_batch` with every batch. Unwatched, that
is one bounded-deque extend; aggregation happens only while a page is open. Names
and phone numbers never leave the worker: events carry positions, tiers and totals.
It also switches off Faust's built-in ``/table/`` and ``/router/`` endpoints, which
would expose table data and the cluster's layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Final

import faust
import numpy as np
import numpy.typing as npt
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kefta.engine import PricedRide
from kefta.metrics import down_since, kafka_state, metrics_registry
from kefta.pipeline import Pipeline
from kefta.pricing import TIERS
from kefta.settings import Settings
from kefta.sinks.base import Sink

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

RECENT_RIDES: Final = 500
"""Rides whose client and driver positions the live view shows."""
EVENT_SECONDS: Final = 1.0
"""Seconds between two server-sent events."""
MAP_WIDTH: Final = 640
"""Width in pixels of the map background (its height follows the box)."""
_TIER_INDEX: Final = {tier: index for index, tier in enumerate(TIERS)}
_ASSETS: Final = {
    "live.html": "text/html; charset=utf-8",
    "live.js": "text/javascript; charset=utf-8",
    "live.css": "text/css; charset=utf-8",
}
_SECURITY: Final = {
    # Nothing outside this worker may load: the page must work offline.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class MapBox:
    """A latitude/longitude box drawn with an equirectangular projection."""

    south: float
    west: float
    north: float
    east: float

    def size(self, width: int) -> tuple[int, int]:
        """Width and height in pixels that keep distances true at the centre."""
        middle = math.radians((self.south + self.north) / 2)
        ratio = (self.north - self.south) / ((self.east - self.west) * math.cos(middle))
        return width, round(width * ratio)

    def project(
        self, lat: float, lon: float, width: int, height: int
    ) -> tuple[float, float]:
        """Pixel (x, y) of a point, y down from the north edge."""
        x = (lon - self.west) / (self.east - self.west) * width
        y = (self.north - lat) / (self.north - self.south) * height
        return x, y

    def contains(self, lat: float, lon: float) -> bool:
        return self.south <= lat <= self.north and self.west <= lon <= self.east


NEW_YORK: Final = MapBox(south=40.49, west=-74.27, north=40.92, east=-73.68)
"""New York City and its airports."""


# -- the live feed ------------------------------------------------------------------


@dataclass
class Viewer:
    """One open page: the totals when it connected, and its previous event."""

    revenue: dict[str, float]
    rides: int
    priced: int
    at: float


class LiveFeed:
    """What the live view shows, kept for almost nothing while nobody watches.

    :meth:`on_batch` is the pipeline's watcher: it keeps the last ``capacity`` rides
    and, only while at least one page is open, adds each ride's fare to its tier.
    """

    def __init__(self, capacity: int = RECENT_RIDES) -> None:
        self.recent: deque[PricedRide] = deque(maxlen=capacity)
        self.viewers = 0
        self.revenue: dict[str, float] = dict.fromkeys(TIERS, 0.0)
        """Fares per tier of the rides priced while a page was open."""
        self.rides = 0
        """Rides priced while a page was open."""

    def on_batch(self, rides: Sequence[PricedRide]) -> None:
        """Called by the pipeline with every batch; O(batch), never raises."""
        self.recent.extend(rides)
        if self.viewers:
            revenue = self.revenue
            for ride in rides:
                revenue[ride["tier"]] += ride["prix_travel"]
            self.rides += len(rides)

    def join(self, priced: int, now: float) -> Viewer:
        """A page opened; totals it sees start from here."""
        self.viewers += 1
        return Viewer(dict(self.revenue), self.rides, priced, now)

    def leave(self, viewer: Viewer) -> None:
        self.viewers -= 1


def live_event(
    feed: LiveFeed, viewer: Viewer, pipeline: Pipeline, now: float | None = None
) -> dict[str, Any]:
    """The next event for ``viewer``; advances its rate window.

    ``points`` are [client lat, client lon, driver lat, driver lon, tier index] of
    the recent rides; ``revenue`` and ``revenue_rides`` count since the page opened;
    ``rate`` is rides per second since the viewer's previous event.
    """
    now = time.monotonic() if now is None else now
    priced = pipeline.counters.priced
    elapsed = now - viewer.at
    rate = (priced - viewer.priced) / elapsed if elapsed > 0 else 0.0
    viewer.priced, viewer.at = priced, now
    dead = pipeline.dead_letters
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "messages": pipeline.counters.messages,
        "rides": priced,
        "rate": round(rate, 1),
        "revenue": {
            t: round(v - viewer.revenue[t], 2) for t, v in feed.revenue.items()
        },
        "revenue_rides": feed.rides - viewer.rides,
        "dead_letters": {"total": dead.count, "by_class": dict(dead.by_class)},
        "uncommitted": sum(pipeline.ledger.uncommitted().values()),
        "sinks": sink_states(pipeline.sinks, now),
        "points": [_point(r) for r in feed.recent],
    }


def _point(ride: PricedRide) -> list[float]:
    return [
        round(ride["client_lat"], 5),
        round(ride["client_lon"], 5),
        round(ride["driver_lat"], 5),
        round(ride["driver_lon"], 5),
        _TIER_INDEX[ride["tier"]],
    ]


def sink_states(
    sinks: Sequence[Sink], now: float | None = None
) -> list[dict[str, Any]]:
    """Per sink: ``ok``, and when down, since when (UTC) and for how long."""
    now = time.monotonic() if now is None else now
    states = []
    for sink in sinks:
        down = down_since(sink)
        state: dict[str, Any] = {"name": sink.name, "ok": down is None}
        if down is not None:
            wall = datetime.fromtimestamp(time.time() - (now - down), UTC)
            state["down_since"] = wall.isoformat(timespec="seconds")
            state["down_seconds"] = round(now - down, 1)
        states.append(state)
    return states


def sse(event: str, data: Any) -> bytes:
    """One server-sent event; orjson output holds no newline, so one data line."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# -- health ---------------------------------------------------------------------------


def readiness(app: Any, pipeline: Pipeline) -> tuple[bool, dict[str, Any]]:
    """(ready, body): Kafka assigned or its producer running, and no sink down."""
    kafka = kafka_state(app)
    sinks = sink_states(pipeline.sinks)
    down = [s for s in sinks if not s["ok"]]
    if not (kafka["assigned_partitions"] or kafka["producer_started"]):
        down.insert(0, {"name": "kafka", "ok": False, **kafka})
    body = {"status": "unavailable" if down else "ok", "kafka": kafka, "sinks": sinks}
    if down:
        body["down"] = down
    return not down, body


# -- the map background ---------------------------------------------------------------


def density_png(points: npt.NDArray[np.float64], box: MapBox, width: int) -> bytes:
    """A transparent PNG where pickups are, brighter where they are denser."""
    width, height = box.size(width)
    counts, _, _ = np.histogram2d(
        points[:, 0],
        points[:, 1],
        bins=(height, width),
        range=((box.south, box.north), (box.west, box.east)),
    )
    counts = _blur(counts[::-1])
    level = np.log1p(counts) / max(float(np.log1p(counts.max())), 1e-9)
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[..., :3] = (110, 160, 230)
    rgba[..., 3] = np.clip(level**0.8 * 235, 0, 255).astype(np.uint8)
    return encode_png(rgba)


def _blur(grid: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    padded = np.pad(grid, 1)
    rows, cols = grid.shape
    return sum(
        (padded[dy : dy + rows, dx : dx + cols] for dy in range(3) for dx in range(3)),
        np.zeros_like(grid),
    )


def encode_png(rgba: npt.NDArray[np.uint8]) -> bytes:
    """An 8-bit RGBA PNG of an (height, width, 4) array (no filter, zlib level 9)."""
    height, width, _ = rgba.shape
    raw = np.zeros((height, width * 4 + 1), np.uint8)
    raw[:, 1:] = rgba.reshape(height, width * 4)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)),
            _chunk(b"IEND", b""),
        ]
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


@cache
def new_york_background() -> bytes:
    """The map background from the bundled pickups (rendered once, ~0.2 s)."""
    from kefta.simulator import nyc_pickups

    return density_png(nyc_pickups(), NEW_YORK, MAP_WIDTH)


@cache
def asset(name: str) -> bytes:
    return resources.files("kefta").joinpath("static", name).read_bytes()


# -- the pages ------------------------------------------------------------------------


@dataclass
class LiveSite:
    """The pages of :func:`register_web`, as plain aiohttp handlers."""

    pipeline: Pipeline
    app: Any = None
    interval: float = EVENT_SECONDS
    feed: LiveFeed = field(default_factory=LiveFeed)
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.registry = metrics_registry(
            self.pipeline, self.app, lambda: self.feed.viewers
        )

    def routes(self) -> list[tuple[str, Handler]]:
        return [
            ("/live", self.to_live),
            ("/live/", self.page),
            ("/live/live.js", self.page),
            ("/live/live.css", self.page),
            ("/live/background.png", self.background),
            ("/live/events", self.events),
            ("/metrics", self.metrics),
            ("/health", self.health),
            ("/health/live", self.alive),
        ]

    async def to_live(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/live/")

    async def page(self, request: web.Request) -> web.StreamResponse:
        name = request.path.rsplit("/", 1)[1] or "live.html"
        return web.Response(
            body=asset(name),
            headers={"Content-Type": _ASSETS[name], **_SECURITY},
        )

    async def background(self, request: web.Request) -> web.StreamResponse:
        png = await asyncio.to_thread(new_york_background)
        headers = {"Cache-Control": "max-age=86400", **_SECURITY}
        return web.Response(body=png, content_type="image/png", headers=headers)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``config`` once, then ``live`` every interval."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        viewer = self.feed.join(self.pipeline.counters.priced, time.monotonic())
        try:
            await response.write(b"retry: 2000\n" + sse("config", self.config()))
            while not self.closing.is_set():
                event = live_event(self.feed, viewer, self.pipeline)
                await response.write(sse("live", event))
                await self._pause()
        except ConnectionError:
            pass  # the page was closed
        finally:
            self.feed.leave(viewer)
        return response

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), self.interval)

    def config(self) -> dict[str, Any]:
        width, height = NEW_YORK.size(MAP_WIDTH)
        box = NEW_YORK
        return {
            "box": {
                "south": box.south,
                "west": box.west,
                "north": box.north,
                "east": box.east,
            },
            "width": width,
            "height": height,
            "tiers": list(TIERS),
            "interval": self.interval,
        }

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(self, request: web.Request) -> web.StreamResponse:
        ready, body = readiness(self.app, self.pipeline)
        return web.json_response(body, status=200 if ready else 503, dumps=_json_text)

    async def alive(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "alive"}, dumps=_json_text)

    async def close(self, *_: Any, **__: Any) -> None:
        """End open event streams (the server waits for them on shutdown)."""
        self.closing.set()


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def register_web(app: faust.App, pipeline: Pipeline, settings: Settings) -> None:
    """Add the live view, ``/metrics`` and ``/health`` to the Faust app's server.

    Call before the worker starts (pages cannot be added to a running server). It
    also turns off Faust's ``/table/`` and ``/router/`` endpoints, so it must run
    before anything reads ``app.web``; raises RuntimeError otherwise.
    """
    if "web" in vars(app):
        raise RuntimeError(
            "register_web was called after app.web was created, so Faust's table "
            "endpoints are already on; call it right after building the app"
        )
    app.conf.web_tables_enabled = False
    app.conf.web_router_enabled = False
    site = LiveSite(pipeline, app)
    pipeline.watch(site.feed.on_batch)
    for path, handler in site.routes():
        app.page(path, name=f"kefta{path.replace('/', '_')}")(_view(handler))

    async def started(_: web.Application) -> None:
        # Logged when the server starts: Faust has configured logging by then.
        log.info(
            "web pages ready url=http://%s:%d/live/ metrics=/metrics health=/health",
            app.conf.web_host,
            settings.web_port,
        )

    server = app.web.web_app
    server.on_startup.append(started)
    server.on_shutdown.append(site.close)
    app.on_before_shutdown.connect(site.close)


def _view(handler: Handler) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A Faust view function (``view, request``) around an aiohttp handler."""

    async def get(view: Any, request: web.Request, **_: Any) -> web.StreamResponse:
        return await handler(request)

    get.__name__ = handler.__name__
    return get
