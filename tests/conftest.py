"""Shared fixtures: paths to the reference data."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def reference_message() -> bytes:
    """The old producers' reference message (typo ``logitude``)."""
    return (FIXTURES / "data_projet.json").read_bytes()


@pytest.fixture(scope="session")
def seed_repo_message() -> bytes:
    """The old repository's variant (``properties_client``, ``longitude``)."""
    return (FIXTURES / "data_projet_seed_repo.json").read_bytes()
