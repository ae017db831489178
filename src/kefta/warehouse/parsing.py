"""Parse the BigQuery statements of ``sql/`` with sqlglot, gaps included.

sqlglot (checked with 30.x) reads most of kefta's SQL in its ``bigquery`` dialect,
including ``LOAD DATA``, ``CREATE MODEL ... OPTIONS`` and ``ML.PREDICT``, but not two
constructs:

- ``CREATE EXTERNAL TABLE ... WITH PARTITION COLUMNS (...)``: sqlglot gives up and
  returns an opaque ``exp.Command`` (logging a warning) instead of a tree.
  ``parse_statement`` cuts the clause out, parses the rest, and puts the partition
  columns back into the tree as a ``PartitionedByProperty``.
- ``ML.CENTROIDS(MODEL m)``: sqlglot raises a ``ParseError`` on the ``MODEL``
  keyword. ``parse_statement`` drops that keyword, which leaves a function call
  ``ML.CENTROIDS(m)`` whose argument names the model.

Both edits are made on the token stream, so comments and strings are never touched.
The trees are for reading and for translating to DuckDB only: BigQuery always gets
the rendered SQL text as it is in ``sql/``, never SQL generated from these trees.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import Token, TokenType, exp
from sqlglot.errors import ParseError

from kefta.warehouse.errors import TemplateError

DIALECT = "bigquery"


@dataclass(frozen=True, slots=True)
class _Cut:
    """A span of the SQL text to drop, ``start`` and ``end`` inclusive."""

    start: int
    end: int


def parse_statement(sql: str, *, source: str = "<sql>") -> exp.Expr:
    """Parse exactly one BigQuery statement, working around sqlglot's two gaps.

    Raises ``TemplateError`` naming ``source`` if the text holds no statement, more
    than one, or SQL that sqlglot cannot parse even with the workarounds.
    """
    tokens = sqlglot.tokenize(sql, read=DIALECT)
    partition_cut, partition_sql = _partition_columns(sql, tokens)
    cuts = [*_centroids_model_keywords(tokens), *partition_cut]
    tree = _parse_one(_without(sql, cuts), source)
    if partition_sql is not None:
        _attach_partition_columns(tree, partition_sql, source)
    return tree


def option_values(properties: exp.Properties | None) -> dict[str, object]:
    """``OPTIONS (NAME = value, ...)`` as a dict with upper-case names and Python
    values (str, int, float, bool, or a list of those)."""
    if properties is None:
        return {}
    options: dict[str, object] = {}
    for prop in properties.expressions:
        if type(prop) is exp.Property:  # subclasses such as PARTITION BY differ
            options[prop.name.upper()] = _python_value(prop.args["value"])
        elif isinstance(prop, exp.FileFormatProperty):
            options["FORMAT"] = _python_value(prop.this)
    return options


def _parse_one(sql: str, source: str) -> exp.Expr:
    try:
        statements = [tree for tree in sqlglot.parse(sql, read=DIALECT) if tree]
    except ParseError as error:
        raise TemplateError(f"{source} is not valid BigQuery SQL: {error}") from error
    if len(statements) != 1 or isinstance(statements[0], exp.Command):
        raise TemplateError(
            f"{source} must hold exactly one statement that sqlglot can parse, found "
            f"{len(statements)} ({', '.join(type(s).__name__ for s in statements)}); "
            "split the file or simplify the statement"
        )
    return statements[0]


def _centroids_model_keywords(tokens: list[Token]) -> list[_Cut]:
    """The ``MODEL`` keyword of every ``ML.CENTROIDS(MODEL ...)`` call."""
    cuts = []
    for index in range(len(tokens) - 4):
        ml, dot, name, paren, keyword = tokens[index : index + 5]
        if (
            ml.text.upper() == "ML"
            and dot.token_type is TokenType.DOT
            and name.text.upper() == "CENTROIDS"
            and paren.token_type is TokenType.L_PAREN
            and keyword.text.upper() == "MODEL"
        ):
            cuts.append(_Cut(keyword.start, keyword.end))
    return cuts


def _partition_columns(sql: str, tokens: list[Token]) -> tuple[list[_Cut], str | None]:
    """The span of ``WITH PARTITION COLUMNS [(...)]`` and its column list, if any."""
    words = [token.text.upper() for token in tokens]
    for index in range(len(tokens) - 2):
        if words[index : index + 3] != ["WITH", "PARTITION", "COLUMNS"]:
            continue
        last = index + 2
        columns = None
        if last + 1 < len(tokens) and tokens[last + 1].token_type is TokenType.L_PAREN:
            closing = _closing_paren(tokens, last + 1)
            columns = sql[tokens[last + 1].start : tokens[closing].end + 1]
            last = closing
        return [_Cut(tokens[index].start, tokens[last].end)], columns
    return [], None


def _closing_paren(tokens: list[Token], opening: int) -> int:
    depth = 0
    for index in range(opening, len(tokens)):
        if tokens[index].token_type is TokenType.L_PAREN:
            depth += 1
        elif tokens[index].token_type is TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                return index
    raise TemplateError("WITH PARTITION COLUMNS ( is never closed; add the ')'")


def _without(sql: str, cuts: list[_Cut]) -> str:
    for cut in sorted(cuts, key=lambda c: c.start, reverse=True):
        sql = sql[: cut.start] + " " + sql[cut.end + 1 :]
    return sql


def _attach_partition_columns(tree: exp.Expr, columns: str, source: str) -> None:
    schema = _parse_one(f"CREATE TABLE _partition_columns {columns}", source)
    properties = tree.args.get("properties")
    if not isinstance(properties, exp.Properties):
        properties = exp.Properties(expressions=[])
        tree.set("properties", properties)
    declared = exp.Schema(expressions=list(schema.this.expressions))
    properties.append("expressions", exp.PartitionedByProperty(this=declared))


def _python_value(node: exp.Expr) -> object:
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Array):
        return [_python_value(item) for item in node.expressions]
    if isinstance(node, exp.Literal) and not node.is_string:
        number = float(node.this)
        return int(number) if number.is_integer() and "." not in node.this else number
    if isinstance(node, exp.Neg):
        value = _python_value(node.this)
        return -value if isinstance(value, int | float) else value
    return node.name
