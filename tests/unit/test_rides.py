from __future__ import annotations

import uuid

import orjson
import pytest

from kefta.rides import Rejection, RideRequest, Source, decode_message

SOURCE = Source("rides", 3, 42, 1_754_150_987_000)


def legacy(**ride: object) -> bytes:
    base: dict[str, object] = {
        "confort": "standard",
        "prix_base_per_km": 2,
        "properties-client": {
            "logitude": 2.3522,
            "latitude": 48.8566,
            "nomclient": "FALL",
            "telephoneClient": "060786575",
        },
        "properties-driver": {
            "logitude": 3.7038,
            "latitude": 40.4168,
            "nomDriver": "DIOP",
            "telephoneDriver": "0760786575",
        },
    }
    base.update(ride)
    return orjson.dumps({"data": [base]})


def canonical(**fields: object) -> bytes:
    base: dict[str, object] = {
        "version": 1,
        "ride_id": "0b0c8a34-1c1f-4c55-9b0e-2f7d8f2a9d11",
        "event_time": "2026-12-03T17:00:00.123Z",
        "confort": "medium",
        "client_lat": 40.75,
        "client_lon": -73.99,
        "driver_lat": 40.76,
        "driver_lon": -73.98,
    }
    base.update(fields)
    return orjson.dumps(base)


def one(raw: bytes) -> RideRequest | Rejection:
    results = decode_message(raw, SOURCE)
    assert len(results) == 1
    return results[0]


def ride(raw: bytes) -> RideRequest:
    result = one(raw)
    assert isinstance(result, RideRequest), result
    return result


def reason(raw: bytes) -> str:
    result = one(raw)
    assert isinstance(result, Rejection), result
    return result.reason


def test_decode_reference_message_reads_both_parties(reference_message: bytes) -> None:
    result = ride(reference_message)

    assert (result.client.lat, result.client.lon) == (48.8566, 2.3522)
    assert (result.driver.lat, result.driver.lon) == (40.4168, 3.7038)
    assert (result.tier, result.rate, result.client.name) == ("medium", 2.0, "FALL")


def test_decode_seed_repo_variant_reads_underscore_names(
    seed_repo_message: bytes,
) -> None:
    result = ride(seed_repo_message)

    assert result.tier == "low"
    assert (result.client.lat, result.client.lon) == (-34.6037, -58.3816)


def test_decode_several_rides_gives_one_result_each() -> None:
    first = orjson.loads(legacy())["data"][0]
    raw = orjson.dumps({"data": [first, first | {"confort": "luxe"}, first]})

    results = decode_message(raw, SOURCE)

    assert [type(r).__name__ for r in results] == [
        "RideRequest",
        "Rejection",
        "RideRequest",
    ]
    assert isinstance(results[1], Rejection)
    assert results[1].index == 1


def test_decode_bare_legacy_ride_without_wrapper() -> None:
    bare = orjson.dumps(orjson.loads(legacy())["data"][0])

    assert ride(bare).tier == "medium"


@pytest.mark.parametrize(
    ("comfort", "tier"),
    [
        ("low", "low"),
        ("standard", "medium"),
        ("medium", "medium"),
        ("high", "high"),
        ("High", "high"),
        ("hight", "high"),
        ("premium", "high"),
        (" PREMIUM ", "high"),
    ],
)
def test_decode_comfort_aliases(comfort: str, tier: str) -> None:
    result = ride(legacy(confort=comfort))

    assert result.tier == tier
    assert result.confort == comfort


@pytest.mark.parametrize(("rate", "expected"), [(2, 2.0), (2.5, 2.5), (None, None)])
def test_decode_rate_integer_float_or_absent(
    rate: object, expected: float | None
) -> None:
    raw = legacy(prix_base_per_km=rate)
    if rate is None:
        body = orjson.loads(raw)
        del body["data"][0]["prix_base_per_km"]
        raw = orjson.dumps(body)

    assert ride(raw).rate == expected


def test_decode_legacy_ride_id_is_deterministic_per_source() -> None:
    again = ride(legacy())
    elsewhere = decode_message(legacy(), Source("rides", 3, 43))[0]

    assert ride(legacy()).ride_id == again.ride_id
    assert isinstance(elsewhere, RideRequest)
    assert elsewhere.ride_id != again.ride_id
    assert uuid.UUID(again.ride_id).version == 5


def test_decode_legacy_event_time_is_kafka_timestamp() -> None:
    assert ride(legacy()).event_time.isoformat() == "2025-08-02T16:09:47+00:00"


def test_decode_canonical_request() -> None:
    result = ride(canonical(prix_base_per_km=1.75))

    assert result.ride_id == "0b0c8a34-1c1f-4c55-9b0e-2f7d8f2a9d11"
    assert result.event_time.isoformat() == "2026-12-03T17:00:00.123000+00:00"
    assert (result.rate, result.tier) == (1.75, "medium")


def test_decode_canonical_naive_time_is_utc() -> None:
    assert (
        ride(canonical(event_time="2026-12-03T17:00:00")).event_time.utcoffset()
        is not None
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "message is empty"),
        (b"{not json", "not valid UTF-8 JSON"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"[1, 2]", "message is a JSON array"),
        (b'"text"', "message is a JSON string"),
        (b'{"data": []}', "data is []; expected a non-empty array"),
        (b'{"data": 3}', "data is 3; expected a non-empty array"),
    ],
)
def test_decode_malformed_message_is_rejected_with_reason(
    raw: bytes, expected: str
) -> None:
    assert expected in reason(raw)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"properties-client": {"latitude": 123.4, "logitude": 2}},
            "data[0].properties-client.latitude 123.4 is outside [-90, 90]",
        ),
        (
            {"properties-driver": {"latitude": 4, "logitude": -181}},
            "data[0].properties-driver.logitude -181 is outside [-180, 180]",
        ),
        ({"confort": "luxe"}, "data[0].confort 'luxe' is not one of low, medium, high"),
        ({"prix_base_per_km": -1}, "data[0].prix_base_per_km -1 is outside [0, 10000]"),
        ({"prix_base_per_km": "2"}, 'data[0].prix_base_per_km "2" is invalid'),
        ({"properties-client": None}, "data[0].properties-client null is invalid"),
        (
            {"properties-driver": {"latitude": 4}},
            "data[0].properties-driver.longitude is missing",
        ),
        (
            {"properties-client": {"latitude": True, "logitude": 2}},
            "data[0].properties-client.latitude true is invalid",
        ),
    ],
)
def test_decode_invalid_ride_names_field_value_and_rule(
    change: dict[str, object], expected: str
) -> None:
    assert expected in reason(legacy(**change))


def test_decode_missing_client_says_so() -> None:
    body = orjson.loads(legacy())
    del body["data"][0]["properties-client"]

    assert "data[0].properties-client is missing" in reason(orjson.dumps(body))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            canonical().replace(b'"client_lat":40.75', b'"client_lat":1e400'),
            "number is infinity",
        ),
        (canonical(ride_id="nope"), "ride_id"),
        (canonical(version=2), "version"),
        (canonical(event_time="yesterday"), "event_time"),
    ],
)
def test_decode_invalid_canonical_is_rejected(raw: bytes, expected: str) -> None:
    assert expected in reason(raw)


def test_decode_nan_and_infinity_are_rejected() -> None:
    for text in (b"NaN", b"Infinity", b"-Infinity"):
        raw = canonical().replace(b'"client_lat":40.75', b'"client_lat":' + text)

        assert "not valid UTF-8 JSON" in reason(raw)
