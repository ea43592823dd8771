// The operation kinds the root runs (ops/engine.h), by name as the operations table stores them.
// Request handlers (control/cloud_clusters.h) enqueue them; src/broker registers and runs them.
//   cluster.create     target cluster id; data {cluster_id, credential_id, region,
//                      workers?:{count,instance_type,image,disk_gb}}
//   cluster.delete     target cluster id; data {cluster_id}
//   workers.provision  target cluster id (add) or worker id; data {cluster_id, worker_ids, action:
//                      "add"|"restart"|"recreate", old_handles?:{worker id: handle}, parent?}
//   worker.shutdown    target worker id; data {cluster_id, worker_id,
//   action:"stop"|"terminate"|"delete"}
#pragma once

namespace canopy::control {

inline constexpr const char* kOpClusterCreate = "cluster.create";
inline constexpr const char* kOpClusterDelete = "cluster.delete";
inline constexpr const char* kOpWorkersProvision = "workers.provision";
inline constexpr const char* kOpWorkerShutdown = "worker.shutdown";

// workers.provision's action for new workers (restart and recreate use WorkerActionName).
inline constexpr const char* kProvisionAdd = "add";

}  // namespace canopy::control
