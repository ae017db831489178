"""The ``kefta`` command: a thin layer that turns options into settings.

Every setting can come from an option or from its ``KEFTA_*`` environment variable;
the option wins. ``--help`` of each command names the variables.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import SecretStr, ValidationError

from kefta.errors import KeftaError
from kefta.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

KAFKA = (
    "bootstrap",
    "topic",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_username",
    "kafka_password",
    "kafka_ca_file",
)


def setting_options(names: Iterable[str]) -> Callable[[F], F]:
    """Click options for the named :class:`Settings` fields, documented from them."""

    def decorate(command: F) -> F:
        for name in reversed(list(names)):
            command = _option(name)(command)
        return command

    return decorate


def _option(name: str) -> Callable[[F], F]:
    field = Settings.model_fields[name]
    env = f"KEFTA_{name.upper()}"
    default = field.default
    if isinstance(default, SecretStr):
        default = "***"
    shown = "" if default is None else f" [default: {default}]"
    help_text = f"{field.description or ''}{shown} [env: {env}]"
    flag = "--" + name.replace("_", "-")
    if field.annotation is bool:
        flag = f"{flag}/--no-{name.replace('_', '-')}"
    return click.option(flag, name, default=None, help=help_text, show_default=False)


def load_settings(given: dict[str, Any]) -> Settings:
    """Settings from the environment, overridden by the options that were given."""
    chosen = {k: v for k, v in given.items() if v is not None}
    try:
        return Settings(**chosen)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise click.UsageError(f"invalid settings: {problems}") from exc


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    default="info",
    envvar="KEFTA_LOG_LEVEL",
    help="debug, info, warning or error [env: KEFTA_LOG_LEVEL]",
)
@click.version_option(package_name="kefta")
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """kefta: real-time ride pricing from Kafka to Elasticsearch and a Parquet lake."""
    ctx.obj = {"log_level": log_level}
    if ctx.invoked_subcommand != "worker":
        _configure_logging(log_level)


@main.command()
@setting_options(
    [
        *KAFKA,
        "priced_topic",
        "dlq_topic",
        "group",
        "session_timeout",
        "partitions",
        "replication",
        "tariff",
        "batch_size",
        "batch_seconds",
        "web_port",
        "web_bind",
        "web_enabled",
        "log_every",
        "data_dir",
        "es_url",
        "es_index_prefix",
        "es_username",
        "es_password",
        "es_api_key",
        "es_ca_file",
        "es_replicas",
        "es_bulk_docs",
        "es_bulk_bytes",
        "es_flush_seconds",
        "lake_url",
        "gcs_endpoint",
        "gcs_token",
        "lake_max_rows",
        "lake_max_bytes",
        "lake_max_seconds",
        "lake_idle_seconds",
        "memory_budget",
        "privacy_es",
        "privacy_lake",
        "privacy_priced",
        "privacy_key",
        "train_every_seconds",
        "train_every_files",
        "gcp_project",
        "bq_dataset",
        "bq_location",
        "warehouse_path",
        "pickups",
    ]
)
@click.pass_context
def worker(ctx: click.Context, /, **given: Any) -> None:
    """Consume ride requests, price them, and write them to every sink.

    Runs until SIGINT or SIGTERM; in-flight batches are finished and committed.
    """
    from kefta import worker as runner

    _run(lambda: runner.run(load_settings(given), ctx.obj["log_level"]))


@main.command()
@click.argument(
    "files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--tariff",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="KEFTA_TARIFF",
    help="Tariff TOML file [env: KEFTA_TARIFF]",
)
def price(files: tuple[Path, ...], tariff: Path | None) -> None:
    """Price messages from FILES (stdin when none) without a broker.

    Reads JSON documents or NDJSON lines in any accepted variant, writes one priced
    ride per line to stdout and one JSON line per rejection to stderr. Exits 1 when
    any message was rejected, 0 otherwise.
    """
    from kefta.offline import price_streams

    sources = [p.open("rb") for p in files] if files else [sys.stdin.buffer]
    rejected = _run(
        lambda: price_streams(sources, tariff, sys.stdout.buffer, sys.stderr.buffer)
    )
    sys.exit(1 if rejected else 0)


def _run(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except KeftaError as exc:
        click.echo(f"kefta: error: {exc}", err=True)
        sys.exit(2)


@main.command()
@setting_options(KAFKA)
@click.option(
    "--count",
    type=click.IntRange(min=0),
    envvar="KEFTA_PRODUCE_COUNT",
    help="Send this many messages [env: KEFTA_PRODUCE_COUNT]",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    envvar="KEFTA_PRODUCE_DURATION",
    help="Send for this many seconds [env: KEFTA_PRODUCE_DURATION]",
)
@click.option(
    "--rate",
    default="max",
    envvar="KEFTA_PRODUCE_RATE",
    show_default=True,
    help="Messages per second, or max [env: KEFTA_PRODUCE_RATE]",
)
@click.option(
    "--seed",
    type=int,
    envvar="KEFTA_PRODUCE_SEED",
    help="Seed for a reproducible simulation [env: KEFTA_PRODUCE_SEED]",
)
@click.option(
    "--bad-fraction",
    type=click.FloatRange(0, 1),
    default=0.0,
    envvar="KEFTA_PRODUCE_BAD_FRACTION",
    show_default=True,
    help="Share of malformed messages [env: KEFTA_PRODUCE_BAD_FRACTION]",
)
@click.option(
    "--legacy-fraction",
    type=click.FloatRange(0, 1),
    default=0.0,
    envvar="KEFTA_PRODUCE_LEGACY_FRACTION",
    show_default=True,
    help="Share of messages in the old producers' format "
    "[env: KEFTA_PRODUCE_LEGACY_FRACTION]",
)
@click.option(
    "--from",
    "from_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Replay the messages of this file instead of simulating",
)
@click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append one NDJSON line per sent message (id, partition, offset)",
)
def produce(
    count: int | None,
    duration: float | None,
    rate: str,
    seed: int | None,
    bad_fraction: float,
    legacy_fraction: float,
    from_file: Path | None,
    record: Path | None,
    **given: Any,
) -> None:
    """Send simulated New York ride requests (or a file's messages) to Kafka.

    Client positions are real Uber pickups of August 2014; drivers are placed a few
    km away. Without --count or --duration, sends 1000 messages.
    """
    from kefta.producer import run_produce

    settings = load_settings(given)
    per_second = None if rate == "max" else _positive_rate(rate)
    _run(
        lambda: run_produce(
            settings,
            count,
            duration,
            per_second,
            seed,
            bad_fraction,
            legacy_fraction,
            from_file,
            record,
        )
    )


def _positive_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise click.BadParameter(
            f"{text!r} is neither a positive number nor max", param_hint="--rate"
        )
    return value


WAREHOUSE = (
    "lake_url",
    "gcs_endpoint",
    "gcs_token",
    "gcp_project",
    "bq_dataset",
    "bq_location",
    "warehouse_path",
    "pickups",
)


@main.command()
@setting_options(WAREHOUSE)
def train(**given: Any) -> None:
    """Train k-means (8 clusters) on the reference pickups, in BigQuery or DuckDB.

    Creates the dataset, the external table over the lake and the pickups table if
    missing. Without --gcp-project, runs on a local DuckDB file (--warehouse-path).
    """
    from kefta.worker import open_warehouse

    settings = load_settings(given)

    def action() -> None:
        store = open_warehouse(settings)
        try:
            result = store.train()
        finally:
            store.close()
        for step in result.steps:
            job = f" job={step.job_id}" if step.job_id else ""
            scanned = (
                f" bytes={step.bytes_processed}"
                if step.bytes_processed is not None
                else ""
            )
            click.echo(f"{step.step:<24} {step.duration_s:6.2f} s{job}{scanned}")
        if result.model is not None:
            model = result.model
            click.echo(
                f"k-means: {model.num_clusters} clusters on "
                f"{model.training_rows} pickups, {model.iterations} iterations, "
                f"mean squared distance {model.loss:.4f}"
            )
        click.echo(f"trained on {result.backend} in {result.duration_s:.2f} s")

    _run(action)


@main.command()
@setting_options(WAREHOUSE)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the clusters and revenue to this PNG file",
)
def report(plot: Path | None, **given: Any) -> None:
    """Revenue per k-means cluster and comfort tier, from the rides of the lake."""
    from kefta.warehouse.report import format_report, plot_report, read_pickups
    from kefta.worker import open_warehouse

    settings = load_settings(given)

    def action() -> None:
        store = open_warehouse(settings)
        try:
            result = store.report()
        finally:
            store.close()
        click.echo(format_report(result))
        if plot is not None:
            from kefta.warehouse import default_pickups_path

            pickups = read_pickups(settings.pickups or default_pickups_path())
            written = plot_report(result.revenue, result.centroids, pickups, plot)
            click.echo(f"plot written to {written}")

    _run(action)


def _register_dashboards() -> None:
    from kefta.dashboards import register

    register(main)


_register_dashboards()
