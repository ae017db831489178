"""The Parquet schema of the ride lake, shared by the lake sink and the warehouse.

The lake is laid out as Hive partitions ``<lake_url>/dt=YYYY-MM-DD/hour=HH/`` by the
ride's event time (UTC); ``dt`` and ``hour`` live in the path, not in the files. The
BigQuery external table in ``sql/`` and the DuckDB view read exactly these columns.
"""

from __future__ import annotations

import pyarrow as pa

_LOCATION = pa.struct([("lat", pa.float64()), ("lon", pa.float64())])

RIDE_SCHEMA = pa.schema(
    [
        pa.field("ride_id", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("agent_timestamp", pa.timestamp("s", tz="UTC"), nullable=False),
        pa.field("nomclient", pa.string()),
        pa.field("telephoneClient", pa.string()),
        pa.field("locationClient", _LOCATION, nullable=False),
        pa.field("client_lat", pa.float64(), nullable=False),
        pa.field("client_lon", pa.float64(), nullable=False),
        pa.field("nomDriver", pa.string()),
        pa.field("telephoneDriver", pa.string()),
        pa.field("locationDriver", _LOCATION, nullable=False),
        pa.field("driver_lat", pa.float64(), nullable=False),
        pa.field("driver_lon", pa.float64(), nullable=False),
        pa.field("distance", pa.float64(), nullable=False),
        pa.field("confort", pa.string(), nullable=False),
        pa.field("tier", pa.string(), nullable=False),
        pa.field("rate_per_km", pa.float64(), nullable=False),
        pa.field("prix_travel", pa.float64(), nullable=False),
        pa.field("source_topic", pa.string(), nullable=False),
        pa.field("source_partition", pa.int32(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
    ],
    metadata={"kefta.schema": "ride/1"},
)
"""Columns of every lake file, in order. ``tier`` is one of low, medium, high."""

PARTITION_COLUMNS = ("dt", "hour")
"""Hive partition keys in the object path: ``dt=2026-12-03/hour=17``."""
