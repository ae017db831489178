"""The worker against a real Kafka broker: counts, fares, reasons, a crash."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from kefta.kafka import ensure_topics, read_topic
from kefta.producer import produce
from kefta.settings import Settings
from kefta.simulator import Simulation
from kefta.testing import worker_env
from support.counting import (
    committed_total,
    expected_outcome,
    fully_committed,
    header,
    priced_ids,
    produced_total,
)
from support.sinks import record_figures
from support.worker import WorkerProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cleanup_topics")]


async def test_worker_prices_every_valid_ride_and_dead_letters_the_rest(
    settings: Settings, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    await ensure_topics(settings)
    messages = list(
        Simulation(seed=11, bad_fraction=0.05, legacy_fraction=0.1).messages(4000)
    )
    record = tmp_path / "produced.ndjson"
    await produce(messages, settings, record=record)
    expected = expected_outcome(messages, record, settings.topic)

    workers.append(
        WorkerProcess(worker_env(settings, tmp_path), tmp_path / "w.log").start()
    )
    await wait_until(lambda: fully_committed(settings), 120, "all offsets committed")

    priced = await read_topic(settings, settings.priced_topic)
    dead = await read_topic(settings, settings.dlq_topic)
    fares = {
        orjson.loads(r.value)["ride_id"]: orjson.loads(r.value)["prix_travel"]
        for r in priced
    }
    assert len(priced) + len(dead) == len(messages)
    assert (len(priced), len(dead)) == (expected.valid, expected.invalid)
    assert fares == expected.fares
    assert all(header(r, "kefta.reason") for r in dead)
    assert all(header(r, "kefta.source.offset") is not None for r in dead)
    assert {r.value for r in dead} <= {m.value for m in messages if not m.valid}


async def test_worker_killed_mid_stream_loses_nothing_after_restart(
    settings: Settings, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """SIGKILL loses nothing; the priced topic is at-least-once (see the README)."""
    await ensure_topics(settings)
    messages = list(Simulation(seed=12, bad_fraction=0.02).messages(30_000))
    record = tmp_path / "produced.ndjson"
    await produce(messages, settings, record=record)
    expected = expected_outcome(messages, record, settings.topic)
    env = worker_env(settings, tmp_path, batch_size="500")

    first = WorkerProcess(env, tmp_path / "first.log").start()
    workers.append(first)
    await wait_until(lambda: _progressed(settings, 3000), 90, "first commits")
    first.kill()
    committed_at_kill = await committed_total(settings)
    second = WorkerProcess(env, tmp_path / "second.log").start()
    workers.append(second)
    await wait_until(lambda: fully_committed(settings), 120, "all offsets committed")
    ids = await priced_ids(settings)

    assert committed_at_kill < await produced_total(settings)
    assert set(ids) == set(expected.fares)
    replay = await produced_total(settings) - committed_at_kill
    repeated = sum(ids.values()) - len(ids)
    assert repeated <= replay
    record_figures(
        "worker_sigkill",
        {
            "messages": len(messages),
            "committed_at_kill": committed_at_kill,
            "priced_repeated_after_restart": repeated,
            "lost": len(set(expected.fares) - set(ids)),
        },
    )


async def _progressed(settings: Settings, at_least: int) -> bool:
    return await committed_total(settings) >= at_least
