-- Flights: real-time delay features per origin airport and per route, a label and two models.
-- Data: ../shared/data/flights-3m.csv.gz (date, delay, distance, origin, destination).
--
-- When is a flight's delay known? At arrival, not at departure. `date` is the scheduled
-- departure; the arrival is estimated from the distance (about 8 miles a minute plus 30
-- minutes of taxiing) plus the arrival delay. The stream's event time is that arrival, so a
-- flight counts in its airport's and route's features only once it has landed.

stream {
  name = "flights",
  time_field = "arrival",
  fields = { date = "timestamp", delay = "float", distance = "float", origin = "text", destination = "text" },
  derive = {
    arrival = { type = "timestamp", expr = "date + 60000000 * (30 + distance / 8 + delay)" },
  },
  duplicate_window = "2h",      -- a re-run ingest within this window counts nothing twice
  offline_retention = "400d",   -- the offline log keeps every event this long (training sets)
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

-- Each flight is an example: predicted at its scheduled departure, labelled "more than 15
-- minutes late" once it arrives. `late` reads the features known at departure time;
-- `late_daily` the same features frozen at the previous midnight (UTC), as a daily batch job
-- serves them.
local function late_label(name, snapshot)
  return label {
    name = name, stream = "flights", entity = "route",
    value = "delay > 15",
    prediction_time = "date",
    features = { "airport_delay@1", "route_delay@1" },
    on_demand = { distance = "distance", hour = "hour(date)", weekday = "weekday(date)" },
    snapshot = snapshot,
  }
end
late_label("late")
late_label("late_daily", "1d")

local split = {
  train = { "2001-01-01", "2001-05-01" },
  validation = { "2001-05-01", "2001-06-01" },
  test = { "2001-06-01", "2001-07-01" },
}

model { name = "late_mlp", label = "late", kind = "mlp", hidden = { 32, 16 }, epochs = 4,
        batch_size = 1024, learning_rate = 0.003, seed = 7, split = split }
model { name = "late_mlp_daily", label = "late_daily", kind = "mlp", hidden = { 32, 16 }, epochs = 4,
        batch_size = 1024, learning_rate = 0.003, seed = 7, split = split }
model { name = "late_logistic", label = "late", kind = "logistic", epochs = 4,
        batch_size = 1024, learning_rate = 0.01, seed = 7, split = split }
