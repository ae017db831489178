"""Assembling and running ``kefta worker``: sinks, pipeline, Faust app."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable
from typing import Any

import faust

from kefta.app import create_worker
from kefta.kafka import ensure_topics
from kefta.pipeline import DeadLetters, Headers, Pipeline
from kefta.pricing import load_tariff
from kefta.privacy import Protector, protector
from kefta.settings import Settings
from kefta.sinks.base import Sink

log = logging.getLogger(__name__)


class FaustProducer:
    """:class:`kefta.pipeline.Producer` on top of the Faust app's own producer."""

    def __init__(self) -> None:
        self.app: faust.App | None = None

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: Headers
    ) -> Awaitable[Any]:
        assert self.app is not None, "bind the Faust app before sending"
        future: Awaitable[Any] = await self.app.producer.send(
            topic, key, value, None, None, headers
        )
        return future


def build_pipeline(settings: Settings, producer: FaustProducer) -> Pipeline:
    """The pipeline with the sinks that the settings switch on."""
    key = settings.privacy_key.get_secret_value().encode()
    dead_letters = DeadLetters(producer, settings.dlq_topic)
    sinks: list[tuple[Sink, Protector]] = []
    if settings.es_url:
        sinks.append(
            (
                elasticsearch_sink(settings, dead_letters),
                protector(settings.privacy_es, key),
            )
        )
    if settings.lake_url:
        sinks.append((lake_sink(settings), protector(settings.privacy_lake, key)))
    return Pipeline(
        tariff=load_tariff(settings.tariff),
        producer=producer,
        priced_topic=settings.priced_topic,
        dead_letters=dead_letters,
        sinks=sinks,
        priced_protector=protector(settings.privacy_priced, key),
    )


def elasticsearch_sink(settings: Settings, dead_letters: DeadLetters) -> Sink:
    from elasticsearch import AsyncElasticsearch
    from elasticsearch.serializer import OrjsonSerializer

    from kefta.sinks.elasticsearch import ElasticsearchSink

    options: dict[str, Any] = {"serializer": OrjsonSerializer(), "request_timeout": 30}
    if settings.es_api_key:
        options["api_key"] = settings.es_api_key.get_secret_value()
    elif settings.es_username:
        password = (
            settings.es_password.get_secret_value() if settings.es_password else ""
        )
        options["basic_auth"] = (settings.es_username, password)
    if settings.es_ca_file:
        options["ca_certs"] = str(settings.es_ca_file)
    client = AsyncElasticsearch(settings.es_url, **options)
    return ElasticsearchSink(
        client,
        dead_letters.refused,
        prefix=settings.es_index_prefix,
        bulk_docs=settings.es_bulk_docs,
        bulk_bytes=settings.es_bulk_bytes,
        flush_seconds=settings.es_flush_seconds,
        replicas=settings.es_replicas,
    )


def lake_filesystem(settings: Settings) -> tuple[Any, str]:
    """The fsspec filesystem and root path of ``settings.lake_url``."""
    if settings.lake_url.startswith("gs://"):
        # gcsfs would otherwise probe each bucket over gRPC for a minute against
        # an emulator; harmless against Google.
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        import gcsfs

        token = settings.gcs_token.get_secret_value() if settings.gcs_token else None
        if settings.gcs_endpoint and token is None:
            token = "anon"
        fs = gcsfs.GCSFileSystem(endpoint_url=settings.gcs_endpoint, token=token)
        return fs, settings.lake_url.removeprefix("gs://")
    import fsspec

    return fsspec.filesystem("file"), os.path.abspath(settings.lake_url)


def open_warehouse(settings: Settings) -> Any:
    """The warehouse of ``settings``: BigQuery with a project, else local DuckDB."""
    from kefta import warehouse

    filesystem = None
    if settings.lake_url.startswith("gs://") and settings.gcp_project is None:
        filesystem = lake_filesystem(settings)[0]
    lake_url = settings.lake_url
    if "://" not in lake_url:
        lake_url = os.path.abspath(lake_url)
    return warehouse.open_warehouse(
        project=settings.gcp_project,
        lake_url=lake_url,
        dataset=settings.bq_dataset,
        pickups_path=settings.pickups,
        duckdb_path=str(settings.warehouse_path),
        location=settings.bq_location,
        filesystem=filesystem,
    )


def training_scheduler(settings: Settings) -> Any | None:
    """A scheduler that retrains k-means from the worker, when the settings ask."""
    if not (settings.train_every_seconds or settings.train_every_files):
        return None
    from kefta.warehouse import TrainingScheduler

    store = open_warehouse(settings)
    return TrainingScheduler(
        store.train,
        interval_s=settings.train_every_seconds or None,
        every_n_files=settings.train_every_files or None,
    )


def lake_sink(settings: Settings) -> Sink:
    from kefta.sinks.lake import LakeSink

    fs, root = lake_filesystem(settings)
    return LakeSink(
        fs,
        root,
        max_rows=settings.lake_max_rows,
        max_bytes=settings.lake_max_bytes,
        max_seconds=settings.lake_max_seconds,
        idle_seconds=settings.lake_idle_seconds,
        memory_budget=settings.memory_budget,
    )


def run(settings: Settings, loglevel: str = "info") -> None:
    """Prepare the destinations, log the configuration, run until SIGINT/SIGTERM."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    created = asyncio.run(ensure_topics(settings))
    producer = FaustProducer()
    pipeline = build_pipeline(settings, producer)
    worker = create_worker(settings, pipeline, training_scheduler(settings))
    producer.app = worker.app
    if created:
        # Faust configures logging only once it starts, so this goes to stderr.
        print(f"kefta: created topics {', '.join(created)}", file=sys.stderr)
    faust.Worker(
        worker.app, loglevel=loglevel, quiet=True, redirect_stdouts=False
    ).execute_from_commandline()
