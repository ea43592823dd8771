// ClusterStore: the persistent state of one `canopyd cluster` (its nodes and their draining flag,
// node tokens, the outcomes of root commands and the jobs placed on its nodes), separate from the
// root's Store. SQLite file in the cluster's data dir (store/sqlite/sqlite_cluster_store.cpp, own
// migrations). Implementations are thread-safe. Like Store, it never invents ids or timestamps.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/result.h"
#include "core/types.h"

namespace canopy::store {

// A job placed on one node of the cluster: `spec` is the desired JobSpec JSON sent to the node
// ({id, command, env, cpu_millis, memory_mib, restart, ports}), `status` the last status the node
// reported for it ({} before the first report).
struct JobPlacement {
  std::string job_id;
  std::string service_id;
  std::string node_id;
  Json spec = Json::object();
  Json status = Json::object();
  TimePoint created_at{};
  TimePoint updated_at{};
};

class ClusterStore {
 public:
  virtual ~ClusterStore() = default;

  /// Runs fn atomically: the calls fn makes on this store join one transaction (nested calls
  /// are savepoints), committed when fn returns OK and rolled back otherwise. Other threads'
  /// calls wait until it ends.
  virtual Status InTransaction(const std::function<Status()>& fn) = 0;

  /// Node registration tokens (hashed). Consume: atomically marks the unused, unexpired token used;
  /// otherwise kUnauthenticated with one message for every case.
  virtual Status CreateNodeToken(const core::NodeToken& t) = 0;
  virtual Result<core::NodeToken> ConsumeNodeToken(const std::string& token_hash,
                                                   TimePoint now) = 0;

  /// Nodes. kNotFound when absent; List ordered by registered_at, then id.
  virtual Status CreateNode(const core::NodeRecord& n) = 0;
  virtual Result<core::NodeRecord> GetNode(const std::string& id) = 0;
  virtual Result<std::vector<core::NodeRecord>> ListNodes() = 0;
  /// Writes hostname, address, resources and last_heartbeat of an existing node.
  virtual Status UpdateNode(const core::NodeRecord& n) = 0;
  /// The draining flag of a node (kept apart from NodeRecord; UpdateNode leaves it alone).
  /// SetNodeDraining: kNotFound when the node is absent. ListDrainingNodes: ids, ordered by id.
  virtual Status SetNodeDraining(const std::string& id, bool draining) = 0;
  virtual Result<std::vector<std::string>> ListDrainingNodes() = 0;

  /// Command outcomes. GetOutcome: kNotFound when the command was never run.
  /// PutOutcome of a known id keeps the first outcome (OK).
  virtual Status PutOutcome(const core::CommandOutcome& o) = 0;
  virtual Result<core::CommandOutcome> GetOutcome(const std::string& id) = 0;
  /// Outcomes not yet confirmed by the root, oldest first.
  virtual Result<std::vector<core::CommandOutcome>> ListUnacknowledged() = 0;
  virtual Status MarkAcknowledged(const std::vector<std::string>& ids) = 0;

  /// Job placements. CreateJob: kAlreadyExists for a known job_id. GetJob: kNotFound when absent.
  /// ListJobs ordered by created_at, then job_id ("" node_id = every node).
  /// UpdateJobStatus: kNotFound when the job is unknown or not on that node.
  /// MoveJob: puts a job of `from_node` on `to_node` and resets its status to {} (kNotFound when
  /// the job is unknown or not on `from_node`). DeleteJob: kNotFound when absent.
  virtual Status CreateJob(const JobPlacement& j) = 0;
  virtual Result<JobPlacement> GetJob(const std::string& job_id) = 0;
  virtual Result<std::vector<JobPlacement>> ListJobs(const std::string& node_id = "") = 0;
  virtual Status UpdateJobStatus(const std::string& job_id, const std::string& node_id,
                                 const Json& status, TimePoint at) = 0;
  virtual Status MoveJob(const std::string& job_id, const std::string& from_node,
                         const std::string& to_node, TimePoint at) = 0;
  virtual Status DeleteJob(const std::string& job_id) = 0;
};
using ClusterStorePtr = std::unique_ptr<ClusterStore>;

/// Opens (creating, mode 0600) the cluster store at the SQLite file `path` and applies its
/// migrations.
Result<ClusterStorePtr> OpenClusterStore(const std::string& path);

}  // namespace canopy::store
