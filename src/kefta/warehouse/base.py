"""The warehouse contract shared by the BigQuery and DuckDB back ends.

A ``Warehouse`` runs the SQL of ``sql/``: ``train`` (re)creates the rides table over
the lake, loads the reference pickups and trains the k-means model; ``report`` sums
the deduplicated rides per cluster and comfort tier and returns the centroids. Both
block until the engine is done; ``TrainingScheduler`` runs ``train`` off the event
loop. Failures raise ``kefta.warehouse.errors.WarehouseError`` subclasses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class StepResult:
    """One statement run by ``train``: a BigQuery job or a DuckDB statement.

    ``job_id`` and ``bytes_processed`` are None when the engine reports none.
    """

    step: str
    duration_s: float
    job_id: str | None = None
    bytes_processed: int | None = None


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """What the local k-means reports about a training (BigQuery gives none here)."""

    num_clusters: int
    iterations: int
    loss: float
    training_rows: int


@dataclass(frozen=True, slots=True)
class TrainResult:
    """The outcome of ``Warehouse.train``."""

    backend: str
    steps: tuple[StepResult, ...]
    model: ModelSummary | None = None

    @property
    def duration_s(self) -> float:
        """Time spent in all steps."""
        return sum(step.duration_s for step in self.steps)


@dataclass(frozen=True, slots=True)
class RevenueRow:
    """Revenue of one comfort tier in one cluster (fares have no currency)."""

    centroid_id: int
    tier: str
    rides: int
    revenue: float
    avg_fare: float


@dataclass(frozen=True, slots=True)
class Centroid:
    """A cluster centre in degrees."""

    centroid_id: int
    longitude: float
    latitude: float


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of ``Warehouse.report``: revenue rows ordered by cluster and tier,
    and one centroid per cluster ordered by id."""

    revenue: tuple[RevenueRow, ...]
    centroids: tuple[Centroid, ...]

    @property
    def total_revenue(self) -> float:
        return sum(row.revenue for row in self.revenue)

    @property
    def total_rides(self) -> int:
        return sum(row.rides for row in self.revenue)

    @classmethod
    def from_records(
        cls,
        revenue: Iterable[Mapping[str, Any]],
        centroids: Iterable[Mapping[str, Any]],
    ) -> Report:
        """Build a report from the rows of ``04_revenue_report`` and
        ``05_centroids``, whichever engine returned them."""
        return cls(
            tuple(
                RevenueRow(
                    centroid_id=int(row["centroid_id"]),
                    tier=str(row["tier"]),
                    rides=int(row["rides"]),
                    revenue=float(row["revenue"]),
                    avg_fare=float(row["avg_fare"]),
                )
                for row in revenue
            ),
            tuple(
                Centroid(
                    centroid_id=int(row["centroid_id"]),
                    longitude=float(row["longitude"]),
                    latitude=float(row["latitude"]),
                )
                for row in centroids
            ),
        )


class Warehouse(Protocol):
    """What the CLI and the stream app need from a warehouse back end."""

    def train(self) -> TrainResult:
        """Create the rides table, load the pickups, train the model. Blocking."""
        ...

    def report(self) -> Report:
        """Revenue per cluster and tier, and the centroids. Blocking."""
        ...

    def close(self) -> None:
        """Release the engine's connection; the warehouse is unusable afterwards."""
        ...
