// The monitor's saved state (issue 17: "a monitoring actor that crashes restarts from persisted
// state, nothing counted twice"). The quality service saves each monitored model's whole state —
// the label join, the pairs of every arm, the drift windows and alarms — together with the
// stream sequences of the last prediction-log and label messages it applied, as one document
// (state_store.h keeps it in JetStream). Whoever computes the model next — the same node after a
// restart, clean or SIGKILL, or another node after this one died — loads it and reads both
// streams from those sequences + 1: messages applied before the save are not applied again and
// those after it are applied once — the shards' rule (state and sequence stored together).
//
// The components' save()/restore() (label_join.h, drift.h, drift_monitor.h) are defined in
// checkpoint.cc, next to the format: MessagePack of one JSON document (NaN scores and 64-bit
// integers kept exactly).
// Thread safety: none; the service calls these from the model's own thread.
#pragma once
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "tessera/result.h"

namespace tessera::monitoring {

// The bytes of a saved state (MessagePack of `doc`), and back: invalid when they do not decode.
std::string encode_state(const nlohmann::json& doc);
result<nlohmann::json> decode_state(const std::string& bytes);

}  // namespace tessera::monitoring
