// /api/v1/services (role app): create, import an Oakestra SLA, list, show, deploy, undeploy,
// scale, delete. The desired state is control::Services'; the scheduler makes instances follow.
#include "api/detail/context.h"
#include "api/render.h"
#include "control/service_specs.h"

namespace canopy::api::detail {
namespace {

Result<std::optional<int64_t>> ReplicasOf(const net::Request& req, bool required) {
  CANOPY_ASSIGN_OR_RETURN(Json body, ParseOptionalBody(req));
  if (required) {
    CANOPY_ASSIGN_OR_RETURN(int64_t n, GetInt(body, "replicas", 0, control::kMaxReplicas));
    return std::optional<int64_t>(n);
  }
  return GetOptInt(body, "replicas", 0, control::kMaxReplicas);
}

}  // namespace

std::vector<RouteDef> ServiceRoutes(control::Services* services) {
  auto create = [services](const net::Request& req, const Principal& p) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    CANOPY_ASSIGN_OR_RETURN(auto r, control::ParseServiceRequest(body));
    CANOPY_ASSIGN_OR_RETURN(auto v, services->Create(r, p.user_id));
    return JsonResponse(201, ServiceToJson(v));
  };
  auto import = [services](const net::Request& req, const Principal& p) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    CANOPY_ASSIGN_OR_RETURN(auto requests, control::ParseOakestraSla(body));
    CANOPY_ASSIGN_OR_RETURN(auto made, services->Import(requests, p.user_id));
    Json out = Json::array();
    for (const auto& v : made) out.push_back(ServiceToJson(v));
    return JsonResponse(201, {{"services", out}});
  };
  auto list = [services](const net::Request&, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto all, services->List());
    Json out = Json::array();
    for (const auto& v : all) out.push_back(ServiceToJson(v));
    return JsonResponse(200, out);
  };
  auto get = [services](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto v, services->Get(req.Param("id")));
    return JsonResponse(200, ServiceToJson(v));
  };
  auto deploy = [services](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto replicas, ReplicasOf(req, false));
    CANOPY_ASSIGN_OR_RETURN(auto v, services->Deploy(req.Param("id"), replicas));
    return JsonResponse(202, ServiceToJson(v));
  };
  auto undeploy = [services](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto v, services->Undeploy(req.Param("id")));
    return JsonResponse(202, ServiceToJson(v));
  };
  auto scale = [services](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto replicas, ReplicasOf(req, true));
    CANOPY_ASSIGN_OR_RETURN(auto v, services->Scale(req.Param("id"), *replicas));
    return JsonResponse(202, ServiceToJson(v));
  };
  auto del = [services](const net::Request& req, const Principal& p) -> Result<net::Response> {
    CANOPY_TRY(services->Delete(req.Param("id"), p.user_id));
    return NoContent();
  };
  return {
      {"POST", "/api/v1/services", Access::kApp, create},
      {"POST", "/api/v1/services/import", Access::kApp, import},
      {"GET", "/api/v1/services", Access::kApp, list},
      {"GET", "/api/v1/services/{id}", Access::kApp, get},
      {"DELETE", "/api/v1/services/{id}", Access::kApp, del},
      {"POST", "/api/v1/services/{id}/deploy", Access::kApp, deploy},
      {"POST", "/api/v1/services/{id}/undeploy", Access::kApp, undeploy},
      {"POST", "/api/v1/services/{id}/scale", Access::kApp, scale},
  };
}

}  // namespace canopy::api::detail
