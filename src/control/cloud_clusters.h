// CloudClusters: what users ask of the broker, up to the point where an operation takes over:
// create and delete cloud clusters, add workers, and the worker actions of the contract's table.
// Each call checks the request (against the provider's live offers for creates, against the
// transition table for actions), writes the desired state (rows = consent to cost) and its
// operation in one transaction, and returns the operation; src/broker runs it. Thread-safe.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "control/cloud_access.h"
#include "core/types.h"
#include "ops/engine.h"
#include "store/store.h"

namespace canopy::control {

inline constexpr int64_t kMaxWorkersPerCall = 100;

struct MachineSpec {
  std::string instance_type;
  std::string image;
  int64_t disk_gb = 10;
};

struct ClusterRequest {
  std::string name;
  std::string credential;               // id, or name
  std::optional<std::string> provider;  // must match the credential's when given
  std::string region;
  MachineSpec machine;
  int64_t worker_count = 0;
  MachineSpec worker_machine;  // for worker_count > 0
};

struct ClusterStarted {
  core::Cluster cluster;
  core::Operation operation;
};

struct WorkerBatch {
  std::vector<core::Worker> workers;
  core::Operation operation;
};

struct WorkerStarted {
  core::Worker worker;
  core::Operation operation;
};

// Creates `count` BOOTING worker rows of `c` and their workers.provision operation through `tx`
// (in the caller's transaction); `parent` (may be empty) is the cluster.create operation that
// asked. Call queue.Wake() after the commit.
Result<WorkerBatch> EnqueueWorkers(store::Store& tx, IdGenerator& ids, const Clock& clock,
                                   const ops::OperationQueue& queue, const core::Cluster& c,
                                   int64_t count, const MachineSpec& m, const std::string& parent);

class CloudClusters {
 public:
  CloudClusters(store::Store& store, ClockPtr clock, IdGeneratorPtr ids, CloudAccess& clouds,
                ops::OperationQueue& queue);

  // kAlreadyExists for a taken name; kInvalidArgument for what the provider does not offer.
  Result<ClusterStarted> Create(const ClusterRequest& r, const std::string& user_id);
  // kConflict while it is being created or deleted, or while it has billed workers.
  Result<ClusterStarted> Delete(const std::string& cluster_id, const std::string& user_id);
  // `machine` fields left empty take the cluster's. kConflict unless the cluster is a cloud
  // cluster and ACTIVE.
  Result<WorkerBatch> AddWorkers(const std::string& cluster_id, int64_t count, MachineSpec machine,
                                 const std::string& user_id);
  // kConflict (naming the current state) when the table does not allow it.
  Result<WorkerStarted> Act(const std::string& cluster_id, const std::string& worker_id,
                            core::WorkerAction action, const std::string& user_id);
  Result<std::vector<core::Worker>> ListWorkers(const std::string& cluster_id);
  Result<core::Worker> GetWorker(const std::string& cluster_id, const std::string& worker_id);
  // The system each node of the cluster reported (node id -> system), from its last link report.
  Result<std::map<std::string, core::NodeSystem>> NodeSystems(const std::string& cluster_id);

 private:
  Result<core::Cluster> LoadCluster(const std::string& id);
  Status CheckOffers(const OpenedProvider& opened, const std::string& region,
                     const std::vector<MachineSpec>& specs);

  store::Store& store_;
  ClockPtr clock_;
  IdGeneratorPtr ids_;
  CloudAccess& clouds_;
  ops::OperationQueue& queue_;
};

}  // namespace canopy::control
