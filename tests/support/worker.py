"""Waiting on conditions; :class:`kefta.testing.WorkerProcess` runs the workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from kefta.testing import WorkerProcess
from support.services import ROOT


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    limit: float,
    what: str,
    interval: float = 0.5,
) -> float:
    """Poll ``check`` until it is true; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")


__all__ = ["ROOT", "WorkerProcess", "wait_until"]
