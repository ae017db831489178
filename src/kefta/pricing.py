"""Pricing: haversine distance, the tariff, and the fare, per ride and per batch.

The fare follows the old pipeline to the cent:

* distance: haversine on a sphere of radius 6371 km, in km, rounded half up to
  3 decimals;
* ``prix_travel = max(minimum, base_fare + rate * distance)``, rounded half up to
  2 decimals, where ``rate`` is the message's ``prix_base_per_km`` when present and
  the tier's ``rate_per_km`` otherwise.

The fare is computed in integers (distance in metres, money in millionths), so "half
up" means half up in decimal, as a person checks it by hand, and the per-ride and the
vectorized paths give identical results. Rates and fares are taken to 6 decimals.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from kefta.errors import ConfigError

EARTH_RADIUS_KM: Final = 6371.0
TIERS: Final = ("low", "medium", "high")
MAX_RATE: Final = 10_000.0
"""Largest accepted per-km rate; keeps the integer fare arithmetic within int64."""

_MICRO: Final = 1_000_000
# Nudges values that are an exact decimal half but stored just below it in binary
# (2.0005 is 2.000499999...) over the rounding boundary, as a decimal reader expects.
_HALF_UP_NUDGE: Final = 1e-9

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class TierPrice:
    """The price list of one comfort tier."""

    rate_per_km: float
    base_fare: float = 0.0
    minimum: float = 0.0


@dataclass(frozen=True, slots=True)
class Tariff:
    """Per-km rate, base fare and minimum fare of each tier: low, medium, high."""

    tiers: Mapping[str, TierPrice]

    def __getitem__(self, tier: str) -> TierPrice:
        return self.tiers[tier]


def load_tariff(path: Path | None = None) -> Tariff:
    """Read a tariff TOML file, or kefta's default tariff when ``path`` is None.

    Raises ConfigError naming the file and the problem when a tier is missing or a
    value is not a non-negative number.
    """
    if path is None:
        text = resources.files("kefta").joinpath("data/tariff.toml").read_text()
        source = "the default tariff"
    else:
        text, source = _read_text(path), str(path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"tariff {source} is not valid TOML: {exc}") from exc
    return Tariff({tier: _tier_price(document, tier, source) for tier in TIERS})


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"tariff file {path} cannot be read ({exc.strerror}); "
            "check KEFTA_TARIFF or --tariff"
        ) from exc


def _tier_price(document: Mapping[str, object], tier: str, source: str) -> TierPrice:
    tiers = document.get("tiers")
    section = tiers.get(tier) if isinstance(tiers, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(
            f"tariff {source} has no [tiers.{tier}] section; every tier of "
            f"{', '.join(TIERS)} needs one with at least rate_per_km"
        )
    values = {}
    for key, default in (("rate_per_km", None), ("base_fare", 0.0), ("minimum", 0.0)):
        value = section.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(
                f"tariff {source}: tiers.{tier}.{key} is {value!r}; expected a number"
            )
        if not 0.0 <= value <= MAX_RATE:
            raise ConfigError(
                f"tariff {source}: tiers.{tier}.{key} {value} is outside "
                f"[0, {MAX_RATE:g}]"
            )
        values[key] = float(value)
    return TierPrice(**values)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    half_dphi = math.radians(lat2 - lat1) / 2.0
    half_dlambda = math.radians(lon2 - lon1) / 2.0
    a = (
        math.sin(half_dphi) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    )
    return 2.0 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, a)))


def haversine_km_array(
    lat1: FloatArray, lon1: FloatArray, lat2: FloatArray, lon2: FloatArray
) -> FloatArray:
    """Vectorized :func:`haversine_km`, element for element the same formula."""
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    half_dphi = np.radians(lat2 - lat1) / 2.0
    half_dlambda = np.radians(lon2 - lon1) / 2.0
    a = np.sin(half_dphi) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(half_dlambda) ** 2
    result: FloatArray = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(1.0, a)))
    return result


def distance_metres(km: float) -> int:
    """``km`` rounded half up to 3 decimals, as an integer number of metres."""
    return math.floor(km * 1000.0 + 0.5 + _HALF_UP_NUDGE)


def fare_cents(metres: int, rate: float, price: TierPrice) -> int:
    """The fare in cents for a distance in metres at ``rate`` per km."""
    nano = _micro(rate) * metres + _micro(price.base_fare) * 1000
    return max((nano + 5_000_000) // 10_000_000, _cents(price.minimum))


def _micro(value: float) -> int:
    return round(value * _MICRO)


def _cents(value: float) -> int:
    return math.floor(value * 100.0 + 0.5 + _HALF_UP_NUDGE)


@dataclass(frozen=True, slots=True)
class Quote:
    """The priced outcome of one ride: rounded distance, rate used, fare."""

    distance: float
    rate_per_km: float
    prix_travel: float


def quote(
    client: tuple[float, float],
    driver: tuple[float, float],
    tier: str,
    rate: float | None,
    tariff: Tariff,
) -> Quote:
    """Price one ride; ``client`` and ``driver`` are (lat, lon) in degrees."""
    price = tariff[tier]
    used = price.rate_per_km if rate is None else rate
    metres = distance_metres(haversine_km(*client, *driver))
    return Quote(metres / 1000.0, used, fare_cents(metres, used, price) / 100.0)


@dataclass(frozen=True, slots=True)
class QuoteBatch:
    """Columns of :class:`Quote` values for a batch of rides."""

    distance: FloatArray
    rate_per_km: FloatArray
    prix_travel: FloatArray


def quote_batch(
    coordinates: FloatArray,
    tiers: npt.NDArray[np.int8],
    rates: FloatArray,
    tariff: Tariff,
) -> QuoteBatch:
    """Price a batch in one pass; identical, element for element, to :func:`quote`.

    ``coordinates`` has shape (n, 4): client lat, client lon, driver lat, driver lon.
    ``tiers`` holds indexes into :data:`TIERS`; ``rates`` holds the message's rate or
    NaN where the message carried none.
    """
    km = haversine_km_array(*coordinates.T)
    metres = np.floor(km * 1000.0 + 0.5 + _HALF_UP_NUDGE).astype(np.int64)
    table = _tariff_columns(tariff)
    used = np.where(np.isnan(rates), table[0][tiers], rates)
    nano = np.rint(used * _MICRO).astype(np.int64) * metres
    nano += np.rint(table[1][tiers] * _MICRO).astype(np.int64) * 1000
    cents = np.maximum(
        (nano + 5_000_000) // 10_000_000, _minimum_cents(table[2])[tiers]
    )
    return QuoteBatch(metres / 1000.0, used, cents / 100.0)


def _tariff_columns(tariff: Tariff) -> FloatArray:
    rows = [
        (p.rate_per_km, p.base_fare, p.minimum) for p in map(tariff.__getitem__, TIERS)
    ]
    return np.array(rows, dtype=np.float64).T


def _minimum_cents(minimums: FloatArray) -> IntArray:
    return np.array([_cents(float(m)) for m in minimums], dtype=np.int64)
