"""The sql/ files parse in BigQuery's dialect, and say what the warehouse expects.

sqlglot (30.x) has two gaps with these files, asserted below so that the day it
closes one, a test says the workaround in ``kefta.warehouse.parsing`` can go:
``WITH PARTITION COLUMNS`` makes it fall back to an opaque ``Command``, and
``ML.CENTROIDS(MODEL ...)`` is a ``ParseError``.
"""

from __future__ import annotations

import logging

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from kefta.warehouse.parsing import option_values, parse_statement
from kefta.warehouse.templates import (
    REPORT_STEPS,
    TRAIN_STEPS,
    TemplateValues,
    load_template,
    sql_folder,
)

VALUES = TemplateValues(
    project="my-project",
    dataset="kefta",
    lake_url="gs://kefta-lake/rides",
    pickups_uri="gs://kefta-reference/uber-split2.csv",
)
ALL_STEPS = TRAIN_STEPS + REPORT_STEPS


def rendered(name: str) -> str:
    return load_template(name).render(VALUES)


def test_the_sql_folder_holds_the_five_statements() -> None:
    names = sorted(path.stem for path in sql_folder().glob("*.sql"))

    assert names == sorted(ALL_STEPS)


@pytest.mark.parametrize("name", ALL_STEPS)
def test_every_file_parses_in_the_bigquery_dialect(name: str) -> None:
    tree = parse_statement(rendered(name), source=name)

    assert not isinstance(tree, exp.Command)
    assert tree.sql(dialect="bigquery")


@pytest.mark.parametrize("name", ALL_STEPS)
def test_every_file_fits_in_88_columns(name: str) -> None:
    text = load_template(name).text

    assert max(len(line) for line in text.splitlines()) <= 88


@pytest.mark.parametrize("name", ["02_pickups", "03_model", "04_revenue_report"])
def test_sqlglot_parses_these_files_as_they_are(name: str) -> None:
    statements = sqlglot.parse(rendered(name), read="bigquery")

    assert len(statements) == 1
    assert isinstance(statements[0], exp.LoadData | exp.Create | exp.Select)


def test_sqlglot_alone_reads_partition_columns_as_an_opaque_command(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="sqlglot"):
        statements = sqlglot.parse(rendered("01_external_rides"), read="bigquery")

    assert [type(s) for s in statements] == [exp.Command]


def test_sqlglot_alone_rejects_ml_centroids() -> None:
    with pytest.raises(ParseError):
        sqlglot.parse(rendered("05_centroids"), read="bigquery")


def test_external_table_reads_the_lake_with_typed_hive_partitions() -> None:
    tree = parse_statement(rendered("01_external_rides"))

    assert isinstance(tree, exp.Create)
    assert (tree.this.catalog, tree.this.db, tree.this.name) == (
        "my-project",
        "kefta",
        "rides",
    )
    assert option_values(tree.args["properties"]) == {
        "FORMAT": "PARQUET",
        "URIS": ["gs://kefta-lake/rides/*"],
        "HIVE_PARTITION_URI_PREFIX": "gs://kefta-lake/rides",
    }
    partitions = tree.find(exp.PartitionedByProperty)
    assert partitions is not None
    columns = [
        (c.name, c.args["kind"].sql(dialect="bigquery"))
        for c in partitions.this.expressions
    ]
    assert columns == [("dt", "DATE"), ("hour", "INT64")]


def test_pickups_load_four_typed_columns_after_the_header() -> None:
    tree = parse_statement(rendered("02_pickups"))

    assert isinstance(tree, exp.LoadData)
    assert tree.args["overwrite"] is True
    columns = [
        (c.name, c.args["kind"].sql(dialect="bigquery")) for c in tree.this.expressions
    ]
    assert columns == [
        ("date", "STRING"),
        ("lat", "FLOAT64"),
        ("lon", "FLOAT64"),
        ("ID", "STRING"),
    ]
    assert option_values(tree.args["files"]) == {
        "FORMAT": "CSV",
        "SKIP_LEADING_ROWS": 1,
        "URIS": ["gs://kefta-reference/uber-split2.csv"],
    }


def test_model_is_an_eight_cluster_kmeans_on_longitude_and_latitude() -> None:
    tree = parse_statement(rendered("03_model"))

    assert isinstance(tree, exp.Create)
    assert str(tree.args["kind"]).upper() == "MODEL"
    assert option_values(tree.args["properties"]) == {
        "MODEL_TYPE": "KMEANS",
        "NUM_CLUSTERS": 8,
        "KMEANS_INIT_METHOD": "KMEANS++",
        "STANDARDIZE_FEATURES": True,
        "MAX_ITERATIONS": 20,
        "MIN_REL_PROGRESS": 0.01,
    }
    assert tree.expression.named_selects == ["longitude", "latitude"]


def test_revenue_report_deduplicates_then_predicts_on_client_locations() -> None:
    tree = parse_statement(rendered("04_revenue_report"))

    qualify = tree.find(exp.Qualify)
    assert qualify is not None
    assert "PARTITION BY ride_id" in qualify.sql(dialect="bigquery")
    predict = tree.find(exp.Predict)
    assert predict is not None
    assert predict.this.name == "pickup_clusters"
    assert predict.expression.this.named_selects == [
        "longitude",
        "latitude",
        "tier",
        "prix_travel",
    ]
    assert tree.named_selects == ["centroid_id", "tier", "rides", "revenue", "avg_fare"]


def test_centroids_are_pivoted_to_one_row_per_centroid() -> None:
    tree = parse_statement(rendered("05_centroids"))

    calls = [t for t in tree.find_all(exp.Anonymous) if t.name.upper() == "CENTROIDS"]
    assert len(calls) == 1
    model = calls[0].expressions[0]
    assert (model.db, model.table, model.name) == (
        "my-project",
        "kefta",
        "pickup_clusters",
    )
    assert tree.named_selects == ["centroid_id", "longitude", "latitude"]


def test_the_workarounds_ignore_comments_and_strings() -> None:
    sql = (
        "-- WITH PARTITION COLUMNS (x INT64) and ML.CENTROIDS(MODEL m) in a comment\n"
        "SELECT 'ML.CENTROIDS(MODEL m)' AS s, 'WITH PARTITION COLUMNS' AS t"
    )

    tree = parse_statement(sql)

    assert [e.sql() for e in tree.expressions] == [
        "'ML.CENTROIDS(MODEL m)' AS s",
        "'WITH PARTITION COLUMNS' AS t",
    ]
