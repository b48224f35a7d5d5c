// The monitor's state on the node's disk (issue 17: "a monitoring actor that crashes restarts
// from persisted state, nothing counted twice"). The quality service saves each monitored
// model's whole state — the label join, the pairs of every arm, the drift windows and alarms —
// together with the stream sequences of the last prediction-log and label messages it applied,
// in one file written atomically (a temporary file, fsync, rename). After a restart, clean or
// SIGKILL, it loads the file and reads both streams from those sequences + 1: messages applied
// before the save are not applied again and those after it are applied once — the shards'
// rule (state and sequence stored together), with a file instead of a WriteBatch.
//
// The components' save()/restore() (label_join.h, drift.h, drift_monitor.h) are defined in
// checkpoint.cc, next to the file's format: MessagePack of one JSON document (NaN scores and
// 64-bit integers kept exactly).
// Thread safety: none; the service calls these from the model's own thread.
#pragma once
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "tessera/result.h"

namespace tessera::monitoring {

// Replaces `path` with `doc` as a whole: a reader sees the old file or the new one.
status save_state(const std::string& path, const nlohmann::json& doc);
// The document saved at `path`: not_found when there is none; invalid when it does not decode
// (a node then starts that model afresh and says so).
result<nlohmann::json> load_state(const std::string& path);

}  // namespace tessera::monitoring
