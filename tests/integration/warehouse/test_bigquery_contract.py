"""Contract test of ``BigQueryWarehouse`` against a fake BigQuery REST API.

This is not BigQuery. BigQuery cannot be reached from the test machines, and no
emulator runs external tables or BigQuery ML. The fake in
``tests/support/fake_bigquery.py`` speaks the few REST endpoints the real
``google.cloud.bigquery.Client`` uses (datasets insert/get, jobs insert/get,
getQueryResults), runs no SQL and records what it receives. These tests check what
kefta sends through the real client library: the dataset it creates, and, job by
job, the SQL (exactly the rendered ``sql/`` templates, in order), the labels, the
dialect and the location; and that job rows and job errors come back as kefta's
report and errors. Whether BigQuery accepts that SQL is checked by parsing it in
BigQuery's dialect (unit tests) and, ultimately, by running it on BigQuery.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from google.api_core import exceptions as google_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from kefta.warehouse import Centroid, NotReadyError, RevenueRow, TemplateError
from kefta.warehouse.bigquery import BigQueryWarehouse, _backend_error
from kefta.warehouse.errors import BackendError
from kefta.warehouse.templates import (
    REPORT_STEPS,
    TRAIN_STEPS,
    TemplateValues,
    load_templates,
)
from support.fake_bigquery import FakeBigQuery, fake_bigquery

PROJECT = "kefta-contract"
VALUES = TemplateValues(
    project=PROJECT,
    dataset="rides_eu",
    lake_url="gs://kefta-lake/rides",
    pickups_uri="gs://kefta-reference/uber-split2.csv",
)
REVENUE_SCHEMA = [
    ("centroid_id", "INTEGER"),
    ("tier", "STRING"),
    ("rides", "INTEGER"),
    ("revenue", "FLOAT"),
    ("avg_fare", "FLOAT"),
]
CENTROID_SCHEMA = [
    ("centroid_id", "INTEGER"),
    ("longitude", "FLOAT"),
    ("latitude", "FLOAT"),
]


@pytest.fixture
def fake() -> Iterator[FakeBigQuery]:
    with fake_bigquery() as server:
        yield server


@pytest.fixture
def warehouse(fake: FakeBigQuery) -> Iterator[BigQueryWarehouse]:
    client = bigquery.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": fake.url},
    )
    warehouse = BigQueryWarehouse(
        client,
        dataset=VALUES.dataset,
        lake_url=VALUES.lake_url,
        pickups_uri=VALUES.pickups_uri,
        location="EU",
    )
    yield warehouse
    warehouse.close()


def rendered(names: tuple[str, ...]) -> list[str]:
    return [template.render(VALUES) for template in load_templates(names)]


def test_train_creates_the_dataset_in_its_location(
    fake: FakeBigQuery, warehouse: BigQueryWarehouse
) -> None:
    warehouse.train()

    created = fake.datasets[f"{PROJECT}.{VALUES.dataset}"]
    assert created["location"] == "EU"
    assert created["labels"] == {"app": "kefta"}


def test_train_again_keeps_the_existing_dataset(
    fake: FakeBigQuery, warehouse: BigQueryWarehouse
) -> None:
    warehouse.train()

    warehouse.train()

    assert len(fake.dataset_inserts) == 2
    assert list(fake.datasets) == [f"{PROJECT}.{VALUES.dataset}"]
    assert len(fake.jobs) == 2 * len(TRAIN_STEPS)


def test_train_sends_the_rendered_templates_in_order(
    fake: FakeBigQuery, warehouse: BigQueryWarehouse
) -> None:
    warehouse.train()

    assert [job.sql for job in fake.jobs] == rendered(TRAIN_STEPS)


def test_train_labels_every_job_with_app_and_step(
    fake: FakeBigQuery, warehouse: BigQueryWarehouse
) -> None:
    warehouse.train()

    assert [job.labels for job in fake.jobs] == [
        {"app": "kefta", "step": "external_rides"},
        {"app": "kefta", "step": "pickups"},
        {"app": "kefta", "step": "model"},
    ]


def test_train_runs_standard_sql_jobs_in_the_location(
    fake: FakeBigQuery, warehouse: BigQueryWarehouse
) -> None:
    warehouse.train()

    assert all(job.configuration["query"]["useLegacySql"] is False for job in fake.jobs)
    assert {job.location for job in fake.jobs} == {"EU"}
    assert all(
        job.job_id.startswith(f"kefta_{t.step}_")
        for job, t in zip(fake.jobs, load_templates(TRAIN_STEPS), strict=True)
    )


def test_train_reports_and_logs_each_job(
    fake: FakeBigQuery, warehouse: BigQueryWarehouse, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kefta.warehouse.bigquery")

    result = warehouse.train()

    assert result.backend == "bigquery"
    assert [step.job_id for step in result.steps] == [job.job_id for job in fake.jobs]
    assert {step.bytes_processed for step in result.steps} == {fake.bytes_processed}
    logged = [r.getMessage() for r in caplog.records if "bigquery job done" in r.msg]
    assert len(logged) == len(TRAIN_STEPS)
    assert f"job_id={fake.jobs[0].job_id}" in logged[0]
    assert f"bytes_processed={fake.bytes_processed}" in logged[0]


def test_report_turns_job_rows_into_a_report(
    fake: FakeBigQuery, warehouse: BigQueryWarehouse
) -> None:
    revenue_sql, centroids_sql = rendered(REPORT_STEPS)
    fake.respond(
        revenue_sql,
        REVENUE_SCHEMA,
        [[1, "low", 3, 30.5, 10.1666], [2, "high", 1, 99.0, 99.0]],
    )
    fake.respond(
        centroids_sql, CENTROID_SCHEMA, [[1, -73.98, 40.75], [2, -73.79, 40.64]]
    )

    report = warehouse.report()

    assert [job.sql for job in fake.jobs] == [revenue_sql, centroids_sql]
    assert [job.labels["step"] for job in fake.jobs] == ["revenue_report", "centroids"]
    assert report.revenue == (
        RevenueRow(1, "low", 3, 30.5, 10.1666),
        RevenueRow(2, "high", 1, 99.0, 99.0),
    )
    assert report.centroids == (Centroid(1, -73.98, 40.75), Centroid(2, -73.79, 40.64))


def test_report_before_training_raises_not_ready(
    fake: FakeBigQuery, warehouse: BigQueryWarehouse
) -> None:
    revenue_sql, _ = rendered(REPORT_STEPS)
    fake.fail(
        revenue_sql,
        "notFound",
        "Not found: Model kefta-contract:rides_eu.pickup_clusters",
    )

    with pytest.raises(NotReadyError, match="run `kefta train` first"):
        warehouse.report()


def test_invalid_sql_fails_the_step_for_good(
    fake: FakeBigQuery, warehouse: BigQueryWarehouse
) -> None:
    fake.fail(rendered(TRAIN_STEPS)[2], "invalidQuery", "Syntax error at [3:1]")

    with pytest.raises(BackendError, match="step model failed with HTTP 400") as raised:
        warehouse.train()

    assert raised.value.retriable is False
    assert len(fake.jobs) == len(TRAIN_STEPS)


@pytest.mark.parametrize(
    ("error", "retriable"),
    [
        (google_errors.TooManyRequests("rate"), True),
        (google_errors.ServiceUnavailable("down"), True),
        (google_errors.Forbidden("quota"), False),
        (google_errors.BadRequest("syntax"), False),
    ],
)
def test_errors_left_after_client_retries_keep_their_retriability(
    error: google_errors.GoogleAPICallError, retriable: bool
) -> None:
    # The client itself retries rate limits and backend errors for minutes first,
    # which is why the fake server does not exercise these.
    mapped = _backend_error(error, "model")

    assert isinstance(mapped, BackendError)
    assert mapped.retriable is retriable


def test_a_lake_outside_cloud_storage_is_refused(fake: FakeBigQuery) -> None:
    client = bigquery.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": fake.url},
    )

    with pytest.raises(TemplateError, match="not a Cloud Storage URL"):
        BigQueryWarehouse(
            client, dataset="kefta", lake_url="/data/lake", pickups_uri="gs://b/p.csv"
        )

    assert fake.jobs == []
