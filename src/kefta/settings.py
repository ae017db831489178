"""Settings, read from ``KEFTA_*`` environment variables and command-line options.

Every field below is a setting; its environment variable is ``KEFTA_`` followed by the
field name in capitals (``bootstrap`` is ``KEFTA_BOOTSTRAP``), and the CLI exposes the
same name as an option (``--bootstrap``). Secrets are typed as secrets and are never
printed: :meth:`Settings.describe` masks them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Privacy = Literal["keep", "hash", "drop"]


class Settings(BaseSettings):
    """kefta's configuration; defaults run everything on the local machine."""

    model_config = SettingsConfigDict(
        env_prefix="KEFTA_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    # -- Kafka ------------------------------------------------------------------
    bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma-separated host:port."""
    topic: str = "rides"
    """Topic of incoming ride requests."""
    priced_topic: str = "rides.priced"
    """Topic the worker writes priced rides to."""
    dlq_topic: str = "rides.dlq"
    """Dead-letter topic: messages that failed to decode or validate, with why."""
    group: str = "kefta"
    """Consumer group (and Faust app id) of the worker."""
    session_timeout: float = Field(10.0, ge=6.0)
    """Seconds without heartbeat before a crashed worker's partitions move on."""
    partitions: int = Field(6, ge=1)
    """Partitions of the topics the worker creates."""
    replication: int = Field(1, ge=1)
    """Replication factor of the topics the worker creates."""
    kafka_security_protocol: Literal[
        "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"
    ] = "PLAINTEXT"
    """Kafka security protocol."""
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    """SASL mechanism when the protocol is SASL_*."""
    kafka_username: str | None = None
    """SASL user name."""
    kafka_password: SecretStr | None = None
    """SASL password."""
    kafka_ca_file: Path | None = None
    """CA bundle for Kafka TLS; the system store when unset."""

    # -- the worker -------------------------------------------------------------
    tariff: Path | None = None
    """Tariff TOML file; kefta's default tariff when unset."""
    batch_size: int = Field(2000, ge=1)
    """Most messages priced in one batch."""
    batch_seconds: float = Field(0.2, gt=0)
    """Longest wait to fill a batch, in seconds."""
    web_port: int = Field(6066, ge=0, le=65535)
    """Port of the worker's web server (live view, metrics, health)."""
    web_enabled: bool = True
    """Serve the worker's web pages (live view, /metrics, /health)."""
    web_bind: str = "127.0.0.1"
    """Address the worker's web server listens on; 0.0.0.0 in a container."""
    log_every: float = Field(5.0, gt=0)
    """Seconds between two summary log lines of the worker."""
    data_dir: Path = Path(".kefta")
    """Folder for the worker's local state (Faust's data directory)."""

    # -- Elasticsearch ------------------------------------------------------------
    es_url: str | None = None
    """Elasticsearch URL; the Elasticsearch sink is off when unset."""
    es_index_prefix: str = "kefta-rides"
    """Rides go to daily indices <prefix>-YYYY.MM.DD by event date."""
    es_username: str | None = None
    """Elasticsearch basic-auth user."""
    es_password: SecretStr | None = None
    """Elasticsearch basic-auth password."""
    es_api_key: SecretStr | None = None
    """Elasticsearch API key (instead of user and password)."""
    es_ca_file: Path | None = None
    """CA bundle to verify Elasticsearch's TLS certificate."""
    es_replicas: int = Field(0, ge=0)
    """Replicas of the ride indices; 1 or more on a production cluster."""
    es_bulk_docs: int = Field(2000, ge=1)
    """Most documents in one bulk request."""
    es_bulk_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    """Most bytes in one bulk request."""
    es_flush_seconds: float = Field(1.0, gt=0)
    """Longest time a document waits in the buffer before a bulk request."""

    # -- the lake -------------------------------------------------------------------
    lake_url: str = "lake"
    """Where Parquet files go: a local folder, or gs://bucket/prefix."""
    gcs_endpoint: str | None = None
    """GCS endpoint (an emulator such as fake-gcs-server); Google's when unset."""
    gcs_token: SecretStr | None = None
    """GCS credentials: a service-account JSON file path, or 'anon' for an emulator."""
    lake_max_rows: int = Field(100_000, ge=1)
    """A lake file is closed once it holds this many rows."""
    lake_max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """A lake file is closed once its buffered rows take this many bytes."""
    lake_max_seconds: float = Field(60.0, gt=0)
    """A lake file is closed this long after its first row. Offsets of rides in an
    open file are not committed, so this also bounds what a crash replays."""
    lake_idle_seconds: float = Field(30.0, gt=0)
    """A lake file is closed when no row arrived for this long."""
    memory_budget: int = Field(128 * 1024 * 1024, ge=1024 * 1024)
    """Bytes all buffered rows may take; past it the largest buffer is written early."""

    # -- privacy ---------------------------------------------------------------
    privacy_es: Privacy = "hash"
    """Names and phone numbers in Elasticsearch: keep, hash (keyed HMAC) or drop."""
    privacy_lake: Privacy = "hash"
    """Names and phone numbers in the lake: keep, hash (keyed HMAC) or drop."""
    privacy_priced: Privacy = "hash"
    """Names and phone numbers in the priced topic: keep, hash or drop."""
    privacy_key: SecretStr = SecretStr("kefta-development-key")
    """HMAC key for hashed names and phones; set your own in production."""

    # -- Kibana ------------------------------------------------------------------
    kibana_url: str | None = None
    """Kibana base URL for `kefta dashboards import`, e.g. http://127.0.0.1:5601."""
    kibana_space: str | None = None
    """Kibana space to import into; the default space when unset."""
    kibana_username: str | None = None
    """Kibana basic-auth user."""
    kibana_password: SecretStr | None = None
    """Kibana basic-auth password."""
    kibana_api_key: SecretStr | None = None
    """Kibana API key, base64 of id:key (instead of user and password)."""

    # -- the warehouse --------------------------------------------------------------
    gcp_project: str | None = None
    """BigQuery project; the local DuckDB warehouse is used when unset."""
    bq_dataset: str = "kefta"
    """BigQuery dataset (or the DuckDB schema name)."""
    bq_location: str = "EU"
    """BigQuery location for the dataset and jobs."""
    warehouse_path: Path = Path("warehouse.duckdb")
    """DuckDB file of the local warehouse."""
    pickups: str | None = None
    """Reference pickups CSV (date,lat,lon,ID) for k-means; bundled when unset."""
    train_every_seconds: float = Field(0.0, ge=0)
    """Retrain k-means this often from the worker; 0 turns the schedule off."""
    train_every_files: int = Field(0, ge=0)
    """Retrain k-means after this many new lake files; 0 turns it off."""

    def describe(self) -> str:
        """The effective configuration as ``key=value`` pairs, secrets masked."""
        pairs = []
        for name, value in self.model_dump().items():
            if isinstance(getattr(self, name), SecretStr):
                value = "***"
            pairs.append(f"{name}={value}")
        return " ".join(pairs)
