"""Test seams shipped with kefta: a real ``kefta worker`` process to drive, and the
endpoints of the local services (``scripts/services``) with probes.

The integration tests, the fault campaign and the benchmarks start workers as real
processes (``faust.Worker`` installs signal handlers and blocks, so it cannot run
inside a test's event loop), kill them with SIGKILL as a crash would, and read their
peak memory and CPU time from ``/proc``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kefta.settings import Settings


@dataclass(frozen=True)
class Endpoints:
    """Where the local services answer."""

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


def gcs_filesystem(endpoint: str) -> Any:
    """A gcsfs filesystem on the GCS emulator at ``endpoint``."""
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    import gcsfs

    return gcsfs.GCSFileSystem(endpoint_url=endpoint, token="anon")


def worker_env(settings: Settings, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a ``kefta worker`` process running with ``settings``."""
    env = {
        "KEFTA_BOOTSTRAP": settings.bootstrap,
        "KEFTA_TOPIC": settings.topic,
        "KEFTA_PRICED_TOPIC": settings.priced_topic,
        "KEFTA_DLQ_TOPIC": settings.dlq_topic,
        "KEFTA_GROUP": settings.group,
        "KEFTA_WEB_ENABLED": "false",
        "KEFTA_DATA_DIR": str(data_dir),
        "KEFTA_LOG_EVERY": "2",
        "KEFTA_ES_URL": "",
        "KEFTA_LAKE_URL": "",
    }
    env.update({f"KEFTA_{k.upper()}": v for k, v in extra.items()})
    return env


class WorkerProcess:
    """A ``kefta worker`` subprocess with its own environment and log file."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        command: Sequence[str] = (),
        cwd: Path | None = None,
    ) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.command = list(command) or [
            str(Path(sys.executable).with_name("kefta")),
            "worker",
        ]
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self._log: IO[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.started = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def peak_rss_mb(self) -> float:
        """Peak resident memory so far (``VmHWM``), in MiB."""
        return _status_kb(self.pid, "VmHWM") / 1024

    def cpu_seconds(self) -> float:
        """User plus system CPU time used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def stop(self, timeout: float = 60.0) -> int:
        return self._signal(signal.SIGTERM, timeout)

    def _signal(self, sig: int, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0
