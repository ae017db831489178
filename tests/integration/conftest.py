"""Integration fixtures: the real services of ``scripts/services``, fresh names per
test, and a factory of real worker processes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from kefta.settings import Settings
from support.services import Endpoints, endpoints, unreachable
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


def worker_env(settings: Settings, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a ``kefta worker`` process running with ``settings``."""
    env = {
        "KEFTA_BOOTSTRAP": settings.bootstrap,
        "KEFTA_TOPIC": settings.topic,
        "KEFTA_PRICED_TOPIC": settings.priced_topic,
        "KEFTA_DLQ_TOPIC": settings.dlq_topic,
        "KEFTA_GROUP": settings.group,
        "KEFTA_WEB_ENABLED": "false",
        "KEFTA_DATA_DIR": str(data_dir),
        "KEFTA_LOG_EVERY": "2",
        "KEFTA_ES_URL": "",
        "KEFTA_LAKE_URL": "",
    }
    env.update({f"KEFTA_{k.upper()}": v for k, v in extra.items()})
    return env


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
