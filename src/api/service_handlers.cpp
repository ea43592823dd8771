// /api/v1/services (role app): create, import an Oakestra SLA, list, show, deploy, undeploy, scale,
// delete. Handlers change only the desired state (services rows) and ring the scheduler's bell;
// the scheduler (src/scheduler) makes the instances follow.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/detail/context.h"
#include "api/services.h"

namespace canopy::api::detail {
namespace {

Result<std::map<std::string, std::string>> NodeWorkers(const ApiDeps& deps) {
  std::map<std::string, std::string> out;
  CANOPY_ASSIGN_OR_RETURN(auto workers, deps.store->workers().List());
  for (const auto& w : workers) {
    if (!w.node_id.empty()) out[w.node_id] = w.id;
  }
  return out;
}

Result<Json> Render(const ApiDeps& deps, const core::Service& s) {
  CANOPY_ASSIGN_OR_RETURN(auto instances, deps.store->services().ListInstances(s.id));
  CANOPY_ASSIGN_OR_RETURN(auto nw, NodeWorkers(deps));
  return ServiceToJson(s, instances, nw);
}

Result<core::Service> LoadService(const ApiDeps& deps, const std::string& id) {
  auto s = deps.store->services().Get(id);
  if (!s) return NotFoundOr(std::move(s).error(), "service not found");
  return s;
}

Status CheckCluster(const ApiDeps& deps, const Json& spec) {
  if (!spec["cluster_id"].is_string()) return OkStatus();
  auto c = deps.store->clusters().Get(spec["cluster_id"].get<std::string>());
  if (!c && c.error().code == ErrorCode::kNotFound) {
    return Error::InvalidArgument(
        fmt::format("field 'cluster_id': cluster '{}' not found", spec["cluster_id"].get<std::string>()));
  }
  return c ? OkStatus() : Status(std::move(c).error());
}

core::Service NewService(const ApiDeps& deps, const ServiceRequest& r, const Principal& p) {
  core::Service s;
  s.id = deps.ids->NewId("svc");
  s.name = r.name;
  s.spec = r.spec;
  s.replicas = r.replicas;
  s.created_by = p.user_id;
  s.created_at = s.updated_at = deps.clock->Now();
  return s;
}

Result<net::Response> CreateService(const ApiDeps& deps, const net::Request& req, const Principal& p) {
  CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
  CANOPY_ASSIGN_OR_RETURN(ServiceRequest r, ParseServiceRequest(body));
  CANOPY_TRY(CheckCluster(deps, r.spec));
  core::Service s = NewService(deps, r, p);
  CANOPY_TRY(deps.store->services().Create(s));
  SPDLOG_INFO("Created service service={} name={} by={}", s.id, s.name, p.user_id);
  CANOPY_ASSIGN_OR_RETURN(Json out, Render(deps, s));
  return JsonResponse(201, out);
}

Result<net::Response> ImportSla(const ApiDeps& deps, const net::Request& req, const Principal& p) {
  CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
  CANOPY_ASSIGN_OR_RETURN(auto requests, ParseOakestraSla(body));
  std::vector<core::Service> made;
  for (const auto& r : requests) {
    CANOPY_TRY(CheckCluster(deps, r.spec));
    made.push_back(NewService(deps, r, p));
  }
  // All or nothing: one name taken -> nothing is created.
  CANOPY_TRY(deps.store->Transaction([&](store::Store& tx) -> Status {
    for (const auto& s : made) CANOPY_TRY(tx.services().Create(s));
    return OkStatus();
  }));
  Json out = Json::array();
  for (const auto& s : made) {
    SPDLOG_INFO("Imported service service={} name={} by={}", s.id, s.name, p.user_id);
    CANOPY_ASSIGN_OR_RETURN(Json j, Render(deps, s));
    out.push_back(j);
  }
  return JsonResponse(201, {{"services", out}});
}

Result<net::Response> ListServices(const ApiDeps& deps, const net::Request&, const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(auto all, deps.store->services().List());
  CANOPY_ASSIGN_OR_RETURN(auto instances, deps.store->services().ListInstances(""));
  CANOPY_ASSIGN_OR_RETURN(auto nw, NodeWorkers(deps));
  std::map<std::string, std::vector<core::ServiceInstance>> by;
  for (auto& i : instances) by[i.service_id].push_back(std::move(i));
  Json out = Json::array();
  for (const auto& s : all) out.push_back(ServiceToJson(s, by[s.id], nw));
  return JsonResponse(200, out);
}

Result<net::Response> GetService(const ApiDeps& deps, const net::Request& req, const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(core::Service s, LoadService(deps, req.Param("id")));
  CANOPY_ASSIGN_OR_RETURN(Json out, Render(deps, s));
  return JsonResponse(200, out);
}

// Applies `change` to the service row with compare-and-swap (retried on a concurrent write),
// rings the scheduler and answers 202 with the service.
Result<net::Response> Change(const ApiDeps& deps, const std::string& id,
                             const std::function<Status(core::Service&)>& change, const char* what) {
  for (int attempt = 0;; ++attempt) {
    CANOPY_ASSIGN_OR_RETURN(core::Service s, LoadService(deps, id));
    CANOPY_TRY(change(s));
    s.updated_at = deps.clock->Now();
    auto st = deps.store->services().Update(s);
    if (!st && st.error().code == ErrorCode::kConflict && attempt < 5) continue;
    CANOPY_TRY(st);
    ++s.version;
    SPDLOG_INFO("Service {} service={} replicas={} deployed={}", what, s.id, s.replicas, s.deployed);
    deps.service_board->Wake();
    CANOPY_ASSIGN_OR_RETURN(Json out, Render(deps, s));
    return JsonResponse(202, out);
  }
}

Result<std::optional<int64_t>> ReplicasOf(const net::Request& req, bool required) {
  Json body = Json::object();
  if (!req.body.empty()) {
    CANOPY_ASSIGN_OR_RETURN(body, ParseBody(req));
  }
  if (required) {
    CANOPY_ASSIGN_OR_RETURN(int64_t n, GetInt(body, "replicas", 0, kMaxReplicas));
    return std::optional<int64_t>(n);
  }
  return GetOptInt(body, "replicas", 0, kMaxReplicas);
}

Result<net::Response> Deploy(const ApiDeps& deps, const net::Request& req, const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(auto replicas, ReplicasOf(req, false));
  return Change(deps, req.Param("id"), [&](core::Service& s) -> Status {
    s.deployed = true;
    if (replicas) s.replicas = *replicas;
    return OkStatus();
  }, "deploy");
}

Result<net::Response> Undeploy(const ApiDeps& deps, const net::Request& req, const Principal&) {
  return Change(deps, req.Param("id"), [](core::Service& s) -> Status {
    s.deployed = false;
    return OkStatus();
  }, "undeploy");
}

Result<net::Response> Scale(const ApiDeps& deps, const net::Request& req, const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(auto replicas, ReplicasOf(req, true));
  return Change(deps, req.Param("id"), [&](core::Service& s) -> Status {
    s.replicas = *replicas;
    return OkStatus();
  }, "scale");
}

Result<net::Response> DeleteService(const ApiDeps& deps, const net::Request& req, const Principal& p) {
  CANOPY_ASSIGN_OR_RETURN(core::Service s, LoadService(deps, req.Param("id")));
  if (s.deployed) return Error::Conflict("service is deployed; undeploy it first");
  auto st = deps.store->services().Delete(s.id);
  if (!st) {
    if (st.error().code == ErrorCode::kFailedPrecondition) {
      return Error::Conflict("service still has instances being removed; try again shortly");
    }
    return NotFoundOr(std::move(st).error(), "service not found");
  }
  SPDLOG_INFO("Deleted service service={} by={}", s.id, p.user_id);
  deps.service_board->Wake();
  return net::Response{204, "application/json", "", {}};
}

}  // namespace

std::vector<RouteDef> ServiceRoutes() {
  return {
      {"POST", "/api/v1/services", Access::kApp, CreateService},
      {"POST", "/api/v1/services/import", Access::kApp, ImportSla},
      {"GET", "/api/v1/services", Access::kApp, ListServices},
      {"GET", "/api/v1/services/{id}", Access::kApp, GetService},
      {"DELETE", "/api/v1/services/{id}", Access::kApp, DeleteService},
      {"POST", "/api/v1/services/{id}/deploy", Access::kApp, Deploy},
      {"POST", "/api/v1/services/{id}/undeploy", Access::kApp, Undeploy},
      {"POST", "/api/v1/services/{id}/scale", Access::kApp, Scale},
  };
}

}  // namespace canopy::api::detail
