"""The embedded warehouse: the ``sql/`` statements run on DuckDB over the lake.

``LocalWarehouse`` is the default when no GCP project is configured. It renders the
same templates as ``BigQueryWarehouse``, parses them as BigQuery SQL and runs their
DuckDB translation (see ``translate``); the k-means of ``CREATE MODEL`` is trained
by ``kmeans`` and stored in DuckDB tables beside the others.

The lake and the pickups may be local paths or fsspec URLs (``gs://`` through gcsfs,
``memory://`` in tests); the filesystem is registered in DuckDB, which then reads the
Parquet and CSV files through it. The module is not named ``duckdb`` so that it does
not shadow the package it imports.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import fsspec
import numpy as np

from kefta.warehouse.base import (
    ModelSummary,
    Report,
    StepResult,
    TrainResult,
)
from kefta.warehouse.errors import BackendError, NotReadyError
from kefta.warehouse.kmeans import KMeansModel, fit_kmeans
from kefta.warehouse.parsing import parse_statement
from kefta.warehouse.templates import (
    REPORT_STEPS,
    TRAIN_STEPS,
    SqlTemplate,
    TemplateValues,
    load_template,
    load_templates,
)
from kefta.warehouse.translate import (
    CreateRidesView,
    LocalStatement,
    ModelRef,
    RunSql,
    TrainModel,
    translate,
)

logger = logging.getLogger(__name__)

LOCAL_PROJECT = "local"
"""Stands for the BigQuery project in rendered SQL; DuckDB drops it."""

_RETRIABLE_DUCKDB_ERRORS = (duckdb.IOException, duckdb.HTTPException)


class LocalWarehouse:
    """Runs the warehouse SQL on an embedded DuckDB database.

    ``lake_url`` is the lake root, ``pickups_path`` the reference pickups CSV and
    ``duckdb_path`` the database file (``":memory:"`` keeps nothing). ``filesystem``
    serves URLs of its protocol (for example a ``gcsfs.GCSFileSystem`` with
    credentials); without it, ``gs://`` URLs get a default gcsfs filesystem. ``seed``
    makes training deterministic. Methods may be called from any thread, one at a
    time (calls are serialized).
    """

    backend = "duckdb"

    def __init__(
        self,
        *,
        lake_url: str,
        pickups_path: str,
        dataset: str = "kefta",
        duckdb_path: str = ":memory:",
        filesystem: fsspec.AbstractFileSystem | None = None,
        seed: int = 0,
    ) -> None:
        self._values = TemplateValues(
            project=LOCAL_PROJECT,
            dataset=dataset,
            lake_url=_local_url(lake_url),
            pickups_uri=_local_url(pickups_path),
        )
        self._values.as_mapping()  # fail now, not at the first command
        self._duckdb_path = duckdb_path
        self._filesystem = filesystem
        self._seed = seed
        self._lock = threading.Lock()
        self._connection: duckdb.DuckDBPyConnection | None = None
        # A database in memory lives as long as its connection: keep that one open.
        # A file is opened per command, so that other processes can use it between
        # commands (DuckDB lets one process at a time open a file for writing).
        self._memory = self._connect() if duckdb_path == ":memory:" else None
        logger.info(
            "local warehouse open duckdb_path=%s dataset=%s lake_url=%s pickups=%s",
            duckdb_path,
            dataset,
            self._values.lake_url,
            self._values.pickups_uri,
        )

    def train(self) -> TrainResult:
        """Run ``01``-``03``: rides view, pickups table, k-means model.

        An empty lake does not stop training (the model learns from the pickups
        only); the rides view is then created by the next ``report``. Raises
        ``TrainingDataError`` if the pickups cannot be clustered, and
        ``BackendError`` if DuckDB fails a statement.
        """
        steps, model = [], None
        with self._session():
            for template in load_templates(TRAIN_STEPS):
                started = time.perf_counter()
                model = self._run(template, allow_empty_lake=True) or model
                steps.append(StepResult(template.step, time.perf_counter() - started))
                logger.info(
                    "local step done step=%s took_ms=%d",
                    template.step,
                    steps[-1].duration_s * 1000,
                )
        return TrainResult(self.backend, tuple(steps), _summary(model))

    def report(self) -> Report:
        """Run ``04`` and ``05`` and return revenue rows and centroids.

        Re-creates the rides view first, so that it always reads this warehouse's
        lake. Raises ``NotReadyError`` when the lake has no Parquet file yet or no
        model was trained, ``BackendError`` if DuckDB fails a query.
        """
        with self._session():
            self._run(load_template(TRAIN_STEPS[0]), allow_empty_lake=False)
            revenue, centroids = (
                self._records(self._query_sql(template))
                for template in load_templates(REPORT_STEPS)
            )
        return Report.from_records(revenue, centroids)

    def close(self) -> None:
        """Close the in-memory database, if any; files are closed after each call."""
        if self._memory is not None:
            self._memory.close()
            self._memory = None

    def __enter__(self) -> LocalWarehouse:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _run(
        self, template: SqlTemplate, *, allow_empty_lake: bool
    ) -> KMeansModel | None:
        statement = self._translate(template)
        if isinstance(statement, CreateRidesView):
            self._create_rides_view(statement, allow_empty_lake=allow_empty_lake)
        elif isinstance(statement, TrainModel):
            return self._train_model(statement)
        else:
            self._execute(statement.sql)
        return None

    def _translate(self, template: SqlTemplate) -> LocalStatement:
        tree = parse_statement(template.render(self._values), source=template.name)
        return translate(tree, self._features_of)

    def _query_sql(self, template: SqlTemplate) -> str:
        statement = self._translate(template)
        if not isinstance(statement, RunSql):
            raise BackendError(
                f"{template.name}.sql must be a query to be reported, found "
                f"{type(statement).__name__}; restore it from the repository",
                retriable=False,
            )
        return statement.sql

    def _create_rides_view(
        self, statement: CreateRidesView, *, allow_empty_lake: bool
    ) -> None:
        files = self._scalar("SELECT count(*) FROM glob(?)", statement.pattern)
        if files:
            self._execute(statement.sql)
            return
        message = (
            f"the lake has no ride file yet: nothing matches {statement.pattern} "
            "(expected <lake>/dt=YYYY-MM-DD/hour=HH/*.parquet); start the worker and "
            "let it write, or check the lake URL"
        )
        if not allow_empty_lake:
            raise NotReadyError(message)
        logger.warning("rides view not created: %s", message)

    def _train_model(self, statement: TrainModel) -> KMeansModel:
        columns = self._execute(statement.select_sql).fetchnumpy()
        features = np.column_stack(
            [_floats(columns[name]) for name in statement.feature_names]
        )
        options = dataclasses.replace(statement.options, seed=self._seed)
        model = fit_kmeans(features, statement.feature_names, options)
        self._store_model(statement.model, model)
        logger.info(
            "local model trained model=%s rows=%d clusters=%d iterations=%d loss=%.4f",
            statement.model.name,
            model.training_rows,
            model.num_clusters,
            model.iterations,
            model.loss,
        )
        return model

    def _store_model(self, ref: ModelRef, model: KMeansModel) -> None:
        centroids = [
            (index + 1, name, float(value))
            for index, centroid in enumerate(model.original_centroids())
            for name, value in zip(model.feature_names, centroid, strict=True)
        ]
        features = [
            (name, position, float(mean), float(scale))
            for position, (name, mean, scale) in enumerate(
                zip(
                    model.feature_names,
                    model.scaling.mean,
                    model.scaling.scale,
                    strict=True,
                )
            )
        ]
        with self._transaction():
            self._execute(
                f"CREATE OR REPLACE TABLE {ref.centroids_table} "
                "(centroid_id BIGINT, feature VARCHAR, numerical_value DOUBLE)"
            )
            self._execute_many(
                f"INSERT INTO {ref.centroids_table} VALUES (?, ?, ?)", centroids
            )
            self._execute(
                f"CREATE OR REPLACE TABLE {ref.features_table} "
                "(feature VARCHAR, position INTEGER, mean DOUBLE, stddev DOUBLE)"
            )
            self._execute_many(
                f"INSERT INTO {ref.features_table} VALUES (?, ?, ?, ?)", features
            )

    def _features_of(self, ref: ModelRef) -> Sequence[str]:
        exists = self._scalar(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            ref.schema,
            f"{ref.name}__features",
        )
        if not exists:
            raise NotReadyError(
                f"model {ref.schema}.{ref.name} was never trained in "
                f"{self._duckdb_path}; run `kefta train` first"
            )
        rows = self._execute(
            f"SELECT feature FROM {ref.features_table} ORDER BY position"
        ).fetchall()
        return [str(row[0]) for row in rows]

    def _records(self, sql: str) -> list[dict[str, Any]]:
        cursor = self._execute(sql)
        names = [column[0] for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _scalar(self, sql: str, *parameters: object) -> Any:
        row = self._execute(sql, list(parameters)).fetchone()
        return row[0] if row else None

    def _execute(
        self, sql: str, parameters: list[object] | None = None
    ) -> duckdb.DuckDBPyConnection:
        try:
            return self._open_connection().execute(sql, parameters)
        except duckdb.Error as error:
            raise _backend_error(error, sql) from error

    def _execute_many(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        try:
            self._open_connection().executemany(sql, rows)
        except duckdb.Error as error:
            raise _backend_error(error, sql) from error

    def _open_connection(self) -> duckdb.DuckDBPyConnection:
        if self._connection is None:
            raise RuntimeError("LocalWarehouse used outside train() or report()")
        return self._connection

    @contextmanager
    def _session(self) -> Iterator[None]:
        """One command: the lock, a connection, the schema."""
        with self._lock:
            connection = self._memory or self._connect()
            self._connection = connection
            try:
                self._execute(f"CREATE SCHEMA IF NOT EXISTS {self._schema_sql()}")
                yield
            finally:
                self._connection = None
                if connection is not self._memory:
                    connection.close()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        try:
            connection = duckdb.connect(self._duckdb_path)
        except duckdb.Error as error:
            raise BackendError(
                f"cannot open the warehouse database {self._duckdb_path}: {error}; "
                "another process may be using it (a training?): retry when it is "
                "done, or give this one its own KEFTA_WAREHOUSE_PATH",
                retriable=True,
            ) from error
        _register_filesystems(connection, self._values, self._filesystem)
        return connection

    def _schema_sql(self) -> str:
        return duckdb_identifier(self._values.dataset)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self._execute("ROLLBACK")
            raise
        self._execute("COMMIT")


def _backend_error(error: duckdb.Error, sql: str) -> BackendError:
    return BackendError(
        f"DuckDB failed: {error} (in: {sql[:120]}...)",
        retriable=isinstance(error, _RETRIABLE_DUCKDB_ERRORS),
    )


def duckdb_identifier(name: str) -> str:
    """``name`` as a quoted DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def _floats(column: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A DuckDB numpy column as floats, NULL (masked) values as NaN."""
    return np.ma.filled(np.ma.asarray(column, dtype=np.float64), np.nan)


def _summary(model: KMeansModel | None) -> ModelSummary | None:
    if model is None:
        return None
    return ModelSummary(
        model.num_clusters, model.iterations, model.loss, model.training_rows
    )


def _local_url(url: str) -> str:
    """An fsspec URL as it is, a local path made absolute (``file://`` removed)."""
    if url.startswith("file://"):
        url = url.removeprefix("file://")
    elif "://" in url:
        return url.rstrip("/")
    return Path(url).expanduser().resolve().as_posix()


def _register_filesystems(
    connection: duckdb.DuckDBPyConnection,
    values: TemplateValues,
    filesystem: fsspec.AbstractFileSystem | None,
) -> None:
    if filesystem is not None:
        connection.register_filesystem(filesystem)
    given = set() if filesystem is None else set(_protocols(filesystem))
    for url in (values.lake_url, values.pickups_uri):
        protocol = url.split("://", 1)[0] if "://" in url else ""
        if protocol and protocol not in given:
            connection.register_filesystem(fsspec.filesystem(protocol))
            given.add(protocol)


def _protocols(filesystem: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = filesystem.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
