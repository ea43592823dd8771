// /healthz, /metrics, /api/v1/openapi.json and the test operation route.
#include "api/detail/context.h"

namespace canopy::api::detail {

std::vector<RouteDef> SystemRoutes(std::shared_ptr<net::Metrics> metrics,
                                   control::Operations* ops) {
  auto healthz = [](const net::Request&, const Principal&) -> Result<net::Response> {
    return JsonResponse(200, {{"status", "ok"}});
  };
  auto metrics_text = [metrics](const net::Request&, const Principal&) -> Result<net::Response> {
    std::string text = metrics ? metrics->RenderPrometheus() : std::string();
    return net::Response::Text(200, std::move(text), "text/plain; version=0.0.4");
  };
  auto openapi = [](const net::Request&, const Principal&) -> Result<net::Response> {
    return net::Response::Text(200, OpenApiDocument(), "application/json");
  };
  // Starts a "test.steps" operation (only when the root runs with --enable-test-ops).
  auto test_op = [ops](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    control::TestOperationRequest r;
    CANOPY_ASSIGN_OR_RETURN(r.steps, GetInt(body, "steps", 1, 20));
    CANOPY_ASSIGN_OR_RETURN(auto step_ms, GetOptInt(body, "step_ms", 0, 60000));
    r.step_ms = step_ms.value_or(0);
    CANOPY_ASSIGN_OR_RETURN(r.fail_at, GetOptInt(body, "fail_at", 0, 19));
    CANOPY_ASSIGN_OR_RETURN(r.transient_failures, GetOptInt(body, "transient_failures", 0, 5));
    CANOPY_ASSIGN_OR_RETURN(auto started, ops->StartTest(r));
    return JsonResponse(202,
                        {{"operation_id", started.operation_id}, {"target_id", started.target_id}});
  };
  return {
      {"GET", "/healthz", Access::kPublic, healthz, nullptr, false, true},
      {"GET", "/metrics", Access::kAdmin, metrics_text},
      {"GET", "/api/v1/openapi.json", Access::kPublic, openapi},
      {"POST", "/api/v1/test/operations", Access::kAdmin, test_op, nullptr, true},
  };
}

}  // namespace canopy::api::detail
