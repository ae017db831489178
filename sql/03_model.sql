-- K-means clusters of the pickup locations. Every option is spelt out, so that the
-- model does not change when a default does, and the local back end reads the same
-- values from this file:
--   NUM_CLUSTERS = 8             the eight zones of the original analysis;
--   KMEANS_INIT_METHOD='KMEANS++' spread-out first centroids; RANDOM, the default,
--                                often seeds two centroids in the dense Manhattan
--                                core and leaves far-away pickups to a single one;
--   STANDARDIZE_FEATURES = TRUE  z-score longitude and latitude (the default),
--                                so that both weigh the same in the distance;
--   MAX_ITERATIONS = 20          BigQuery's default cap on training iterations;
--   MIN_REL_PROGRESS = 0.01      stop once an iteration improves the loss by less
--                                than 1 %, BigQuery's default.
-- Rows without coordinates are left out: BigQuery would replace a NULL by the mean,
-- which places a fake pickup in the middle of the city.
CREATE OR REPLACE MODEL `{{project}}.{{dataset}}.pickup_clusters`
OPTIONS (
  MODEL_TYPE = 'KMEANS',
  NUM_CLUSTERS = 8,
  KMEANS_INIT_METHOD = 'KMEANS++',
  STANDARDIZE_FEATURES = TRUE,
  MAX_ITERATIONS = 20,
  MIN_REL_PROGRESS = 0.01
) AS
SELECT
  lon AS longitude,
  lat AS latitude
FROM `{{project}}.{{dataset}}.pickups`
WHERE lon IS NOT NULL AND lat IS NOT NULL
