from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kefta.errors import ConfigError
from kefta.pricing import (
    TIERS,
    Tariff,
    TierPrice,
    distance_metres,
    fare_cents,
    haversine_km,
    load_tariff,
    quote,
    quote_batch,
)

TARIFF = load_tariff()


def test_quote_reference_message_gives_golden_values() -> None:
    result = quote((48.8566, 2.3522), (40.4168, 3.7038), "medium", 2, TARIFF)

    assert result.distance == 944.494
    assert result.prix_travel == 1888.99


def test_haversine_same_point_is_zero() -> None:
    assert haversine_km(40.7, -73.9, 40.7, -73.9) == 0.0


def test_haversine_antipodes_is_half_circumference() -> None:
    assert haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * 6371.0)


@pytest.mark.parametrize(
    ("km", "metres"),
    [(1.0005, 1001), (1.0004999, 1000), (2.0015, 2002), (0.0, 0), (944.4935, 944494)],
)
def test_distance_metres_rounds_half_up(km: float, metres: int) -> None:
    assert distance_metres(km) == metres


@pytest.mark.parametrize(
    ("metres", "rate", "cents"),
    [
        (1002, 2.5, 251),  # 2.505 -> 2.51, an exact half rounds up
        (1001, 2.5, 250),  # 2.5025 -> 2.50
        (1, 5.0, 1),  # 0.005 -> 0.01
        (3, 1.5, 0),  # 0.0045 -> 0.00
        (944494, 2.0, 188899),
    ],
)
def test_fare_cents_rounds_half_up_in_decimal(
    metres: int, rate: float, cents: int
) -> None:
    assert fare_cents(metres, rate, TierPrice(rate)) == cents


def test_fare_applies_base_fare_and_minimum() -> None:
    price = TierPrice(rate_per_km=2.0, base_fare=3.0, minimum=7.5)

    assert fare_cents(1000, 2.0, price) == 750  # 3 + 2 = 5 < 7.5
    assert fare_cents(10_000, 2.0, price) == 2300  # 3 + 20


def test_quote_without_message_rate_uses_tier_rate() -> None:
    result = quote((40.0, -74.0), (40.01, -74.0), "high", None, TARIFF)

    assert result.rate_per_km == TARIFF["high"].rate_per_km
    assert result.prix_travel == round(result.distance * 3.0, 2)


def test_load_tariff_defaults_cover_every_tier() -> None:
    assert set(TARIFF.tiers) == set(TIERS)
    assert TARIFF["medium"].rate_per_km == 2.0


def test_load_tariff_missing_tier_names_it(tmp_path: Path) -> None:
    path = tmp_path / "tariff.toml"
    path.write_text("[tiers.low]\nrate_per_km = 1\n[tiers.medium]\nrate_per_km = 2\n")

    with pytest.raises(ConfigError, match=r"no \[tiers\.high\] section"):
        load_tariff(path)


def test_load_tariff_negative_rate_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "tariff.toml"
    body = "".join(f"[tiers.{t}]\nrate_per_km = 1\n" for t in TIERS)
    path.write_text(body.replace("rate_per_km = 1\n", "rate_per_km = -1\n", 1))

    with pytest.raises(ConfigError, match=r"tiers\.low\.rate_per_km -1 is outside"):
        load_tariff(path)


def test_load_tariff_unreadable_file_says_which_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KEFTA_TARIFF"):
        load_tariff(tmp_path / "absent.toml")


latitudes = st.floats(-90, 90, allow_nan=False)
longitudes = st.floats(-180, 180, allow_nan=False)
rates = st.one_of(st.none(), st.floats(0, 100, allow_nan=False), st.integers(0, 100))
rides = st.tuples(
    latitudes, longitudes, latitudes, longitudes, st.sampled_from(TIERS), rates
)
tariffs = st.builds(
    lambda values: Tariff({t: TierPrice(*values[i]) for i, t in enumerate(TIERS)}),
    st.lists(
        st.tuples(*(st.floats(0, 50, allow_nan=False) for _ in range(3))),
        min_size=3,
        max_size=3,
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(rides, min_size=1, max_size=40), tariffs)
def test_quote_batch_equals_per_ride_quote(batch: list[tuple], tariff: Tariff) -> None:
    coordinates = np.array([r[:4] for r in batch], dtype=np.float64)
    tiers = np.array([TIERS.index(r[4]) for r in batch], dtype=np.int8)
    rate_column = np.array([np.nan if r[5] is None else r[5] for r in batch])

    vectorized = quote_batch(coordinates, tiers, rate_column, tariff)

    for i, (lat1, lon1, lat2, lon2, tier, rate) in enumerate(batch):
        single = quote((lat1, lon1), (lat2, lon2), tier, rate, tariff)
        assert vectorized.distance[i] == single.distance
        assert vectorized.rate_per_km[i] == single.rate_per_km
        assert vectorized.prix_travel[i] == single.prix_travel
