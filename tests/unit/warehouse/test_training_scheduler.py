"""``TrainingScheduler``: when trainings run, one at a time, off the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from kefta.warehouse import TrainingScheduler, TrainResult


class SlowTraining:
    """A blocking ``train`` that waits for ``release`` and counts overlaps."""

    def __init__(self, *, fail: bool = False) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls = 0
        self.active = 0
        self.most_active = 0
        self.threads: set[int] = set()
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self) -> TrainResult:
        with self._lock:
            self.calls += 1
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.threads.add(threading.get_ident())
        self.started.set()
        self.release.wait(timeout=5)
        with self._lock:
            self.active -= 1
        if self.fail:
            raise RuntimeError("pickups file vanished")
        return TrainResult("fake", ())


async def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition``, failing the test after three seconds."""
    async with asyncio.timeout(3.0):
        # Polling on purpose: most conditions change in the training thread.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_files_trigger_a_training_every_n_files() -> None:
    training = SlowTraining()
    training.release.set()
    scheduler = TrainingScheduler(training, every_n_files=3)

    scheduler.note_files_written(2)
    await asyncio.sleep(0.05)
    calls_before = training.calls
    scheduler.note_files_written(1)
    await until(lambda: scheduler.trainings == 1)
    await scheduler.stop()

    assert calls_before == 0
    assert training.calls == 1


async def test_trainings_never_overlap_and_triggers_coalesce() -> None:
    training = SlowTraining()
    scheduler = TrainingScheduler(training, every_n_files=1)

    scheduler.note_files_written()
    await until(training.started.is_set)
    for _ in range(5):
        scheduler.note_files_written()
    training.release.set()
    await until(lambda: scheduler.trainings == 2)
    await asyncio.sleep(0.05)
    await scheduler.stop()

    assert training.calls == 2
    assert training.most_active == 1


async def test_training_runs_off_the_event_loop() -> None:
    training = SlowTraining()
    scheduler = TrainingScheduler(training, every_n_files=1)

    scheduler.note_files_written()
    await until(training.started.is_set)
    ticks = 0
    for _ in range(10):
        await asyncio.sleep(0.001)
        ticks += 1
    running = scheduler.running
    training.release.set()
    await scheduler.stop()

    assert ticks == 10
    assert running is True
    assert threading.get_ident() not in training.threads


async def test_the_interval_triggers_trainings() -> None:
    training = SlowTraining()
    training.release.set()
    scheduler = TrainingScheduler(training, interval_s=0.02)

    await scheduler.start()
    await until(lambda: scheduler.trainings >= 2)
    await scheduler.stop()
    calls = training.calls
    await asyncio.sleep(0.06)

    assert training.calls == calls


async def test_a_failed_training_is_kept_and_the_next_trigger_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    training = SlowTraining(fail=True)
    training.release.set()
    scheduler = TrainingScheduler(training, every_n_files=1)

    scheduler.note_files_written()
    await until(lambda: scheduler.last_error is not None)
    training.fail = False
    scheduler.note_files_written()
    await until(lambda: scheduler.trainings == 1)
    await scheduler.stop()

    assert training.calls == 2
    assert scheduler.last_error is None
    assert "training failed reason=files=1" in caplog.text


async def test_stop_waits_for_the_training_in_progress() -> None:
    training = SlowTraining()
    scheduler = TrainingScheduler(training, every_n_files=1)
    scheduler.note_files_written()
    await until(training.started.is_set)

    stopping = asyncio.ensure_future(scheduler.stop())
    await asyncio.sleep(0.05)
    done_early = stopping.done()
    training.release.set()
    await stopping

    assert done_early is False
    assert training.active == 0
    assert scheduler.trainings == 1


async def test_train_now_returns_the_result_and_raises_failures() -> None:
    training = SlowTraining()
    training.release.set()
    scheduler = TrainingScheduler(training)

    result = await scheduler.train_now()
    training.fail = True

    assert result.backend == "fake"
    with pytest.raises(RuntimeError, match="pickups file vanished"):
        await scheduler.train_now()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"interval_s": 0}, "interval_s=0"), ({"every_n_files": 0}, "every_n_files=0")],
)
def test_invalid_settings_are_refused(
    arguments: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TrainingScheduler(lambda: TrainResult("fake", ()), **arguments)  # type: ignore[arg-type]
