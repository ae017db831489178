"""Fault campaigns against the real services; long, so they run only when asked.

The soak test runs with ``pytest tests/faults -m soak`` (or ``KEFTA_SOAK=1``); a plain
``pytest tests`` skips it. The integration fixtures (services, fresh names, worker
processes, topic clean-up) are shared with ``tests/integration``.
"""

from __future__ import annotations

import os

import pytest

from integration.conftest import (  # noqa: F401  (fixtures, found by name)
    cleanup_topics,
    names,
    services,
    settings,
    workers,
)


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    asked = "soak" in (config.option.markexpr or "") or os.environ.get("KEFTA_SOAK")
    if asked:
        return
    skip = pytest.mark.skip(reason="a soak run takes 10+ minutes: pytest -m soak")
    for item in items:
        if item.get_closest_marker("soak"):
            item.add_marker(skip)
