"""Show a revenue report: an aligned text table, and a figure.

``format_report`` gives the text ``kefta report`` prints. ``plot_report`` draws the
reference pickups coloured by cluster with the centroids on a map of coordinates
(no basemap: it works offline), beside the revenue per cluster and comfort tier.
Fares carry no currency in the data, so amounts are "fare units".
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Annotation
from matplotlib.ticker import FuncFormatter

from kefta.warehouse.base import Centroid, Report, RevenueRow
from kefta.warehouse.errors import TrainingDataError
from kefta.warehouse.kmeans import FloatArray, IntArray

TIER_ORDER = ("low", "medium", "high")
_CLUSTER_COLOURS = "tab10"
_LABEL_DISTANCE = 48.0
_LABEL_MARGIN_PX = 8.0
_LABEL_PASSES = 12
Rgba = tuple[float, float, float, float]
_TIER_COLOURS = {"low": "#8fb9d9", "medium": "#3a7dbf", "high": "#173f6b"}


@dataclass(frozen=True, slots=True)
class Pickups:
    """Reference pickup coordinates in degrees, one entry per pickup."""

    longitude: FloatArray
    latitude: FloatArray


def read_pickups(path: str) -> Pickups:
    """Read a pickups CSV (local path or fsspec URL) the way ``02_pickups.sql`` does:
    skip the header line, then latitude and longitude are the 2nd and 3rd columns.

    Raises ``TrainingDataError`` naming the line of a value that is not a number.
    """
    with fsspec.open(path, "rt", encoding="utf-8", newline="") as handle:
        text = handle.read()
    rows = list(csv.reader(io.StringIO(text)))[1:]
    try:
        latitude = np.array([float(row[1]) for row in rows if row])
        longitude = np.array([float(row[2]) for row in rows if row])
    except (ValueError, IndexError) as error:
        raise TrainingDataError(
            f"{path} is not a pickups CSV ({error}); expected the columns date, lat, "
            "lon, ID after a header line, as sql/02_pickups.sql loads them"
        ) from error
    return Pickups(longitude, latitude)


def format_report(report: Report) -> str:
    """The report as an aligned text table with totals, then the centroids."""
    header = f"{'cluster':>7}  {'tier':<8}{'rides':>8}{'revenue':>14}{'avg fare':>11}"
    lines = [header, "-" * len(header)]
    for row in report.revenue:
        lines.append(
            f"{row.centroid_id:>7}  {row.tier:<8}{row.rides:>8}"
            f"{_amount(row.revenue):>14}{_amount(row.avg_fare):>11}"
        )
    rides, revenue = report.total_rides, report.total_revenue
    average = revenue / rides if rides else 0.0
    lines += ["-" * len(header)]
    lines.append(
        f"{'total':>7}  {'':<8}{rides:>8}{_amount(revenue):>14}{_amount(average):>11}"
    )
    lines += ["", "amounts in fare units (the fares carry no currency)", ""]
    lines.append(f"{'cluster':>7}{'longitude':>12}{'latitude':>11}")
    for centroid in report.centroids:
        lines.append(
            f"{centroid.centroid_id:>7}{centroid.longitude:>12.4f}{centroid.latitude:>11.4f}"
        )
    return "\n".join(lines)


def plot_report(
    revenue: Sequence[RevenueRow],
    centroids: Sequence[Centroid],
    pickups: Pickups,
    path: str | Path,
) -> Path:
    """Draw the report to a PNG at ``path`` and return the path.

    Left: the pickups coloured by nearest centroid (standardized with their own mean
    and sample standard deviation, which reproduces the model when ``pickups`` are
    its training file), centroids as big crosses labelled with id and revenue.
    Right: revenue per cluster, one bar per comfort tier. Uses the Agg canvas only,
    so it is safe off the main thread and needs no display.
    """
    figure = Figure(figsize=(16, 8), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, width_ratios=(1, 1.1))
    by_cluster = _revenue_by_cluster(revenue)
    labels = _draw_map(left, pickups, centroids, by_cluster)
    _draw_bars(right, revenue, [c.centroid_id for c in centroids])
    total = sum(row.revenue for row in revenue)
    rides = sum(row.rides for row in revenue)
    figure.suptitle(
        f"kefta revenue report: {rides} rides, {_amount(total)} fare units",
        fontsize=15,
        fontweight="bold",
    )
    figure.draw_without_rendering()
    _place_labels(left, labels)
    target = Path(path)
    figure.savefig(target)
    return target


def assign_clusters(pickups: Pickups, centroids: Sequence[Centroid]) -> IntArray:
    """Id of each pickup's nearest centroid, distances standardized as in training."""
    points = np.column_stack([pickups.longitude, pickups.latitude])
    centres = np.array([[c.longitude, c.latitude] for c in centroids])
    scale = points.std(axis=0, ddof=1) if len(points) > 1 else np.ones(2)
    scale = np.where(scale > 0, scale, 1.0)
    distances = (((points[:, None, :] - centres[None, :, :]) / scale) ** 2).sum(axis=2)
    ids = np.array([c.centroid_id for c in centroids], dtype=np.int64)
    nearest: IntArray = ids[np.argmin(distances, axis=1)]
    return nearest


def _draw_map(
    axes: Axes,
    pickups: Pickups,
    centroids: Sequence[Centroid],
    revenue_by_cluster: dict[int, float],
) -> list[Annotation]:
    colours = _colours(centroids)
    if centroids and len(pickups.longitude):
        clusters = assign_clusters(pickups, centroids)
        point_colours = [colours[int(cluster)] for cluster in clusters]
        axes.scatter(
            pickups.longitude,
            pickups.latitude,
            s=5,
            c=point_colours,
            alpha=0.45,
            linewidths=0,
        )
    labels = []
    for centroid, offset in zip(centroids, _label_offsets(centroids), strict=True):
        _draw_centroid(axes, centroid, colours[centroid.centroid_id])
        amount = _amount(revenue_by_cluster.get(centroid.centroid_id, 0.0))
        label = axes.annotate(
            f"cluster {centroid.centroid_id}\n{amount}",
            (centroid.longitude, centroid.latitude),
            xytext=offset,
            textcoords="offset points",
            ha="center",
            va="center",
            fontsize=10,
            fontweight="bold",
            bbox={
                "boxstyle": "round,pad=0.3",
                "fc": "white",
                "ec": colours[centroid.centroid_id],
                "alpha": 0.9,
            },
            arrowprops={"arrowstyle": "-", "color": "0.3", "linewidth": 0.8},
            zorder=4,
        )
        labels.append(label)
    _frame_city(axes, pickups, centroids)
    axes.set_xlabel("longitude (°)")
    axes.set_ylabel("latitude (°)")
    axes.set_title("Reference pickups by cluster; centroids (X) with their revenue")
    axes.grid(True, linewidth=0.4, alpha=0.5)
    return labels


def _place_labels(axes: Axes, labels: list[Annotation]) -> None:
    """Move labels apart where they overlap, and back inside ``axes`` where they
    stick out. Call once the figure is laid out (positions are in pixels)."""
    for _ in range(_LABEL_PASSES):
        moved = _separate(labels)
        moved = _keep_inside(axes, labels) or moved
        if not moved:
            return


def _separate(labels: list[Annotation]) -> bool:
    moved = False
    boxes = [label.get_window_extent().expanded(1.1, 1.15) for label in labels]
    for first in range(len(labels)):
        for second in range(first + 1, len(labels)):
            a, b = boxes[first], boxes[second]
            overlap_y = min(a.y1, b.y1) - max(a.y0, b.y0)
            if min(a.x1, b.x1) - max(a.x0, b.x0) <= 0 or overlap_y <= 0:
                continue
            upper, lower = (
                (first, second) if a.y0 + a.y1 >= b.y0 + b.y1 else (second, first)
            )
            _shift(labels[upper], 0.0, overlap_y / 2)
            _shift(labels[lower], 0.0, -overlap_y / 2)
            boxes = [label.get_window_extent().expanded(1.1, 1.15) for label in labels]
            moved = True
    return moved


def _keep_inside(axes: Axes, labels: list[Annotation]) -> bool:
    frame = axes.get_window_extent()
    moved = False
    for label in labels:
        box = label.get_window_extent()
        margin = _LABEL_MARGIN_PX
        shift_x = max(frame.x0 + margin - box.x0, 0.0) - max(
            box.x1 + margin - frame.x1, 0.0
        )
        shift_y = max(frame.y0 + margin - box.y0, 0.0) - max(
            box.y1 + margin - frame.y1, 0.0
        )
        if shift_x or shift_y:
            _shift(label, shift_x, shift_y)
            moved = True
    return moved


def _shift(label: Annotation, pixels_x: float, pixels_y: float) -> None:
    points_per_pixel = 72.0 / label.figure.dpi if label.figure else 1.0
    x, y = label.xyann
    label.xyann = (x + pixels_x * points_per_pixel, y + pixels_y * points_per_pixel)


def _draw_centroid(axes: Axes, centroid: Centroid, colour: Rgba) -> None:
    axes.scatter(
        centroid.longitude,
        centroid.latitude,
        marker="X",
        s=420,
        c=[colour],
        edgecolors="black",
        linewidths=1.5,
        zorder=3,
    )


def _label_offsets(centroids: Sequence[Centroid]) -> list[tuple[float, float]]:
    """Label positions, in points, pointing away from the centroids' middle so that
    labels of neighbouring centroids fan out instead of piling up."""
    if not centroids:
        return []
    middle_x = float(np.mean([c.longitude for c in centroids]))
    middle_y = float(np.mean([c.latitude for c in centroids]))
    offsets = []
    for index, centroid in enumerate(centroids):
        angle = math.atan2(centroid.latitude - middle_y, centroid.longitude - middle_x)
        if (
            math.hypot(centroid.latitude - middle_y, centroid.longitude - middle_x)
            < 1e-9
        ):
            angle = index * 2 * math.pi / len(centroids)
        offsets.append(
            (_LABEL_DISTANCE * math.cos(angle), _LABEL_DISTANCE * math.sin(angle))
        )
    return offsets


def _frame_city(axes: Axes, pickups: Pickups, centroids: Sequence[Centroid]) -> None:
    """Zoom on the bulk of the pickups and every centroid; keep degrees square."""
    longitudes = [c.longitude for c in centroids]
    latitudes = [c.latitude for c in centroids]
    if len(pickups.longitude):
        longitudes += list(np.percentile(pickups.longitude, [0.5, 99.5]))
        latitudes += list(np.percentile(pickups.latitude, [0.5, 99.5]))
    if not longitudes:
        return
    # Room around the points for the labels, which fan out by _LABEL_DISTANCE.
    pad_x = max((max(longitudes) - min(longitudes)) * 0.22, 0.02)
    pad_y = max((max(latitudes) - min(latitudes)) * 0.16, 0.02)
    axes.set_xlim(min(longitudes) - pad_x, max(longitudes) + pad_x)
    axes.set_ylim(min(latitudes) - pad_y, max(latitudes) + pad_y)
    middle = (min(latitudes) + max(latitudes)) / 2
    axes.set_aspect(1 / math.cos(math.radians(middle)), adjustable="box")


def _draw_bars(
    axes: Axes, revenue: Sequence[RevenueRow], cluster_ids: list[int]
) -> None:
    clusters = sorted(set(cluster_ids) | {row.centroid_id for row in revenue})
    tiers = _tiers(revenue)
    width = 0.8 / max(len(tiers), 1)
    amounts = {(row.centroid_id, row.tier): row.revenue for row in revenue}
    positions = np.arange(len(clusters), dtype=np.float64)
    for index, tier in enumerate(tiers):
        heights = [amounts.get((cluster, tier), 0.0) for cluster in clusters]
        offset = (index - (len(tiers) - 1) / 2) * width
        axes.bar(
            positions + offset,
            heights,
            width,
            label=tier,
            color=_TIER_COLOURS.get(tier),
            edgecolor="white",
        )
    for position, cluster in zip(positions, clusters, strict=True):
        heights = [amounts.get((cluster, tier), 0.0) for tier in tiers]
        axes.annotate(
            f"total\n{_amount(sum(heights))}",
            (position, max(heights, default=0.0)),
            xytext=(0, 6),
            textcoords="offset points",
            ha="center",
            fontsize=9,
        )
    axes.set_xticks(positions, [f"cluster {cluster}" for cluster in clusters])
    axes.set_xlabel("pickup cluster")
    axes.set_ylabel("revenue (fare units)")
    axes.yaxis.set_major_formatter(
        FuncFormatter(lambda value, _: f"{value:,.0f}".replace(",", " "))
    )
    axes.set_title("Revenue per cluster and comfort tier")
    if tiers:
        axes.legend(title="comfort tier", loc="upper right")
    axes.margins(y=0.18)
    axes.grid(True, axis="y", linewidth=0.4, alpha=0.5)


def _revenue_by_cluster(revenue: Sequence[RevenueRow]) -> dict[int, float]:
    totals: dict[int, float] = {}
    for row in revenue:
        totals[row.centroid_id] = totals.get(row.centroid_id, 0.0) + row.revenue
    return totals


def _tiers(revenue: Sequence[RevenueRow]) -> list[str]:
    present = {row.tier for row in revenue}
    return [t for t in TIER_ORDER if t in present] + sorted(present - set(TIER_ORDER))


def _colours(
    centroids: Sequence[Centroid],
) -> dict[int, tuple[float, float, float, float]]:
    palette = colormaps[_CLUSTER_COLOURS]
    return {c.centroid_id: palette((c.centroid_id - 1) % palette.N) for c in centroids}


def _amount(value: float) -> str:
    """A fare amount with two decimals and thin thousands separators: 12 345.67."""
    return f"{value:,.2f}".replace(",", " ")
