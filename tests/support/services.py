"""Driving the services started by ``scripts/services`` (endpoints and probes are in
:mod:`kefta.testing`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_services(action: str, service: str) -> None:
    """``scripts/services ACTION SERVICE`` (stop, start, restart), failing loudly."""
    subprocess.run(
        [str(ROOT / "scripts" / "services"), action, service],
        check=True,
        capture_output=True,
        timeout=300,
    )
