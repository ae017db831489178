"""The DuckDB translation of the sql/ statements runs, and means the same thing."""

from __future__ import annotations

import math
from collections.abc import Iterator

import duckdb
import pytest
import sqlglot

from kefta.warehouse.errors import UnsupportedStatementError
from kefta.warehouse.kmeans import InitMethod, KMeansOptions
from kefta.warehouse.parsing import parse_statement
from kefta.warehouse.templates import TemplateValues, load_template
from kefta.warehouse.translate import (
    CreateRidesView,
    ModelRef,
    RunSql,
    TrainModel,
    translate,
)
from support.warehouse_lake import Lake

MODEL = ModelRef("kefta", "pickup_clusters")


def features(model: ModelRef) -> tuple[str, ...]:
    return ("longitude", "latitude")


def local(name: str, lake_url: str = "/nowhere", pickups: str = "/none.csv") -> object:
    values = TemplateValues("local", "kefta", lake_url, pickups)
    return translate(parse_statement(load_template(name).render(values)), features)


def bigquery(sql: str) -> object:
    return translate(parse_statement(sql), features)


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("CREATE SCHEMA kefta")
    yield connection
    connection.close()


def store_model(
    con: duckdb.DuckDBPyConnection, centroids: list[tuple[float, float]]
) -> None:
    """Two features, scale 0.1° in longitude and 0.05° in latitude."""
    con.execute(
        f"CREATE TABLE {MODEL.centroids_table} "
        "(centroid_id BIGINT, feature VARCHAR, numerical_value DOUBLE)"
    )
    for index, (lon, lat) in enumerate(centroids, start=1):
        con.execute(
            f"INSERT INTO {MODEL.centroids_table} VALUES (?, 'longitude', ?)",
            [index, lon],
        )
        con.execute(
            f"INSERT INTO {MODEL.centroids_table} VALUES (?, 'latitude', ?)",
            [index, lat],
        )
    con.execute(
        f"CREATE TABLE {MODEL.features_table} AS SELECT * FROM (VALUES "
        "('longitude', 0, -73.9, 0.1), ('latitude', 1, 40.7, 0.05)) "
        "AS t(feature, position, mean, stddev)"
    )


def test_external_table_becomes_a_view_over_the_hive_lake(
    con: duckdb.DuckDBPyConnection, filled_lake: Lake
) -> None:
    statement = local("01_external_rides", lake_url=str(filled_lake.root))
    assert isinstance(statement, CreateRidesView)

    con.execute(statement.sql)

    row = con.execute(
        "SELECT count(*), count(DISTINCT ride_id), min(dt), typeof(min(dt)), "
        "typeof(min(hour)), list_sort(list(DISTINCT hour)) FROM kefta.rides"
    ).fetchone()
    assert row is not None
    assert row[0] == len(filled_lake.written) == 201
    assert row[1] == 200
    assert str(row[2]) == "2026-12-03"
    assert row[3:] == ("DATE", "BIGINT", [17, 18])
    assert statement.pattern == f"{filled_lake.root}/**/*.parquet"


def test_load_data_reads_the_columns_by_position(
    con: duckdb.DuckDBPyConnection, august_pickups: str
) -> None:
    statement = local("02_pickups", pickups=august_pickups)
    assert isinstance(statement, RunSql)

    con.execute(statement.sql)

    described = con.execute("DESCRIBE kefta.pickups").fetchall()
    assert [(c[0], c[1]) for c in described] == [
        ("date", "VARCHAR"),
        ("lat", "DOUBLE"),
        ("lon", "DOUBLE"),
        ("ID", "VARCHAR"),
    ]
    first = con.execute("SELECT * FROM kefta.pickups LIMIT 1").fetchone()
    assert first == ("2014/8/1 00:03:00", 40.7366, -73.9906, "B02512")
    assert con.execute("SELECT count(*) FROM kefta.pickups").fetchone() == (65_535,)


def test_create_model_becomes_training_with_the_options_of_the_file(
    con: duckdb.DuckDBPyConnection, reference_pickups: str
) -> None:
    loader = local("02_pickups", pickups=reference_pickups)
    assert isinstance(loader, RunSql)
    con.execute(loader.sql)

    statement = local("03_model")

    assert isinstance(statement, TrainModel)
    assert statement.model == MODEL
    assert statement.feature_names == ("longitude", "latitude")
    assert statement.options == KMeansOptions(
        num_clusters=8,
        init_method=InitMethod.KMEANS_PLUS_PLUS,
        standardize_features=True,
        max_iterations=20,
        min_rel_progress=0.01,
    )
    assert con.execute(statement.select_sql).fetchall()[0] == (-73.9422, 40.729)


def test_model_options_are_read_although_transpiling_drops_them() -> None:
    sql = (
        "CREATE MODEL `p.kefta.m` OPTIONS (MODEL_TYPE = 'KMEANS', NUM_CLUSTERS = 3, "
        "KMEANS_INIT_METHOD = 'RANDOM', STANDARDIZE_FEATURES = FALSE, "
        "EARLY_STOP = FALSE) AS SELECT lon AS x, lat AS y FROM `p.kefta.pickups`"
    )

    statement = bigquery(sql)

    assert (
        "NUM_CLUSTERS" not in sqlglot.transpile(sql, read="bigquery", write="duckdb")[0]
    )
    assert isinstance(statement, TrainModel)
    assert statement.options.num_clusters == 3
    assert statement.options.init_method is InitMethod.RANDOM
    assert statement.options.standardize_features is False
    assert statement.options.early_stop is False


def test_predict_adds_the_nearest_centroids_by_standardized_distance(
    con: duckdb.DuckDBPyConnection,
) -> None:
    store_model(con, [(-74.0, 40.7), (-73.8, 40.8)])
    statement = bigquery(
        "SELECT * FROM ML.PREDICT(MODEL `p.kefta.pickup_clusters`, "
        "(SELECT -73.95 AS longitude, 40.72 AS latitude, 'low' AS tier))"
    )
    assert isinstance(statement, RunSql)

    cursor = con.execute(statement.sql)
    names = [c[0] for c in cursor.description or ()]
    row = dict(zip(names, cursor.fetchone() or (), strict=True))

    assert names[:2] == ["CENTROID_ID", "NEAREST_CENTROIDS_DISTANCE"]
    assert row["CENTROID_ID"] == 1
    assert row["tier"] == "low"
    distances = row["NEAREST_CENTROIDS_DISTANCE"]
    assert [d["CENTROID_ID"] for d in distances] == [1, 2]
    assert distances[0]["DISTANCE"] == pytest.approx(
        math.hypot(0.05 / 0.1, 0.02 / 0.05)
    )
    assert distances[1]["DISTANCE"] == pytest.approx(
        math.hypot(0.15 / 0.1, 0.08 / 0.05)
    )


def test_predict_lists_at_most_five_centroids(con: duckdb.DuckDBPyConnection) -> None:
    store_model(con, [(-74.0 + i / 100, 40.7) for i in range(8)])
    statement = bigquery(
        "SELECT CENTROID_ID, NEAREST_CENTROIDS_DISTANCE FROM ML.PREDICT("
        "MODEL `p.kefta.pickup_clusters`, "
        "(SELECT -73.931 AS longitude, 40.7 AS latitude))"
    )
    assert isinstance(statement, RunSql)

    centroid, nearest = con.execute(statement.sql).fetchone() or (None, None)

    assert centroid == 8
    assert [d["CENTROID_ID"] for d in nearest] == [8, 7, 6, 5, 4]


def test_predict_keeps_every_input_row(con: duckdb.DuckDBPyConnection) -> None:
    store_model(con, [(-74.0, 40.7), (-73.8, 40.8)])
    statement = bigquery(
        "SELECT CENTROID_ID, count(*) AS n FROM ML.PREDICT("
        "MODEL `p.kefta.pickup_clusters`, (SELECT -74.0 AS longitude, 40.7 AS latitude "
        "FROM UNNEST(GENERATE_ARRAY(1, 1000)))) GROUP BY CENTROID_ID"
    )
    assert isinstance(statement, RunSql)

    assert con.execute(statement.sql).fetchall() == [(1, 1000)]


def test_centroids_query_reads_the_model_table(con: duckdb.DuckDBPyConnection) -> None:
    store_model(con, [(-74.0, 40.7), (-73.8, 40.8)])
    statement = local("05_centroids")
    assert isinstance(statement, RunSql)

    rows = con.execute(statement.sql).fetchall()

    assert rows == [(1, -74.0, 40.7), (2, -73.8, 40.8)]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "CREATE MODEL `p.d.m` OPTIONS (MODEL_TYPE = 'LINEAR_REG') "
            "AS SELECT x FROM t",
            "MODEL_TYPE 'LINEAR_REG' is not supported",
        ),
        (
            "CREATE MODEL `p.d.m` OPTIONS (MODEL_TYPE = 'KMEANS', "
            "DISTANCE_TYPE = 'COSINE') AS SELECT x FROM t",
            "DISTANCE_TYPE 'COSINE'",
        ),
        (
            "CREATE MODEL `p.d.m` OPTIONS (MODEL_TYPE = 'KMEANS', WARM_START = TRUE)"
            " AS SELECT x FROM t",
            "option\\(s\\) WARM_START are not implemented",
        ),
        (
            "CREATE MODEL `p.d.m` OPTIONS (MODEL_TYPE = 'KMEANS', KMEANS_INIT_METHOD = "
            "'CUSTOM') AS SELECT x FROM t",
            "KMEANS_INIT_METHOD must be one of RANDOM, KMEANS\\+\\+",
        ),
        (
            "CREATE MODEL `p.d.m` OPTIONS (MODEL_TYPE = 'KMEANS') AS SELECT * FROM t",
            "must name each feature",
        ),
        ("DELETE FROM `p.d.t` WHERE TRUE", "cannot run a Delete statement"),
        (
            "SELECT * FROM ML.CENTROIDS(MODEL `p.d.m`, STRUCT(TRUE AS standardize))",
            "standardized centroids",
        ),
        (
            "LOAD DATA INTO `p.d.t` (a STRING) "
            "FROM FILES (format = 'CSV', uris = ['x'])",
            "only LOAD DATA OVERWRITE",
        ),
        (
            "LOAD DATA OVERWRITE `p.d.t` FROM FILES (format = 'CSV', uris = ['x'])",
            "without a column list",
        ),
        (
            "CREATE EXTERNAL TABLE `p.d.t` OPTIONS (format = 'CSV', uris = ['gs://b/*'])",
            "format 'CSV' is not supported",
        ),
        (
            "CREATE EXTERNAL TABLE `p.d.t` OPTIONS (format = 'PARQUET', "
            "uris = ['gs://other/*'], hive_partition_uri_prefix = 'gs://lake')",
            "are not under hive_partition_uri_prefix 'gs://lake'",
        ),
    ],
)
def test_what_the_local_warehouse_cannot_do_is_refused(sql: str, message: str) -> None:
    with pytest.raises(UnsupportedStatementError, match=message):
        bigquery(sql)
