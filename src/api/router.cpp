// Route table, authentication and role enforcement for every route.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "api/api.h"
#include "api/detail/context.h"
#include "control/names.h"

namespace canopy::api {
namespace {

using detail::Principal;
using detail::RouteDef;

std::vector<RouteDef> AllRoutes(const ApiServices& s, const ApiOptions& options) {
  std::vector<RouteDef> all;
  for (auto&& group :
       {detail::SystemRoutes(s.metrics, s.operations), detail::AuthRoutes(s.users),
        detail::UserRoutes(s.users), detail::ProviderRoutes(s.adapters),
        detail::CredentialRoutes(s.credentials), detail::OperationRoutes(s.operations),
        detail::ClusterRoutes(s.tier), detail::OfferRoutes(s.clouds),
        detail::BrokerRoutes(s.cloud_clusters), detail::ServiceRoutes(s.services)}) {
    for (const auto& r : group) {
      if (r.test_only && !options.enable_test_ops) continue;
      all.push_back(r);
    }
  }
  return all;
}

bool Allowed(Access access, const Principal& p) {
  if (p.Has(core::Role::kAdmin)) return true;
  switch (access) {
    case Access::kPublic:
    case Access::kAdapter:
    case Access::kAnyUser:
      return true;
    case Access::kAdmin:
      return false;
    case Access::kInfra:
      return p.Has(core::Role::kInfra);
    case Access::kApp:
      return p.Has(core::Role::kApp);
    case Access::kInfraOrApp:
      return p.Has(core::Role::kInfra) || p.Has(core::Role::kApp);
  }
  return false;
}

// The caller of a route that needs a user: authenticated and allowed, or the error to answer.
Result<Principal> Admit(control::Users* users, const RouteDef& def, const net::Request& req) {
  Principal principal;
  if (def.access == Access::kPublic || def.access == Access::kAdapter) return principal;
  std::string h = req.Header("authorization");
  if (h.empty()) return Error::Unauthenticated("missing bearer token");
  if (h.size() < 8 || (h.rfind("Bearer ", 0) != 0 && h.rfind("bearer ", 0) != 0)) {
    return Error::Unauthenticated("authorization header must be 'Bearer <token>'");
  }
  CANOPY_ASSIGN_OR_RETURN(principal, users->Authenticate(h.substr(7)));
  if (!Allowed(def.access, principal)) {
    return Error::PermissionDenied(
        fmt::format("your roles do not allow {} {}", def.method, def.pattern));
  }
  return principal;
}

}  // namespace

std::vector<RouteInfo> RouteTable(const ApiOptions& options) {
  std::vector<RouteInfo> out;
  for (const auto& r : AllRoutes(ApiServices{}, options))
    out.push_back({r.method, r.pattern, r.access});
  return out;
}

std::shared_ptr<net::Router> BuildRouter(const ApiServices& services, const ApiOptions& options,
                                         RouterScope scope) {
  auto router = std::make_shared<net::Router>();
  control::Users* users = services.users;
  for (const RouteDef& def : AllRoutes(services, options)) {
    if (scope == RouterScope::kTiers && !def.tier) continue;
    if (def.async_fn) {
      router->AddAsync(def.method, def.pattern,
                       [users, def](const net::Request& req, net::Responder respond) {
                         auto p = Admit(users, def, req);
                         if (!p) return respond(detail::RenderHandlerError(def.pattern, p.error()));
                         def.async_fn(req, *p, std::move(respond));
                       });
      continue;
    }
    std::shared_ptr<net::WorkLane> lane = def.lane == detail::Lane::kKdf ? services.kdf_lane
                                          : def.lane == detail::Lane::kProvider
                                              ? services.provider_lane
                                              : nullptr;
    if (lane != nullptr) {
      // Admitted on the server's worker (cheap), run on the lane, refused at once when full.
      router->AddAsync(
          def.method, def.pattern,
          [users, def, lane](const net::Request& req, net::Responder respond) {
            auto p = Admit(users, def, req);
            if (!p) return respond(detail::RenderHandlerError(def.pattern, p.error()));
            auto shared = std::make_shared<net::Responder>(std::move(respond));
            bool taken = lane->TrySubmit([def, req, principal = *p, shared] {
              auto r = def.fn(req, principal);
              (*shared)(r ? std::move(*r) : detail::RenderHandlerError(def.pattern, r.error()));
            });
            if (!taken) {
              SPDLOG_WARN("Request refused: lane full lane={} route={}", lane->name(), def.pattern);
              net::Response busy = detail::RenderHandlerError(
                  def.pattern, Error::Unavailable("the server is busy with requests of this kind; "
                                                  "retry shortly"));
              busy.headers.emplace_back("Retry-After", "1");
              (*shared)(std::move(busy));
            }
          });
      continue;
    }
    router->Add(def.method, def.pattern, [users, def](const net::Request& req) -> net::Response {
      auto p = Admit(users, def, req);
      if (!p) return detail::RenderHandlerError(def.pattern, p.error());
      auto r = def.fn(req, *p);
      if (!r) return detail::RenderHandlerError(def.pattern, r.error());
      return std::move(*r);
    });
  }
  return router;
}

namespace detail {

Result<Json> ParseBody(const net::Request& req) { return ParseJsonObject(req.body); }

Result<Json> ParseOptionalBody(const net::Request& req) {
  if (req.body.empty()) return Json::object();
  return ParseBody(req);
}

std::string BearerToken(const net::Request& req) {
  std::string h = req.Header("authorization");
  if (h.rfind("Bearer ", 0) != 0 || h.size() <= 7) return "";
  return h.substr(7);
}

Status CheckName(const std::string& value, const char* field) {
  if (control::IsValidName(value)) return OkStatus();
  return Error::InvalidArgument(fmt::format("field '{}' must be {}", field, control::kNameRule));
}

net::Response RenderHandlerError(const char* pattern, const Error& e) {
  if (e.code == ErrorCode::kInternal) {
    SPDLOG_ERROR("Request failed route={} error={}", pattern, e.message);
    return net::ErrorResponse(Error::Internal("internal error"));
  }
  return net::ErrorResponse(e);
}

}  // namespace detail
}  // namespace canopy::api
