"""The warehouse SQL: find the ``sql/`` files, load them, fill in their placeholders.

The files in the repository's top-level ``sql/`` folder are the single source of
truth; both back ends run them. Placeholders are written ``{{name}}`` and replaced by
plain text substitution, nothing more: ``{{project}}``, ``{{dataset}}``,
``{{lake_url}}`` and ``{{pickups_uri}}``. Values are checked before they are
substituted, so that none can break out of the identifier or string it lands in.

The folder is looked up first inside the installed package (``kefta/warehouse/sql``,
where the wheel build copies it), then in the source checkout (``<repo>/sql``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kefta.warehouse.errors import TemplateError

TRAIN_STEPS = ("01_external_rides", "02_pickups", "03_model")
"""Statements ``train`` runs, in order: rides table, pickups table, k-means model."""

REPORT_STEPS = ("04_revenue_report", "05_centroids")
"""Queries ``report`` runs: revenue per cluster and tier, then the centroids."""

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_DATASET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNSAFE_IN_STRING = re.compile(r"['`\\\r\n]")


@dataclass(frozen=True, slots=True)
class TemplateValues:
    """What fills the placeholders.

    ``project`` and ``dataset`` name the BigQuery project and dataset (the DuckDB
    schema locally); ``lake_url`` is the lake root without a trailing slash, and
    ``pickups_uri`` the reference pickups CSV.
    """

    project: str
    dataset: str
    lake_url: str
    pickups_uri: str

    def as_mapping(self) -> dict[str, str]:
        """The placeholder values, validated, keyed by placeholder name."""
        return {
            "project": _name("project", self.project, _PROJECT, "'my-project'"),
            "dataset": _name("dataset", self.dataset, _DATASET, "'kefta'"),
            "lake_url": _string("lake_url", self.lake_url.rstrip("/")),
            "pickups_uri": _string("pickups_uri", self.pickups_uri),
        }


@dataclass(frozen=True, slots=True)
class SqlTemplate:
    """One ``sql/`` file: ``name`` is its stem, e.g. ``03_model``."""

    name: str
    text: str

    @property
    def step(self) -> str:
        """The step name without its number, e.g. ``model``: job labels use it."""
        return self.name.split("_", 1)[1]

    def render(self, values: TemplateValues | Mapping[str, str]) -> str:
        """The SQL with every placeholder replaced; raises ``TemplateError`` if one
        has no value."""
        mapping = values.as_mapping() if isinstance(values, TemplateValues) else values
        return render(self.text, mapping, source=self.name)


def render(template: str, values: Mapping[str, str], *, source: str = "<sql>") -> str:
    """Replace each ``{{name}}`` in ``template`` by ``values[name]``.

    Values are substituted verbatim: validate them first (``TemplateValues`` does).
    Raises ``TemplateError`` naming the placeholders that have no value.
    """
    missing = sorted(set(_PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise TemplateError(
            f"{source} uses placeholders {', '.join(missing)} that have no value "
            f"(given: {', '.join(sorted(values)) or 'none'}); pass them all"
        )
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def load_template(name: str) -> SqlTemplate:
    """Read ``<sql folder>/<name>.sql``; raises ``TemplateError`` if it is absent."""
    path = sql_folder() / f"{name}.sql"
    try:
        return SqlTemplate(name, path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TemplateError(
            f"SQL template {name}.sql is missing from {path.parent}; restore it from "
            "the repository's sql/ folder"
        ) from None


def load_templates(names: tuple[str, ...]) -> tuple[SqlTemplate, ...]:
    """Read several templates, in the given order."""
    return tuple(load_template(name) for name in names)


def sql_folder() -> Path:
    """The folder holding the ``.sql`` files: packaged copy first, then checkout."""
    packaged = Path(str(resources.files("kefta.warehouse") / "sql"))
    checkout = Path(__file__).resolve().parents[3] / "sql"
    for candidate in (packaged, checkout):
        if (candidate / f"{TRAIN_STEPS[0]}.sql").is_file():
            return candidate
    raise TemplateError(
        f"no SQL templates found in {packaged} nor in {checkout}; reinstall kefta "
        "or run from a checkout that has the sql/ folder"
    )


def _name(name: str, value: str, pattern: re.Pattern[str], example: str) -> str:
    if not pattern.fullmatch(value):
        raise TemplateError(
            f"{name} {value!r} is not a valid BigQuery {name} name (expected "
            f"{pattern.pattern}); use a name like {example}"
        )
    return value


def _string(name: str, value: str) -> str:
    if not value or _UNSAFE_IN_STRING.search(value):
        raise TemplateError(
            f"{name} {value!r} cannot go into a SQL string: it must be non-empty and "
            "hold no quote, backtick, backslash or line break; rename the path"
        )
    return value
