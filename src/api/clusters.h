// In-process API of the root's cluster tier, for the broker (ops) and tests: pairing tokens for
// existing cluster rows, the command queue delivered over each cluster's link, the OFFLINE check
// and the cluster JSON served by GET /api/v1/clusters. Protocol: src/cluster/README.md.
// Thread-safe (uses only the thread-safe members of ApiDeps).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "api/api.h"
#include "common/json.h"
#include "core/types.h"

namespace canopy::api {

struct ClusterTokenGrant {
  std::string token;  // the plaintext token, shown once ("cct_..."); only its hash is stored
  std::string cluster_id;
  TimePoint expires_at{};
};

// Creates a single-use pairing token for the existing cluster row `cluster_id` (e.g. a cloud
// cluster the broker is installing: pass the token to `canopyd cluster --token`). Pairing with it
// moves the cluster to ACTIVE. kNotFound for an unknown cluster. ttl 0 = options.cluster_token_ttl.
Result<ClusterTokenGrant> CreateClusterToken(const ApiDeps& deps, const std::string& cluster_id,
                                             std::chrono::seconds ttl = std::chrono::seconds(0),
                                             const std::string& created_by = "broker");

// Command types the cluster daemon understands today (the lead adds worker commands):
//   "ping"              args {}                  -> result {"pong": true, "cluster_id": ...}
//   "create_node_token" args {ttl_seconds?: int}  -> result {"token": "cnt_...", "expires_at": RFC3339}
inline constexpr const char* kCommandPing = "ping";
inline constexpr const char* kCommandCreateNodeToken = "create_node_token";

// Persists a command for `cluster_id` and wakes its parked link call. Delivered at least once on
// the cluster's link until the cluster acknowledges it with a result (state succeeded/failed).
// The cluster executes each command id once and repeats the same result on re-delivery. Call it
// outside a store transaction (a parked link call is woken at once and must see the row).
// kNotFound for an unknown cluster; kInvalidArgument for a malformed type (1-64 of [a-z0-9_.-]).
Result<core::ClusterCommand> EnqueueClusterCommand(const ApiDeps& deps,
                                                   const std::string& cluster_id,
                                                   const std::string& type,
                                                   const Json& args = Json::object());
Result<core::ClusterCommand> GetClusterCommand(const ApiDeps& deps, const std::string& command_id);
// Polls GetClusterCommand until the command is no longer pending or `timeout` passes
// (kDeadlineExceeded). Blocks the calling thread.
Result<core::ClusterCommand> WaitClusterCommand(const ApiDeps& deps, const std::string& command_id,
                                                std::chrono::milliseconds timeout);

// Marks OFFLINE every ACTIVE cluster that missed options.missed_links_for_offline link intervals;
// returns their ids. Runs periodically on the hub (BuildRouter starts it); callable any time.
Result<std::vector<std::string>> MarkOfflineClusters(const ApiDeps& deps);

// Re-reads the row, applies `fn` and writes it with compare-and-swap (updated_at = now), retrying
// when a link call, an operation or a background sync wrote in between (kUnavailable after 20
// tries). Errors of `fn` and of the store are returned as they are. Returns the written row.
Result<core::Cluster> MutateCluster(store::Store& s, const Clock& clock, const std::string& id,
                                    const std::function<Status(core::Cluster&)>& fn);
Result<core::Worker> MutateWorker(store::Store& s, const Clock& clock, const std::string& id,
                                  const std::function<Status(core::Worker&)>& fn);

// The JSON of a cluster as served by the API (never its key, never its sealed identity).
Json ClusterToJson(const core::Cluster& c);
// The JSON of a worker as served by GET /api/v1/clusters/{id}/workers.
Json WorkerToJson(const core::Worker& w);

// Operation kinds of the broker (registered by src/broker; enqueued by the cluster handlers).
//   cluster.create     target cluster id; data {cluster_id, workers?:{count,instance_type,image,disk_gb}}
//   cluster.delete     target cluster id; data {cluster_id}
//   workers.provision  target cluster id (add) or worker id; data {cluster_id, worker_ids, action:
//                      "add"|"restart"|"recreate", old_handles?:{worker id: handle}, parent?}
//   worker.shutdown    target worker id; data {cluster_id, worker_id, action:"stop"|"terminate"|"delete"}
inline constexpr const char* kOpClusterCreate = "cluster.create";
inline constexpr const char* kOpClusterDelete = "cluster.delete";
inline constexpr const char* kOpWorkersProvision = "workers.provision";
inline constexpr const char* kOpWorkerShutdown = "worker.shutdown";

// Creates `count` worker rows (BOOTING) of cluster `c` and their workers.provision operation in
// one transaction through `tx`; `parent` (may be empty) is the cluster.create operation that asked.
struct WorkerBatch {
  std::vector<core::Worker> workers;
  core::Operation operation;
};
Result<WorkerBatch> EnqueueWorkers(const ApiDeps& deps, store::Store& tx, const core::Cluster& c,
                                   int64_t count, const std::string& instance_type,
                                   const std::string& image, int64_t disk_gb,
                                   const std::string& parent);

}  // namespace canopy::api
