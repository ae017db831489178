"""``LocalWarehouse`` end to end: the sql/ files on DuckDB over a Parquet lake."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest

from kefta.warehouse import NotReadyError, Report, open_warehouse
from kefta.warehouse.local import LocalWarehouse
from kefta.warehouse.report import read_pickups
from support.warehouse_lake import Lake, random_rides, rides_table

TIER_RANK = {"low": 0, "medium": 1, "high": 2}


@pytest.fixture
def warehouse(filled_lake: Lake, reference_pickups: str) -> Iterator[LocalWarehouse]:
    with LocalWarehouse(
        lake_url=str(filled_lake.root), pickups_path=reference_pickups
    ) as w:
        yield w


@pytest.fixture
def report(warehouse: LocalWarehouse) -> Report:
    warehouse.train()
    return warehouse.report()


def test_revenue_sums_to_the_deduplicated_fares_of_the_lake(
    report: Report, filled_lake: Lake
) -> None:
    latest = filled_lake.latest_per_ride()

    assert report.total_revenue == pytest.approx(
        sum(r.prix_travel for r in latest.values())
    )
    assert report.total_rides == len(latest) == 200
    assert len(filled_lake.written) == 201


def test_a_replayed_ride_counts_once_at_its_latest_price(
    report: Report, filled_lake: Lake
) -> None:
    replayed = filled_lake.written[-1]
    counted = [r for r in filled_lake.written if r.ride_id == replayed.ride_id]

    assert len(counted) == 2
    tiers = Counter(r.tier for r in filled_lake.latest_per_ride().values())
    by_tier = Counter[str]()
    for row in report.revenue:
        by_tier[row.tier] += row.rides
    assert by_tier == tiers


def test_every_ride_gets_one_of_the_eight_clusters(report: Report) -> None:
    clusters = {row.centroid_id for row in report.revenue}

    assert clusters <= set(range(1, 9))
    assert [c.centroid_id for c in report.centroids] == list(range(1, 9))


def test_rides_go_to_the_nearest_centroid_in_standardized_space(
    report: Report, filled_lake: Lake, reference_pickups: str
) -> None:
    pickups = read_pickups(reference_pickups)
    scale = np.array([pickups.longitude.std(ddof=1), pickups.latitude.std(ddof=1)])
    centres = np.array([[c.longitude, c.latitude] for c in report.centroids])
    expected = Counter[tuple[int, str]]()
    for ride in filled_lake.latest_per_ride().values():
        offsets = (centres - [ride.client_lon, ride.client_lat]) / scale
        expected[int(np.argmin((offsets**2).sum(axis=1))) + 1, ride.tier] += 1

    assert {(r.centroid_id, r.tier): r.rides for r in report.revenue} == dict(expected)


def test_rows_come_by_cluster_then_comfort_tier(report: Report) -> None:
    keys = [(row.centroid_id, TIER_RANK[row.tier]) for row in report.revenue]

    assert keys == sorted(keys)
    for row in report.revenue:
        assert row.avg_fare == pytest.approx(row.revenue / row.rides)


def test_train_reports_the_three_steps_and_the_model(warehouse: LocalWarehouse) -> None:
    result = warehouse.train()

    assert result.backend == "duckdb"
    assert [step.step for step in result.steps] == [
        "external_rides",
        "pickups",
        "model",
    ]
    assert result.model is not None
    assert result.model.num_clusters == 8
    assert result.model.training_rows == 2957
    assert 1 <= result.model.iterations <= 20


def test_training_twice_gives_the_same_centroids(warehouse: LocalWarehouse) -> None:
    warehouse.train()
    first = warehouse.report().centroids

    warehouse.train()

    assert warehouse.report().centroids == first


def test_report_before_training_is_not_ready(warehouse: LocalWarehouse) -> None:
    with pytest.raises(NotReadyError, match="run `kefta train` first"):
        warehouse.report()


def test_an_empty_lake_trains_but_has_nothing_to_report(
    lake: Lake, reference_pickups: str
) -> None:
    with LocalWarehouse(lake_url=str(lake.root), pickups_path=reference_pickups) as w:
        result = w.train()

        with pytest.raises(NotReadyError, match="the lake has no ride file yet"):
            w.report()

    assert result.model is not None


def test_the_database_file_keeps_the_model_for_the_next_process(
    filled_lake: Lake, reference_pickups: str, tmp_path: Path
) -> None:
    database = str(tmp_path / "warehouse.duckdb")
    settings = {"lake_url": str(filled_lake.root), "pickups_path": reference_pickups}
    with LocalWarehouse(duckdb_path=database, **settings) as trainer:
        trainer.train()

    with LocalWarehouse(duckdb_path=database, **settings) as reporter:
        report = reporter.report()

    assert report.total_rides == 200


def test_an_idle_warehouse_leaves_its_file_to_other_processes(
    filled_lake: Lake, reference_pickups: str, tmp_path: Path
) -> None:
    # DuckDB lets one process at a time open a file: the worker's warehouse must not
    # keep it open between trainings, or `kefta report` could not run beside it.
    database = str(tmp_path / "warehouse.duckdb")
    script = (
        "import sys\n"
        "from kefta.warehouse.local import LocalWarehouse\n"
        "with LocalWarehouse(lake_url=sys.argv[1], pickups_path=sys.argv[2],"
        " duckdb_path=sys.argv[3]) as w:\n"
        "    print(w.report().total_rides)\n"
    )
    with LocalWarehouse(
        lake_url=str(filled_lake.root),
        pickups_path=reference_pickups,
        duckdb_path=database,
    ) as worker:
        worker.train()
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                script,
                str(filled_lake.root),
                reference_pickups,
                database,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        worker.train()

    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == "200"


def test_the_lake_can_live_on_an_fsspec_filesystem(reference_pickups: str) -> None:
    memory = fsspec.filesystem("memory")
    root = f"memory://lake-{uuid.uuid4().hex}"
    rides = random_rides(50, seed=3)
    with memory.open(f"{root}/dt=2026-12-03/hour=09/part-0.parquet", "wb") as handle:
        pq.write_table(rides_table(rides), handle)
    try:
        with LocalWarehouse(
            lake_url=root, pickups_path=reference_pickups, filesystem=memory
        ) as w:
            w.train()
            report = w.report()
    finally:
        memory.rm(root, recursive=True)

    assert report.total_rides == 50
    assert report.total_revenue == pytest.approx(sum(r.prix_travel for r in rides))


def test_the_august_pickups_load_and_train_through_the_sql(
    filled_lake: Lake, august_pickups: str
) -> None:
    with LocalWarehouse(
        lake_url=str(filled_lake.root), pickups_path=august_pickups
    ) as w:
        result = w.train()
        report = w.report()

    assert result.model is not None
    assert result.model.training_rows == 65_535
    assert len(report.centroids) == 8


def test_open_warehouse_without_a_project_is_local(filled_lake: Lake) -> None:
    warehouse = open_warehouse(project=None, lake_url=str(filled_lake.root))
    try:
        warehouse.train()
        report = warehouse.report()
    finally:
        warehouse.close()

    assert isinstance(warehouse, LocalWarehouse)
    assert report.total_rides == 200
