-- One row per cluster with its centre. ML.CENTROIDS returns one row per centroid
-- and feature; without STRUCT(TRUE AS standardize) the values are in the features'
-- own scale (degrees), not standardized.
SELECT
  centroid_id,
  MAX(IF(feature = 'longitude', numerical_value, NULL)) AS longitude,
  MAX(IF(feature = 'latitude', numerical_value, NULL)) AS latitude
FROM ML.CENTROIDS(MODEL `{{project}}.{{dataset}}.pickup_clusters`)
GROUP BY centroid_id
ORDER BY centroid_id
