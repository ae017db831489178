"""Templating of the sql/ files: placeholders, value checks, where the files are."""

from __future__ import annotations

from pathlib import Path

import pytest

from kefta.warehouse.errors import TemplateError
from kefta.warehouse.templates import (
    TRAIN_STEPS,
    SqlTemplate,
    TemplateValues,
    load_template,
    render,
    sql_folder,
)

VALUES = TemplateValues("my-project", "kefta", "gs://lake/rides/", "gs://ref/p.csv")


def test_render_replaces_every_placeholder() -> None:
    sql = render("SELECT '{{ a }}', `{{b}}.t`", {"a": "1", "b": "x"})

    assert sql == "SELECT '1', `x.t`"


def test_render_names_placeholders_without_value() -> None:
    with pytest.raises(
        TemplateError, match=r"t\.sql uses placeholders dataset, project"
    ):
        render("`{{project}}.{{dataset}}.t`", {"lake_url": "x"}, source="t.sql")


def test_templates_render_with_the_warehouse_values() -> None:
    sql = load_template("01_external_rides").render(VALUES)

    assert "`my-project.kefta.rides`" in sql
    assert "uris = ['gs://lake/rides/*']" in sql
    assert "hive_partition_uri_prefix = 'gs://lake/rides'" in sql
    assert "{{" not in sql


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("project", "my project", "not a valid BigQuery project name"),
        ("dataset", "kefta-eu", "not a valid BigQuery dataset name"),
        ("dataset", "x`; DROP", "not a valid BigQuery dataset name"),
        ("lake_url", "gs://lake/it's", "cannot go into a SQL string"),
        ("pickups_uri", "", "cannot go into a SQL string"),
    ],
)
def test_unsafe_values_are_refused(field: str, value: str, message: str) -> None:
    values = {
        "project": "p",
        "dataset": "d",
        "lake_url": "gs://l",
        "pickups_uri": "gs://p",
    }
    values[field] = value

    with pytest.raises(TemplateError, match=message):
        TemplateValues(**values).as_mapping()


def test_step_is_the_file_name_without_its_number() -> None:
    assert SqlTemplate("03_model", "").step == "model"
    assert SqlTemplate("01_external_rides", "").step == "external_rides"


def test_the_sql_folder_is_the_checkout_one_when_not_packaged() -> None:
    folder = sql_folder()

    assert (folder / f"{TRAIN_STEPS[0]}.sql").is_file()
    assert folder == Path(__file__).resolve().parents[3] / "sql"


def test_a_missing_template_names_the_file() -> None:
    with pytest.raises(TemplateError, match=r"99_missing\.sql is missing"):
        load_template("99_missing")
