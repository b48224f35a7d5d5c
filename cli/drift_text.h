// How `tessera status` shows drift (schemas/tessera.capnp VersionDrift: JSON, and text with the
// alarming and drifted values first) and the objectives' burn rates (SloState).
#pragma once
#include <nlohmann/json.hpp>

#include "schemas/tessera.capnp.h"

namespace tessera::cli {

nlohmann::json drift_json(capnp::List<wire::VersionDrift>::Reader drift);
void print_drift(capnp::List<wire::VersionDrift>::Reader drift);
nlohmann::json slo_json(capnp::List<wire::SloState>::Reader slos);
void print_slos(capnp::List<wire::SloState>::Reader slos);

}  // namespace tessera::cli
