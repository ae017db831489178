-- The rides of the lake as an external table: BigQuery reads the Parquet files in
-- place, nothing is copied. The lake is Hive-partitioned by the ride's event time
-- (UTC), <lake>/dt=YYYY-MM-DD/hour=HH/*.parquet; dt and hour live in the object
-- path, not in the files, and are declared here so that they get real types
-- (DATE, INT64) and can prune partitions in WHERE clauses.
CREATE OR REPLACE EXTERNAL TABLE `{{project}}.{{dataset}}.rides`
WITH PARTITION COLUMNS (
  dt DATE,
  hour INT64
)
OPTIONS (
  format = 'PARQUET',
  uris = ['{{lake_url}}/*'],
  hive_partition_uri_prefix = '{{lake_url}}'
)
