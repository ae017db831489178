"""The data side of the Kibana dashboard, against the real Elasticsearch.

Kibana cannot run here, so each panel of ``dashboards/kefta.ndjson`` is translated
into the Elasticsearch aggregation Kibana would send for it (Lens columns become
nested terms / date_histogram buckets with sum / avg / count metrics; the map's
grid layer becomes a geotile_grid, its fit-to-data a geo_bounds) and run on an index
made with the real template, holding 30 known rides. The numbers must match what
the rides say when counted in Python.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch
from elasticsearch.helpers import bulk

from kefta.dashboards import REPOSITORY_FILE
from kefta.engine import PricedRide, price_rides
from kefta.pricing import load_tariff
from kefta.rides import RideRequest, Source, decode_message
from kefta.simulator import Simulation
from kefta.sinks.elasticsearch import index_name, index_template
from kefta.testing import Endpoints
from support.sinks import NEW_YORK, es_client

pytestmark = pytest.mark.integration

AUTO_INTERVAL = "1m"
"""What Kibana's ``auto`` interval comes to for a few minutes of data."""
RIDES = 30
GRID_PRECISION = 12
METRICS = {"sum": "sum", "average": "avg", "min": "min", "max": "max"}


def known_rides() -> list[PricedRide]:
    """30 simulated New York rides within a few minutes of one day, priced."""
    simulation = Simulation(
        seed=31, start=datetime(2026, 1, 15, 10, 0, tzinfo=UTC), events_per_second=0.1
    )
    requests = []
    for offset, message in enumerate(simulation.messages(RIDES)):
        decoded = decode_message(message.value, Source("dash", 0, offset))
        requests += [r for r in decoded if isinstance(r, RideRequest)]
    assert len(requests) == RIDES
    return price_rides(requests, load_tariff())


def saved(kind: str) -> list[dict[str, Any]]:
    objects = [orjson.loads(x) for x in REPOSITORY_FILE.read_bytes().splitlines()]
    return [o for o in objects if o["type"] == kind]


@pytest.fixture
def rides_index(services: Endpoints) -> Iterator[tuple[Elasticsearch, str]]:
    """A uuid prefix with the real template and the known rides; removed after."""
    es = es_client(services.es_url)
    prefix = f"it-{uuid.uuid4().hex[:10]}-rides"
    es.indices.put_index_template(name=prefix, **index_template(prefix))
    actions = [
        {
            "_index": index_name(prefix, r["event_time"]),
            "_id": r["ride_id"],
            "_source": r,
        }
        for r in known_rides()
    ]
    bulk(es, actions, refresh="wait_for")
    yield es, prefix
    es.indices.delete(index=f"{prefix}-*", allow_no_indices=True)
    es.indices.delete_index_template(name=prefix)


# -- translating a Lens panel into the request Kibana sends ---------------------------


def lens_layer(lens: dict[str, Any]) -> dict[str, Any]:
    (layer,) = lens["attributes"]["state"]["datasourceStates"]["formBased"][
        "layers"
    ].values()
    return dict(layer)


def lens_aggregation(lens: dict[str, Any]) -> dict[str, Any]:
    """The nested aggregation of a one-layer Lens chart, buckets in column order."""
    layer = lens_layer(lens)
    columns = layer["columns"]
    order = layer["columnOrder"]
    metrics = {
        cid: {METRICS[c["operationType"]]: {"field": c["sourceField"]}}
        for cid in order
        if not (c := columns[cid])["isBucketed"] and c["operationType"] != "count"
    }
    aggs: dict[str, Any] = metrics
    for cid in reversed([cid for cid in order if columns[cid]["isBucketed"]]):
        aggs = {cid: _bucket(columns[cid]) | ({"aggs": aggs} if aggs else {})}
    return aggs


def _bucket(column: dict[str, Any]) -> dict[str, Any]:
    params = column["params"]
    if column["operationType"] == "terms":
        by = params["orderBy"]
        key = by["columnId"] if by["type"] == "column" else "_key"
        return {
            "terms": {
                "field": column["sourceField"],
                "size": params["size"],
                "order": {key: params["orderDirection"]},
            }
        }
    interval = params["interval"]
    return {
        "date_histogram": {
            "field": column["sourceField"],
            "fixed_interval": AUTO_INTERVAL if interval == "auto" else interval,
            "min_doc_count": 0 if params.get("includeEmptyRows") else 1,
        }
    }


def rows(lens: dict[str, Any], aggregations: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer flattened to one row per leaf bucket: column id -> value."""
    layer = lens_layer(lens)
    buckets = [c for c in layer["columnOrder"] if layer["columns"][c]["isBucketed"]]
    counts = [
        c for c, col in layer["columns"].items() if col["operationType"] == "count"
    ]
    out: list[dict[str, Any]] = []

    def walk(node: dict[str, Any], depth: int, row: dict[str, Any]) -> None:
        if depth == len(buckets):
            values = {c: node[c]["value"] for c in layer["columns"] if c in node}
            out.append(row | values | dict.fromkeys(counts, node["doc_count"]))
            return
        for bucket in node[buckets[depth]]["buckets"]:
            key = bucket.get("key_as_string", bucket["key"])
            walk(bucket, depth + 1, row | {buckets[depth]: key})

    walk(aggregations, 0, {})
    return out


def run_lens(es: Elasticsearch, prefix: str, lens_id: str) -> list[dict[str, Any]]:
    (lens,) = [o for o in saved("lens") if o["id"] == lens_id]
    answer = es.search(
        index=f"{prefix}-*", size=0, aggs=lens_aggregation(lens), track_total_hits=True
    )
    assert answer["hits"]["total"]["value"] == RIDES
    return rows(lens, answer["aggregations"])


def minute(ride: PricedRide) -> str:
    return ride["event_time"][:16] + ":00.000Z"


def grouped(keys: Iterator[tuple[Any, float]]) -> dict[Any, list[float]]:
    groups: dict[Any, list[float]] = defaultdict(list)
    for key, value in keys:
        groups[key].append(value)
    return dict(groups)


# -- the panels ----------------------------------------------------------------------


def test_revenue_per_tier_sums_prix_travel_per_tier(
    rides_index: tuple[Elasticsearch, str],
) -> None:
    rides = known_rides()
    expected = grouped((r["tier"], r["prix_travel"]) for r in rides)

    found = run_lens(*rides_index, "kefta-revenue-per-tier")

    assert {row["tier"]: row["revenue"] for row in found} == {
        tier: pytest.approx(sum(fares), abs=0.005) for tier, fares in expected.items()
    }
    assert [row["revenue"] for row in found] == sorted(
        (row["revenue"] for row in found), reverse=True
    )


def test_rides_per_minute_counts_every_ride_in_its_minute(
    rides_index: tuple[Elasticsearch, str],
) -> None:
    rides = known_rides()
    expected = {m: len(v) for m, v in grouped((minute(r), 1.0) for r in rides).items()}

    found = run_lens(*rides_index, "kefta-rides-per-minute")
    counted = {row["minute"]: row["rides"] for row in found}

    assert {m: n for m, n in counted.items() if n} == expected
    assert sum(counted.values()) == RIDES
    assert len(expected) >= 3


def test_average_distance_and_fare_over_time(
    rides_index: tuple[Elasticsearch, str],
) -> None:
    rides = known_rides()
    distance = grouped((minute(r), r["distance"]) for r in rides)
    fare = grouped((minute(r), r["prix_travel"]) for r in rides)

    found = [
        row
        for row in run_lens(*rides_index, "kefta-distance-fare-over-time")
        if row["distance"] is not None
    ]

    assert {row["time"]: row["distance"] for row in found} == {
        m: pytest.approx(sum(v) / len(v)) for m, v in distance.items()
    }
    assert {row["time"]: row["fare"] for row in found} == {
        m: pytest.approx(sum(v) / len(v)) for m, v in fare.items()
    }


def test_revenue_per_tier_over_time(rides_index: tuple[Elasticsearch, str]) -> None:
    rides = known_rides()
    expected = grouped(((minute(r), r["tier"]), r["prix_travel"]) for r in rides)

    found = run_lens(*rides_index, "kefta-revenue-per-tier-over-time")

    assert {(row["time"], row["tier"]): row["revenue"] for row in found} == {
        key: pytest.approx(sum(v), abs=0.005) for key, v in expected.items()
    }


# -- the map -------------------------------------------------------------------------


def map_sources() -> dict[str, dict[str, Any]]:
    (saved_map,) = saved("map")
    layers = orjson.loads(saved_map["attributes"]["layerListJSON"])
    return {
        layer["sourceDescriptor"]["type"]: layer["sourceDescriptor"]
        for layer in layers
        if layer["sourceDescriptor"]["type"].startswith("ES_")
    }


def tile(lat: float, lon: float, zoom: int) -> str:
    """The web-mercator tile ``zoom/x/y`` of a point, as geotile_grid keys it."""
    n = 2**zoom
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return f"{zoom}/{x}/{y}"


def test_map_grid_layer_puts_every_ride_in_its_tile(
    rides_index: tuple[Elasticsearch, str],
) -> None:
    es, prefix = rides_index
    grid = map_sources()["ES_GEO_GRID"]
    field = grid["geoField"]
    sums = [m["field"] for m in grid["metrics"] if m["type"] == "sum"]
    rides = known_rides()
    expected = grouped(
        (tile(r["client_lat"], r["client_lon"], GRID_PRECISION), r["prix_travel"])
        for r in rides
    )

    answer = es.search(
        index=f"{prefix}-*",
        size=0,
        aggs={
            "grid": {
                "geotile_grid": {"field": field, "precision": GRID_PRECISION},
                "aggs": {f"sum_of_{f}": {"sum": {"field": f}} for f in sums},
            },
            "bounds": {"geo_bounds": {"field": field}},
        },
    )
    cells = answer["aggregations"]["grid"]["buckets"]
    bounds = answer["aggregations"]["bounds"]["bounds"]

    assert {c["key"]: c["doc_count"] for c in cells} == {
        k: len(v) for k, v in expected.items()
    }
    assert {c["key"]: c["sum_of_prix_travel"]["value"] for c in cells} == {
        k: pytest.approx(sum(v), abs=0.005) for k, v in expected.items()
    }
    assert bounds["top_left"]["lat"] == pytest.approx(
        max(r["client_lat"] for r in rides), abs=1e-6
    )
    assert bounds["bottom_right"]["lon"] == pytest.approx(
        max(r["client_lon"] for r in rides), abs=1e-6
    )


def test_map_document_layer_finds_every_ride_in_new_york(
    rides_index: tuple[Elasticsearch, str],
) -> None:
    es, prefix = rides_index
    source = map_sources()["ES_SEARCH"]

    answer = es.search(
        index=f"{prefix}-*",
        size=RIDES,
        query={"geo_bounding_box": {source["geoField"]: NEW_YORK}},
        sort=[{source["sortField"]: source["sortOrder"]}],
        source_includes=[source["geoField"], *source["tooltipProperties"]],
    )
    hits = [h["_source"] for h in answer["hits"]["hits"]]

    assert len(hits) == RIDES
    assert all(set(source["tooltipProperties"]) <= set(h) for h in hits)
    assert [h["event_time"] for h in hits] == sorted(
        (h["event_time"] for h in hits), reverse=True
    )


def test_data_view_time_field_filters_the_rides(
    rides_index: tuple[Elasticsearch, str],
) -> None:
    es, prefix = rides_index
    (view,) = saved("index-pattern")
    field = view["attributes"]["timeFieldName"]
    rides = sorted(known_rides(), key=lambda r: r["event_time"])
    middle = rides[RIDES // 2]["event_time"]

    later = es.count(index=f"{prefix}-*", query={"range": {field: {"gte": middle}}})[
        "count"
    ]

    assert later == sum(1 for r in rides if r["event_time"] >= middle)
