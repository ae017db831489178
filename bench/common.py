"""What every benchmark shares: the machine, names, services, workers, results.

Each benchmark creates uuid-named topics, a consumer group, an index prefix and a
lake folder, and deletes them when it ends (:class:`Scratch`). Figures go to
``artifacts/bench/<name>.json`` with the machine they were measured on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kefta.producer import ProduceStats, produce
from kefta.settings import Settings
from kefta.simulator import SimMessage
from kefta.testing import (
    Endpoints,
    endpoints,
    gcs_filesystem,
    unreachable,
    worker_env,
)

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "bench"
KAFKA_DATA = ROOT / ".services" / "kafka" / "data"


# -- the machine and the results ----------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "loadavg_1_5_15": list(os.getloadavg()),
        "memory_gb": round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        ),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def write_result(name: str, figures: dict[str, Any]) -> Path:
    """Write ``artifacts/bench/<name>.json`` (figures and the machine); print it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.json"
    document = {"benchmark": name, "machine": machine(), **figures}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\n== {name} ({path.relative_to(ROOT)})")
    print(json.dumps(figures, indent=2, default=str))
    return path


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))
    return float(ordered[rank])


# -- services and names ----------------------------------------------------------


def check_services() -> None:
    """Exit with the reason when a service does not answer."""
    problems = unreachable(endpoints())
    if problems:
        sys.exit(
            f"{'; '.join(problems)}; run `scripts/services up` and `. .services/env`"
        )


@dataclass
class Scratch:
    """uuid-named topics, group, index prefix and lake folder of one run."""

    label: str
    services: Endpoints = field(default_factory=endpoints)
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    source: str | None = None
    """A ride topic shared with other runs (not created or deleted by this one)."""
    extra_topics: list[str] = field(default_factory=list)
    local_dirs: list[Path] = field(default_factory=list)

    @property
    def topic(self) -> str:
        return self.source or f"bench-{self.label}-{self.run}"

    @property
    def own(self) -> str:
        return f"bench-{self.label}-{self.run}"

    @property
    def priced_topic(self) -> str:
        return f"{self.own}.priced"

    @property
    def dlq_topic(self) -> str:
        return f"{self.own}.dlq"

    @property
    def group(self) -> str:
        return self.own

    @property
    def prefix(self) -> str:
        return f"bench-{self.label}-{self.run}-rides"

    @property
    def lake_root(self) -> str:
        """bucket/folder of the run's lake on the GCS emulator."""
        return f"{self.services.gcs_bucket}/{self.own}"

    def local_lake(self) -> Path:
        path = ROOT / "artifacts" / "tmp" / f"lake-{self.label}-{self.run}"
        self.local_dirs.append(path)
        return path

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "bootstrap": self.services.bootstrap,
            "topic": self.topic,
            "priced_topic": self.priced_topic,
            "dlq_topic": self.dlq_topic,
            "group": self.group,
            "es_url": None,
            "lake_url": "",
        }
        return Settings(**(values | overrides))

    def worker_env(self, lake: str = "gcs", **extra: str) -> dict[str, str]:
        """Environment of a ``kefta worker`` of this run with both sinks on.

        ``lake`` is ``gcs`` (the emulator), ``local`` (a folder) or ``none``.
        """
        if lake == "gcs":
            lake_url = f"gs://{self.lake_root}"
        elif lake == "local":
            lake_url = str(self.local_lake())
        else:
            lake_url = ""
        return worker_env(
            self.settings(),
            ROOT / "artifacts" / "tmp" / f"data-{self.run}",
            es_url=self.services.es_url,
            es_index_prefix=self.prefix,
            gcs_endpoint=self.services.gcs_endpoint,
            lake_url=lake_url,
            **extra,
        )

    async def create_topic(
        self, partitions: int = 6, config: dict[str, str] | None = None
    ) -> None:
        """Create the run's topics: priced, dead letters and (unless shared) the ride
        topic, which gets ``config``."""
        topics = [
            NewTopic(self.priced_topic, partitions, 1),
            NewTopic(self.dlq_topic, partitions, 1),
        ]
        if self.source is None:
            topics.append(
                NewTopic(self.topic, partitions, 1, topic_configs=config or {})
            )
        admin = AIOKafkaAdminClient(bootstrap_servers=self.services.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(topics)
        finally:
            await admin.close()

    async def cleanup(self) -> None:
        """Delete everything the run created: topics, group, indices, lake."""
        topics = [self.priced_topic, self.dlq_topic, *self.extra_topics]
        if self.source is None:
            topics.append(self.topic)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.services.bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            mine = [t for t in topics if t in existing]
            if mine:
                await admin.delete_topics(mine)
            with contextlib.suppress(Exception):  # it may never have committed
                await admin.delete_consumer_groups([self.group])
        finally:
            await admin.close()
        _http("DELETE", f"{self.services.es_url}/{self.prefix}-*")
        _http("DELETE", f"{self.services.es_url}/_index_template/{self.prefix}")
        delete_gcs_folder(self.services, self.lake_root)
        for path in self.local_dirs:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(ROOT / "artifacts" / "tmp" / f"data-{self.run}", True)


def _http(method: str, url: str, body: bytes | None = None) -> Any:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def es(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    """One Elasticsearch request; the parsed answer, None for a 404."""
    return _http(method, url, None if body is None else json.dumps(body).encode())


def delete_gcs_folder(services: Endpoints, root: str) -> None:
    fs = gcs_filesystem(services.gcs_endpoint)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(root, recursive=True)


# -- producing and watching ------------------------------------------------------


async def produce_messages(
    settings: Settings,
    messages: Iterable[SimMessage],
    rate: float | None = None,
    record: Path | None = None,
) -> ProduceStats:
    return await produce(messages, settings, rate=rate, record=record)


class Offsets:
    """A long-lived admin client that reads committed and end offsets quickly."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
        self._consumer: Any = None

    async def __aenter__(self) -> Offsets:
        from aiokafka import AIOKafkaConsumer

        await self._admin.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap, enable_auto_commit=False
        )
        await self._consumer.start()
        await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def committed(self, group: str, topic: str) -> int:
        offsets = await self._admin.list_consumer_group_offsets(group)
        return sum(
            m.offset for tp, m in offsets.items() if tp.topic == topic and m.offset > 0
        )

    async def end(self, topic: str) -> int:
        from aiokafka import TopicPartition

        partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = await self._consumer.end_offsets(tps) if tps else {}
        return int(sum(ends.values()))


async def wait_for(
    check: Callable[[], Awaitable[bool]], limit: float, what: str, every: float = 0.2
) -> float:
    """Poll ``check`` until true; returns the monotonic time it became true."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if await check():
            return time.monotonic()
        await asyncio.sleep(every)
    raise TimeoutError(f"timed out after {limit:.0f} s waiting for {what}")


# -- worker processes ----------------------------------------------------------


def kafka_bytes_on_disk(topic: str) -> int:
    """Bytes of the topic's log segments in the local broker's data folder."""
    total = 0
    for folder in KAFKA_DATA.glob(f"{topic}-*"):
        if folder.name.rsplit("-", 1)[0] != topic:
            continue
        total += sum(f.stat().st_size for f in folder.glob("*.log"))
    return total


def logs_dir() -> Path:
    path = ARTIFACTS / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path
