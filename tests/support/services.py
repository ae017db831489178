"""Endpoints of the services started by ``scripts/services``, and probes."""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Endpoints:
    bootstrap: str
    es_url: str
    gcs_endpoint: str
    gcs_bucket: str


def endpoints() -> Endpoints:
    """Endpoints from the environment (``.services/env``), with local defaults."""
    env = os.environ
    return Endpoints(
        bootstrap=env.get("KEFTA_BOOTSTRAP", "127.0.0.1:9092"),
        es_url=env.get("KEFTA_ES_URL", "http://127.0.0.1:9200"),
        gcs_endpoint=env.get("KEFTA_GCS_ENDPOINT", "http://127.0.0.1:4443"),
        gcs_bucket=env.get("KEFTA_GCS_BUCKET", "kefta-lake"),
    )


def unreachable(found: Endpoints) -> list[str]:
    """Which services do not answer; empty when all do."""
    problems = []
    host, port = found.bootstrap.split(",")[0].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        problems.append(f"Kafka at {found.bootstrap}: {exc}")
    for name, url in (
        ("Elasticsearch", found.es_url),
        ("the GCS emulator", f"{found.gcs_endpoint}/storage/v1/b"),
    ):
        try:
            urllib.request.urlopen(url, timeout=5).close()
        except urllib.error.HTTPError:
            pass  # it answered
        except OSError as exc:
            problems.append(f"{name} at {url}: {exc}")
    return problems


def run_services(action: str, service: str) -> None:
    """``scripts/services ACTION SERVICE`` (stop, start, restart), failing loudly."""
    subprocess.run(
        [str(ROOT / "scripts" / "services"), action, service],
        check=True,
        capture_output=True,
        timeout=300,
    )
