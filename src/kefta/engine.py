"""The pricing engine: validated rides in, priced documents out.

The worker and ``kefta price`` both call :func:`price_rides`; nothing else turns a ride
into a priced document. The document keeps the old pipeline's field names, so
dashboards and SQL written for it keep working, and adds the ride's id, event time,
tier, rate, plain coordinates and its Kafka lineage.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict

import numpy as np

from kefta.pricing import TIERS, Quote, Tariff, quote, quote_batch
from kefta.rides import RideRequest

_TIER_INDEX = {tier: index for index, tier in enumerate(TIERS)}


class Location(TypedDict):
    lat: float
    lon: float


class PricedRide(TypedDict):
    """One priced ride, flat, as written to every sink."""

    ride_id: str
    event_time: str
    agent_timestamp: str
    nomclient: str | None
    telephoneClient: str | None
    locationClient: Location
    client_lat: float
    client_lon: float
    nomDriver: str | None
    telephoneDriver: str | None
    locationDriver: Location
    driver_lat: float
    driver_lon: float
    distance: float
    confort: str
    tier: str
    rate_per_km: float
    prix_travel: float
    source_topic: str
    source_partition: int
    source_offset: int


def price_rides(
    rides: Sequence[RideRequest], tariff: Tariff, now: datetime | None = None
) -> list[PricedRide]:
    """Price ``rides`` in one vectorized pass; ``now`` stamps ``agent_timestamp``."""
    if not rides:
        return []
    coordinates = np.array(
        [(r.client.lat, r.client.lon, r.driver.lat, r.driver.lon) for r in rides],
        dtype=np.float64,
    )
    tiers = np.fromiter((_TIER_INDEX[r.tier] for r in rides), np.int8, len(rides))
    rates = np.fromiter(
        (np.nan if r.rate is None else r.rate for r in rides), np.float64, len(rides)
    )
    quotes = quote_batch(coordinates, tiers, rates, tariff)
    stamp = format_second(now or datetime.now(UTC))
    return [
        _document(ride, stamp, distance, rate, fare)
        for ride, distance, rate, fare in zip(
            rides,
            quotes.distance.tolist(),
            quotes.rate_per_km.tolist(),
            quotes.prix_travel.tolist(),
            strict=True,
        )
    ]


def quote_ride(ride: RideRequest, tariff: Tariff) -> Quote:
    """One ride priced on the per-ride path, the reference of :func:`price_rides`."""
    return quote(
        (ride.client.lat, ride.client.lon),
        (ride.driver.lat, ride.driver.lon),
        ride.tier,
        ride.rate,
        tariff,
    )


def _document(
    ride: RideRequest, stamp: str, distance: float, rate: float, fare: float
) -> PricedRide:
    client, driver, source = ride.client, ride.driver, ride.source
    return {
        "ride_id": ride.ride_id,
        "event_time": format_millis(ride.event_time),
        "agent_timestamp": stamp,
        "nomclient": client.name,
        "telephoneClient": client.phone,
        "locationClient": {"lat": client.lat, "lon": client.lon},
        "client_lat": client.lat,
        "client_lon": client.lon,
        "nomDriver": driver.name,
        "telephoneDriver": driver.phone,
        "locationDriver": {"lat": driver.lat, "lon": driver.lon},
        "driver_lat": driver.lat,
        "driver_lon": driver.lon,
        "distance": distance,
        "confort": ride.confort,
        "tier": ride.tier,
        "rate_per_km": rate,
        "prix_travel": fare,
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
    }


def format_second(moment: datetime) -> str:
    """UTC, second precision: ``2024-08-02T16:09:47Z``, as the old flow wrote it."""
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="seconds") + "Z"


def format_millis(moment: datetime) -> str:
    """UTC, millisecond precision (truncated): ``2024-08-02T16:09:47.123Z``.

    The year always has four digits, as ISO 8601 and every sink's parser expect
    (``strftime`` writes year 5 as ``5``, which the lake cannot parse).
    """
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


def as_json_ready(ride: PricedRide) -> dict[str, Any]:
    """The document as a plain dict (for serializers that want ``dict``)."""
    return dict(ride)
