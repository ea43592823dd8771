// GET /api/v1/operations/{id} and GET /api/v1/operations?target=ID.
#include "api/detail/context.h"

namespace canopy::api::detail {
namespace {

Result<net::Response> GetOperation(const ApiDeps& deps, const net::Request& req, const Principal&) {
  auto op = deps.store->operations().Get(req.Param("id"));
  if (!op) return op.error().code == ErrorCode::kNotFound ? Error::NotFound("operation not found")
                                                          : std::move(op).error();
  return JsonResponse(200, ops::OperationToJson(*op));
}

Result<net::Response> ListOperations(const ApiDeps& deps, const net::Request& req, const Principal&) {
  std::string target = req.Query("target");
  std::vector<core::Operation> list;
  if (!target.empty()) {
    if (target.size() > 128) return Error::InvalidArgument("query 'target' is too long");
    CANOPY_ASSIGN_OR_RETURN(list, deps.store->operations().ListByTarget(target));
  } else {
    CANOPY_ASSIGN_OR_RETURN(list, deps.store->operations().List(100));
  }
  Json out = Json::array();
  for (const auto& op : list) out.push_back(ops::OperationToJson(op));
  return JsonResponse(200, out);
}

}  // namespace

std::vector<RouteDef> OperationRoutes() {
  return {
      {"GET", "/api/v1/operations", Access::kAnyUser, ListOperations},
      {"GET", "/api/v1/operations/{id}", Access::kAnyUser, GetOperation},
  };
}

}  // namespace canopy::api::detail
