"""Fixtures of the warehouse unit tests: a lake of rides in a temporary folder,
and the reference pickups files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from kefta.warehouse import default_pickups_path
from support.warehouse_lake import SHARED_DATA, Lake, Ride, random_rides


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    root = tmp_path / "lake"
    root.mkdir()
    return Lake(root)


@pytest.fixture
def filled_lake(lake: Lake) -> Lake:
    """Two hours of rides, and one ride replayed later in the second hour at a new
    price: the report must count it once, at the new price."""
    first, second = random_rides(120, seed=1), random_rides(80, seed=2, prefix="late")
    lake.write(first, day="2026-12-03", hour=17, name="part-0")
    lake.write(second, day="2026-12-03", hour=18, name="part-0")
    original = first[0]
    replayed = Ride(
        original.ride_id,
        original.client_lon,
        original.client_lat,
        original.tier,
        prix_travel=original.prix_travel + 10.0,
        agent_timestamp=original.agent_timestamp + dt.timedelta(minutes=5),
        source_offset=1000,
    )
    lake.write([replayed], day="2026-12-03", hour=18, name="replay")
    return lake


@pytest.fixture(scope="session")
def reference_pickups() -> str:
    """The client's k-means training file (2,957 pickups), as packaged."""
    return default_pickups_path()


@pytest.fixture(scope="session")
def august_pickups() -> str:
    """65,535 Uber pickups of August 2014 (CRLF line endings)."""
    path = SHARED_DATA / "uber-raw-data-aug14.csv"
    assert path.is_file(), f"{path} is missing: the benchmark pickups are shared data"
    return str(path)
