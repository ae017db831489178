"""Turn the BigQuery statements of ``sql/`` into what DuckDB runs for the same effect.

Each parsed statement (see ``parsing``) becomes one ``LocalStatement``:

- ``CREATE EXTERNAL TABLE`` over Hive-partitioned Parquet → ``CreateRidesView``, a
  view over ``read_parquet('<prefix>/**/*.parquet', hive_partitioning = true)`` with
  the declared partition column types;
- ``LOAD DATA OVERWRITE t (columns) FROM FILES (format = 'CSV', ...)`` →
  ``RunSql``, a ``CREATE OR REPLACE TABLE t AS SELECT * FROM read_csv(...)`` that
  reads columns by position, as BigQuery does with an explicit column list;
- ``CREATE MODEL ... OPTIONS (MODEL_TYPE = 'KMEANS', ...) AS SELECT`` → ``TrainModel``:
  the SELECT in DuckDB's dialect and the options, read from the tree because
  transpiling drops ``OPTIONS`` without a word;
- a query → ``RunSql``, where ``ML.PREDICT(MODEL m, (subquery))`` becomes a
  nearest-centroid lookup adding ``CENTROID_ID`` and ``NEAREST_CENTROIDS_DISTANCE``
  (the nearest min(5, k) centroids), and ``ML.CENTROIDS(MODEL m)`` the table of m's
  centroids.

BigQuery's ``project.dataset.table`` becomes ``dataset.table``: the dataset is a
DuckDB schema. A model ``m`` is stored as the tables ``m__centroids`` (centroid_id,
feature, numerical_value, in the features' own scale, like ``ML.CENTROIDS``) and
``m__features`` (feature, position, mean, stddev) of its schema. Anything else raises
``UnsupportedStatementError`` rather than running something different.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from kefta.warehouse.errors import UnsupportedStatementError
from kefta.warehouse.kmeans import InitMethod, KMeansOptions
from kefta.warehouse.parsing import option_values

DUCKDB = "duckdb"
NEAREST_CENTROIDS = 5
"""``NEAREST_CENTROIDS_DISTANCE`` lists this many centroids at most, as BigQuery."""


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model's DuckDB schema and name, and the tables that hold it."""

    schema: str
    name: str

    @property
    def centroids_table(self) -> str:
        return _table_sql(self.schema, f"{self.name}__centroids")

    @property
    def features_table(self) -> str:
        return _table_sql(self.schema, f"{self.name}__features")


@dataclass(frozen=True, slots=True)
class RunSql:
    """A DuckDB statement to run as it is."""

    sql: str


@dataclass(frozen=True, slots=True)
class CreateRidesView:
    """A view over the Parquet files matching ``pattern``; needs one file at least."""

    sql: str
    pattern: str
    schema: str


@dataclass(frozen=True, slots=True)
class TrainModel:
    """Train ``model`` with ``options`` on the rows of ``select_sql``."""

    model: ModelRef
    select_sql: str
    feature_names: tuple[str, ...]
    options: KMeansOptions


LocalStatement = RunSql | CreateRidesView | TrainModel
FeaturesOf = Callable[[ModelRef], Sequence[str]]
"""Gives a trained model's feature names, in training order."""


def translate(tree: exp.Expr, features_of: FeaturesOf) -> LocalStatement:
    """The DuckDB counterpart of one parsed BigQuery statement.

    ``features_of`` is asked for the features of every model a query predicts with.
    Raises ``UnsupportedStatementError`` for statements, functions or options the
    local back end does not implement.
    """
    if isinstance(tree, exp.Create) and _is_external_table(tree):
        return _external_table(tree)
    if isinstance(tree, exp.Create) and str(tree.args.get("kind")).upper() == "MODEL":
        return _create_model(tree)
    if isinstance(tree, exp.LoadData):
        return _load_data(tree)
    if isinstance(tree, exp.Query):
        return RunSql(_query_sql(tree.copy(), features_of))
    raise UnsupportedStatementError(
        f"the local warehouse cannot run a {type(tree).__name__} statement "
        f"({tree.sql(dialect='bigquery')[:60]}...); use only external tables, "
        "LOAD DATA, CREATE MODEL and queries in sql/, or run on BigQuery"
    )


def _is_external_table(tree: exp.Create) -> bool:
    properties = tree.args.get("properties")
    return isinstance(properties, exp.Properties) and any(
        isinstance(prop, exp.ExternalProperty) for prop in properties.expressions
    )


def _external_table(tree: exp.Create) -> CreateRidesView:
    pattern = f"{_lake_prefix(option_values(tree.args.get('properties')))}/**/*.parquet"
    arguments = [exp.Literal.string(pattern).sql(DUCKDB), "hive_partitioning = true"]
    types = _partition_types(tree)
    if types:
        arguments.append(f"hive_types = {{{types}}}")
    table = tree.this
    sql = (
        f"CREATE OR REPLACE VIEW {_table_sql(table.db, table.name)} AS "
        f"SELECT * FROM read_parquet({', '.join(arguments)})"
    )
    return CreateRidesView(sql, pattern, table.db)


def _lake_prefix(options: dict[str, object]) -> str:
    """The Hive prefix of a Parquet external table; every URI must be under it."""
    known = {"FORMAT", "URIS", "HIVE_PARTITION_URI_PREFIX"}
    _only_options("CREATE EXTERNAL TABLE", options, known)
    if str(options.get("FORMAT", "")).upper() != "PARQUET":
        raise UnsupportedStatementError(
            f"external table format {options.get('FORMAT')!r} is not supported "
            "locally; the lake is Parquet: use format = 'PARQUET'"
        )
    prefix = options.get("HIVE_PARTITION_URI_PREFIX")
    if not isinstance(prefix, str):
        raise UnsupportedStatementError(
            "the local warehouse reads the lake through Hive partitioning only; add "
            "hive_partition_uri_prefix = '<lake url>' to the external table OPTIONS"
        )
    prefix = prefix.rstrip("/")
    uris = options.get("URIS", [])
    listed = uris if isinstance(uris, list) else [uris]
    outside = [str(uri) for uri in listed if not str(uri).startswith(f"{prefix}/")]
    if outside:
        raise UnsupportedStatementError(
            f"external table uris {outside} are not under hive_partition_uri_prefix "
            f"{prefix!r}; the local warehouse reads every Parquet file under the "
            "prefix, so point the uris there (e.g. '<prefix>/*')"
        )
    return prefix


def _partition_types(tree: exp.Create) -> str:
    properties = tree.args["properties"].expressions
    declared = [p for p in properties if isinstance(p, exp.PartitionedByProperty)]
    if not declared:
        return ""
    columns = declared[0].this.expressions
    return ", ".join(
        f"{exp.Literal.string(column.name).sql(DUCKDB)}: "
        f"{column.args['kind'].sql(DUCKDB)}"
        for column in columns
    )


def _load_data(tree: exp.LoadData) -> RunSql:
    target = tree.this
    if not isinstance(target, exp.Schema) or not target.expressions:
        raise UnsupportedStatementError(
            "LOAD DATA without a column list is not supported locally (DuckDB would "
            "guess other types than BigQuery); list the columns and their types"
        )
    if not tree.args.get("overwrite"):
        raise UnsupportedStatementError(
            "only LOAD DATA OVERWRITE is supported locally; write OVERWRITE instead "
            "of INTO"
        )
    options = option_values(tree.args.get("files"))
    _only_options("LOAD DATA", options, {"FORMAT", "SKIP_LEADING_ROWS", "URIS"})
    if str(options.get("FORMAT", "")).upper() != "CSV":
        raise UnsupportedStatementError(
            f"LOAD DATA format {options.get('FORMAT')!r} is not supported locally; "
            "use format = 'CSV'"
        )

    uris = options.get("URIS")
    files = uris if isinstance(uris, list) else [uris]
    columns = ", ".join(
        f"{exp.Literal.string(column.name).sql(DUCKDB)}: "
        f"{exp.Literal.string(column.args['kind'].sql(DUCKDB)).sql(DUCKDB)}"
        for column in target.expressions
    )
    file_list = ", ".join(exp.Literal.string(str(uri)).sql(DUCKDB) for uri in files)
    reader = (
        f"read_csv([{file_list}], header = false, "
        f"skip = {int(str(options.get('SKIP_LEADING_ROWS', 0)))}, "
        f"auto_detect = false, delim = ',', quote = '\"', columns = {{{columns}}})"
    )
    table = target.this
    target_sql = _table_sql(table.db, table.name)
    return RunSql(f"CREATE OR REPLACE TABLE {target_sql} AS SELECT * FROM {reader}")


def _create_model(tree: exp.Create) -> TrainModel:
    options = option_values(tree.args.get("properties"))
    query = tree.expression
    if not isinstance(query, exp.Query):
        raise UnsupportedStatementError(
            "CREATE MODEL must end with AS SELECT ... for the local warehouse"
        )
    names = tuple(query.named_selects)
    if not names or "*" in names:
        raise UnsupportedStatementError(
            f"the model's SELECT must name each feature (got {', '.join(names)}); "
            "write SELECT lon AS longitude, lat AS latitude instead of SELECT *"
        )
    model = ModelRef(tree.this.db, tree.this.name)
    select_sql = _query_sql(query.copy(), _no_models)
    return TrainModel(model, select_sql, names, _kmeans_options(options))


_MODEL_OPTIONS = {
    "MODEL_TYPE",
    "NUM_CLUSTERS",
    "KMEANS_INIT_METHOD",
    "STANDARDIZE_FEATURES",
    "MAX_ITERATIONS",
    "EARLY_STOP",
    "MIN_REL_PROGRESS",
    "DISTANCE_TYPE",
}


def _kmeans_options(options: dict[str, object]) -> KMeansOptions:
    _only_options("CREATE MODEL", options, _MODEL_OPTIONS)
    if str(options.get("MODEL_TYPE", "")).upper() != "KMEANS":
        raise UnsupportedStatementError(
            f"MODEL_TYPE {options.get('MODEL_TYPE')!r} is not supported locally; "
            "the local warehouse trains MODEL_TYPE = 'KMEANS' only"
        )
    if str(options.get("DISTANCE_TYPE", "EUCLIDEAN")).upper() != "EUCLIDEAN":
        raise UnsupportedStatementError(
            f"DISTANCE_TYPE {options['DISTANCE_TYPE']!r} is not supported locally; "
            "use DISTANCE_TYPE = 'EUCLIDEAN' (the default)"
        )
    defaults = KMeansOptions()
    try:
        return KMeansOptions(
            num_clusters=int(str(options.get("NUM_CLUSTERS", defaults.num_clusters))),
            init_method=InitMethod(
                str(options.get("KMEANS_INIT_METHOD", defaults.init_method)).upper()
            ),
            standardize_features=bool(
                options.get("STANDARDIZE_FEATURES", defaults.standardize_features)
            ),
            max_iterations=int(
                str(options.get("MAX_ITERATIONS", defaults.max_iterations))
            ),
            early_stop=bool(options.get("EARLY_STOP", defaults.early_stop)),
            min_rel_progress=float(
                str(options.get("MIN_REL_PROGRESS", defaults.min_rel_progress))
            ),
        )
    except ValueError as error:
        raise UnsupportedStatementError(
            f"model OPTIONS {options} cannot be used locally: {error}; "
            f"KMEANS_INIT_METHOD must be one of {', '.join(InitMethod)}"
        ) from error


def _only_options(statement: str, options: dict[str, object], known: set[str]) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        raise UnsupportedStatementError(
            f"{statement} option(s) {', '.join(unknown)} are not implemented by the "
            f"local warehouse (it knows {', '.join(sorted(known))}); remove them or "
            "run on BigQuery"
        )


def _no_models(model: ModelRef) -> Sequence[str]:
    raise UnsupportedStatementError(
        f"a model's training SELECT cannot use model {model.name}; train from tables"
    )


def _query_sql(query: exp.Expr, features_of: FeaturesOf) -> str:
    """A copy of ``query`` in DuckDB's dialect, ML functions replaced."""
    for call in list(query.find_all(exp.Predict)):
        _replace_predict(call, features_of)
    for table in list(query.find_all(exp.Table)):
        if _is_ml_centroids(table):
            _replace_centroids(table)
    for table in query.find_all(exp.Table):
        table.set("catalog", None)
    return query.sql(dialect=DUCKDB, comments=False)


def _replace_predict(call: exp.Predict, features_of: FeaturesOf) -> None:
    model = ModelRef(call.this.db, call.this.name)
    if call.args.get("params_struct"):
        raise UnsupportedStatementError(
            f"ML.PREDICT options for model {model.name} are not supported locally; "
            "remove the STRUCT argument"
        )
    source = call.expression
    for table in source.find_all(exp.Table):
        table.set("catalog", None)
    inner = source.this if isinstance(source, exp.Subquery) else source
    from_sql = inner.sql(dialect=DUCKDB, comments=False)
    if isinstance(inner, exp.Query):
        from_sql = f"({from_sql})"

    lookup = sqlglot.parse_one(
        _nearest_centroid_sql(model, tuple(features_of(model)), from_sql), read=DUCKDB
    )
    holder = call.parent if isinstance(call.parent, exp.Table) else call
    alias = holder.alias or "__kefta_predict"
    holder.replace(
        exp.Subquery(this=lookup, alias=exp.TableAlias(this=exp.to_identifier(alias)))
    )


def _nearest_centroid_sql(
    model: ModelRef, features: tuple[str, ...], source: str
) -> str:
    """Rows of ``source`` with their nearest centroids, standardized distance.

    A centroid c stored in original units is at standardized distance
    sqrt(sum(((x_f - c_f) / stddev_f)²)) from a row x; the means cancel out.
    """
    columns = []
    for position, name in enumerate(features):
        literal = exp.Literal.string(name).sql(DUCKDB)
        columns.append(
            f"MAX(numerical_value) FILTER (WHERE feature = {literal}) AS v{position}, "
            f"(SELECT stddev FROM {model.features_table} WHERE feature = {literal}) "
            f"AS s{position}"
        )
    fields = ", ".join(f"'v{i}': v{i}, 's{i}': s{i}" for i in range(len(features)))
    squares = " + ".join(
        f"POWER(({exp.to_identifier(name, quoted=True).sql(DUCKDB)} - __kefta_c.v{i})"
        f" / __kefta_c.s{i}, 2)"
        for i, name in enumerate(features)
    )
    centroids = (
        f"(SELECT LIST({{'id': centroid_id, {fields}}}) FROM (SELECT centroid_id, "
        f"{', '.join(columns)} FROM {model.centroids_table} GROUP BY centroid_id))"
    )
    return f"""
    SELECT
      LIST_EXTRACT(__kefta_nearest, 1).CENTROID_ID AS CENTROID_ID,
      __kefta_nearest AS NEAREST_CENTROIDS_DISTANCE,
      * EXCLUDE (__kefta_nearest)
    FROM (
      SELECT *, LIST_SLICE(LIST_TRANSFORM(
        LIST_SORT(LIST_TRANSFORM({centroids},
          __kefta_c -> {{'distance': SQRT({squares}), 'id': __kefta_c.id}})),
        __kefta_d -> {{'CENTROID_ID': __kefta_d.id, 'DISTANCE': __kefta_d.distance}}
      ), 1, {NEAREST_CENTROIDS}) AS __kefta_nearest
      FROM {source} AS __kefta_source
    )
    """


def _is_ml_centroids(table: exp.Table) -> bool:
    call = table.this
    return (
        isinstance(call, exp.Anonymous)
        and str(call.this).upper() == "CENTROIDS"
        and table.db.upper() == "ML"
    )


def _replace_centroids(table: exp.Table) -> None:
    arguments = table.this.expressions
    reference = arguments[0] if arguments else None
    if len(arguments) != 1 or not isinstance(reference, exp.Column):
        raise UnsupportedStatementError(
            "only ML.CENTROIDS(MODEL `project.dataset.model`) is supported locally; "
            "standardized centroids (STRUCT(TRUE AS standardize)) are not"
        )
    model = ModelRef(reference.table, reference.name)
    replacement = exp.table_(f"{model.name}__centroids", db=model.schema, quoted=True)
    replacement.set("alias", table.args.get("alias"))
    table.replace(replacement)


def _table_sql(schema: str, name: str) -> str:
    return exp.table_(name, db=schema or None, quoted=True).sql(DUCKDB)
