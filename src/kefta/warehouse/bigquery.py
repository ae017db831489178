"""The BigQuery warehouse: the ``sql/`` statements run as BigQuery query jobs.

``BigQueryWarehouse`` sends each rendered template, verbatim, as one query job
labelled ``app=kefta`` and ``step=<step>``, waits for it, and logs its job id, bytes
processed and duration. The lake and the pickups CSV must be on Cloud Storage
(``gs://``): the external table and ``LOAD DATA`` read from there.

The ``google.cloud.bigquery.Client`` is passed in: build it with the project,
location and credentials of the deployment (``open_warehouse`` does).
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as google_errors
from google.cloud import bigquery

from kefta.warehouse.base import Report, StepResult, TrainResult
from kefta.warehouse.errors import (
    BackendError,
    NotReadyError,
    TemplateError,
    WarehouseError,
)
from kefta.warehouse.templates import (
    REPORT_STEPS,
    TRAIN_STEPS,
    SqlTemplate,
    TemplateValues,
    load_templates,
)

logger = logging.getLogger(__name__)

JOB_LABELS = {"app": "kefta"}
"""Labels of every job; ``step`` is added per template (see billing exports)."""

_RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class BigQueryWarehouse:
    """Runs the warehouse SQL on BigQuery through ``client``.

    ``dataset`` is created in ``location`` if missing. ``lake_url`` is the lake root
    (``gs://bucket/prefix``), ``pickups_uri`` the pickups CSV (``gs://...``).
    ``job_timeout_s`` bounds the wait for each job (None waits as long as it takes).
    """

    backend = "bigquery"

    def __init__(
        self,
        client: bigquery.Client,
        *,
        dataset: str,
        lake_url: str,
        pickups_uri: str,
        location: str | None = None,
        job_timeout_s: float | None = None,
    ) -> None:
        _require_gcs("lake_url", lake_url)
        _require_gcs("pickups_uri", pickups_uri)
        self._client = client
        self._location = location
        self._timeout = job_timeout_s
        self._values = TemplateValues(
            str(client.project), dataset, lake_url, pickups_uri
        )
        self._values.as_mapping()  # fail now, not at the first job

    def train(self) -> TrainResult:
        """Create the dataset if missing, then run ``01``-``03`` as query jobs.

        Raises ``BackendError`` (``retriable`` for quota and server errors) when a
        job fails; the steps before it stay done.
        """
        self._ensure_dataset()
        steps = tuple(
            self._run(template)[0] for template in load_templates(TRAIN_STEPS)
        )
        return TrainResult(self.backend, steps)

    def report(self) -> Report:
        """Run ``04`` and ``05`` and return their rows.

        Raises ``NotReadyError`` when the model or the rides table does not exist
        (``kefta train`` never ran), ``BackendError`` for other job failures.
        """
        revenue, centroids = (
            self._run(template)[1] for template in load_templates(REPORT_STEPS)
        )
        return Report.from_records(revenue, centroids)

    def close(self) -> None:
        """Close the client's HTTP session."""
        self._client.close()  # type: ignore[no-untyped-call]  # untyped upstream

    def _ensure_dataset(self) -> None:
        dataset = bigquery.Dataset(f"{self._client.project}.{self._values.dataset}")
        dataset.location = self._location
        dataset.labels = dict(JOB_LABELS)
        try:
            self._client.create_dataset(dataset, exists_ok=True)
        except google_errors.GoogleAPICallError as error:
            raise _backend_error(error, "create dataset") from error

    def _run(self, template: SqlTemplate) -> tuple[StepResult, list[Mapping[str, Any]]]:
        config = bigquery.QueryJobConfig(
            labels={**JOB_LABELS, "step": template.step}, use_legacy_sql=False
        )
        started = time.perf_counter()
        try:
            job = self._client.query(
                template.render(self._values),
                job_config=config,
                job_id_prefix=f"kefta_{template.step}_",
                location=self._location,
            )
            rows = job.result(timeout=self._timeout)
            records: list[Mapping[str, Any]] = [dict(row.items()) for row in rows]
        except google_errors.GoogleAPICallError as error:
            raise _backend_error(error, template.step) from error
        except concurrent.futures.TimeoutError as error:
            raise BackendError(
                f"BigQuery step {template.step} did not finish within "
                f"{self._timeout} s; raise the job timeout or check the job in the "
                "console",
                retriable=True,
            ) from error

        step = StepResult(
            template.step,
            time.perf_counter() - started,
            job_id=job.job_id,
            bytes_processed=job.total_bytes_processed,
        )
        logger.info(
            "bigquery job done step=%s job_id=%s bytes_processed=%s took_ms=%d",
            step.step,
            step.job_id,
            step.bytes_processed,
            step.duration_s * 1000,
        )
        return step, records


def _backend_error(
    error: google_errors.GoogleAPICallError, step: str
) -> WarehouseError:
    """Map a Google API error to kefta's, by HTTP status code."""
    status = int(error.code or 0)
    if status == 404:
        return NotReadyError(
            f"BigQuery step {step} found no such table or model ({error.message}); "
            "run `kefta train` first, or check the project and dataset"
        )
    return BackendError(
        f"BigQuery step {step} failed with HTTP {status}: {error.message}",
        retriable=status in _RETRIABLE_STATUS,
    )


def _require_gcs(name: str, url: str) -> None:
    if not url.startswith("gs://"):
        raise TemplateError(
            f"{name} {url!r} is not a Cloud Storage URL; BigQuery reads the lake and "
            "the pickups from gs://bucket/path: upload them there (gcloud storage cp) "
            "or use the local warehouse"
        )
