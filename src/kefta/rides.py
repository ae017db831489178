"""The ride contract: decoding every accepted input variant, and the priced document.

Accepted messages (JSON, UTF-8):

* the old producers' wrapper ``{"data": [ride, ...]}`` with one or many rides, where a
  ride has ``confort``, an optional ``prix_base_per_km`` and the two parties under
  ``properties-client``/``properties_client`` and ``properties-driver``/
  ``properties_driver``, each with ``latitude`` and ``longitude`` (or the original
  typo ``logitude``), a name and a phone number;
* a bare old-style ride object, without the wrapper;
* kefta's canonical request, flat and versioned (``"version": 1``), which
  ``kefta produce`` emits; see :class:`CanonicalRequest`.

Rides of the old format carry no id: they get a deterministic one from the source
topic, partition, offset and position in the ``data`` array, so that a replay of the
same Kafka message yields the same ``ride_id``. Decoding does no I/O.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
)

from kefta.errors import RejectedRide
from kefta.pricing import MAX_RATE, TIERS

SCHEMA_VERSION: Final = 1
RIDE_NAMESPACE: Final = uuid.UUID("6f1c8f0e-5d7a-4b53-9d51-6b0f3a1e2c44")

COMFORT_ALIASES: Final[Mapping[str, str]] = {
    "low": "low",
    "medium": "medium",
    "standard": "medium",
    "high": "high",
    "hight": "high",
    "premium": "high",
}
"""Comfort names as producers send them (lower-cased) and the tier each means."""


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    return float(value)


def _in_range(low: float, high: float) -> AfterValidator:
    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"{value:g} is outside [{low:g}, {high:g}]")
        return value

    return AfterValidator(check)


def _tier(value: str) -> str:
    tier = COMFORT_ALIASES.get(value.strip().lower())
    if tier is None:
        raise ValueError(
            f"{value!r} is not one of low, medium, high "
            "(aliases: standard, hight, premium)"
        )
    return value


_Number = Annotated[float, AfterValidator(_finite)]
Latitude = Annotated[_Number, _in_range(-90.0, 90.0)]
Longitude = Annotated[_Number, _in_range(-180.0, 180.0)]
Rate = Annotated[_Number, _in_range(0.0, MAX_RATE)]
Comfort = Annotated[str, AfterValidator(_tier)]
_Text = str | StrictInt | None


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="ignore", strict=True, populate_by_name=True
    )


class LegacyClient(_Model):
    latitude: Latitude
    longitude: Longitude = Field(validation_alias=AliasChoices("longitude", "logitude"))
    nomclient: _Text = None
    telephoneClient: _Text = None


class LegacyDriver(_Model):
    latitude: Latitude
    longitude: Longitude = Field(validation_alias=AliasChoices("longitude", "logitude"))
    nomDriver: _Text = None
    telephoneDriver: _Text = None


class LegacyRide(_Model):
    """One ride of the old producers' ``{"data": [...]}`` messages."""

    confort: Comfort
    prix_base_per_km: Rate | None = None
    client: LegacyClient = Field(
        validation_alias=AliasChoices("properties-client", "properties_client")
    )
    driver: LegacyDriver = Field(
        validation_alias=AliasChoices("properties-driver", "properties_driver")
    )


class CanonicalRequest(_Model):
    """kefta's own ride request, version 1, as ``kefta produce`` emits it.

    ``event_time`` is an ISO 8601 timestamp; without an offset it is taken as UTC.
    """

    version: Literal[1]
    ride_id: Annotated[uuid.UUID, Field(strict=False)]
    event_time: Annotated[datetime, Field(strict=False)]
    confort: Comfort
    prix_base_per_km: Rate | None = None
    client_lat: Latitude
    client_lon: Longitude
    client_name: _Text = None
    client_phone: _Text = None
    driver_lat: Latitude
    driver_lon: Longitude
    driver_name: _Text = None
    driver_phone: _Text = None


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from: enough to name it uniquely and to replay it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Party:
    name: str | None
    phone: str | None
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class RideRequest:
    """A validated ride, in one shape whatever the input variant."""

    ride_id: str
    event_time: datetime
    confort: str
    tier: str
    rate: float | None
    client: Party
    driver: Party
    source: Source


@dataclass(frozen=True, slots=True)
class Rejection:
    """A ride, or a whole message, that cannot be priced, and why."""

    reason: str
    error_class: str
    source: Source
    index: int | None = None


Decoded = RideRequest | Rejection


def decode_message(raw: bytes, source: Source) -> list[Decoded]:
    """Decode one Kafka message into its rides and the rejections among them.

    A message that is not JSON, or not one of the accepted shapes, gives a single
    Rejection; a wrapper with several rides gives one result per ride, so a bad ride
    does not take its valid neighbours down with it. Never raises for bad input.
    """
    try:
        document = _parse_json(raw)
        return list(_decode_document(document, source))
    except RejectedRide as exc:
        return [Rejection(exc.reason, "InvalidMessage", source)]


def _parse_json(raw: bytes) -> Any:
    if not raw:
        raise RejectedRide("message is empty; expected a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RejectedRide(f"message is not valid UTF-8 JSON: {exc}") from exc


def _decode_document(document: Any, source: Source) -> Iterator[Decoded]:
    if not isinstance(document, dict):
        raise RejectedRide(
            f"message is a JSON {_json_type(document)}; expected an object such as "
            '{"data": [...]} or a kefta ride request'
        )
    if "version" in document:
        yield _decode_canonical(document, source)
    elif "data" in document:
        yield from _decode_wrapper(document["data"], source)
    else:
        yield _decode_legacy(document, source, None)


def _decode_wrapper(rides: Any, source: Source) -> Iterator[Decoded]:
    if not isinstance(rides, list) or not rides:
        raise RejectedRide(
            f"data is {_describe(rides)}; expected a non-empty array of rides"
        )
    for index, ride in enumerate(rides):
        yield _decode_legacy(ride, source, index)


def _decode_legacy(ride: Any, source: Source, index: int | None) -> Decoded:
    prefix = "" if index is None else f"data[{index}]."
    try:
        model = LegacyRide.model_validate(ride)
    except ValidationError as exc:
        return Rejection(_explain(exc, prefix), "ValidationError", source, index)
    ride_id = uuid.uuid5(
        RIDE_NAMESPACE,
        f"{source.topic}/{source.partition}/{source.offset}/{index or 0}",
    )
    return RideRequest(
        ride_id=str(ride_id),
        event_time=_source_time(source),
        confort=model.confort,
        tier=COMFORT_ALIASES[model.confort.strip().lower()],
        rate=_optional_float(model.prix_base_per_km),
        client=_party(
            model.client.nomclient, model.client.telephoneClient, model.client
        ),
        driver=_party(
            model.driver.nomDriver, model.driver.telephoneDriver, model.driver
        ),
        source=source,
    )


def _decode_canonical(document: dict[str, Any], source: Source) -> Decoded:
    try:
        model = CanonicalRequest.model_validate(document)
    except ValidationError as exc:
        return Rejection(_explain(exc, ""), "ValidationError", source)
    event_time = model.event_time
    if event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=UTC)
    try:
        event_time = event_time.astimezone(UTC)
    except OverflowError:
        return Rejection(
            f"event_time {model.event_time.isoformat()} is outside the years 1 to "
            "9999 once converted to UTC",
            "ValidationError",
            source,
        )
    return RideRequest(
        ride_id=str(model.ride_id),
        event_time=event_time,
        confort=model.confort,
        tier=COMFORT_ALIASES[model.confort.strip().lower()],
        rate=_optional_float(model.prix_base_per_km),
        client=Party(
            _text(model.client_name),
            _text(model.client_phone),
            float(model.client_lat),
            float(model.client_lon),
        ),
        driver=Party(
            _text(model.driver_name),
            _text(model.driver_phone),
            float(model.driver_lat),
            float(model.driver_lon),
        ),
        source=source,
    )


def _party(name: _Text, phone: _Text, place: LegacyClient | LegacyDriver) -> Party:
    return Party(
        _text(name), _text(phone), float(place.latitude), float(place.longitude)
    )


def _text(value: _Text) -> str | None:
    return None if value is None else str(value)


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _source_time(source: Source) -> datetime:
    if source.timestamp_ms is None:
        return datetime.now(UTC)
    return datetime.fromtimestamp(source.timestamp_ms / 1000.0, UTC)


_FIELD_NAMES: Final = {
    "client": "properties-client",
    "driver": "properties-driver",
}


def _explain(exc: ValidationError, prefix: str) -> str:
    """One readable sentence per problem, joined: ``field value problem``."""
    return "; ".join(_explain_one(error, prefix) for error in exc.errors())


def _explain_one(error: Mapping[str, Any], prefix: str) -> str:
    field = prefix + ".".join(_FIELD_NAMES.get(str(p), str(p)) for p in error["loc"])
    kind, message = error["type"], str(error["msg"])
    if kind == "missing":
        return f"{field} is missing"
    if kind == "value_error":
        return f"{field} {message.removeprefix('Value error, ')}"
    return f"{field} {_describe(error.get('input'))} is invalid: {message}"


def _describe(value: Any) -> str:
    try:
        text = orjson.dumps(value, default=repr).decode()
    except orjson.JSONEncodeError:
        # Nested deeper than orjson writes (254 levels); it parses up to 1 024.
        return f"a JSON {_json_type(value)} nested too deeply to show"
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: Any) -> str:
    names = {
        list: "array",
        dict: "object",
        str: "string",
        bool: "boolean",
        type(None): "null",
    }
    return names.get(type(value), "number")


def split_messages(content: bytes) -> Iterator[bytes]:
    """The messages of a file: the file itself if it is one JSON value, else its lines.

    A pretty-printed document such as the old producers' reference message is one
    message, re-serialized compactly; anything else is NDJSON, one message per
    non-blank line, its bytes kept as they are (a bad line is reported, not hidden).
    """
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError:
        lines = (line.removesuffix(b"\r") for line in content.split(b"\n"))
        yield from (line for line in lines if line.strip())
    else:
        yield orjson.dumps(document)


def tier_index(tier: str) -> int:
    """Position of ``tier`` in :data:`kefta.pricing.TIERS`."""
    return TIERS.index(tier)


def requests_of(results: Sequence[Decoded]) -> list[RideRequest]:
    """The valid rides among decoding results, in order."""
    return [r for r in results if isinstance(r, RideRequest)]
