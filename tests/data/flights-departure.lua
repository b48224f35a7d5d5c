-- The integration tests' definitions: the flights example before it modelled arrival
-- times (event time = scheduled departure), which the brute-force references in
-- tests/support compute independently.
-- Data: ../shared/data/flights-3m.csv.gz (date, delay, distance, origin, destination).

stream {
  name = "flights",
  time_field = "date",
  fields = { date = "timestamp", delay = "float", distance = "float", origin = "text", destination = "text" },
  duplicate_window = "2h",   -- a re-run ingest within this window counts nothing twice
  offline_retention = "2d",  -- short: events older than this (and the online windows) are dead letters
  clock = "replay",             -- history replayed: reads default to the stream's watermark, not now
}

entity { name = "origin", key = "origin" }                       -- e.g. "LAX"
entity { name = "route", key = { "origin", "destination" } }     -- e.g. "LAX-SFO"

view {
  name = "airport_delay", version = 1, entity = "origin", stream = "flights",
  ttl = "6h",
  features = {
    count { "count_1h", window = "1h" },
    mean  { "mean_delay_1h", field = "delay", window = "1h" },
    count { "count_24h", window = "24h" },
    mean  { "mean_delay_24h", field = "delay", window = "24h" },
    max   { "max_delay_24h", field = "delay", window = "24h" },
    count { "late_24h", window = "24h", filter = "delay > 15" },
  },
}

view {
  name = "route_delay", version = 1, entity = "route", stream = "flights",
  ttl = "7d",
  features = {
    count { "count_7d", window = "7d" },
    mean  { "mean_delay_7d", field = "delay", window = "7d" },
  },
}
