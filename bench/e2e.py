"""The worker end to end against its baselines, on real Kafka, Elasticsearch and GCS.

One topic of ``count`` pre-produced rides (``Simulation(seed=1)``, 6 partitions) is
read, in turn and ``repeats`` times, by:

* ``kefta``: ``kefta worker`` processes with both sinks (Elasticsearch and the lake
  on the GCS emulator), timed from the first commit to the commit of the last ride,
  which means every ride is durable in both sinks;
* ``ceiling``: a bare aiokafka consumer that reads and ``orjson.loads`` each message;
* ``old_way``: a consumer with auto-commit that prices each ride in plain Python,
  indexes it with one awaited ``es.index`` call and writes it as one JSON file, as
  the NiFi flow did; capped by time, its rate is reported.

With ``scale``, the same backlog is also read by two workers of one group. The cost
in bytes per ride is measured once: Kafka log segments, the Elasticsearch index
after a force-merge to one segment, and the lake's Parquet files.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from aiokafka import AIOKafkaConsumer

from bench.common import (
    Offsets,
    Scratch,
    es,
    kafka_bytes_on_disk,
    logs_dir,
    machine,
    median,
    produce_messages,
    write_result,
)
from bench.kernel import baseline_price
from kefta.simulator import Simulation
from kefta.testing import WorkerProcess, gcs_filesystem

WORKER_TUNING = {
    # Short lake files, so that commits (which wait for a closed file) follow the
    # work closely and the timing is not dominated by the rotation settings.
    "lake_max_seconds": "3",
    "lake_idle_seconds": "1",
    "es_flush_seconds": "0.5",
}


async def kefta_backlog(
    source: str, count: int, workers: int = 1, lake: str = "gcs", keep: bool = False
) -> tuple[dict[str, Any], Scratch]:
    """Run ``workers`` kefta workers over the backlog until all of it is committed.

    Returns the figures and the run's scratch names (cleaned unless ``keep``).
    """
    scratch = Scratch(f"w{workers}", source=source)
    await scratch.create_topic()
    env = scratch.worker_env(lake=lake, **WORKER_TUNING)
    procs = [
        WorkerProcess(env, logs_dir() / f"{scratch.own}-{i}.log").start()
        for i in range(workers)
    ]
    started = time.monotonic()
    samples: list[tuple[float, int, int]] = []
    try:
        settings = scratch.settings()
        async with Offsets(settings) as offsets:
            while True:
                committed = await offsets.committed(scratch.group, source)
                priced = await offsets.end(scratch.priced_topic)
                samples.append((time.monotonic(), committed, priced))
                if committed >= count:
                    break
                if not all(p.alive() for p in procs):
                    raise RuntimeError(f"a worker died; see {procs[0].log_path}")
                if time.monotonic() - started > 600:
                    raise TimeoutError("the backlog was not committed in 600 s")
                await asyncio.sleep(0.25)
        rss = [p.peak_rss_mb() for p in procs]
        cpu = [p.cpu_seconds() for p in procs]
    finally:
        for p in procs:
            p.stop()
        if not keep:
            await scratch.cleanup()
    return _backlog_figures(samples, started, count, rss, cpu, workers), scratch


def _backlog_figures(
    samples: list[tuple[float, int, int]],
    started: float,
    count: int,
    rss: list[float],
    cpu: list[float],
    workers: int,
) -> dict[str, Any]:
    end, _, _ = samples[-1]
    first_commit = next(s for s in samples if s[1] > 0)
    first_output = next(s for s in samples if s[2] > 0)
    after_first = count - first_commit[1]
    return {
        "workers": workers,
        "rides": count,
        "rides_per_s": after_first / max(1e-6, end - first_commit[0]),
        "rides_per_s_from_first_output": count / max(1e-6, end - first_output[0]),
        "seconds_start_to_first_output": first_output[0] - started,
        "seconds_start_to_all_committed": end - started,
        "peak_rss_mb": max(rss),
        "peak_rss_mb_each": rss,
        "cpu_seconds_each": cpu,
        "cpu_us_per_ride": sum(cpu) / count * 1e6,
    }


async def ceiling(source: str, count: int, bootstrap: str) -> dict[str, Any]:
    """A bare consumer: read and ``orjson.loads`` every message, nothing else."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    read, first = 0, 0.0
    cpu = time.process_time()
    try:
        while read < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batch.values():
                if not first and records:
                    first = time.monotonic()
                for record in records:
                    orjson.loads(record.value)
                read += len(records)
    finally:
        await consumer.stop()
    seconds = time.monotonic() - first
    return {
        "rides": read,
        "rides_per_s": read / seconds,
        "cpu_us_per_ride": (time.process_time() - cpu) / read * 1e6,
    }


async def old_way(source: str, seconds: float) -> dict[str, Any]:
    """One awaited ``es.index`` and one JSON file per ride, auto-commit, for a time."""
    from elasticsearch import AsyncElasticsearch

    scratch = Scratch("old", source=source)
    folder = scratch.local_lake()
    folder.mkdir(parents=True)
    client = AsyncElasticsearch(scratch.services.es_url, request_timeout=30)
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=scratch.services.bootstrap,
        group_id=scratch.group,
        enable_auto_commit=True,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    done, first = 0, 0.0
    try:
        async for record in consumer:
            first = first or time.monotonic()
            document = _old_document(record.value)
            await client.index(index=f"{scratch.prefix}-old", document=document)
            name = f"data_{uuid.uuid4().hex}.json"
            (folder / name).write_text(json.dumps(document))
            done += 1
            if time.monotonic() - first >= seconds:
                break
    finally:
        await consumer.stop()
        await client.close()
        await scratch.cleanup()
    return {
        "rides": done,
        "seconds": time.monotonic() - first,
        "rides_per_s": done / (time.monotonic() - first),
    }


def _old_document(raw: bytes) -> dict[str, Any]:
    ride = json.loads(raw)
    distance, fare = baseline_price(raw)
    return {
        "nomclient": ride.get("client_name"),
        "telephoneClient": ride.get("client_phone"),
        "locationClient": f"{ride['client_lon']}, {ride['client_lat']}",
        "distance": distance,
        "confort": ride["confort"],
        "prix_travel": fare,
        "nomDriver": ride.get("driver_name"),
        "telephoneDriver": ride.get("driver_phone"),
        "locationDriver": f"{ride['driver_lon']}, {ride['driver_lat']}",
        "agent_timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# -- cost per ride ---------------------------------------------------------------


def es_cost(scratch: Scratch) -> dict[str, Any]:
    """Bytes per document of the run's indices, merged down to one segment."""
    url = scratch.services.es_url
    pattern = f"{scratch.prefix}-*"
    es("POST", f"{url}/{pattern}/_refresh")
    es("POST", f"{url}/{pattern}/_forcemerge?max_num_segments=1")
    stats = es("GET", f"{url}/{pattern}/_stats/store,docs")["_all"]["primaries"]
    docs, size = stats["docs"]["count"], stats["store"]["size_in_bytes"]
    return {"documents": docs, "bytes": size, "bytes_per_ride": size / max(1, docs)}


def lake_cost(scratch: Scratch) -> dict[str, Any]:
    """Bytes per row of the run's Parquet files, and of the same rows in one file."""
    fs = gcs_filesystem(scratch.services.gcs_endpoint)
    fs.invalidate_cache()
    paths = [p for p in fs.find(scratch.lake_root) if p.endswith(".parquet")]
    tables, size = [], 0
    for path in paths:
        size += fs.size(path)
        with fs.open(path, "rb") as handle:
            tables.append(pq.read_table(handle))
    table = pa.concat_tables(tables)
    one = io.BytesIO()
    pq.write_table(table, one, compression="zstd")
    rows = table.num_rows
    return {
        "files": len(paths),
        "rows": rows,
        "bytes": size,
        "bytes_per_ride": size / max(1, rows),
        "bytes_per_ride_in_one_file": len(one.getvalue()) / max(1, rows),
    }


# -- the whole benchmark ---------------------------------------------------------


async def prepare_backlog(count: int) -> Scratch:
    owner = Scratch("backlog")
    await owner.create_topic()
    stats = await produce_messages(owner.settings(), Simulation(seed=1).messages(count))
    print(f"backlog: {stats.sent} rides produced at {stats.rate():,.0f}/s")
    await asyncio.sleep(1.0)  # let the broker flush the segments it appended
    return owner


async def run(
    count: int = 100_000, repeats: int = 5, old_seconds: float = 20.0, scale: int = 3
) -> dict[str, Any]:
    owner = await prepare_backlog(count)
    source = owner.topic
    figures: dict[str, Any] = {
        "count": count,
        "repeats": repeats,
        "tuning": WORKER_TUNING,
    }
    try:
        kafka_bytes = kafka_bytes_on_disk(source)
        runs: dict[str, list[dict[str, Any]]] = {
            "kefta": [],
            "ceiling": [],
            "old_way": [],
        }
        for repeat in range(repeats):
            keep = repeat == 0
            result, scratch = await kefta_backlog(source, count, keep=keep)
            if keep:
                figures["cost"] = {
                    "kafka": {
                        "bytes": kafka_bytes,
                        "bytes_per_ride": kafka_bytes / count,
                    },
                    "elasticsearch": es_cost(scratch),
                    "lake": lake_cost(scratch),
                }
                await scratch.cleanup()
            runs["kefta"].append(result)
            runs["ceiling"].append(
                await ceiling(source, count, owner.services.bootstrap)
            )
            runs["old_way"].append(await old_way(source, old_seconds))
            print(
                f"  run {repeat + 1}: kefta {result['rides_per_s']:,.0f}/s "
                f"ceiling {runs['ceiling'][-1]['rides_per_s']:,.0f}/s "
                f"old way {runs['old_way'][-1]['rides_per_s']:,.0f}/s "
                f"rss {result['peak_rss_mb']:.0f} MB"
            )
        figures |= _summary(runs)
        write_result("e2e", figures)
        if scale:
            two = [
                (await kefta_backlog(source, count, workers=2))[0] for _ in range(scale)
            ]
            print(f"  two workers: {[round(r['rides_per_s']) for r in two]}")
            one = figures["kefta"]["rides_per_s"]
            figures["scale"] = {
                "one_worker_rides_per_s": one,
                "two_workers_rides_per_s": median([r["rides_per_s"] for r in two]),
                "two_over_one": median([r["rides_per_s"] for r in two]) / one,
                "two_workers_runs": two,
            }
    finally:
        await owner.cleanup()
    figures["machine_after"] = machine()
    write_result("e2e", figures)
    return figures


def _summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def rate(name: str) -> list[float]:
        return [r["rides_per_s"] for r in runs[name]]

    kefta, ceiling_, old = rate("kefta"), rate("ceiling"), rate("old_way")
    return {
        "kefta": {
            "rides_per_s": median(kefta),
            "rides_per_s_from_first_output": median(
                [r["rides_per_s_from_first_output"] for r in runs["kefta"]]
            ),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs["kefta"]),
            "cpu_us_per_ride": median([r["cpu_us_per_ride"] for r in runs["kefta"]]),
            "runs": runs["kefta"],
        },
        "ceiling": {"rides_per_s": median(ceiling_), "runs": runs["ceiling"]},
        "old_way": {"rides_per_s": median(old), "runs": runs["old_way"]},
        "kefta_over_ceiling": median(
            [k / c for k, c in zip(kefta, ceiling_, strict=True)]
        ),
        "kefta_over_old_way": median([k / o for k, o in zip(kefta, old, strict=True)]),
    }


def main(**options: Any) -> dict[str, Any]:
    return asyncio.run(run(**options))


if __name__ == "__main__":
    main()
