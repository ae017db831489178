"""Integration fixtures: the real services of ``scripts/services``, fresh names per
test, and a factory of real worker processes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from kefta.settings import Settings
from kefta.testing import Endpoints, endpoints, unreachable, worker_env
from support.worker import WorkerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def services() -> Endpoints:
    """The running services; the run stops with the reason when one is missing."""
    found = endpoints()
    problems = unreachable(found)
    if problems:
        pytest.exit(
            "integration tests need the local services; run `scripts/services up` "
            "and `. .services/env` (make test does both). Not reachable: "
            + "; ".join(problems),
            returncode=3,
        )
    return found


@pytest.fixture
def names() -> dict[str, str]:
    """Topic, group and index names unique to one test."""
    run = uuid.uuid4().hex[:10]
    return {
        "topic": f"it-{run}",
        "priced_topic": f"it-{run}.priced",
        "dlq_topic": f"it-{run}.dlq",
        "group": f"it-{run}",
        "es_index_prefix": f"it-{run}-rides",
        "lake_prefix": f"it-{run}",
    }


@pytest.fixture
def settings(services: Endpoints, names: dict[str, str]) -> Settings:
    """Settings of one test: its own topics and group, no sinks unless asked."""
    return Settings(
        bootstrap=services.bootstrap,
        topic=names["topic"],
        priced_topic=names["priced_topic"],
        dlq_topic=names["dlq_topic"],
        group=names["group"],
        es_url=None,
        lake_url="",
    )


@dataclass
class SinkRun:
    """A test with both sinks on: its names, the services, and the workers started."""

    settings: Settings
    services: Endpoints
    prefix: str
    """Elasticsearch index prefix."""
    lake_root: str
    """bucket/folder of the lake on the GCS emulator."""
    tmp: Path
    workers: list[WorkerProcess]

    @classmethod
    def create(
        cls,
        settings: Settings,
        services: Endpoints,
        names: dict[str, str],
        tmp: Path,
        workers: list[WorkerProcess],
    ) -> Self:
        lake_root = f"{services.gcs_bucket}/{names['lake_prefix']}"
        return cls(
            settings, services, names["es_index_prefix"], lake_root, tmp, workers
        )

    def env(self, data_dir: Path, **extra: str) -> dict[str, str]:
        """A worker's environment writing to this run's index prefix and lake."""
        return worker_env(
            self.settings,
            data_dir,
            es_url=self.services.es_url,
            es_index_prefix=self.prefix,
            lake_url=f"gs://{self.lake_root}",
            gcs_endpoint=self.services.gcs_endpoint,
            **extra,
        )


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Worker processes started by a test; all are killed at its end."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        if worker.alive():
            worker.kill()


@pytest.fixture
async def cleanup_topics(settings: Settings) -> AsyncIterator[None]:
    """Delete the test's topics afterwards."""
    yield
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        mine = [
            t
            for t in (settings.topic, settings.priced_topic, settings.dlq_topic)
            if t in existing
        ]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()
