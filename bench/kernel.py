"""The pricing kernel: decode, validate and price, per core, against plain Python.

Three ways through the same realistic messages (``Simulation(seed=1)``):

* ``baseline``: what one would write without kefta, per ride: ``json.loads``, dict
  access, ``math`` haversine, ``Decimal`` half-up rounding; no validation at all;
* ``per_ride``: ``decode_message`` and ``pricing.quote`` for each message;
* ``vectorized``: ``decode_message`` for each message, ``engine.price_rides`` per
  batch of 2 000 (what the worker does; it also builds the priced documents).

Each runs ``repeats`` times in this process (one core); the figure is the median.
Rides per CPU second are reported beside rides per wall second: on a shared machine
the CPU figure is the steadier one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from bench.common import median, write_result
from kefta.engine import price_rides, quote_ride
from kefta.pricing import Tariff, load_tariff
from kefta.rides import RideRequest, Source, decode_message
from kefta.simulator import Simulation

BATCH = 2000
_RATES = {"low": 1.5, "standard": 2.0, "medium": 2.0, "premium": 3.0, "high": 3.0}
_KM = Decimal("0.001")
_CENT = Decimal("0.01")


def baseline_price(raw: bytes) -> tuple[float, float]:
    """One ride the plain way: no validation, Decimal rounding; (distance, fare)."""
    ride = json.loads(raw)
    lat1, lon1 = math.radians(ride["client_lat"]), math.radians(ride["client_lon"])
    lat2, lon2 = math.radians(ride["driver_lat"]), math.radians(ride["driver_lon"])
    a = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    km = 2 * 6371.0 * math.asin(math.sqrt(a))
    distance = Decimal(repr(km)).quantize(_KM, ROUND_HALF_UP)
    rate = ride.get("prix_base_per_km") or _RATES[ride["confort"].lower()]
    fare = (Decimal(repr(rate)) * distance).quantize(_CENT, ROUND_HALF_UP)
    return float(distance), float(fare)


def run_baseline(messages: Sequence[bytes], tariff: Tariff) -> int:
    for raw in messages:
        baseline_price(raw)
    return len(messages)


def run_per_ride(messages: Sequence[bytes], tariff: Tariff) -> int:
    rides = 0
    for offset, raw in enumerate(messages):
        for ride in decode_message(raw, Source("bench", 0, offset)):
            if isinstance(ride, RideRequest):
                quote_ride(ride, tariff)
                rides += 1
    return rides


def run_vectorized(messages: Sequence[bytes], tariff: Tariff) -> int:
    rides = 0
    for start in range(0, len(messages), BATCH):
        batch: list[RideRequest] = []
        for offset, raw in enumerate(messages[start : start + BATCH], start):
            batch.extend(
                r
                for r in decode_message(raw, Source("bench", 0, offset))
                if isinstance(r, RideRequest)
            )
        rides += len(price_rides(batch, tariff))
    return rides


def run_decode_only(messages: Sequence[bytes], tariff: Tariff) -> int:
    return sum(
        len(decode_message(raw, Source("bench", 0, offset)))
        for offset, raw in enumerate(messages)
    )


def run_price_only(rides: Sequence[RideRequest], tariff: Tariff) -> int:
    for start in range(0, len(rides), BATCH):
        price_rides(rides[start : start + BATCH], tariff)
    return len(rides)


def measure(
    name: str,
    run: Callable[[Any, Tariff], int],
    data: Any,
    tariff: Tariff,
    repeats: int,
) -> dict[str, Any]:
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        count = run(data, tariff)
        walls.append(count / (time.perf_counter() - wall))
        cpus.append(count / max(1e-9, time.process_time() - cpu))
    print(f"  {name:<12} {median(walls):>10,.0f} rides/s  {median(cpus):>10,.0f}/cpu-s")
    return {
        "rides_per_s": median(walls),
        "rides_per_cpu_s": median(cpus),
        "runs_rides_per_s": walls,
        "runs_rides_per_cpu_s": cpus,
    }


def agreement(messages: Sequence[bytes], tariff: Tariff) -> int:
    """How many rides the baseline prices differently from kefta (expected: 0)."""
    differ = 0
    for offset, raw in enumerate(messages):
        (ride,) = decode_message(raw, Source("bench", 0, offset))
        assert isinstance(ride, RideRequest)
        q = quote_ride(ride, tariff)
        differ += (q.distance, q.prix_travel) != baseline_price(raw)
    return differ


def main(count: int = 20_000, repeats: int = 5) -> dict[str, Any]:
    tariff = load_tariff()
    messages = [m.value for m in Simulation(seed=1).messages(count)]
    decoded = [
        r
        for offset, raw in enumerate(messages)
        for r in decode_message(raw, Source("bench", 0, offset))
        if isinstance(r, RideRequest)
    ]
    print(f"pricing kernel: {count} messages, {repeats} runs each, one core")
    figures: dict[str, Any] = {"messages": count, "repeats": repeats, "batch": BATCH}
    for name, run, data in (
        ("baseline", run_baseline, messages),
        ("per_ride", run_per_ride, messages),
        ("vectorized", run_vectorized, messages),
        ("decode_only", run_decode_only, messages),
        ("price_only", run_price_only, decoded),
    ):
        figures[name] = measure(name, run, data, tariff, repeats)
    base = figures["baseline"]["rides_per_cpu_s"]
    figures["ratio_per_ride_vs_baseline"] = (
        figures["per_ride"]["rides_per_cpu_s"] / base
    )
    figures["ratio_vectorized_vs_baseline"] = (
        figures["vectorized"]["rides_per_cpu_s"] / base
    )
    figures["fares_differing_from_baseline"] = agreement(messages[:5000], tariff)
    figures["note"] = (
        "ratios use rides per CPU second; the baseline validates nothing, kefta "
        "validates every field and builds the priced document (vectorized)"
    )
    write_result("kernel", figures)
    return figures


if __name__ == "__main__":
    main()
