"""The lake sink's ownership fence, on a local folder (real Parquet files)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import orjson
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from kefta.engine import PricedRide, price_rides
from kefta.pricing import load_tariff
from kefta.rides import RideRequest, Source, decode_message
from kefta.simulator import Simulation
from kefta.sinks.base import TopicPartition
from kefta.sinks.lake import LakeSink

TP = TopicPartition("rides", 0)


def rides(count: int) -> list[PricedRide]:
    start = datetime(2026, 3, 1, 8, tzinfo=UTC)
    requests = []
    for offset, message in enumerate(Simulation(3, start=start).messages(count)):
        decoded = decode_message(message.value, Source(TP.topic, TP.partition, offset))
        requests += [r for r in decoded if isinstance(r, RideRequest)]
    return price_rides(requests, load_tariff())


def written(root: Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in root.rglob("*.parquet"))


class Fence:
    def __init__(self) -> None:
        self.owned = False
        self.asked: list[TopicPartition] = []

    async def __call__(self, tp: TopicPartition) -> bool:
        self.asked.append(tp)
        return self.owned


async def test_a_partition_that_moved_away_is_not_written(tmp_path: Path) -> None:
    lake = LakeSink(fsspec.filesystem("file"), str(tmp_path), max_rows=50)
    lake.fence = fence = Fence()
    batch = rides(120)

    await lake.add(batch, {TP: 120})
    await lake.close()
    held_back = (written(tmp_path), lake.stats.fenced, lake.safe_offset(TP))
    fence.owned = True
    await lake.close()

    assert held_back == (0, 2, 0)
    assert set(fence.asked) == {TP}
    assert written(tmp_path) == len(batch)
    assert lake.safe_offset(TP) is None


async def test_a_fenced_memory_budget_does_not_spin(tmp_path: Path) -> None:
    lake = LakeSink(fsspec.filesystem("file"), str(tmp_path), memory_budget=1)
    lake.fence = Fence()

    await lake.add(rides(20), {TP: 20})

    assert written(tmp_path) == 0
    assert lake.stats.fenced == 1
    assert lake.safe_offset(TP) == 0


class Answers:
    """A fence that answers from a script: one answer per question."""

    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers)

    async def __call__(self, tp: TopicPartition) -> bool:
        return self.answers.pop(0)


async def test_ownership_is_asked_again_before_the_manifest(tmp_path: Path) -> None:
    lake = LakeSink(fsspec.filesystem("file"), str(tmp_path))
    lake.fence = Answers(True, False, True, True)
    batch = rides(30)
    manifest = tmp_path / "_kefta" / "manifests" / "rides-000.json"

    await lake.add(batch, {TP: 30})
    await lake.close()
    recorded_after_refusal = manifest.exists()
    await lake.close()

    assert not recorded_after_refusal
    assert lake.stats.fenced == 1
    assert len(orjson.loads(manifest.read_bytes())["files"]) == 1
    assert written(tmp_path) == len(batch)


class FlakyFiles(LocalFileSystem):  # type: ignore[misc]
    """A local filesystem whose first write fails like a dropped connection."""

    failures = 1

    def pipe_file(self, path: str, value: bytes, **kwargs: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("storage went away")
        super().pipe_file(path, value, **kwargs)


async def test_ownership_is_asked_again_after_a_storage_outage(tmp_path: Path) -> None:
    lake = LakeSink(FlakyFiles(skip_instance_cache=True), str(tmp_path))
    lake.fence = Answers(True, False)

    await lake.add(rides(10), {TP: 10})
    await lake.close()

    assert lake.stats.outages == 1
    assert lake.stats.fenced == 1
    assert written(tmp_path) == 0
