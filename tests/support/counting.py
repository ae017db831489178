"""Counting what a run produced and what arrived where."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kefta.engine import price_rides
from kefta.kafka import committed_offsets, end_offsets, read_topic
from kefta.pricing import load_tariff
from kefta.rides import RideRequest, Source, decode_message
from kefta.settings import Settings
from kefta.simulator import SimMessage


@dataclass(frozen=True)
class Expected:
    """What the worker must make of the produced messages."""

    fares: dict[str, float]
    invalid: int

    @property
    def valid(self) -> int:
        return len(self.fares)


def expected_outcome(messages: list[SimMessage], record: Path, topic: str) -> Expected:
    """Price every produced message with the engine, at its real Kafka position."""
    by_key = {m.key: m for m in messages}
    fares: dict[str, float] = {}
    invalid = 0
    tariff = load_tariff()
    for line in record.read_bytes().splitlines():
        entry = orjson.loads(line)
        message = by_key[entry["key"].encode()] if "key" in entry else None
        assert message is not None, entry
        source = Source(topic, entry["partition"], entry["offset"])
        results = decode_message(message.value, source)
        rides = [r for r in results if isinstance(r, RideRequest)]
        invalid += len(results) - len(rides)
        fares.update(
            {p["ride_id"]: p["prix_travel"] for p in price_rides(rides, tariff)}
        )
    return Expected(fares, invalid)


async def committed_total(settings: Settings) -> int:
    return sum(
        (await committed_offsets(settings, settings.group, settings.topic)).values()
    )


async def produced_total(settings: Settings) -> int:
    return sum((await end_offsets(settings, settings.topic)).values())


async def fully_committed(settings: Settings) -> bool:
    return await committed_total(settings) == await produced_total(settings)


def header(record: Any, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode()
    return None


async def priced_ids(settings: Settings) -> Counter[str]:
    """How many times each ride id is in the priced topic."""
    records = await read_topic(settings, settings.priced_topic)
    return Counter(orjson.loads(r.value)["ride_id"] for r in records)
