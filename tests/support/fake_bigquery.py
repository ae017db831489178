"""A tiny stand-in for the BigQuery REST API, for contract tests of the client code.

It answers the few endpoints ``google.cloud.bigquery.Client`` calls to create a
dataset and run query jobs (datasets insert/get, jobs insert/get, getQueryResults),
runs nothing, and records what it was sent. Every job completes at once; a query
answers with the rows registered for its exact SQL text (``respond``), any other
statement with no result set, like DDL. It is not BigQuery: it checks what kefta
sends, not what BigQuery would do with it.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_PREFIX = "/bigquery/v2/projects/"


@dataclass(frozen=True)
class RecordedJob:
    """A job as the client inserted it."""

    project: str
    job_id: str
    location: str | None
    configuration: dict[str, Any]

    @property
    def sql(self) -> str:
        return str(self.configuration["query"]["query"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.configuration.get("labels", {}))


@dataclass
class FakeBigQuery:
    """The recorded state; ``url`` is the endpoint to give the client."""

    url: str = ""
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset_inserts: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[RecordedJob] = field(default_factory=list)
    results: dict[str, tuple[list[dict[str, str]], list[list[Any]]]] = field(
        default_factory=dict
    )
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    bytes_processed: int = 1234
    lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(
        self, sql: str, schema: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Answer the query whose text is exactly ``sql`` with ``rows``."""
        fields = [
            {"name": name, "type": kind, "mode": "NULLABLE"} for name, kind in schema
        ]
        self.results[sql] = (fields, [list(row) for row in rows])

    def fail(self, sql: str, reason: str, message: str) -> None:
        """Make the job running exactly ``sql`` fail with a BigQuery error
        ``reason`` (``notFound``, ``rateLimitExceeded``, ...)."""
        self.failures[sql] = (reason, message)

    def job(self, job_id: str) -> RecordedJob:
        with self.lock:
            return next(job for job in self.jobs if job.job_id == job_id)


@contextmanager
def fake_bigquery() -> Iterator[FakeBigQuery]:
    """Serve a ``FakeBigQuery`` on a free local port for the duration of the block."""
    state = FakeBigQuery()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _handler_for(state: FakeBigQuery) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        fake = state

    return Handler


class _Handler(BaseHTTPRequestHandler):
    fake: FakeBigQuery
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""

    def do_POST(self) -> None:
        body = self._body()
        if match := re.fullmatch(r"([^/]+)/datasets", self._path()):
            self._insert_dataset(match.group(1), body)
        elif match := re.fullmatch(r"([^/]+)/jobs", self._path()):
            self._insert_job(match.group(1), body)
        else:
            self._send(HTTPStatus.NOT_FOUND, _error(404, f"no route POST {self.path}"))

    def do_GET(self) -> None:
        path = self._path()
        if match := re.fullmatch(r"([^/]+)/datasets/([^/]+)", path):
            self._get_dataset(match.group(1), match.group(2))
        elif match := re.fullmatch(r"([^/]+)/jobs/([^/]+)", path):
            self._send(HTTPStatus.OK, self._job_resource(self.fake.job(match.group(2))))
        elif match := re.fullmatch(r"([^/]+)/queries/([^/]+)", path):
            self._query_results(self.fake.job(match.group(2)))
        else:
            self._send(HTTPStatus.NOT_FOUND, _error(404, f"no route GET {self.path}"))

    def _insert_dataset(self, project: str, body: dict[str, Any]) -> None:
        reference = body["datasetReference"]
        key = f"{reference['projectId']}.{reference['datasetId']}"
        with self.fake.lock:
            self.fake.dataset_inserts.append(body)
            exists = key in self.fake.datasets
            if not exists:
                self.fake.datasets[key] = {
                    **body,
                    "kind": "bigquery#dataset",
                    "id": f"{project}:{reference['datasetId']}",
                    "etag": uuid.uuid4().hex,
                }
        if exists:
            self._send(
                HTTPStatus.CONFLICT, _error(409, f"Already Exists: Dataset {key}")
            )
        else:
            self._send(HTTPStatus.OK, self.fake.datasets[key])

    def _get_dataset(self, project: str, dataset: str) -> None:
        with self.fake.lock:
            found = self.fake.datasets.get(f"{project}.{dataset}")
        if found is None:
            self._send(HTTPStatus.NOT_FOUND, _error(404, f"Not found: {dataset}"))
        else:
            self._send(HTTPStatus.OK, found)

    def _insert_job(self, project: str, body: dict[str, Any]) -> None:
        reference = body.get("jobReference", {})
        job = RecordedJob(
            project=project,
            job_id=reference.get("jobId") or uuid.uuid4().hex,
            location=reference.get("location"),
            configuration=body["configuration"],
        )
        with self.fake.lock:
            self.fake.jobs.append(job)
        self._send(HTTPStatus.OK, self._job_resource(job))

    def _job_resource(self, job: RecordedJob) -> dict[str, Any]:
        now = int(time.time() * 1000)
        reference = {"projectId": job.project, "jobId": job.job_id}
        if job.location:
            reference["location"] = job.location
        status: dict[str, Any] = {"state": "DONE"}
        failure = self.fake.failures.get(job.sql)
        if failure is not None:
            error = {"reason": failure[0], "message": failure[1]}
            status.update(errorResult=error, errors=[error])
        return {
            "kind": "bigquery#job",
            "id": f"{job.project}:{job.job_id}",
            "jobReference": reference,
            "configuration": job.configuration,
            "status": status,
            "statistics": {
                "creationTime": str(now - 30),
                "startTime": str(now - 20),
                "endTime": str(now),
                "totalBytesProcessed": str(self.fake.bytes_processed),
                "query": {"totalBytesProcessed": str(self.fake.bytes_processed)},
            },
        }

    def _query_results(self, job: RecordedJob) -> None:
        response: dict[str, Any] = {
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": {"projectId": job.project, "jobId": job.job_id},
            "jobComplete": True,
        }
        result = self.fake.results.get(job.sql)
        if result is not None:
            fields, rows = result
            response["schema"] = {"fields": fields}
            response["totalRows"] = str(len(rows))
            if self._query().get("maxResults") != ["0"]:
                response["rows"] = [
                    {"f": [{"v": None if v is None else str(v)} for v in row]}
                    for row in rows
                ]
        self._send(HTTPStatus.OK, response)

    def _path(self) -> str:
        path = urlsplit(self.path).path
        return path.removeprefix(_PREFIX) if path.startswith(_PREFIX) else path

    def _query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        parsed: dict[str, Any] = json.loads(raw or b"{}")
        return parsed

    def _send(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _error(code: int, message: str) -> dict[str, Any]:
    reason = {404: "notFound", 409: "duplicate"}.get(code, "invalid")
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }
