"""Fuzzing ``decode_message``: whatever the bytes, it answers and never raises.

Every input gives at least one result; each result is a ``RideRequest`` that really is
valid (finite coordinates in range, a known tier, a rate in range) or a ``Rejection``
with a reason and an error class; and what is accepted prices to finite fares.
Hypothesis builds the inputs: random bytes, random JSON, valid rides cut short or
mutated, non-finite and huge numbers, invalid UTF-8, deep nesting, huge messages.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kefta.engine import price_rides, quote_ride
from kefta.pricing import MAX_RATE, TIERS, load_tariff
from kefta.rides import Rejection, RideRequest, Source, decode_message
from kefta.simulator import Simulation

SOURCE = Source("fuzz", 3, 42, 1_764_000_000_000)
TARIFF = load_tariff()
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

VALID = [
    m.value
    for m in Simulation(seed=5, legacy_fraction=0.4, rate_fraction=0.5).messages(60)
]
VALID_DOCUMENTS = [orjson.loads(raw) for raw in VALID]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
NON_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1" + b"0" * 400]


def check(raw: bytes) -> list[RideRequest | Rejection]:
    """Decode ``raw`` and check the contract; returns the results."""
    results = decode_message(raw, SOURCE)

    assert results, "decode_message returned nothing"
    for result in results:
        if isinstance(result, Rejection):
            assert isinstance(result.reason, str)
            assert result.reason.strip()
            assert result.error_class
        else:
            assert isinstance(result, RideRequest)
            assert_really_valid(result)
    rides = [r for r in results if isinstance(r, RideRequest)]
    for priced in price_rides(rides, TARIFF):
        assert math.isfinite(priced["prix_travel"])
        assert priced["prix_travel"] >= 0
        assert math.isfinite(priced["distance"])
        assert priced["distance"] >= 0
    return results


def assert_really_valid(ride: RideRequest) -> None:
    for party in (ride.client, ride.driver):
        assert math.isfinite(party.lat)
        assert -90 <= party.lat <= 90
        assert math.isfinite(party.lon)
        assert -180 <= party.lon <= 180
    assert ride.tier in TIERS
    assert ride.rate is None or (
        math.isfinite(ride.rate) and 0 <= ride.rate <= MAX_RATE
    )
    assert ride.ride_id
    fare = quote_ride(ride, TARIFF)
    assert math.isfinite(fare.prix_travel)


def rejected(raw: bytes) -> list[Rejection]:
    results = check(raw)
    assert all(isinstance(r, Rejection) for r in results), results
    return [r for r in results if isinstance(r, Rejection)]


# -- random input ------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=4096))
@example(b"")
@example(b"\x00")
@example(b"\xff\xfe\xfd")
@example(b"\xed\xa0\x80")
def test_random_bytes_never_raise(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(json_values)
def test_random_json_is_rejected_with_a_reason(value: Any) -> None:
    rejected(orjson.dumps(value))


@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_truncated_valid_rides_are_rejected(raw: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))

    rejected(raw[:cut])


# -- valid rides, mutated ----------------------------------------------------------


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*path, index))
    return found


def _set(document: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        document = document[step]
    document[path[-1]] = value


def _delete(document: Any, path: tuple[Any, ...]) -> None:
    for step in path[:-1]:
        document = document[step]
    del document[path[-1]]


@FUZZ
@given(st.sampled_from(range(len(VALID_DOCUMENTS))), st.data())
def test_mutated_valid_rides_keep_the_contract(index: int, data: st.DataObject) -> None:
    document = orjson.loads(VALID[index])
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(document)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        if data.draw(st.booleans()):
            _set(document, path, data.draw(json_values))
        else:
            _delete(document, path)

    check(orjson.dumps(document))


@FUZZ
@given(
    st.sampled_from(range(len(VALID_DOCUMENTS))),
    st.data(),
    st.sampled_from(NON_FINITE),
)
def test_non_finite_and_huge_numbers_are_rejected(
    index: int, data: st.DataObject, literal: bytes
) -> None:
    document = orjson.loads(VALID[index])
    numbers = [
        p
        for p in _paths(document)
        if isinstance(_get(document, p), float | int)
        and not isinstance(_get(document, p), bool)
        and p[-1] != "version"
    ]
    path = data.draw(st.sampled_from(numbers))
    _set(document, path, "\x1fMARK\x1f")
    raw = orjson.dumps(document).replace(b'"\\u001fMARK\\u001f"', literal)

    rejected(raw)


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


@FUZZ
@given(
    st.sampled_from(VALID),
    st.data(),
    st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]),
)
def test_invalid_utf8_is_rejected(raw: bytes, data: st.DataObject, bad: bytes) -> None:
    quotes = [i for i, byte in enumerate(raw) if byte == ord('"')]
    at = data.draw(st.sampled_from(quotes)) + 1

    rejected(raw[:at] + bad + raw[at:])


@FUZZ
@given(st.sampled_from(VALID_DOCUMENTS), json_values)
def test_wrong_shapes_around_valid_rides_keep_the_contract(
    document: dict[str, Any], noise: Any
) -> None:
    for shape in (
        [document],
        {"data": document},
        {"data": [document, noise]},
        {"data": {"0": document}},
        {"data": []},
        {"version": noise, **{k: v for k, v in document.items() if k != "version"}},
    ):
        check(orjson.dumps(shape))


@pytest.mark.parametrize(
    "event_time",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59.999-14:00",
        "0001-01-01T00:00:00Z",
        "2026-02-30T10:00:00Z",
        "not a time",
        "",
        "1e400",
    ],
)
def test_event_times_at_the_edges_never_raise(event_time: str) -> None:
    document = next(d for d in VALID_DOCUMENTS if "version" in d) | {
        "event_time": event_time
    }

    check(orjson.dumps(document))


# -- deep and huge -----------------------------------------------------------------


@pytest.mark.parametrize("depth", [10, 254, 255, 1000, 1024, 1025, 10_000])
@pytest.mark.parametrize(
    "wrap",
    [
        lambda inner: inner,
        lambda inner: b'{"data":' + inner + b"}",
        lambda inner: b'{"data":[' + inner + b"]}",
        lambda inner: b'{"version":1,"client_lat":' + inner + b"}",
        lambda inner: b'{"confort":' + inner + b"}",
    ],
    ids=["top", "data", "in-data", "canonical-field", "legacy-field"],
)
def test_deep_nesting_is_rejected(depth: int, wrap: Any) -> None:
    """orjson refuses more than 1 024 levels; below that, kefta rejects the shape
    (and describes it without hitting orjson's 254-level limit on dumps)."""
    rejected(wrap(b"[" * depth + b"]" * depth))


@pytest.mark.parametrize("depth", [255, 1000])
def test_deep_objects_inside_a_ride_are_rejected(depth: int) -> None:
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    document = b'{"data":[{"confort":"low","properties-client":' + nested + b"}]}"

    rejected(document)


def _timed(raw: bytes) -> tuple[list[RideRequest | Rejection], float]:
    started = time.perf_counter()
    results = check(raw)
    return results, time.perf_counter() - started


def test_a_10_mb_message_of_garbage_is_rejected_fast() -> None:
    raw = random.Random(7).randbytes(10 * 1024 * 1024)

    results, seconds = _timed(raw)

    assert all(isinstance(r, Rejection) for r in results)
    assert seconds < 0.5


def test_a_10_mb_ride_with_padding_decodes_fast() -> None:
    document = orjson.loads(VALID[0]) | {"padding": "x" * 10 * 1024 * 1024}

    results, seconds = _timed(orjson.dumps(document))

    assert [type(r) for r in results] == [RideRequest]
    assert seconds < 0.5


def test_a_10_mb_wrapper_of_bad_rides_is_rejected_per_ride_fast() -> None:
    ride = {"confort": "luxe", "properties-client": {"latitude": 1}}
    count = 10 * 1024 * 1024 // len(orjson.dumps(ride))
    raw = orjson.dumps({"data": [ride] * count})

    results, seconds = _timed(raw)

    assert len(results) == count
    assert all(isinstance(r, Rejection) for r in results)
    assert seconds < 10, "about 1 µs a byte is the budget for a wall of bad rides"


def test_a_10_mb_wrapper_of_valid_rides_decodes_at_kernel_speed() -> None:
    ride = orjson.loads(next(raw for raw in VALID if b'"data"' in raw))["data"][0]
    count = 10 * 1024 * 1024 // len(orjson.dumps(ride))
    raw = orjson.dumps({"data": [ride] * count})

    results, seconds = _timed(raw)

    assert len(results) == count
    assert all(isinstance(r, RideRequest) for r in results)
    assert seconds < 2.5


@pytest.mark.parametrize(
    "raw",
    [b"", b" ", b"\n", b"null", b"[]", b"{}", b"[{}]", b'{"data":null}', b'"ride"'],
)
def test_empty_and_degenerate_messages_are_rejected(raw: bytes) -> None:
    rejected(raw)
