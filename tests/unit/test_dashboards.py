"""The Kibana saved objects, checked offline, and the import command.

The import tests run against a small aiohttp server that mimics Kibana's
``POST /api/saved_objects/_import`` (header check, multipart, spaces, conflicts,
missing references, auth, and the shape of Kibana 8's answer). It is a contract
test of what kefta sends and how it reads the answer, not a test against Kibana.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import orjson
import pytest
from aiohttp import web
from click.testing import CliRunner

from kefta.dashboards import (
    REPOSITORY_FILE,
    DashboardImportError,
    KibanaAuth,
    default_file,
    import_dashboards,
    register,
)
from kefta.sinks.elasticsearch import index_template

NUMERIC = {"double", "float", "half_float", "scaled_float", "long", "integer", "short"}
BUCKET_TYPES = {"terms": {"keyword"}, "date_histogram": {"date"}}
METRIC_TYPES = {"sum", "average", "min", "max", "median", "standard_deviation"}
LENS_DATA_TYPES = {"string": {"keyword"}, "number": NUMERIC, "date": {"date"}}
RECORDS = "___records___"


def saved_objects() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in REPOSITORY_FILE.read_bytes().splitlines()]


def by_type(kind: str) -> list[dict[str, Any]]:
    return [o for o in saved_objects() if o["type"] == kind]


def mapping() -> dict[str, dict[str, Any]]:
    properties: dict[str, dict[str, Any]] = index_template("kefta-rides")["template"][
        "mappings"
    ]["properties"]
    return properties


def lens_columns(lens: dict[str, Any]) -> list[dict[str, Any]]:
    layers = lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
    return [c for layer in layers.values() for c in layer["columns"].values()]


def map_layers(saved_map: dict[str, Any]) -> list[dict[str, Any]]:
    layers: list[dict[str, Any]] = orjson.loads(
        saved_map["attributes"]["layerListJSON"]
    )
    return layers


def map_fields(layer: dict[str, Any]) -> list[tuple[str, set[str] | None]]:
    """(field, acceptable mapping types or None for any) used by one map layer."""
    source = layer.get("sourceDescriptor", {})
    if source.get("type") not in ("ES_SEARCH", "ES_GEO_GRID"):
        return []
    used: list[tuple[str, set[str] | None]] = [(source["geoField"], {"geo_point"})]
    used += [(m["field"], NUMERIC) for m in source.get("metrics", []) if "field" in m]
    used += [(name, None) for name in source.get("tooltipProperties", [])]
    if source.get("sortField"):
        used.append((source["sortField"], {"date", "keyword", *NUMERIC}))
    if source["type"] == "ES_SEARCH":
        # Document layers style by document fields; grid layers by aggregates.
        for style in layer["style"].get("properties", {}).values():
            named = style.get("options", {}).get("field")
            if style.get("type") == "DYNAMIC" and named:
                used.append((named["name"], None))
    return used


def panel_fields() -> list[tuple[str, str, set[str] | None]]:
    """(object id, field, acceptable mapping types) for every field any panel uses."""
    used: list[tuple[str, str, set[str] | None]] = []
    for lens in by_type("lens"):
        for column in lens_columns(lens):
            if column["sourceField"] == RECORDS:
                continue
            operation = column["operationType"]
            accepted = BUCKET_TYPES.get(operation)
            if operation in METRIC_TYPES:
                accepted = NUMERIC
            assert accepted is not None, f"{lens['id']}: unchecked {operation}"
            accepted &= LENS_DATA_TYPES[column["dataType"]]
            used.append((lens["id"], column["sourceField"], accepted))
    for saved_map in by_type("map"):
        for layer in map_layers(saved_map):
            used += [(saved_map["id"], f, t) for f, t in map_fields(layer)]
    for view in by_type("index-pattern"):
        used.append((view["id"], view["attributes"]["timeFieldName"], {"date"}))
        for name in orjson.loads(view["attributes"]["fieldFormatMap"]):
            used.append((view["id"], name, None))
    return used


def embedded_references(saved: dict[str, Any]) -> set[str]:
    """Reference names an object's attributes point at (``*RefName`` values)."""
    attributes = saved["attributes"]
    if saved["type"] == "dashboard":
        panels = orjson.loads(attributes["panelsJSON"])
        return {f"{p['panelIndex']}:{p['panelRefName']}" for p in panels}
    if saved["type"] == "map":
        return {
            layer["sourceDescriptor"]["indexPatternRefName"]
            for layer in map_layers(saved)
            if "indexPatternRefName" in layer.get("sourceDescriptor", {})
        }
    if saved["type"] == "lens":
        layers = attributes["state"]["datasourceStates"]["formBased"]["layers"]
        return {f"indexpattern-datasource-layer-{layer}" for layer in layers}
    return set()


# -- the saved objects ----------------------------------------------------------------


def test_every_line_is_a_json_saved_object() -> None:
    lines = REPOSITORY_FILE.read_bytes().splitlines()

    parsed = [orjson.loads(line) for line in lines]

    assert lines, "dashboards/kefta.ndjson is empty"
    assert all(isinstance(o, dict) for o in parsed)
    assert all({"id", "type", "attributes", "references"} <= set(o) for o in parsed)
    assert all(o["attributes"].get("title") for o in parsed)


def test_ids_are_unique() -> None:
    keys = [(o["type"], o["id"]) for o in saved_objects()]
    ids = [o["id"] for o in saved_objects()]

    assert len(set(keys)) == len(keys)
    assert len(set(ids)) == len(ids)


def test_every_reference_resolves_to_an_object_in_the_file() -> None:
    present = {(o["type"], o["id"]) for o in saved_objects()}

    dangling = [
        (o["id"], r)
        for o in saved_objects()
        for r in o["references"]
        if (r["type"], r["id"]) not in present
    ]

    assert dangling == []


def test_every_embedded_reference_name_is_declared() -> None:
    for saved in saved_objects():
        declared = {r["name"] for r in saved["references"]}

        assert embedded_references(saved) == declared, saved["id"]


def test_the_data_view_covers_the_ride_indices_by_event_time() -> None:
    (view,) = by_type("index-pattern")

    assert view["attributes"]["title"] == "kefta-rides-*"
    assert view["attributes"]["timeFieldName"] == "event_time"
    assert index_template("kefta-rides")["index_patterns"] == ["kefta-rides-*"]


def test_the_dashboard_has_every_panel_of_the_issue() -> None:
    (dashboard,) = by_type("dashboard")
    targets = {r["id"]: r["type"] for r in dashboard["references"]}
    lenses = {o["id"]: o for o in by_type("lens")}
    shapes = {
        lens_id: sorted(
            (c["operationType"], c["sourceField"])
            for c in lens_columns(lenses[lens_id])
        )
        for lens_id, kind in targets.items()
        if kind == "lens"
    }

    assert "map" in targets.values()
    assert sorted(shapes.values()) == sorted(
        [
            [("sum", "prix_travel"), ("terms", "tier")],
            [("count", RECORDS), ("date_histogram", "event_time")],
            [
                ("average", "distance"),
                ("average", "prix_travel"),
                ("date_histogram", "event_time"),
            ],
            [
                ("date_histogram", "event_time"),
                ("sum", "prix_travel"),
                ("terms", "tier"),
            ],
        ]
    )


def test_the_tier_chart_is_a_horizontal_bar_chart() -> None:
    lens = next(o for o in by_type("lens") if o["id"] == "kefta-revenue-per-tier")
    visualization = lens["attributes"]["state"]["visualization"]

    assert {layer["seriesType"] for layer in visualization["layers"]} == {
        "bar_horizontal"
    }


def test_every_field_a_panel_uses_exists_with_the_right_type() -> None:
    properties = mapping()
    used = panel_fields()

    problems = [
        f"{owner}: {name} is {properties.get(name, {}).get('type', 'missing')}"
        f", expected {sorted(accepted) if accepted else 'any type'}"
        for owner, name, accepted in used
        if name not in properties
        or (accepted is not None and properties[name]["type"] not in accepted)
    ]

    assert {name for _, name, _ in used} >= {"tier", "locationClient", "prix_travel"}
    assert problems == []


def test_default_file_is_the_repository_file() -> None:
    assert default_file() == REPOSITORY_FILE


# -- a Kibana stand-in ----------------------------------------------------------------


@dataclass
class FakeKibana:
    """Kibana's import endpoint, as far as kefta relies on it."""

    auth: str | None = None
    stored: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/saved_objects/_import", self.handle)
        app.router.add_post("/s/{space}/api/saved_objects/_import", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        space = request.match_info.get("space", "default")
        self.requests.append({"space": space, "headers": dict(request.headers)})
        if request.headers.get("kbn-xsrf") is None:
            return _error(400, "Request must contain a kbn-xsrf header.")
        if self.auth and request.headers.get("Authorization") != self.auth:
            return _error(401, "Unauthorized")
        if not request.content_type.startswith("multipart/form-data"):
            return _error(415, "Unsupported Media Type")
        if space not in ("default", "ops"):
            return _error(404, f"Saved object [space/{space}] not found")
        objects = await _read_file(request)
        if objects is None:
            return _error(400, "[request body.file]: expected value of type [Stream]")
        overwrite = request.query.get("overwrite") == "true"
        return web.json_response(self.import_objects(space, objects, overwrite))

    def import_objects(
        self, space: str, objects: list[dict[str, Any]], overwrite: bool
    ) -> dict[str, Any]:
        in_file = {(o["type"], o["id"]) for o in objects}
        results, errors = [], []
        for saved in objects:
            key = (space, saved["type"], saved["id"])
            meta = {"title": saved["attributes"].get("title", ""), "icon": "app"}
            missing = [
                {"type": r["type"], "id": r["id"]}
                for r in saved["references"]
                if (r["type"], r["id"]) not in in_file
                and (space, r["type"], r["id"]) not in self.stored
            ]
            entry = {"id": saved["id"], "type": saved["type"], "meta": meta}
            if missing:
                errors.append(
                    entry
                    | {"error": {"type": "missing_references", "references": missing}}
                )
            elif key in self.stored and not overwrite:
                errors.append(entry | {"error": {"type": "conflict"}})
            else:
                if key in self.stored:
                    entry["overwrite"] = True
                self.stored[key] = saved
                results.append(entry | {"managed": False})
        body: dict[str, Any] = {
            "successCount": len(results),
            "success": not errors,
            "warnings": [],
        }
        if results:
            body["successResults"] = results
        if errors:
            body["errors"] = errors
        return body


async def _read_file(request: web.Request) -> list[dict[str, Any]] | None:
    reader = await request.multipart()
    async for part in reader:
        if getattr(part, "name", None) == "file":
            content = await part.read()  # type: ignore[union-attr]
            return [orjson.loads(x) for x in bytes(content).splitlines() if x.strip()]
    return None


def _error(status: int, message: str) -> web.Response:
    reason = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}
    body = {"statusCode": status, "error": reason.get(status, ""), "message": message}
    return web.json_response(body, status=status)


@pytest.fixture
def kibana() -> Iterator[FakeKibana]:
    """A FakeKibana served from its own thread and loop (so click's runner works)."""
    fake = FakeKibana()
    loop = asyncio.new_event_loop()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(fake.application())
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.SockSite(runner, sock).start())
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield fake
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def cli() -> click.Group:
    @click.group()
    def root() -> None:
        pass

    register(root)
    return root


# -- importing ------------------------------------------------------------------------


async def test_import_creates_every_object_then_updates_them(
    kibana: FakeKibana,
) -> None:
    count = len(saved_objects())

    first = await import_dashboards(kibana.url)
    second = await import_dashboards(kibana.url)

    assert (len(first.created), len(first.updated), first.errors) == (count, 0, [])
    assert (len(second.created), len(second.updated), second.errors) == (0, count, [])
    assert kibana.requests[0]["headers"]["kbn-xsrf"] == "true"
    assert {o.id for o in first.created} == {o["id"] for o in saved_objects()}


async def test_import_goes_to_the_space_prefix(kibana: FakeKibana) -> None:
    report = await import_dashboards(kibana.url + "/", space="ops")

    assert report.ok
    assert {space for space, _, _ in kibana.stored} == {"ops"}


async def test_import_without_overwrite_reports_conflicts(kibana: FakeKibana) -> None:
    await import_dashboards(kibana.url)

    report = await import_dashboards(kibana.url, overwrite=False)

    assert not report.ok
    assert {e.kind for e in report.errors} == {"conflict"}
    assert "--overwrite" in str(report.errors[0])


async def test_import_reports_missing_references(
    kibana: FakeKibana, tmp_path: Path
) -> None:
    only_dashboard = tmp_path / "dashboard.ndjson"
    only_dashboard.write_bytes(
        b"\n".join(orjson.dumps(o) for o in by_type("dashboard")) + b"\n"
    )

    report = await import_dashboards(kibana.url, only_dashboard)

    assert [e.kind for e in report.errors] == ["missing_references"]
    assert "lens kefta-revenue-per-tier" in report.errors[0].detail


async def test_import_sends_basic_auth_and_api_keys(kibana: FakeKibana) -> None:
    kibana.auth = "Basic " + base64.b64encode(b"elastic:s3cret").decode()
    with_user = await import_dashboards(
        kibana.url, auth=KibanaAuth(username="elastic", password="s3cret")
    )
    kibana.auth = "ApiKey a2V5"
    with_key = await import_dashboards(kibana.url, auth=KibanaAuth(api_key="a2V5"))

    with pytest.raises(DashboardImportError, match="401") as refused:
        await import_dashboards(kibana.url, auth=KibanaAuth(api_key="wrong"))

    assert with_user.ok
    assert with_key.ok
    assert not refused.value.retriable


async def test_import_into_an_unknown_space_names_the_option(
    kibana: FakeKibana,
) -> None:
    with pytest.raises(DashboardImportError, match="--space"):
        await import_dashboards(kibana.url, space="nope")


async def test_import_from_an_unreachable_kibana_is_retriable() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()

    with pytest.raises(DashboardImportError, match="cannot reach Kibana") as caught:
        await import_dashboards(f"http://127.0.0.1:{port}", request_seconds=5)

    assert caught.value.retriable


def test_command_prints_each_object_and_exits_0(kibana: FakeKibana) -> None:
    result = CliRunner().invoke(
        cli(), ["dashboards", "import", "--kibana-url", kibana.url]
    )

    assert result.exit_code == 0, result.output
    assert "created dashboard kefta-rides-dashboard (kefta rides)" in result.output
    assert result.output.strip().endswith(
        f"{len(saved_objects())} created, 0 updated, 0 failed"
    )


def test_command_exits_1_when_kibana_refuses_objects(kibana: FakeKibana) -> None:
    runner = CliRunner()
    runner.invoke(cli(), ["dashboards", "import", "--kibana-url", kibana.url])

    result = runner.invoke(
        cli(),
        ["dashboards", "import", "--kibana-url", kibana.url, "--no-overwrite"],
        env={"KEFTA_KIBANA_SPACE": "default"},
    )

    assert result.exit_code == 1
    assert "error   index-pattern kefta-rides" in result.output


def test_command_exits_2_with_the_reason_when_kibana_refuses_the_request(
    kibana: FakeKibana,
) -> None:
    kibana.auth = "ApiKey right"

    result = CliRunner().invoke(
        cli(),
        ["dashboards", "import", "--kibana-url", kibana.url],
        env={"KEFTA_KIBANA_API_KEY": "wrong"},
    )

    assert result.exit_code == 2
    assert "answered 401" in result.output
