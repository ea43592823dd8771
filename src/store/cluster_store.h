// ClusterStore: the persistent state of one `canopyd cluster` (its nodes, node tokens and the
// outcomes of root commands), separate from the root's Store. SQLite file in the cluster's data
// dir (store/sqlite/sqlite_cluster_store.cpp, own migrations). Implementations are thread-safe.
// Like Store, it never invents ids or timestamps.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "core/types.h"

namespace canopy::store {

class ClusterStore {
 public:
  virtual ~ClusterStore() = default;

  /// Node registration tokens (hashed). Consume: atomically marks the unused, unexpired token used;
  /// otherwise kUnauthenticated with one message for every case.
  virtual Status CreateNodeToken(const core::NodeToken& t) = 0;
  virtual Result<core::NodeToken> ConsumeNodeToken(const std::string& token_hash, TimePoint now) = 0;

  /// Nodes. kNotFound when absent; List ordered by registered_at, then id.
  virtual Status CreateNode(const core::NodeRecord& n) = 0;
  virtual Result<core::NodeRecord> GetNode(const std::string& id) = 0;
  virtual Result<std::vector<core::NodeRecord>> ListNodes() = 0;
  /// Writes hostname, address, resources and last_heartbeat of an existing node.
  virtual Status UpdateNode(const core::NodeRecord& n) = 0;

  /// Command outcomes. GetOutcome: kNotFound when the command was never run.
  /// PutOutcome of a known id keeps the first outcome (OK).
  virtual Status PutOutcome(const core::CommandOutcome& o) = 0;
  virtual Result<core::CommandOutcome> GetOutcome(const std::string& id) = 0;
  /// Outcomes not yet confirmed by the root, oldest first.
  virtual Result<std::vector<core::CommandOutcome>> ListUnacknowledged() = 0;
  virtual Status MarkAcknowledged(const std::vector<std::string>& ids) = 0;
};
using ClusterStorePtr = std::unique_ptr<ClusterStore>;

/// Opens (creating, mode 0600) the cluster store at the SQLite file `path` and applies its
/// migrations.
Result<ClusterStorePtr> OpenClusterStore(const std::string& path);

}  // namespace canopy::store
