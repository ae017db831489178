"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The YAML is read with PyYAML and checked against what kefta reads (every
``KEFTA_*`` variable is a Settings field with a valid value, URLs name compose
services, the commands parse with kefta's own CLI). When a Compose CLI is present
(``docker compose``, a v2+ ``docker-compose``, or the one ``scripts/compose-check``
builds into ``.cache/compose/``), its ``config`` must accept the file as well.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from kefta.cli import main
from kefta.dashboards import dashboards
from kefta.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
BUILT_CLI = ROOT / ".cache" / "compose" / "docker-compose-v5.6.0"
SERVICES = {"kafka", "elasticsearch", "kibana", "gcs", "worker", "simulator"}
ONE_SHOT = {"dashboards"}
DEFAULTED = re.compile(r"^\$\{(\w+):-([^}]*)\}$")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def environment(service: str) -> dict[str, str]:
    """A service's environment with ``${VAR:-default}`` taken at its default."""
    env = services()[service].get("environment") or {}
    resolved = {}
    for name, value in env.items():
        text = str(value)
        match = DEFAULTED.match(text)
        resolved[name] = match.group(2) if match else text
    return resolved


def kefta_variables() -> dict[str, dict[str, str]]:
    return {
        name: {k: v for k, v in environment(name).items() if k.startswith("KEFTA_")}
        for name in services()
    }


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def published(service: str) -> set[int]:
    return {int(str(p).split(":")[0]) for p in services()[service].get("ports", [])}


# -- structure ------------------------------------------------------------------------


def test_services_are_the_stack_and_the_dashboard_import() -> None:
    assert set(services()) == SERVICES | ONE_SHOT


def test_images_are_the_verified_versions() -> None:
    images = {name: s.get("image") for name, s in services().items()}

    assert images["kafka"] == "apache/kafka:3.9.1"
    assert images["elasticsearch"] == (
        "docker.elastic.co/elasticsearch/elasticsearch:8.19.21"
    )
    assert images["kibana"] == "docker.elastic.co/kibana/kibana:8.19.21"
    assert images["gcs"] == "fsouza/fake-gcs-server:1.56.1"
    assert {images[n] for n in ("worker", "simulator", "dashboards")} == {"kefta:local"}
    assert all(services()[n]["build"]["context"] == "." for n in ("worker",))


def test_ports_are_published() -> None:
    assert published("kafka") == {9094}
    assert published("elasticsearch") == {9200}
    assert published("kibana") == {5601}
    assert published("gcs") == {4443}
    assert published("worker") == {int(environment("worker")["KEFTA_WEB_PORT"])}


def test_every_long_running_service_has_a_health_check() -> None:
    checked = {
        name
        for name, service in services().items()
        if service.get("healthcheck", {}).get("test")
    }

    assert checked == SERVICES - {"simulator"}


def test_services_wait_for_what_they_need_to_be_healthy() -> None:
    def waits_for(name: str) -> dict[str, str]:
        needs = services()[name].get("depends_on", {})
        return {dep: spec["condition"] for dep, spec in needs.items()}

    healthy = "service_healthy"
    assert waits_for("worker") == dict.fromkeys(
        ("kafka", "elasticsearch", "gcs"), healthy
    )
    assert waits_for("kibana") == {"elasticsearch": healthy}
    assert waits_for("simulator") == {"worker": healthy}
    assert waits_for("dashboards") == {"kibana": healthy}
    assert services()["dashboards"]["restart"] == "no"


# -- what kefta reads -----------------------------------------------------------------


def test_every_kefta_variable_is_a_settings_field() -> None:
    fields = {f"KEFTA_{name.upper()}" for name in Settings.model_fields}

    unknown = {
        service: sorted(set(env) - fields)
        for service, env in kefta_variables().items()
        if set(env) - fields
    }

    assert unknown == {}


@pytest.mark.parametrize("service", ["worker", "simulator"])
def test_kefta_variables_are_valid_settings(service: str) -> None:
    given = {
        k.removeprefix("KEFTA_").lower(): v
        for k, v in kefta_variables()[service].items()
    }

    settings = Settings(**given)

    assert settings.bootstrap == "kafka:9092"
    assert settings.topic == "rides"


def test_worker_urls_point_at_compose_services() -> None:
    env = environment("worker")
    kafka = environment("kafka")
    gcs_command = services()["gcs"]["command"]

    assert (
        f"PLAINTEXT://{env['KEFTA_BOOTSTRAP']}" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    )
    assert urlsplit(env["KEFTA_ES_URL"]).netloc == "elasticsearch:9200"
    assert urlsplit(env["KEFTA_GCS_ENDPOINT"]).hostname == "gcs"
    assert option(gcs_command, "-external-url") == env["KEFTA_GCS_ENDPOINT"]
    assert env["KEFTA_LAKE_URL"] == "gs://kefta-lake/rides"
    assert "/data/kefta-lake" in services()["gcs"]["tmpfs"]
    assert env["KEFTA_WEB_ENABLED"] == "true"
    assert environment("worker")["WEB_BIND"] == "0.0.0.0"


def test_kibana_and_the_import_point_at_compose_services() -> None:
    kibana = environment("kibana")
    command = services()["dashboards"]["command"]

    assert urlsplit(kibana["ELASTICSEARCH_HOSTS"]).netloc == "elasticsearch:9200"
    assert urlsplit(option(command, "--kibana-url")).netloc == "kibana:5601"
    assert option(command, "--file") == "/app/dashboards/kefta.ndjson"


def test_health_checks_probe_the_published_ports() -> None:
    worker = " ".join(services()["worker"]["healthcheck"]["test"])
    port = environment("worker")["KEFTA_WEB_PORT"]

    assert f"127.0.0.1:{port}/health" in worker
    assert "9200/_cluster/health" in " ".join(
        services()["elasticsearch"]["healthcheck"]["test"]
    )


def parses(group: click.Group, arguments: list[str]) -> None:
    """Raise click's error when ``arguments`` are not a valid command line."""
    name, *rest = arguments
    command = group.get_command(click.Context(group), name)
    assert command is not None, f"{group.name} has no command {name!r}"
    if isinstance(command, click.Group):
        parses(command, rest)
    else:
        command.make_context(name, rest)


@pytest.mark.parametrize("service", ["worker", "simulator", "dashboards"])
def test_commands_are_valid_kefta_command_lines(service: str) -> None:
    program, *arguments = services()[service]["command"]
    # The image copies the repository's dashboards/ to /app/dashboards/.
    arguments = [
        str(ROOT / a.removeprefix("/app/")) if a.startswith("/app/") else a
        for a in arguments
    ]
    group = dashboards if arguments[0] == "dashboards" else main
    if group is dashboards:
        arguments = arguments[1:]

    parses(group, arguments)

    assert program == "kefta"


def test_dockerfile_installs_kefta_on_python_3_11_slim() -> None:
    text = DOCKERFILE.read_text()

    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert re.search(r"^RUN pip install \.$", text, re.M)
    assert re.search(r"^COPY dashboards ", text, re.M)
    assert re.search(r"^USER ", text, re.M)


# -- the real Compose CLI -------------------------------------------------------------


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and _answers([docker, "compose", "version"]):
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone and _answers([standalone, "version"], "version v"):
        return [standalone]
    return [str(BUILT_CLI)] if BUILT_CLI.exists() else None


def _answers(command: list[str], needle: str = "") -> bool:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    return done.returncode == 0 and needle in done.stdout


def test_compose_cli_accepts_the_file() -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip(
            "no Compose CLI: `docker compose` is absent; run scripts/compose-check "
            "once to build Docker Compose into .cache/compose/ (needs Go)"
        )
    args = ["-f", str(COMPOSE), "--project-directory", str(ROOT), "config"]

    quiet = subprocess.run([*cli, *args, "--quiet"], capture_output=True, text=True)
    normal = subprocess.run(
        [*cli, *args, "--format", "json"], capture_output=True, text=True, check=True
    )
    resolved = json.loads(normal.stdout)

    assert quiet.returncode == 0, quiet.stderr
    assert set(resolved["services"]) == SERVICES | ONE_SHOT
    assert resolved["services"]["worker"]["environment"]["KEFTA_PRIVACY_KEY"]
