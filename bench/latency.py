"""Latency from produce to searchable in Elasticsearch and to a closed lake file.

A worker with both sinks runs on a fresh topic; rides are produced at a fixed rate
(100, 1 000, 5 000 rides/s) for ``seconds``. About 20 rides a second are sampled
with their send time; a poller asks Elasticsearch every 100 ms (``_search`` on their
ids, so only refreshed, searchable documents count) and notes when each appears.
For the lake, each ride's latency is its file's close time (the object's mtime on
the GCS emulator) minus its send time (the canonical ``event_time`` of a live
simulation is the moment the message was built, just before it was sent).
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
from collections.abc import Awaitable, Iterator
from datetime import datetime
from typing import Any

import pyarrow.parquet as pq

from bench.common import (
    Offsets,
    Scratch,
    es,
    logs_dir,
    median,
    percentile,
    produce_messages,
    wait_for,
    write_result,
)
from kefta.simulator import SimMessage, Simulation
from kefta.testing import WorkerProcess, gcs_filesystem

POLL_SECONDS = 0.1
SAMPLES_PER_SECOND = 20


class Sampler:
    """Wraps a message stream; remembers the send time of every n-th ride."""

    def __init__(self, messages: Iterator[SimMessage], every: int) -> None:
        self.messages, self.every = messages, every
        self.sent: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.count = 0

    def __iter__(self) -> Iterator[SimMessage]:
        for message in self.messages:
            self.count += 1
            if self.count % self.every == 0 and message.ride_id:
                self.sent[message.ride_id] = time.time()
            yield message

    def pending(self) -> list[str]:
        return [r for r in self.sent if r not in self.seen]


async def poll_es(scratch: Scratch, sampler: Sampler, stop: asyncio.Event) -> None:
    url = f"{scratch.services.es_url}/{scratch.prefix}-*/_search"
    while not stop.is_set() or sampler.pending():
        pending = sampler.pending()[:500]
        if pending:
            body = {"size": len(pending), "_source": False}
            body["query"] = {"ids": {"values": pending}}
            try:
                answer = await asyncio.to_thread(es, "POST", url, body)
            except urllib.error.HTTPError:
                answer = None  # a new daily index whose shard is not ready yet
            now = time.time()
            for hit in (answer or {}).get("hits", {}).get("hits", []):
                sampler.seen.setdefault(hit["_id"], now)
        await asyncio.sleep(POLL_SECONDS)
        if stop.is_set() and time.time() - max(sampler.sent.values(), default=0) > 60:
            break


def lake_latencies(scratch: Scratch, since: float) -> list[float]:
    """Per ride: its file's close time minus its send time, in seconds."""
    fs = gcs_filesystem(scratch.services.gcs_endpoint)
    fs.invalidate_cache()
    latencies = []
    for path in fs.find(scratch.lake_root):
        if not path.endswith(".parquet"):
            continue
        closed = fs.info(path)["mtime"].timestamp()
        with fs.open(path, "rb") as handle:
            column = pq.read_table(handle, columns=["event_time"]).column(0)
        for moment in column.to_pylist():
            sent = moment.timestamp() if isinstance(moment, datetime) else 0.0
            if sent >= since:
                latencies.append(closed - sent)
    return latencies


async def _at_least(value: Awaitable[int], floor: int) -> bool:
    return await value >= floor


async def at_rate(rate: float, seconds: float, lake_seconds: float) -> dict[str, Any]:
    scratch = Scratch(f"lat{int(rate)}")
    await scratch.create_topic()
    env = scratch.worker_env(
        lake="gcs", lake_max_seconds=str(lake_seconds), lake_idle_seconds="2"
    )
    worker = WorkerProcess(env, logs_dir() / f"{scratch.own}.log").start()
    settings = scratch.settings()
    try:
        async with Offsets(settings) as offsets:
            warm = Simulation(seed=2, live=True).messages(10)
            await produce_messages(settings, warm)
            await wait_for(
                lambda: _at_least(offsets.end(scratch.priced_topic), 10), 120, "warm-up"
            )
        since = time.time()
        sampler = Sampler(
            Simulation(seed=3, live=True).messages(int(rate * seconds)),
            max(1, int(rate // SAMPLES_PER_SECOND)),
        )
        stop = asyncio.Event()
        poller = asyncio.create_task(poll_es(scratch, sampler, stop))
        stats = await produce_messages(settings, sampler, rate=rate)
        stop.set()
        await poller
        async with Offsets(settings) as offsets:
            total = await offsets.end(scratch.topic)
            await wait_for(
                lambda: _at_least(
                    offsets.committed(scratch.group, scratch.topic), total
                ),
                300,
                "all committed",
            )
        rss = worker.peak_rss_mb()
        lake = lake_latencies(scratch, since)
    finally:
        worker.stop()
        await scratch.cleanup()
    es_latencies = [sampler.seen[r] - sampler.sent[r] for r in sampler.seen]
    return {
        "rate": rate,
        "achieved_rate": stats.rate(),
        "rides": stats.sent,
        "es_samples": len(es_latencies),
        "es_never_seen": len(sampler.pending()),
        "es_p50_s": percentile(es_latencies, 0.5),
        "es_p99_s": percentile(es_latencies, 0.99),
        "es_max_s": max(es_latencies, default=float("nan")),
        "lake_rows": len(lake),
        "lake_p50_s": percentile(lake, 0.5),
        "lake_p99_s": percentile(lake, 0.99),
        "lake_max_seconds_setting": lake_seconds,
        "peak_rss_mb": rss,
    }


async def run(
    rates: tuple[float, ...] = (100, 1000, 5000),
    seconds: float = 20.0,
    lake_seconds: float = 10.0,
) -> dict[str, Any]:
    results = []
    for rate in rates:
        result = await at_rate(rate, seconds, lake_seconds)
        results.append(result)
        print(
            f"  {rate:>6,.0f}/s: ES p50 {result['es_p50_s']:.2f} s "
            f"p99 {result['es_p99_s']:.2f} s; lake p50 {result['lake_p50_s']:.1f} s "
            f"p99 {result['lake_p99_s']:.1f} s"
        )
    figures = {
        "seconds_per_rate": seconds,
        "poll_seconds": POLL_SECONDS,
        "runs": results,
        "es_p99_at_1000_s": median(
            [r["es_p99_s"] for r in results if r["rate"] == 1000] or [float("nan")]
        ),
    }
    write_result("latency", figures)
    return figures


def main(**options: Any) -> dict[str, Any]:
    return asyncio.run(run(**options))


if __name__ == "__main__":
    main()
