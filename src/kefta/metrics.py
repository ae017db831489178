"""Prometheus metrics of a worker, read from the pipeline at scrape time.

:func:`metrics_registry` builds a registry of its own (never the global one) whose
collector reads the pipeline's counters, the offset ledger and each sink's stats
when Prometheus scrapes, so nothing is counted twice and no work happens between
scrapes. Names follow Prometheus conventions: ``kefta_`` prefix, ``_total`` on
counters, seconds and bytes as units. ``docs/production.md`` ties alerts to them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from kefta.pipeline import Pipeline
from kefta.sinks.base import Sink
from kefta.sinks.elasticsearch import EsStats
from kefta.sinks.lake import LakeSink, LakeStats


def kafka_state(app: Any) -> dict[str, Any]:
    """Partitions assigned to the consumer, and whether the producer runs."""
    try:
        assigned = len(app.consumer.assignment())
    except Exception:  # the consumer is not started yet
        assigned = 0
    producer = getattr(app, "producer", None)
    running = bool(getattr(producer, "started", False)) and not getattr(
        producer, "crashed", False
    )
    return {"assigned_partitions": assigned, "producer_started": running}


def down_since(sink: Sink) -> float | None:
    """When the sink's destination went down (monotonic clock); None when up."""
    down: float | None = getattr(getattr(sink, "stats", None), "down_since", None)
    return down


class PipelineCollector(Collector):
    """Reads the pipeline, its sinks and the Kafka client at each scrape."""

    def __init__(
        self, pipeline: Pipeline, app: Any, viewers: Callable[[], int]
    ) -> None:
        self.pipeline, self.app, self.viewers = pipeline, app, viewers

    def collect(self) -> Iterator[Metric]:
        yield from pipeline_metrics(self.pipeline)
        yield from sink_metrics(self.pipeline.sinks)
        kafka = kafka_state(self.app)
        yield GaugeMetricFamily(
            "kefta_kafka_assigned_partitions",
            "Partitions of the ride topic assigned to this worker.",
            value=kafka["assigned_partitions"],
        )
        yield GaugeMetricFamily(
            "kefta_live_viewers", "Open live-view pages.", value=self.viewers()
        )


def pipeline_metrics(pipeline: Pipeline) -> Iterator[Metric]:
    """Rides in, priced, dead-lettered by error class, and the commit lag."""
    counters = pipeline.counters
    yield CounterMetricFamily(
        "kefta_messages",
        "Kafka messages consumed from the ride topic.",
        value=counters.messages,
    )
    yield CounterMetricFamily(
        "kefta_rides_priced", "Rides priced and sent on.", value=counters.priced
    )
    yield _by_label(
        "kefta_dead_letters",
        "Messages and rides sent to the dead-letter topic, by error class.",
        "error_class",
        pipeline.dead_letters.by_class,
    )
    lag = GaugeMetricFamily(
        "kefta_uncommitted_messages",
        "Messages read but not committed (what a crash would replay), per partition.",
        labels=["topic", "partition"],
    )
    for tp, count in sorted(pipeline.ledger.uncommitted().items()):
        lag.add_metric([tp.topic, str(tp.partition)], count)
    yield lag


def sink_metrics(sinks: Sequence[Sink], now: float | None = None) -> Iterator[Metric]:
    """Outage state of every sink, and each sink's own counters."""
    now = time.monotonic() if now is None else now
    down = GaugeMetricFamily(
        "kefta_sink_down", "1 while the sink's destination is down.", labels=["sink"]
    )
    down_for = GaugeMetricFamily(
        "kefta_sink_down_seconds",
        "Seconds the current outage has lasted; 0 when up.",
        labels=["sink"],
    )
    for sink in sinks:
        since = down_since(sink)
        down.add_metric([sink.name], 0 if since is None else 1)
        down_for.add_metric([sink.name], 0.0 if since is None else now - since)
    yield down
    yield down_for
    for sink in sinks:
        stats = getattr(sink, "stats", None)
        if isinstance(stats, EsStats):
            yield from es_metrics(stats)
        elif isinstance(stats, LakeStats):
            yield from lake_metrics(stats, sink)


_ES_COUNTERS: Final = (
    ("kefta_es_indexed", "Rides indexed.", "indexed"),
    ("kefta_es_retried", "Bulk items retried.", "retried"),
    ("kefta_es_dead_lettered", "Rides Elasticsearch refused.", "dead_lettered"),
    ("kefta_es_bulk_passes", "Bulk passes over the buffer.", "bulks"),
    ("kefta_es_outages", "Outages of Elasticsearch.", "outages"),
)
_LAKE_COUNTERS: Final = (
    ("kefta_lake_files", "Parquet files written.", "files"),
    ("kefta_lake_rows", "Rows written to Parquet files.", "rows"),
    ("kefta_lake_written_bytes", "Bytes of Parquet written.", "bytes_written"),
    (
        "kefta_lake_skipped_replayed",
        "Replayed rides already in a file.",
        "skipped_replayed",
    ),
    ("kefta_lake_outages", "Outages of the storage.", "outages"),
    (
        "kefta_lake_held_back",
        "File writes held back: the partition had moved to another worker.",
        "fenced",
    ),
)


def _counters(stats: Any, table: Sequence[tuple[str, str, str]]) -> Iterator[Metric]:
    for name, doc, attribute in table:
        yield CounterMetricFamily(name, doc, value=getattr(stats, attribute))


def _by_label(name: str, doc: str, label: str, counts: Mapping[Any, int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([str(key)], count)
    return family


def es_metrics(stats: EsStats) -> Iterator[Metric]:
    yield from _counters(stats, _ES_COUNTERS)
    yield _by_label(
        "kefta_es_items", "Bulk items by HTTP status.", "status", stats.statuses
    )
    yield GaugeMetricFamily(
        "kefta_es_bulk_last_seconds",
        "Duration of the last flush (bulk requests and retries).",
        value=stats.last_took_ms / 1000,
    )


def lake_metrics(stats: LakeStats, sink: Sink) -> Iterator[Metric]:
    yield from _counters(stats, _LAKE_COUNTERS)
    yield _by_label(
        "kefta_lake_rotations", "Files closed, by reason.", "reason", stats.rotations
    )
    if isinstance(sink, LakeSink):
        yield GaugeMetricFamily(
            "kefta_lake_buffered_bytes",
            "Estimated bytes held by open files.",
            value=sink.buffered_bytes(),
        )


def metrics_registry(
    pipeline: Pipeline, app: Any, viewers: Callable[[], int] = lambda: 0
) -> CollectorRegistry:
    """A registry of kefta's metrics and the process's (CPU, memory, files).

    ``app`` is the Faust app (None outside a worker); ``viewers`` counts open
    live-view pages.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(pipeline, app, viewers))
    ProcessCollector(registry=registry)
    return registry
