// `tessera models show M`: a model as a whole, from the registry head (stages, shares, A/B
// arms, production history) and the node's definitions (label, features, fallback, shadow
// sample, max feature age, the models whose scores it takes). Pure functions on JSON; the
// training RPC reads the head and calls them.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "definitions.h"

namespace tessera {

// What the definitions say of a model, as JSON.
nlohmann::json describe_definition(const model_def& m);
// The model: {name, production, versions: [{version, stage, created, share}], canary, ab,
// production_history, definition}. `head` null: not in the registry; `definition` null: not in
// the definitions.
nlohmann::json describe_model(const std::string& name, const nlohmann::json& head,
                              const nlohmann::json& definition);

}  // namespace tessera
