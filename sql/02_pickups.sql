-- The reference pickups the clusters are learnt from (Uber pickups in New York),
-- replaced at every training. Columns are read by position after the header line,
-- so any CSV with the columns date, lat, lon, ID in that order loads, whatever its
-- header says (e.g. Date/Time, Lat, Lon, Base).
LOAD DATA OVERWRITE `{{project}}.{{dataset}}.pickups` (
  date STRING,
  lat FLOAT64,
  lon FLOAT64,
  ID STRING
)
FROM FILES (
  format = 'CSV',
  skip_leading_rows = 1,
  uris = ['{{pickups_uri}}']
)
