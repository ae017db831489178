-- Revenue per pickup cluster and comfort tier. The lake may hold a ride twice (a
-- replayed Kafka batch is written again): keep one row per ride_id, the most
-- recently priced one. Each ride is assigned to the cluster nearest to its client's
-- location, with the same standardization as the training data.
WITH deduped AS (
  SELECT *
  FROM `{{project}}.{{dataset}}.rides`
  -- BigQuery accepts QUALIFY only next to a WHERE, GROUP BY or HAVING clause.
  WHERE TRUE
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY ride_id
    ORDER BY agent_timestamp DESC, source_partition DESC, source_offset DESC
  ) = 1
)
SELECT
  CENTROID_ID AS centroid_id,
  tier,
  COUNT(*) AS rides,
  SUM(prix_travel) AS revenue,
  AVG(prix_travel) AS avg_fare
FROM ML.PREDICT(
  MODEL `{{project}}.{{dataset}}.pickup_clusters`,
  (
    SELECT
      client_lon AS longitude,
      client_lat AS latitude,
      tier,
      prix_travel
    FROM deduped
  )
)
GROUP BY centroid_id, tier
ORDER BY
  centroid_id,
  CASE tier WHEN 'low' THEN 1 WHEN 'medium' THEN 2 WHEN 'high' THEN 3 ELSE 4 END,
  tier
