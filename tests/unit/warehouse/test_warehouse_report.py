"""The report as text and as a figure, and the pickups reader behind the figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kefta.warehouse import Centroid, Report, RevenueRow
from kefta.warehouse.errors import TrainingDataError
from kefta.warehouse.report import (
    Pickups,
    assign_clusters,
    format_report,
    plot_report,
    read_pickups,
)

REPORT = Report(
    revenue=(
        RevenueRow(1, "low", 3, 30.5, 30.5 / 3),
        RevenueRow(1, "high", 1, 1250.0, 1250.0),
        RevenueRow(2, "medium", 2, 19.99, 9.995),
    ),
    centroids=(
        Centroid(1, -73.98, 40.75),
        Centroid(2, -73.79, 40.64),
        Centroid(3, -74.1, 40.9),
    ),
)


def test_format_report_aligns_rows_and_adds_totals() -> None:
    text = format_report(REPORT)

    lines = text.splitlines()
    table = lines[: lines.index("")]
    assert len({len(line) for line in table}) == 1
    assert table[2].split() == ["1", "low", "3", "30.50", "10.17"]
    assert table[3].split() == ["1", "high", "1", "1", "250.00", "1", "250.00"]
    assert table[-1].split() == ["total", "6", "1", "300.49", "216.75"]
    assert "fare units" in text
    assert lines[-1].split() == ["3", "-74.1000", "40.9000"]


def test_plot_report_writes_a_png(tmp_path: Path, reference_pickups: str) -> None:
    target = tmp_path / "report.png"

    written = plot_report(
        REPORT.revenue, REPORT.centroids, read_pickups(reference_pickups), target
    )

    assert written == target
    data = target.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 50_000


def test_plot_report_copes_with_no_rides_and_no_pickups(tmp_path: Path) -> None:
    empty = Pickups(np.array([]), np.array([]))

    written = plot_report((), REPORT.centroids, empty, tmp_path / "empty.png")

    assert written.stat().st_size > 10_000


def test_read_pickups_reads_both_reference_files(
    reference_pickups: str, august_pickups: str
) -> None:
    reference, august = read_pickups(reference_pickups), read_pickups(august_pickups)

    assert len(reference.latitude) == len(reference.longitude) == 2957
    assert (reference.latitude[0], reference.longitude[0]) == (40.729, -73.9422)
    assert len(august.latitude) == 65_535
    assert (august.latitude[0], august.longitude[0]) == (40.7366, -73.9906)


def test_read_pickups_names_the_file_that_is_not_a_pickups_csv(tmp_path: Path) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_text("date,lat,lon,ID\n2014-08-01,north,-73.9,B1\n")

    with pytest.raises(TrainingDataError, match=r"broken\.csv is not a pickups CSV"):
        read_pickups(str(broken))


def test_assign_clusters_uses_standardized_distances() -> None:
    # Latitude varies ten times less than longitude. In degrees the last pickup,
    # (0.5, 0.04), is nearer to centroid 1 (0.06° away) than to centroid 2 (0.4°);
    # standardized, 0.06° of latitude weighs more than 0.4° of longitude.
    pickups = Pickups(
        np.array([0.0, 1.0, 0.0, 1.0, 0.5]), np.array([0.0, 0.0, 0.1, 0.1, 0.04])
    )
    centroids = [Centroid(1, 0.5, 0.1), Centroid(2, 0.9, 0.04)]

    clusters = assign_clusters(pickups, centroids)

    assert clusters[-1] == 2
