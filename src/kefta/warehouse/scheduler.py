"""When to retrain the warehouse model while the stream app runs.

``TrainingScheduler`` triggers a blocking ``train`` callable on a fixed interval,
after a number of new lake files, or both. It is pure asyncio (the stream app wires
it to faust timers or agents): trainings run in a worker thread through
``asyncio.to_thread`` so the event loop never blocks, and never two at once. A
trigger that arrives during a training is remembered, and one more training runs
when the current one ends: triggers are coalesced, not queued.

A failed training is logged with its traceback and kept in ``last_error``; the
scheduler stays up and the next trigger tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from kefta.warehouse.base import TrainResult

logger = logging.getLogger(__name__)


class TrainingScheduler:
    """Runs ``train`` every ``interval_s`` seconds and/or every ``every_n_files``
    lake files reported through ``note_files_written``.

    Call ``start`` and ``note_files_written`` from the event loop's thread, and
    ``stop`` before the loop closes.
    """

    def __init__(
        self,
        train: Callable[[], TrainResult],
        *,
        interval_s: float | None = None,
        every_n_files: int | None = None,
    ) -> None:
        if interval_s is not None and not interval_s > 0:
            raise ValueError(
                f"interval_s={interval_s} must be a positive number of seconds, or "
                "None for no timer"
            )
        if every_n_files is not None and every_n_files < 1:
            raise ValueError(
                f"every_n_files={every_n_files} must be at least 1, or None to ignore "
                "lake files"
            )
        self._train = train
        self._interval_s = interval_s
        self._every_n_files = every_n_files
        self._lock = asyncio.Lock()
        self._busy = False
        self._pending: str | None = None
        self._stopping = False
        self._files_since_training = 0
        self._timer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.trainings = 0
        """Number of trainings that succeeded."""
        self.last_result: TrainResult | None = None
        self.last_error: BaseException | None = None

    @property
    def running(self) -> bool:
        """True while a training runs."""
        return self._lock.locked()

    async def start(self) -> None:
        """Start the interval timer, if there is one."""
        if self._interval_s is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._tick())
        logger.info(
            "training scheduler started interval_s=%s every_n_files=%s",
            self._interval_s,
            self._every_n_files,
        )

    async def stop(self) -> None:
        """Stop triggering, and wait for the training in progress to end."""
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
            self._timer = None
        await asyncio.gather(*self._tasks, return_exceptions=True)
        async with self._lock:
            pass
        logger.info("training scheduler stopped trainings=%d", self.trainings)

    def note_files_written(self, count: int = 1) -> None:
        """Count ``count`` new lake files; trigger a training every N of them."""
        if count < 0:
            raise ValueError(f"count={count} files cannot be negative")
        if self._every_n_files is None:
            return
        self._files_since_training += count
        if self._files_since_training >= self._every_n_files:
            written, self._files_since_training = self._files_since_training, 0
            self._trigger(f"files={written}")

    async def train_now(self, reason: str = "manual") -> TrainResult:
        """Train once, after the training in progress if any; errors propagate."""
        async with self._lock:
            return await self._run(reason)

    def _trigger(self, reason: str) -> None:
        if self._stopping:
            return
        if self._busy:
            self._pending = reason
            logger.debug("training already running, one more queued reason=%s", reason)
            return
        self._busy = True
        task = asyncio.get_running_loop().create_task(self._drain(reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, reason: str) -> None:
        """Train for ``reason``, then once more while triggers came in meanwhile."""
        try:
            current: str | None = reason
            while current is not None and not self._stopping:
                self._pending = None
                async with self._lock:
                    await self._run_logged(current)
                current = self._pending
        finally:
            self._busy = False

    async def _tick(self) -> None:
        assert self._interval_s is not None
        while True:
            await asyncio.sleep(self._interval_s)
            self._trigger("interval")

    async def _run_logged(self, reason: str) -> None:
        try:
            await self._run(reason)
        except Exception as error:
            self.last_error = error
            logger.exception(
                "training failed reason=%s; the next trigger retries", reason
            )

    async def _run(self, reason: str) -> TrainResult:
        started = time.perf_counter()
        logger.info("training started reason=%s", reason)
        result = await asyncio.to_thread(self._train)
        self.trainings += 1
        self.last_result, self.last_error = result, None
        logger.info(
            "training done reason=%s backend=%s took_ms=%d",
            reason,
            result.backend,
            (time.perf_counter() - started) * 1000,
        )
        return result
