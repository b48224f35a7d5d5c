// Reading a node's status as a client: is every shard served? (tests, benchmarks, scripts)
#pragma once
#include <map>
#include <string>

#include "schemas/tessera.capnp.h"

namespace tessera {

// True when the shard map names only live members (other than `gone`), and each of them serves
// exactly as many shards as the map gives it (so no shard is between two owners), all of them
// together serving all `shard_count` shards.
// With `members` > 0, also exactly that many live members, each owning at least one shard.
inline bool every_shard_served(wire::NodeStatus::Reader st, uint32_t shard_count,
                               const std::string& gone = "", size_t members = 0) {
  std::map<std::string, uint32_t> served;
  for (auto m : st.getMembers())
    if (m.getAlive() && gone != m.getNodeId().cStr())
      served[m.getNodeId().cStr()] = m.getShardsServed();
  uint32_t total = 0;
  for (auto& [id, n] : served) total += n;
  bool owners_alive = st.getShardOwners().size() == shard_count;
  std::map<std::string, uint32_t> owned;
  for (auto o : st.getShardOwners()) {
    owners_alive = owners_alive && served.count(o.cStr());
    owned[o.cStr()]++;
  }
  for (auto& [id, n] : served)
    if (owned[id] != n || (members && n == 0)) return false;
  if (members && served.size() != members) return false;
  return owners_alive && total == shard_count;
}

}  // namespace tessera
