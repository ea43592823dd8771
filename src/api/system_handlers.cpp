// /healthz, /metrics, /api/v1/openapi.json and the test operation route.
#include <fmt/format.h>

#include "api/detail/context.h"

namespace canopy::api::detail {
namespace {

Result<net::Response> Healthz(const ApiDeps&, const net::Request&, const Principal&) {
  return JsonResponse(200, {{"status", "ok"}});
}

Result<net::Response> MetricsText(const ApiDeps& deps, const net::Request&, const Principal&) {
  std::string text = deps.metrics ? deps.metrics->RenderPrometheus() : std::string();
  return net::Response::Text(200, std::move(text), "text/plain; version=0.0.4");
}

Result<net::Response> OpenApi(const ApiDeps&, const net::Request&, const Principal&) {
  return net::Response::Text(200, OpenApiDocument(), "application/json");
}

// Starts a "test.steps" operation (only when the root runs with --enable-test-ops).
Result<net::Response> CreateTestOperation(const ApiDeps& deps, const net::Request& req,
                                          const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
  CANOPY_ASSIGN_OR_RETURN(int64_t steps, GetInt(body, "steps", 1, 20));
  CANOPY_ASSIGN_OR_RETURN(auto step_ms, GetOptInt(body, "step_ms", 0, 60000));
  CANOPY_ASSIGN_OR_RETURN(auto fail_at, GetOptInt(body, "fail_at", 0, 19));
  CANOPY_ASSIGN_OR_RETURN(auto transient, GetOptInt(body, "transient_failures", 0, 5));
  Json data = {{"steps", steps},
               {"step_ms", step_ms.value_or(0)},
               {"marker_file", deps.options.test_ops_marker_file}};
  if (fail_at) data["fail_at"] = *fail_at;
  if (transient) data["transient_failures"] = *transient;
  std::string target = deps.ids->NewId("tst");
  core::Operation op;
  CANOPY_TRY(deps.store->Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(op, deps.engine->Enqueue(tx, "test.steps", target, data));
    return OkStatus();
  }));
  deps.engine->Wake();
  return JsonResponse(202, {{"operation_id", op.id}, {"target_id", target}});
}

}  // namespace

std::vector<RouteDef> SystemRoutes() {
  return {
      {"GET", "/healthz", Access::kPublic, Healthz, false, nullptr, true},
      {"GET", "/metrics", Access::kAdmin, MetricsText},
      {"GET", "/api/v1/openapi.json", Access::kPublic, OpenApi},
      {"POST", "/api/v1/test/operations", Access::kAdmin, CreateTestOperation, true},
  };
}

}  // namespace canopy::api::detail
