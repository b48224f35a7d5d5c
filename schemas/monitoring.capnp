# The monitoring family's RPC capability (Gateway.monitoring): the cluster's alerts.
# Implemented by actors/monitoring/monitoring_rpc.cc; the records live in JetStream
# (actors/monitoring/alert_store.h), so any node answers the same.
#
# Alerts come as JSON text (like the registry's metadata): an alert is {key, name, severity,
# group, state (pending, firing, resolved), summary, details, pending_since_us, fired_us,
# resolved_us, updated_us, fired_count, acked_by, acked_us, silenced_by, silenced_until_us}.
@0xecf7e3a23e3c5041;

$import "/capnp/c++.capnp".namespace("tessera::wire");

interface Monitoring {
  # The alerts that are pending, firing or resolved, newest change first.
  alerts @0 () -> (json :Text);
  # The transitions to firing and resolved published since sequence `after` (0: from the start
  # of the kept log), at most `limit` (0: 1000): a JSON array, each with its "seq", "subject"
  # (tsr.alert.<severity>.<name>) and "transition"; `last` is where to go on from.
  log @1 (after :UInt64, limit :UInt32) -> (json :Text, last :UInt64);
  # Marks a firing alert as seen (invalid when it is not firing; not_found: no such key).
  acknowledge @2 (key :Text, by :Text) -> ();
  # Suppresses the alert's notifications for `seconds` (0 lifts a silence).
  silence @3 (key :Text, seconds :UInt32, by :Text) -> ();
}
