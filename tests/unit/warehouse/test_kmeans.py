"""The local k-means: quality against scikit-learn, BigQuery ML's rules, errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.cluster import KMeans

from kefta.warehouse.errors import TrainingDataError
from kefta.warehouse.kmeans import (
    FloatArray,
    InitMethod,
    KMeansOptions,
    fit_kmeans,
)
from kefta.warehouse.report import read_pickups

FEATURES = ("longitude", "latitude")
# The options of sql/03_model.sql.
MODEL_OPTIONS = KMeansOptions(num_clusters=8, init_method=InitMethod.KMEANS_PLUS_PLUS)


def coordinates(path: str) -> FloatArray:
    pickups = read_pickups(path)
    return np.column_stack([pickups.longitude, pickups.latitude])


def standardized(points: FloatArray) -> FloatArray:
    return (points - points.mean(axis=0)) / points.std(axis=0, ddof=1)


def test_fit_on_the_august_pickups_takes_well_under_two_seconds(
    august_pickups: str,
) -> None:
    points = coordinates(august_pickups)

    started = time.perf_counter()
    model = fit_kmeans(points, FEATURES, MODEL_OPTIONS)
    elapsed = time.perf_counter() - started

    assert points.shape == (65_535, 2)
    assert model.training_rows == 65_535
    assert elapsed < 2.0, f"k-means on 65,535 rows took {elapsed:.2f} s"


@pytest.mark.parametrize("pickups", ["reference_pickups", "august_pickups"])
def test_mean_squared_distance_is_within_2_percent_of_scikit_learn(
    pickups: str, request: pytest.FixtureRequest
) -> None:
    points = coordinates(request.getfixturevalue(pickups))
    reference = KMeans(n_clusters=8, n_init=10, random_state=0).fit(
        standardized(points)
    )
    sklearn_msd = reference.inertia_ / len(points)

    ours = fit_kmeans(points, FEATURES, MODEL_OPTIONS).mean_squared_distance(points)

    assert ours <= sklearn_msd * 1.02, f"ours {ours:.5f} vs sklearn {sklearn_msd:.5f}"


def test_loss_is_the_mean_squared_standardized_distance(reference_pickups: str) -> None:
    points = coordinates(reference_pickups)

    model = fit_kmeans(points, FEATURES, MODEL_OPTIONS)

    assert model.loss == pytest.approx(model.mean_squared_distance(points), rel=1e-9)


def test_same_seed_gives_the_same_model(reference_pickups: str) -> None:
    points = coordinates(reference_pickups)

    first = fit_kmeans(points, FEATURES, KMeansOptions(seed=7))
    second = fit_kmeans(points, FEATURES, KMeansOptions(seed=7))

    np.testing.assert_array_equal(first.centroids, second.centroids)
    assert first.iterations == second.iterations


def test_another_seed_may_start_elsewhere(reference_pickups: str) -> None:
    points = coordinates(reference_pickups)
    single_run = {"restarts": 1, "init_method": InitMethod.RANDOM}

    models = [
        fit_kmeans(points, FEATURES, KMeansOptions(seed=s, **single_run))
        for s in range(4)
    ]

    assert len({model.centroids.tobytes() for model in models}) > 1


def test_features_are_standardized_with_the_sample_standard_deviation() -> None:
    # BigQuery's ML.STANDARD_SCALER maps 1..5 to ±1.2649 = (x - 3) / sqrt(2.5).
    points = np.column_stack([np.arange(1.0, 6.0), np.array([2.0, 9.0, 4.0, 7.0, 1.0])])

    model = fit_kmeans(points, ("x", "y"), KMeansOptions(num_clusters=2))

    assert model.scaling.transform(points)[0, 0] == pytest.approx(-1.2649110640673518)
    assert model.scaling.scale[0] == pytest.approx(np.sqrt(2.5))


def test_without_standardization_centroids_are_in_original_units() -> None:
    points = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])

    model = fit_kmeans(
        points, ("x", "y"), KMeansOptions(num_clusters=2, standardize_features=False)
    )

    centres = sorted(map(tuple, model.original_centroids().round(9)))
    assert centres == [(0.0, 0.5), (10.0, 0.5)]


def test_centroid_ids_are_one_based_and_predict_the_nearest() -> None:
    points = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    model = fit_kmeans(points, ("x", "y"), KMeansOptions(num_clusters=2))

    ids = model.predict(points)

    assert set(ids.tolist()) == {1, 2}
    assert ids[0] == ids[1] != ids[2] == ids[3]
    nearest = np.argmin(
        np.linalg.norm(
            model.centroids[None] - model.scaling.transform(points)[:, None], axis=2
        ),
        axis=1,
    )
    np.testing.assert_array_equal(ids, nearest + 1)


def test_training_stops_at_max_iterations(august_pickups: str) -> None:
    points = coordinates(august_pickups)[:5000]
    options = KMeansOptions(
        max_iterations=2, early_stop=False, restarts=1, init_method=InitMethod.RANDOM
    )

    model = fit_kmeans(points, FEATURES, options)

    assert model.iterations == 2


def test_early_stop_ends_before_max_iterations_once_progress_is_small(
    reference_pickups: str,
) -> None:
    points = coordinates(reference_pickups)
    loose = KMeansOptions(restarts=1, min_rel_progress=0.5, max_iterations=20)
    strict = KMeansOptions(restarts=1, min_rel_progress=0.0, max_iterations=20)

    assert fit_kmeans(points, FEATURES, loose).iterations == 1
    assert fit_kmeans(points, FEATURES, strict).iterations > 1


def test_fewer_rows_than_clusters_is_refused() -> None:
    points = np.array([[-73.9, 40.7], [-73.8, 40.6], [-73.7, 40.5]])

    with pytest.raises(TrainingDataError, match=r"3 training rows .* NUM_CLUSTERS=8"):
        fit_kmeans(points, FEATURES, KMeansOptions(num_clusters=8))


def test_fewer_distinct_rows_than_clusters_is_refused() -> None:
    points = np.array([[-73.9, 40.7]] * 10 + [[-73.8, 40.6]] * 10)

    with pytest.raises(TrainingDataError, match=r"20 training rows \(2 distinct\)"):
        fit_kmeans(points, FEATURES, KMeansOptions(num_clusters=3))


@pytest.mark.parametrize("missing", [np.nan, None])
def test_null_coordinates_are_refused_with_their_row(missing: float | None) -> None:
    points = np.array([[-73.9, 40.7], [-73.8, missing], [-73.7, 40.5]], dtype=float)

    with pytest.raises(
        TrainingDataError, match=r"'latitude' is NULL or NaN in 1 of 3 .* row 1"
    ):
        fit_kmeans(points, FEATURES, KMeansOptions(num_clusters=2))


def test_a_constant_column_cannot_be_standardized() -> None:
    points = np.array([[-73.9, 40.7], [-73.8, 40.7], [-73.7, 40.7]])

    with pytest.raises(
        TrainingDataError, match=r"'latitude' is constant .* STANDARDIZE_FEATURES=FALSE"
    ):
        fit_kmeans(points, FEATURES, KMeansOptions(num_clusters=2))


def test_a_constant_column_is_fine_without_standardization() -> None:
    points = np.array([[-73.9, 40.7], [-73.8, 40.7], [-73.1, 40.7]])

    model = fit_kmeans(
        points, FEATURES, KMeansOptions(num_clusters=2, standardize_features=False)
    )

    assert model.num_clusters == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_clusters": 0}, "NUM_CLUSTERS=0"),
        ({"max_iterations": 0}, "MAX_ITERATIONS=0"),
        ({"min_rel_progress": 1.5}, "MIN_REL_PROGRESS=1.5"),
        ({"restarts": 0}, "restarts=0"),
    ],
)
def test_invalid_options_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KMeansOptions(**options)  # type: ignore[arg-type]
