"""The simulator: reproducible, realistic, and every broken message is rejected."""

from __future__ import annotations

import math
import random
import re
import statistics
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from kefta.engine import price_rides
from kefta.errors import ConfigError
from kefta.pricing import haversine_km, load_tariff
from kefta.rides import Rejection, RideRequest, Source, decode_message, requests_of
from kefta.simulator import (
    BAD_KINDS,
    MAX_DRIVER_KM,
    SimMessage,
    Simulation,
    content_key,
    destination,
    nyc_pickups,
    replay_file,
    uuid4_text,
)

START = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
SOURCE = Source("rides", 0, 0, 1_780_000_000_000)
REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "data_projet.json"
NYC_LAT, NYC_LON = (40.4, 41.2), (-74.5, -73.3)
MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def simulate(count: int, **options: Any) -> list[SimMessage]:
    options.setdefault("seed", 7)
    options.setdefault("start", START)
    return list(Simulation(**options).messages(count))


def decode(message: SimMessage) -> list[RideRequest | Rejection]:
    return decode_message(message.value, SOURCE)


def rides_of(messages: list[SimMessage]) -> list[RideRequest]:
    return [ride for m in messages for ride in requests_of(decode(m))]


def test_messages_same_seed_identical_bytes() -> None:
    first = simulate(3000, bad_fraction=0.1, legacy_fraction=0.2)

    second = simulate(3000, bad_fraction=0.1, legacy_fraction=0.2)

    assert first == second


def test_messages_shorter_stream_is_prefix_of_longer() -> None:
    short = simulate(10, bad_fraction=0.1)

    long = simulate(2000, bad_fraction=0.1)

    assert short == long[:10]


def test_messages_other_seed_differs() -> None:
    first = simulate(50)

    second = simulate(50, seed=8)

    assert {m.value for m in first}.isdisjoint(m.value for m in second)


def test_messages_count_zero_yields_nothing() -> None:
    assert simulate(0) == []


def test_messages_negative_count_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="count -1 is negative"):
        Simulation(seed=1).messages(-1)


def test_uuid4_text_matches_the_uuid_module() -> None:
    rng = random.Random(5)
    bits = [rng.getrandbits(128) for _ in range(1000)] + [0, 2**128 - 1]

    texts = [uuid4_text(b) for b in bits]

    assert texts == [str(uuid.UUID(int=b, version=4)) for b in bits]


def test_valid_messages_decode_and_price() -> None:
    messages = simulate(3000, legacy_fraction=0.2, rate_fraction=0.3)

    rides = rides_of(messages)
    priced = price_rides(rides, load_tariff())

    assert all(m.valid for m in messages)
    assert len(rides) == len(messages)
    assert all(0 < p["prix_travel"] < 200 for p in priced)
    assert {p["rate_per_km"] for p in priced} == {1.5, 2.0, 3.0}


def test_canonical_messages_carry_their_ride_id_as_key() -> None:
    messages = simulate(500)

    rides = rides_of(messages)

    assert [m.ride_id for m in messages] == [r.ride_id for r in rides]
    assert all(m.key == m.ride_id.encode() for m in messages if m.ride_id)
    assert len({m.ride_id for m in messages}) == len(messages)


def test_canonical_messages_have_the_v1_fields() -> None:
    document = orjson.loads(simulate(1)[0].value)

    assert document["version"] == 1
    assert MILLIS.match(document["event_time"])
    assert re.fullmatch(r"0[67]\d{8}", document["client_phone"])
    assert re.fullmatch(r"0[67]\d{8}", document["driver_phone"])
    assert {"client_lat", "client_lon", "driver_lat", "driver_lon"} <= document.keys()


def test_event_times_advance_from_start_at_the_simulated_rate() -> None:
    rides = rides_of(simulate(1000, events_per_second=100.0))

    times = [r.event_time for r in rides]
    elapsed = (times[-1] - START).total_seconds()

    assert times == sorted(times)
    assert times[0] >= START
    assert 8.0 < elapsed < 12.0


def test_live_event_times_are_the_wall_clock() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)

    rides = rides_of(simulate(20, live=True))

    assert all(before <= r.event_time <= datetime.now(UTC) for r in rides)


def test_client_positions_inside_new_york() -> None:
    rides = rides_of(simulate(5000, legacy_fraction=0.3))

    lats = [r.client.lat for r in rides]
    lons = [r.client.lon for r in rides]

    assert NYC_LAT[0] <= min(lats) <= max(lats) <= NYC_LAT[1]
    assert NYC_LON[0] <= min(lons) <= max(lons) <= NYC_LON[1]


def test_bundled_pickups_inside_new_york() -> None:
    pickups = nyc_pickups()

    assert len(pickups) > 60_000
    assert NYC_LAT[0] <= pickups[:, 0].min() <= pickups[:, 0].max() <= NYC_LAT[1]
    assert NYC_LON[0] <= pickups[:, 1].min() <= pickups[:, 1].max() <= NYC_LON[1]


def test_driver_distance_median_near_one_and_a_half_km() -> None:
    rides = rides_of(simulate(5000))

    km = [
        haversine_km(r.client.lat, r.client.lon, r.driver.lat, r.driver.lon)
        for r in rides
    ]

    assert 0.8 < statistics.median(km) < 3.0
    assert max(km) <= MAX_DRIVER_KM + 0.01
    assert sum(d > 5.0 for d in km) > 0.01 * len(km)


def test_destination_is_at_the_given_distance() -> None:
    lat, lon = np.array([40.75, -33.9, 89.0]), np.array([-73.99, 151.2, 179.9])
    bearing, km = np.array([0.3, 2.0, 4.5]), np.array([1.5, 29.0, 0.01])

    lat2, lon2 = destination(lat, lon, bearing, km)

    back = [haversine_km(*args) for args in zip(lat, lon, lat2, lon2, strict=True)]
    assert back == pytest.approx(km.tolist(), rel=1e-9)


def test_comfort_mix_respected_with_producer_spellings() -> None:
    mix = {"low": 0.25, "High": 0.25, "hight": 0.25, "standard": 0.25}

    rides = rides_of(simulate(4000, comfort_mix=mix))

    shares = Counter(r.confort for r in rides)
    assert set(shares) == set(mix)
    assert all(abs(n / len(rides) - 0.25) < 0.04 for n in shares.values())


def test_explicit_rates_in_a_fraction_as_int_or_float() -> None:
    messages = simulate(4000, rate_fraction=0.2, legacy_fraction=0.5)

    rates = [_rate(m) for m in messages]
    carried = [r for r in rates if r is not None]

    assert abs(len(carried) / len(rates) - 0.2) < 0.03
    assert {type(r) for r in carried} == {int, float}


def _rate(message: SimMessage) -> object:
    document = orjson.loads(message.value)
    ride = document["data"][0] if "data" in document else document
    return ride.get("prix_base_per_km")


def test_legacy_messages_decode_without_ride_id() -> None:
    messages = simulate(400, legacy_fraction=1.0)

    rides = rides_of(messages)
    texts = b"".join(m.value for m in messages)

    assert {m.kind for m in messages} == {"legacy"}
    assert all(m.ride_id is None and m.key == content_key(m.value) for m in messages)
    assert len(rides) == len(messages)
    for spelling in (b"properties-client", b"properties_client", b"logitude"):
        assert spelling in texts
    assert b'"longitude"' in texts


@pytest.fixture(scope="module")
def bad_messages() -> list[SimMessage]:
    return simulate(6000, bad_fraction=1.0, legacy_fraction=0.3)


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_kind_rejected_with_reason(
    bad_messages: list[SimMessage], kind: str
) -> None:
    messages = [m for m in bad_messages if m.kind == kind]

    results = [decode(m) for m in messages]

    assert len(messages) > 100
    assert not any(m.valid for m in messages)
    for message, decoded in zip(messages, results, strict=True):
        assert decoded, message
        assert all(isinstance(r, Rejection) and r.reason for r in decoded), message


def test_bad_kinds_come_from_both_formats(bad_messages: list[SimMessage]) -> None:
    legacy = Counter(m.kind for m in bad_messages if m.ride_id is None)

    assert set(legacy) == set(BAD_KINDS)


def test_bad_fraction_respected_within_tolerance() -> None:
    messages = simulate(20_000, bad_fraction=0.05, legacy_fraction=0.1)

    bad = sum(not m.valid for m in messages)
    rejected = sum(
        not all(isinstance(r, RideRequest) for r in decode(m)) for m in messages
    )

    assert abs(bad / len(messages) - 0.05) < 0.007
    assert rejected == bad


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("bad_fraction", 1.5),
        ("legacy_fraction", -0.1),
        ("rate_fraction", math.nan),
        ("comfort_mix", {"luxe": 1.0}),
        ("comfort_mix", {"low": 0.0}),
        ("rates", {"low": -1.0}),
        ("events_per_second", 0.0),
    ],
)
def test_simulation_bad_option_raises_config_error(option: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=option.split("_")[0]):
        Simulation(seed=1, **{option: value})


def test_replay_pretty_printed_document_is_one_compact_message() -> None:
    messages = list(replay_file(REFERENCE))

    (message,) = messages
    (priced,) = price_rides(rides_of(messages), load_tariff())

    assert message.value == orjson.dumps(orjson.loads(REFERENCE.read_bytes()))
    assert (message.valid, message.kind, message.ride_id) == (True, "legacy", None)
    assert message.key == content_key(message.value)
    assert (priced["distance"], priced["prix_travel"]) == (944.494, 1888.99)


def test_replay_ndjson_one_message_per_line(tmp_path: Path) -> None:
    produced = simulate(5, legacy_fraction=0.4)
    broken = b'{"data": [{"confort": "luxe"'
    unknown = b'{"version": 1, "ride_id": "r-1", "confort": "luxe"}'
    lines = [m.value for m in produced] + [broken, unknown]
    path = tmp_path / "rides.ndjson"
    path.write_bytes(b"\r\n".join(lines[:3]) + b"\n\n" + b"\n".join(lines[3:]) + b"\n")

    replayed = list(replay_file(path))

    assert [m.value for m in replayed] == lines
    assert [m.key for m in replayed[:5]] == [m.key for m in produced]
    assert [m.ride_id for m in replayed[:5]] == [m.ride_id for m in produced]
    assert [m.kind for m in replayed[:5]] == [m.kind for m in produced]
    assert replayed[5] == SimMessage(
        content_key(broken), broken, False, None, "rejected"
    )
    assert replayed[6] == SimMessage(b"r-1", unknown, False, "r-1", "rejected")


def test_replay_missing_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        list(replay_file(tmp_path / "absent.json"))
