// Broker routes: create/delete cloud clusters, add workers, worker actions. The checks, the
// desired state and the operation are control::CloudClusters'; src/broker runs the operations.
#include "api/detail/context.h"
#include "api/render.h"

namespace canopy::api::detail {
namespace {

// instance_type, image and disk_gb of a body; fields it lacks keep `defaults`.
Result<control::MachineSpec> ReadMachineSpec(const Json& body, control::MachineSpec m) {
  CANOPY_ASSIGN_OR_RETURN(auto type, GetOptString(body, "instance_type", 128));
  CANOPY_ASSIGN_OR_RETURN(auto image, GetOptString(body, "image", 256));
  CANOPY_ASSIGN_OR_RETURN(auto disk, GetOptInt(body, "disk_gb", 1, 65536));
  if (type) m.instance_type = *type;
  if (image) m.image = *image;
  if (disk) m.disk_gb = *disk;
  return m;
}

Status RequireMachine(const control::MachineSpec& m) {
  if (m.instance_type.empty()) return Error::InvalidArgument("field 'instance_type' is required");
  if (m.image.empty()) return Error::InvalidArgument("field 'image' is required");
  return OkStatus();
}

Result<control::ClusterRequest> ParseClusterRequest(const Json& body) {
  control::ClusterRequest r;
  CANOPY_ASSIGN_OR_RETURN(r.name, GetString(body, "name", 64));
  CANOPY_TRY(CheckName(r.name, "name"));
  CANOPY_ASSIGN_OR_RETURN(r.credential, GetString(body, "credential_id", 64));
  CANOPY_ASSIGN_OR_RETURN(r.region, GetString(body, "region", 64));
  CANOPY_ASSIGN_OR_RETURN(r.provider, GetOptString(body, "provider", 32));
  CANOPY_ASSIGN_OR_RETURN(r.machine, ReadMachineSpec(body, control::MachineSpec{}));
  CANOPY_TRY(RequireMachine(r.machine));
  if (body.contains("workers") && !body["workers"].is_null()) {
    CANOPY_ASSIGN_OR_RETURN(Json w, GetObject(body, "workers"));
    CANOPY_ASSIGN_OR_RETURN(r.worker_count, GetInt(w, "count", 0, control::kMaxWorkersPerCall));
    CANOPY_ASSIGN_OR_RETURN(r.worker_machine, ReadMachineSpec(w, r.machine));
  }
  return r;
}

}  // namespace

std::vector<RouteDef> BrokerRoutes(control::CloudClusters* clusters) {
  auto create = [clusters](const net::Request& req, const Principal& p) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    CANOPY_ASSIGN_OR_RETURN(auto r, ParseClusterRequest(body));
    CANOPY_ASSIGN_OR_RETURN(auto started, clusters->Create(r, p.user_id));
    return JsonResponse(
        202, {{"cluster", ClusterToJson(started.cluster)}, {"operation_id", started.operation.id}});
  };
  auto del = [clusters](const net::Request& req, const Principal& p) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto started, clusters->Delete(req.Param("id"), p.user_id));
    return JsonResponse(
        202, {{"cluster", ClusterToJson(started.cluster)}, {"operation_id", started.operation.id}});
  };
  auto add = [clusters](const net::Request& req, const Principal& p) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    CANOPY_ASSIGN_OR_RETURN(int64_t count, GetInt(body, "count", 1, control::kMaxWorkersPerCall));
    CANOPY_ASSIGN_OR_RETURN(auto m, ReadMachineSpec(body, control::MachineSpec{}));
    CANOPY_ASSIGN_OR_RETURN(auto batch, clusters->AddWorkers(req.Param("id"), count, m, p.user_id));
    Json workers = Json::array();
    for (const auto& w : batch.workers) workers.push_back(WorkerToJson(w));
    return JsonResponse(202, {{"workers", workers}, {"operation_id", batch.operation.id}});
  };
  auto list = [clusters](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto workers, clusters->ListWorkers(req.Param("id")));
    CANOPY_ASSIGN_OR_RETURN(auto systems, clusters->NodeSystems(req.Param("id")));
    Json out = Json::array();
    for (const auto& w : workers) out.push_back(WorkerToJson(w, systems));
    return JsonResponse(200, out);
  };
  auto get = [clusters](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto w, clusters->GetWorker(req.Param("id"), req.Param("wid")));
    CANOPY_ASSIGN_OR_RETURN(auto systems, clusters->NodeSystems(req.Param("id")));
    return JsonResponse(200, WorkerToJson(w, systems));
  };
  auto action = [clusters](core::WorkerAction a) -> Handler {
    return [clusters, a](const net::Request& req, const Principal& p) -> Result<net::Response> {
      CANOPY_ASSIGN_OR_RETURN(auto started,
                              clusters->Act(req.Param("id"), req.Param("wid"), a, p.user_id));
      return JsonResponse(
          202, {{"worker", WorkerToJson(started.worker)}, {"operation_id", started.operation.id}});
    };
  };
  using core::WorkerAction;
  return {
      {"POST", "/api/v1/clusters", Access::kInfra, create},
      {"DELETE", "/api/v1/clusters/{id}", Access::kInfra, del},
      {"POST", "/api/v1/clusters/{id}/workers", Access::kInfra, add},
      {"GET", "/api/v1/clusters/{id}/workers", Access::kInfraOrApp, list},
      {"GET", "/api/v1/clusters/{id}/workers/{wid}", Access::kInfraOrApp, get},
      {"POST", "/api/v1/clusters/{id}/workers/{wid}/stop", Access::kApp,
       action(WorkerAction::kStop)},
      {"POST", "/api/v1/clusters/{id}/workers/{wid}/restart", Access::kApp,
       action(WorkerAction::kRestart)},
      {"POST", "/api/v1/clusters/{id}/workers/{wid}/terminate", Access::kApp,
       action(WorkerAction::kTerminate)},
      {"POST", "/api/v1/clusters/{id}/workers/{wid}/recreate", Access::kApp,
       action(WorkerAction::kRecreate)},
      {"DELETE", "/api/v1/clusters/{id}/workers/{wid}", Access::kInfra,
       action(WorkerAction::kDelete)},
  };
}

}  // namespace canopy::api::detail
