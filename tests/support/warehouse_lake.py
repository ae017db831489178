"""Rides written as a Hive-partitioned Parquet lake, for the warehouse tests.

The lake writer of the stream app is not needed: ``Lake.write`` puts rows of the
lake schema (``kefta.lake_schema.RIDE_SCHEMA``) where the warehouse reads them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kefta.lake_schema import RIDE_SCHEMA

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TIERS = ("low", "medium", "high")
COMFORT = {"low": "low", "medium": "standard", "high": "premium"}


@dataclass(frozen=True)
class Ride:
    """The fields of a lake row that the warehouse reads; the rest is filler."""

    ride_id: str
    client_lon: float
    client_lat: float
    tier: str
    prix_travel: float
    agent_timestamp: dt.datetime = dt.datetime(2026, 12, 3, 17, 5, tzinfo=dt.UTC)
    source_offset: int = 0


@dataclass
class Lake:
    """A lake root and the rides written to it, duplicates included."""

    root: Path
    written: list[Ride] = field(default_factory=list)

    def write(self, rides: Sequence[Ride], *, day: str, hour: int, name: str) -> Path:
        """Write ``rides`` as ``<root>/dt=<day>/hour=<hour>/<name>.parquet``."""
        folder = self.root / f"dt={day}" / f"hour={hour:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.parquet"
        pq.write_table(rides_table(rides), path)
        self.written.extend(rides)
        return path

    def latest_per_ride(self) -> dict[str, Ride]:
        """What deduplication must keep: the last priced row of each ride_id."""
        latest: dict[str, Ride] = {}
        for ride in self.written:
            kept = latest.get(ride.ride_id)
            if kept is None or ride.agent_timestamp > kept.agent_timestamp:
                latest[ride.ride_id] = ride
        return latest


def rides_table(rides: Sequence[Ride]) -> pa.Table:
    """Rides as a table of the lake schema."""
    n = len(rides)
    lat = [r.client_lat for r in rides]
    lon = [r.client_lon for r in rides]
    locations = [{"lat": a, "lon": o} for a, o in zip(lat, lon, strict=True)]
    return pa.table(
        {
            "ride_id": [r.ride_id for r in rides],
            "event_time": [r.agent_timestamp for r in rides],
            "agent_timestamp": [r.agent_timestamp for r in rides],
            "nomclient": ["client"] * n,
            "telephoneClient": ["0600000000"] * n,
            "locationClient": locations,
            "client_lat": lat,
            "client_lon": lon,
            "nomDriver": ["driver"] * n,
            "telephoneDriver": ["0700000000"] * n,
            "locationDriver": locations,
            "driver_lat": lat,
            "driver_lon": lon,
            "distance": [1.0] * n,
            "confort": [COMFORT[r.tier] for r in rides],
            "tier": [r.tier for r in rides],
            "rate_per_km": [2.0] * n,
            "prix_travel": [r.prix_travel for r in rides],
            "source_topic": ["kefta"] * n,
            "source_partition": pa.array([0] * n, pa.int32()),
            "source_offset": [r.source_offset for r in rides],
        },
        schema=RIDE_SCHEMA,
    )


def random_rides(count: int, *, seed: int, prefix: str = "ride") -> list[Ride]:
    """Rides around New York, priced between 5 and 80 fare units."""
    rng = np.random.default_rng(seed)
    return [
        Ride(
            ride_id=f"{prefix}-{index}",
            client_lon=float(rng.normal(-73.97, 0.06)),
            client_lat=float(rng.normal(40.74, 0.06)),
            tier=str(rng.choice(TIERS)),
            prix_travel=round(float(rng.uniform(5, 80)), 2),
            source_offset=index,
        )
        for index in range(count)
    ]
