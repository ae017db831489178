"""The warehouse wing: the lake's rides clustered and summed, on BigQuery or DuckDB.

The SQL in the repository's ``sql/`` folder is the single source of truth (see
``templates``). ``open_warehouse`` picks the back end: ``BigQueryWarehouse`` when a
GCP project is configured, ``LocalWarehouse`` (DuckDB, embedded) otherwise. Both
implement ``Warehouse``: ``train()`` then ``report()``. ``TrainingScheduler``
retrains from the stream app without blocking it. Reading the lake is all this wing
does with the rest of kefta; it never touches Kafka.

``kefta.warehouse.report`` prints and plots reports; it is not imported here because
it loads matplotlib.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from kefta.warehouse.base import (
    Centroid,
    ModelSummary,
    Report,
    RevenueRow,
    StepResult,
    TrainResult,
    Warehouse,
)
from kefta.warehouse.errors import (
    BackendError,
    NotReadyError,
    TemplateError,
    TrainingDataError,
    UnsupportedStatementError,
    WarehouseError,
)
from kefta.warehouse.scheduler import TrainingScheduler

if TYPE_CHECKING:
    import fsspec
    from google.cloud import bigquery

__all__ = [
    "BackendError",
    "Centroid",
    "ModelSummary",
    "NotReadyError",
    "Report",
    "RevenueRow",
    "StepResult",
    "TemplateError",
    "TrainResult",
    "TrainingDataError",
    "TrainingScheduler",
    "UnsupportedStatementError",
    "Warehouse",
    "WarehouseError",
    "default_pickups_path",
    "open_warehouse",
]


def default_pickups_path() -> str:
    """The reference pickups shipped with kefta (2,957 Uber pickups, New York)."""
    return str(resources.files("kefta") / "data" / "uber-split2.csv")


def open_warehouse(
    *,
    project: str | None,
    lake_url: str,
    dataset: str = "kefta",
    pickups_path: str | None = None,
    duckdb_path: str = ":memory:",
    location: str | None = None,
    client: bigquery.Client | None = None,
    filesystem: fsspec.AbstractFileSystem | None = None,
) -> Warehouse:
    """The warehouse for these settings: BigQuery if ``project`` is set, else DuckDB.

    BigQuery needs ``lake_url`` and ``pickups_path`` on Cloud Storage (``gs://``);
    credentials come from Application Default Credentials
    (``GOOGLE_APPLICATION_CREDENTIALS``) unless ``client`` is given, and jobs run in
    ``location``. DuckDB reads local paths or fsspec URLs (``filesystem`` serves its
    protocol) and keeps its tables in ``duckdb_path``, which must be a file for
    ``kefta report`` to see what ``kefta train`` did in another process.
    ``pickups_path`` defaults to the packaged reference pickups for DuckDB.
    """
    if project is None:
        from kefta.warehouse.local import LocalWarehouse

        return LocalWarehouse(
            lake_url=lake_url,
            pickups_path=pickups_path or default_pickups_path(),
            dataset=dataset,
            duckdb_path=duckdb_path,
            filesystem=filesystem,
        )

    from google.cloud import bigquery

    from kefta.warehouse.bigquery import BigQueryWarehouse

    if pickups_path is None:
        raise TemplateError(
            "BigQuery loads the pickups from Cloud Storage and no pickups_path was "
            "given; upload the CSV (gcloud storage cp "
            f"{default_pickups_path()} gs://<bucket>/uber-split2.csv) and pass its "
            "gs:// URI"
        )
    return BigQueryWarehouse(
        client or bigquery.Client(project=project, location=location),
        dataset=dataset,
        lake_url=lake_url,
        pickups_uri=pickups_path,
        location=location,
    )
