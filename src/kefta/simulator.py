"""The ride simulator: realistic ride requests as Kafka messages, valid or broken.

:class:`Simulation` turns a seed and a few proportions into a stream of
:class:`SimMessage`: kefta's canonical request v1, the old producers' ``{"data":
[...]}`` format, and broken messages of the kinds in :data:`BAD_KINDS`, one ride each.
Clients stand where real Uber pickups of New York (August 2014, bundled as package
data) took place; drivers stand at a lognormal distance in a uniform direction.

With a seed and a ``start``, the stream is the same bytes on every run (for a given
numpy version, whose generators may change between releases). Nothing here does I/O
besides reading the package data and, in :func:`replay_file`, the file it is given.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from itertools import islice
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from kefta.engine import format_millis
from kefta.errors import ConfigError
from kefta.pricing import EARTH_RADIUS_KM, MAX_RATE
from kefta.rides import (
    COMFORT_ALIASES,
    RideRequest,
    Source,
    decode_message,
    split_messages,
)

FloatArray = npt.NDArray[np.float64]

DEFAULT_COMFORT_MIX: Final[Mapping[str, float]] = MappingProxyType(
    {"low": 0.3, "standard": 0.5, "premium": 0.2}
)
"""Share of each comfort name, spelled as producers send it (any spelling of
:data:`kefta.rides.COMFORT_ALIASES`, in any case, such as ``High`` or ``hight``)."""

DEFAULT_RATES: Final[Mapping[str, float]] = MappingProxyType(
    {"low": 1.5, "medium": 2.0, "high": 3.0}
)
"""``prix_base_per_km`` sent by the messages that carry one, per tier."""

BAD_KINDS: Final = (
    "truncated_json",
    "not_json",
    "empty",
    "array_top_level",
    "latitude_out_of_range",
    "longitude_out_of_range",
    "unknown_comfort",
    "negative_rate",
    "missing_client",
    "string_coordinate",
    "nan_literal",
    "huge_number",
)
"""The ways a simulated message is broken; every one is rejected by decoding."""

MEDIAN_DRIVER_KM: Final = 1.5
DRIVER_SIGMA: Final = 0.75
"""Spread of the lognormal driver distance: 5 % of drivers are beyond ~5 km."""
MAX_DRIVER_KM: Final = 30.0
JITTER_DEGREES: Final = 0.0002
"""Standard deviation of the noise added to a pickup position (about 20 m)."""

FIRST_NAMES: Final = (
    "Awa", "Moussa", "Fatou", "Ibrahima", "Aminata", "Cheikh", "Marie", "Lucas",
    "Camille", "Hugo", "Chloe", "Louis", "Maria", "James", "Aisha", "Kevin",
)  # fmt: skip
FAMILY_NAMES: Final = (
    "FALL", "DIOP", "NDIAYE", "SOW", "DIALLO", "FAYE", "GUEYE", "MBAYE", "SARR",
    "MARTIN", "BERNARD", "DUBOIS", "MOREAU", "GARCIA", "SMITH", "JOHNSON",
    "RODRIGUEZ", "NGUYEN", "COHEN", "OKAFOR",
)  # fmt: skip
UNKNOWN_COMFORTS: Final = ("luxe", "eco", "vip", "", "premium+", "standart", "3")

_FULL_NAMES: Final = tuple(f"{a} {b}" for a in FIRST_NAMES for b in FAMILY_NAMES)
_CHUNK: Final = 1024
# The version (4) and variant (RFC 4122) bits of a random UUID.
_UUID_CLEAR: Final = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET: Final = (0x4000 << 64) | (0x8000 << 48)
_MARK: Final = "\x1fkefta-number\x1f"
_MARK_JSON: Final = orjson.dumps(_MARK)


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One Kafka message to produce: its key, its value and what it is meant to be.

    ``ride_id`` is the id the message carries, None for the old format (which has
    none); ``key`` is the ride id, or :func:`content_key` of the value when there is
    no id. ``kind`` is ``canonical``, ``legacy`` or one of :data:`BAD_KINDS` (for
    replayed files: ``canonical``, ``legacy`` or ``rejected``).
    """

    key: bytes
    value: bytes
    valid: bool
    ride_id: str | None
    kind: str


def content_key(value: bytes) -> bytes:
    """A stable key for a message without a ride id: a hash of its bytes."""
    return hashlib.blake2b(value, digest_size=16).hexdigest().encode()


class Simulation:
    """A reproducible source of simulated ride requests.

    ``comfort_mix`` gives the share of each comfort name; ``rate_fraction`` of the
    messages carry an explicit ``prix_base_per_km`` taken from ``rates`` (keyed by
    tier or comfort name; a tier without a rate is never sent one), the others let
    the tariff apply. ``bad_fraction`` of the messages are broken, with a kind drawn
    uniformly from :data:`BAD_KINDS`; ``legacy_fraction`` of the rest (and of the
    broken ones) use the old producers' format.

    Event times start at ``start`` (when None, the time the stream is first read) and
    advance as a Poisson process of ``events_per_second``; with ``live`` they are the
    wall clock when each message is built. Raises ConfigError for a fraction outside
    [0, 1], an unknown comfort name, a negative weight or an out-of-range rate.
    """

    def __init__(
        self,
        seed: int | None = None,
        comfort_mix: Mapping[str, float] = DEFAULT_COMFORT_MIX,
        rates: Mapping[str, float] = DEFAULT_RATES,
        rate_fraction: float = 0.1,
        bad_fraction: float = 0.0,
        legacy_fraction: float = 0.0,
        start: datetime | None = None,
        events_per_second: float = 50.0,
        live: bool = False,
    ) -> None:
        for name, value in (
            ("rate_fraction", rate_fraction),
            ("bad_fraction", bad_fraction),
            ("legacy_fraction", legacy_fraction),
        ):
            _check_fraction(name, value)
        if not events_per_second > 0:
            raise ConfigError(
                f"events_per_second {events_per_second} is not positive; "
                "pass the simulated number of ride requests per second, e.g. 50"
            )
        self.seed = seed
        self.comforts, self.weights = _comfort_table(comfort_mix)
        self.rates = _rate_table(rates)
        self.rate_fraction = rate_fraction
        self.bad_fraction = bad_fraction
        self.legacy_fraction = legacy_fraction
        self.start = start
        self.events_per_second = events_per_second
        self.live = live

    def messages(self, count: int | None = None) -> Iterator[SimMessage]:
        """``count`` messages, or an endless stream when None.

        Each call starts a new stream from the seed: with a seed (and a ``start``),
        two calls yield the same bytes, and a shorter stream is a prefix of a longer
        one. Raises ConfigError when ``count`` is negative.
        """
        if count is not None and count < 0:
            raise ConfigError(f"count {count} is negative; pass 0 or more, or None")
        return islice(self._endless(), count)

    def _endless(self) -> Iterator[SimMessage]:
        stream = _Stream(self)
        while True:
            yield from stream.chunk()


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"{name} {value} is outside [0, 1]; pass a share such as 0.05"
        )


def _comfort_table(mix: Mapping[str, float]) -> tuple[list[str], FloatArray]:
    for name, weight in mix.items():
        if name.strip().lower() not in COMFORT_ALIASES:
            raise ConfigError(
                f"comfort {name!r} in the comfort mix is not one of "
                f"{', '.join(COMFORT_ALIASES)} (in any case)"
            )
        if not weight >= 0:
            raise ConfigError(f"comfort {name!r} has weight {weight}; expected >= 0")
    total = sum(mix.values())
    if not total > 0:
        raise ConfigError(
            f"the comfort mix {dict(mix)} has no positive weight; "
            'give at least one, e.g. {"standard": 1}'
        )
    weights = np.array(list(mix.values()), dtype=np.float64) / total
    return list(mix), weights


def _rate_table(rates: Mapping[str, float]) -> dict[str, float]:
    table: dict[str, float] = {}
    for name, rate in rates.items():
        tier = COMFORT_ALIASES.get(name.strip().lower())
        if tier is None:
            raise ConfigError(
                f"rate key {name!r} is not a tier or comfort name; "
                f"use one of {', '.join(COMFORT_ALIASES)}"
            )
        if not 0.0 <= rate <= MAX_RATE:
            raise ConfigError(
                f"rate {rate} for {name!r} in rates is outside [0, {MAX_RATE:g}]"
            )
        table[tier] = float(rate)
    return table


@cache
def nyc_pickups() -> FloatArray:
    """The bundled pickups, shape (n, 2): latitude, longitude in degrees; read-only.

    Regenerated by ``scripts/make-pickups-data`` from the NYC TLC Uber file.
    """
    packed = resources.files("kefta").joinpath("data/nyc_pickups.csv.gz").read_bytes()
    text = gzip.decompress(packed).decode("ascii")
    points = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, ndmin=2)
    points.flags.writeable = False
    return points


def destination(
    lat: FloatArray, lon: FloatArray, bearing: FloatArray, km: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Points ``km`` away from (lat, lon) along ``bearing`` (radians from north).

    The spherical destination formula, on the sphere :mod:`kefta.pricing` measures
    on, so the haversine distance back is ``km``. Degrees in and out.
    """
    phi, lam, delta = np.radians(lat), np.radians(lon), km / EARTH_RADIUS_KM
    sin_phi2 = np.sin(phi) * np.cos(delta) + np.cos(phi) * np.sin(delta) * np.cos(
        bearing
    )
    phi2 = np.arcsin(np.clip(sin_phi2, -1.0, 1.0))
    lam2 = lam + np.arctan2(
        np.sin(bearing) * np.sin(delta) * np.cos(phi),
        np.cos(delta) - np.sin(phi) * sin_phi2,
    )
    lon2 = (np.degrees(lam2) + 540.0) % 360.0 - 180.0
    return np.degrees(phi2), lon2


@dataclass(slots=True)
class _Chunk:
    """Per-message draws for one chunk, as Python lists (fast to index)."""

    bad: list[bool]
    legacy: list[bool]
    bad_kind: list[int]
    comfort: list[int]
    explicit_rate: list[bool]
    int_rate: list[bool]
    client_lat: list[float]
    client_lon: list[float]
    driver_lat: list[float]
    driver_lon: list[float]
    client_name: list[str]
    client_phone: list[str]
    driver_name: list[str]
    driver_phone: list[str]
    event_time: list[str]

    def __len__(self) -> int:
        return len(self.bad)


class _Stream:
    """The state of one :meth:`Simulation.messages` stream."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.random = random.Random(sim.seed)
        self.numpy = np.random.default_rng(sim.seed)
        start = sim.start or datetime.now(UTC)
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self.clock_ms = start.timestamp() * 1000.0

    def chunk(self) -> Iterator[SimMessage]:
        draws = self._draw(_CHUNK)
        for index in range(len(draws)):
            yield self._message(draws, index)

    def _draw(self, n: int) -> _Chunk:
        rng, sim = self.numpy, self.sim
        kinds = rng.random((3, n))
        clients, drivers = self._positions(n)
        names = rng.integers(0, len(_FULL_NAMES), (2, n)).tolist()
        phones = rng.integers(6 * 10**8, 8 * 10**8, (2, n)).tolist()
        return _Chunk(
            bad=(kinds[0] < sim.bad_fraction).tolist(),
            legacy=(kinds[1] < sim.legacy_fraction).tolist(),
            bad_kind=rng.integers(0, len(BAD_KINDS), n).tolist(),
            comfort=rng.choice(len(sim.comforts), n, p=sim.weights).tolist(),
            explicit_rate=(kinds[2] < sim.rate_fraction).tolist(),
            int_rate=(rng.random(n) < 0.5).tolist(),
            client_lat=clients[0].tolist(),
            client_lon=clients[1].tolist(),
            driver_lat=drivers[0].tolist(),
            driver_lon=drivers[1].tolist(),
            client_name=[_FULL_NAMES[k] for k in names[0]],
            client_phone=[f"0{number}" for number in phones[0]],
            driver_name=[_FULL_NAMES[k] for k in names[1]],
            driver_phone=[f"0{number}" for number in phones[1]],
            event_time=self._event_times(n),
        )

    def _positions(
        self, n: int
    ) -> tuple[tuple[FloatArray, FloatArray], tuple[FloatArray, FloatArray]]:
        rng, pickups = self.numpy, nyc_pickups()
        chosen = pickups[rng.integers(0, len(pickups), n)]
        client = chosen + rng.normal(0.0, JITTER_DEGREES, (n, 2))
        km = np.minimum(
            rng.lognormal(math.log(MEDIAN_DRIVER_KM), DRIVER_SIGMA, n), MAX_DRIVER_KM
        )
        bearing = rng.uniform(0.0, 2.0 * math.pi, n)
        driver = destination(client[:, 0], client[:, 1], bearing, km)
        return (
            (np.round(client[:, 0], 6), np.round(client[:, 1], 6)),
            (np.round(driver[0], 6), np.round(driver[1], 6)),
        )

    def _event_times(self, n: int) -> list[str]:
        gaps = self.numpy.exponential(1000.0 / self.sim.events_per_second, n)
        moments = self.clock_ms + np.cumsum(gaps)
        self.clock_ms = float(moments[-1])
        stamps = np.datetime_as_string(moments.astype("datetime64[ms]"), unit="ms")
        return [f"{stamp}Z" for stamp in stamps.tolist()]

    def _message(self, draws: _Chunk, i: int) -> SimMessage:
        ride_id = uuid4_text(self.random.getrandbits(128))
        legacy = draws.legacy[i]
        document = (
            self._legacy(draws, i) if legacy else self._canonical(draws, i, ride_id)
        )
        message_id = None if legacy else ride_id
        if draws.bad[i]:
            kind = BAD_KINDS[draws.bad_kind[i]]
            value = _BREAKERS[kind](document, legacy, self.random)
            return _sim_message(value, False, message_id, kind)
        return _sim_message(
            orjson.dumps(document),
            True,
            message_id,
            "legacy" if legacy else "canonical",
        )

    def _canonical(self, draws: _Chunk, i: int, ride_id: str) -> dict[str, Any]:
        document: dict[str, Any] = {
            "version": 1,
            "ride_id": ride_id,
            "event_time": self._event_time(draws, i),
            "confort": self.sim.comforts[draws.comfort[i]],
        }
        rate = self._rate(draws, i)
        if rate is not None:
            document["prix_base_per_km"] = rate
        document |= {
            "client_lat": draws.client_lat[i],
            "client_lon": draws.client_lon[i],
            "client_name": draws.client_name[i],
            "client_phone": draws.client_phone[i],
            "driver_lat": draws.driver_lat[i],
            "driver_lon": draws.driver_lon[i],
            "driver_name": draws.driver_name[i],
            "driver_phone": draws.driver_phone[i],
        }
        return document

    def _legacy(self, draws: _Chunk, i: int) -> dict[str, Any]:
        spelling = self.random.getrandbits(2)
        joiner = "_" if spelling & 1 else "-"
        lon_key = "longitude" if spelling & 2 else "logitude"
        ride: dict[str, Any] = {"confort": self.sim.comforts[draws.comfort[i]]}
        rate = self._rate(draws, i)
        if rate is not None:
            ride["prix_base_per_km"] = rate
        ride[f"properties{joiner}client"] = {
            lon_key: draws.client_lon[i],
            "latitude": draws.client_lat[i],
            "nomclient": draws.client_name[i],
            "telephoneClient": draws.client_phone[i],
        }
        ride[f"properties{joiner}driver"] = {
            lon_key: draws.driver_lon[i],
            "latitude": draws.driver_lat[i],
            "nomDriver": draws.driver_name[i],
            "telephoneDriver": draws.driver_phone[i],
        }
        return {"data": [ride]}

    def _event_time(self, draws: _Chunk, i: int) -> str:
        if not self.sim.live:
            return draws.event_time[i]
        return format_millis(datetime.now(UTC))

    def _rate(self, draws: _Chunk, i: int) -> float | int | None:
        if not draws.explicit_rate[i]:
            return None
        comfort = self.sim.comforts[draws.comfort[i]]
        rate = self.sim.rates.get(COMFORT_ALIASES[comfort.strip().lower()])
        if rate is not None and draws.int_rate[i] and rate.is_integer():
            return int(rate)
        return rate


def uuid4_text(bits: int) -> str:
    """``str(uuid.UUID(int=bits, version=4))``, about twice as fast."""
    bits = (bits & _UUID_CLEAR) | _UUID_SET
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _sim_message(
    value: bytes, valid: bool, ride_id: str | None, kind: str
) -> SimMessage:
    key = ride_id.encode() if ride_id is not None else content_key(value)
    return SimMessage(key, value, valid, ride_id, kind)


# -- broken messages -------------------------------------------------------------------
# Each breaker takes a valid document (canonical, or legacy when ``legacy``), breaks it
# in one way and returns the bytes to send.

_Breaker = Callable[[dict[str, Any], bool, random.Random], bytes]


def _ride(document: dict[str, Any], legacy: bool) -> dict[str, Any]:
    ride: dict[str, Any] = document["data"][0] if legacy else document
    return ride


def _coordinate(
    document: dict[str, Any], legacy: bool, rng: random.Random, axis: str
) -> tuple[dict[str, Any], str]:
    """The dict and key holding the latitude or longitude of a random party."""
    party = rng.choice(("client", "driver"))
    if not legacy:
        return document, f"{party}_{axis}"
    ride = document["data"][0]
    place: dict[str, Any] = next(v for k, v in ride.items() if k.endswith(party))
    if axis == "lat":
        return place, "latitude"
    return place, "longitude" if "longitude" in place else "logitude"


def _truncated_json(
    document: dict[str, Any], legacy: bool, rng: random.Random
) -> bytes:
    raw = orjson.dumps(document)
    return raw[: rng.randrange(1, len(raw))]


def _not_json(document: dict[str, Any], legacy: bool, rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        ride = _ride(document, legacy)
        return f"ride {ride['confort']} requested at {rng.random():.4f}".encode()
    return bytes([rng.randrange(0x80, 0x100)]) + rng.randbytes(rng.randrange(0, 200))


def _empty(document: dict[str, Any], legacy: bool, rng: random.Random) -> bytes:
    return b""


def _array_top_level(
    document: dict[str, Any], legacy: bool, rng: random.Random
) -> bytes:
    return orjson.dumps([document])


def _out_of_range(axis: str, limit: float) -> _Breaker:
    def breaker(document: dict[str, Any], legacy: bool, rng: random.Random) -> bytes:
        place, key = _coordinate(document, legacy, rng, axis)
        place[key] = rng.choice((-1, 1)) * round(
            rng.uniform(limit + 0.001, 2 * limit), 4
        )
        return orjson.dumps(document)

    return breaker


def _unknown_comfort(
    document: dict[str, Any], legacy: bool, rng: random.Random
) -> bytes:
    _ride(document, legacy)["confort"] = rng.choice(UNKNOWN_COMFORTS)
    return orjson.dumps(document)


def _negative_rate(document: dict[str, Any], legacy: bool, rng: random.Random) -> bytes:
    _ride(document, legacy)["prix_base_per_km"] = -round(rng.uniform(0.5, 5.0), 2)
    return orjson.dumps(document)


def _missing_client(
    document: dict[str, Any], legacy: bool, rng: random.Random
) -> bytes:
    if legacy:
        ride = document["data"][0]
        ride.pop("properties-client", None)
        ride.pop("properties_client", None)
    else:
        for key in ("client_lat", "client_lon", "client_name", "client_phone"):
            del document[key]
    return orjson.dumps(document)


def _string_coordinate(
    document: dict[str, Any], legacy: bool, rng: random.Random
) -> bytes:
    place, key = _coordinate(document, legacy, rng, rng.choice(("lat", "lon")))
    place[key] = str(place[key])
    return orjson.dumps(document)


def _literal(text: bytes) -> _Breaker:
    """A breaker writing ``text`` where a coordinate's number was."""

    def breaker(document: dict[str, Any], legacy: bool, rng: random.Random) -> bytes:
        place, key = _coordinate(document, legacy, rng, rng.choice(("lat", "lon")))
        place[key] = _MARK
        return orjson.dumps(document).replace(_MARK_JSON, text)

    return breaker


_BREAKERS: Final[Mapping[str, _Breaker]] = {
    "truncated_json": _truncated_json,
    "not_json": _not_json,
    "empty": _empty,
    "array_top_level": _array_top_level,
    "latitude_out_of_range": _out_of_range("lat", 90.0),
    "longitude_out_of_range": _out_of_range("lon", 180.0),
    "unknown_comfort": _unknown_comfort,
    "negative_rate": _negative_rate,
    "missing_client": _missing_client,
    "string_coordinate": _string_coordinate,
    "nan_literal": _literal(b"NaN"),
    "huge_number": _literal(b"1e400"),
}


# -- replaying files -------------------------------------------------------------------


def replay_file(path: Path) -> Iterator[SimMessage]:
    """The messages of a file, in any accepted variant, ready to produce again.

    A file whose whole content is one JSON value (such as the pretty-printed
    ``data_projet.json``) is one message, re-serialized compactly. Any other file is
    NDJSON: each non-blank line is one message, its bytes as they are (line ending
    removed), valid or not, so broken lines can be replayed into the dead-letter
    route. ``valid`` and ``kind`` come from :func:`kefta.rides.decode_message`.
    A message that carries a string ``ride_id`` is keyed by it, valid or not.
    Reads the whole file at once; raises ConfigError when it cannot be read.
    """
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"replay file {path} cannot be read ({exc.strerror}); check the path"
        ) from exc
    return (_replayed(m, n) for n, m in enumerate(split_messages(content)))


def _replayed(value: bytes, number: int) -> SimMessage:
    results = decode_message(value, Source("replay", 0, number))
    valid = all(isinstance(r, RideRequest) for r in results)
    document = _loads_or_none(value)
    ride_id = document.get("ride_id") if isinstance(document, dict) else None
    if not isinstance(ride_id, str):
        ride_id = None
    canonical = isinstance(document, dict) and "version" in document
    kind = ("canonical" if canonical else "legacy") if valid else "rejected"
    return _sim_message(value, valid, ride_id, kind)


def _loads_or_none(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
