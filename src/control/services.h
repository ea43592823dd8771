// Services: what application providers ask of the root (create, import an Oakestra SLA, deploy,
// undeploy, scale, delete). Calls change only the desired state (services rows) and ring the
// scheduler's bell; the scheduler (src/scheduler) makes the instances follow. Thread-safe.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "auth/secret_box.h"
#include "common/clock.h"
#include "common/ids.h"
#include "control/service_board.h"
#include "control/service_specs.h"
#include "core/types.h"
#include "store/store.h"

namespace canopy::control {

// A service with what its rendering needs.
struct ServiceView {
  core::Service service;
  std::vector<core::ServiceInstance> instances;
  std::map<std::string, std::string> node_workers;  // node id -> worker id (cloud workers)
};

class Services {
 public:
  // `secrets` seals services' `secret_env` (null: services with secret values are refused).
  Services(store::Store& store, ClockPtr clock, IdGeneratorPtr ids, ServiceBoard& board,
           const auth::SecretBox* secrets = nullptr);

  // kInvalidArgument when spec.cluster_id names no cluster; kAlreadyExists for a taken name.
  Result<ServiceView> Create(const ServiceRequest& r, const std::string& user_id);
  // All or nothing: one name taken -> nothing is created.
  Result<std::vector<ServiceView>> Import(const std::vector<ServiceRequest>& requests,
                                          const std::string& user_id);
  Result<std::vector<ServiceView>> List();
  Result<ServiceView> Get(const std::string& id);  // kNotFound "service not found"
  Result<ServiceView> Deploy(const std::string& id, std::optional<int64_t> replicas);
  Result<ServiceView> Undeploy(const std::string& id);
  Result<ServiceView> Scale(const std::string& id, int64_t replicas);
  // kConflict while deployed or while instances are still being removed.
  Status Delete(const std::string& id, const std::string& user_id);

 private:
  Result<ServiceView> View(core::Service s);
  // A new row; `secret_env` of the request sealed (`secret_env_sealed`, the service id as
  // associated data) with only its names kept in clear (`secret_env_keys`).
  Result<core::Service> NewService(const ServiceRequest& r, const std::string& user_id);
  Result<std::map<std::string, std::string>> NodeWorkers();
  Status CheckCluster(const Json& spec);
  Result<ServiceView> Change(const std::string& id, const std::function<void(core::Service&)>& f,
                             const char* what);

  store::Store& store_;
  ClockPtr clock_;
  IdGeneratorPtr ids_;
  ServiceBoard& board_;
  const auth::SecretBox* secrets_;
};

}  // namespace canopy::control
