"""Reading back what the sinks wrote: Elasticsearch documents and lake files."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan

from support.services import ROOT

NEW_YORK = {
    "top_left": {"lat": 41.3, "lon": -74.6},
    "bottom_right": {"lat": 40.3, "lon": -73.2},
}


def es_client(url: str) -> Elasticsearch:
    return Elasticsearch(url, request_timeout=60)


def es_rides(es: Elasticsearch, prefix: str) -> dict[str, dict[str, Any]]:
    """Every ride document of the test's indices, by ``_id``; duplicates fail."""
    es.indices.refresh(index=f"{prefix}-*")
    found: dict[str, dict[str, Any]] = {}
    for hit in scan(es, index=f"{prefix}-*", query={"query": {"match_all": {}}}):
        assert hit["_id"] not in found, f"ride {hit['_id']} indexed twice"
        found[hit["_id"]] = hit["_source"]
    return found


def es_sum(es: Elasticsearch, prefix: str, query: dict[str, Any] | None = None) -> Any:
    body = {
        "size": 0,
        "track_total_hits": True,
        "aggs": {"revenue": {"sum": {"field": "prix_travel"}}},
    }
    if query:
        body["query"] = query
    return es.search(index=f"{prefix}-*", body=body)


def lake_table(fs: Any, root: str) -> tuple[pa.Table, list[dict[str, Any]]]:
    """All rows of the lake under ``root`` and one summary per file."""
    fs.invalidate_cache()
    paths = sorted(p for p in fs.find(root) if p.endswith(".parquet"))
    tables, files = [], []
    for path in paths:
        with fs.open(path, "rb") as handle:
            table = pq.read_table(handle)
        meta = table.schema.metadata or {}
        files.append(
            {
                "path": path,
                "rows": table.num_rows,
                "bytes": fs.size(path),
                "first": int(meta[b"kefta.source.first_offset"]),
                "last": int(meta[b"kefta.source.last_offset"]),
            }
        )
        tables.append(table)
    if not tables:
        return pa.table({"ride_id": pa.array([], pa.string())}), files
    return pa.concat_tables(tables), files


def duplicates(values: list[str]) -> list[str]:
    return [v for v, n in Counter(values).items() if n > 1]


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Keep a test's measured figures in ``artifacts/figures/<name>.json``."""
    folder = ROOT / "artifacts" / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str))
