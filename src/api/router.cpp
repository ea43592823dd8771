// Route table, authentication and role enforcement for every route.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "api/api.h"
#include "api/detail/context.h"

namespace canopy::api {
namespace {

using detail::Principal;
using detail::RouteDef;

std::vector<RouteDef> AllRoutes(const ApiOptions& options) {
  std::vector<RouteDef> all;
  for (auto group : {detail::SystemRoutes, detail::AuthRoutes, detail::UserRoutes,
                     detail::ProviderRoutes, detail::CredentialRoutes, detail::OperationRoutes,
                     detail::ClusterRoutes, detail::OfferRoutes, detail::BrokerRoutes,
                     detail::ServiceRoutes}) {
    for (auto& r : group()) {
      if (r.test_only && !options.enable_test_ops) continue;
      all.push_back(r);
    }
  }
  return all;
}

bool Allowed(Access access, const Principal& p) {
  auto has = [&](core::Role r) { return std::find(p.roles.begin(), p.roles.end(), r) != p.roles.end(); };
  if (has(core::Role::kAdmin)) return true;
  switch (access) {
    case Access::kPublic:
    case Access::kAdapter:
    case Access::kAnyUser: return true;
    case Access::kAdmin: return false;
    case Access::kInfra: return has(core::Role::kInfra);
    case Access::kApp: return has(core::Role::kApp);
    case Access::kInfraOrApp: return has(core::Role::kInfra) || has(core::Role::kApp);
  }
  return false;
}

Result<Principal> Authenticate(const ApiDeps& deps, const net::Request& req) {
  std::string h = req.Header("authorization");
  if (h.empty()) return Error::Unauthenticated("missing bearer token");
  if (h.size() < 8 || (h.rfind("Bearer ", 0) != 0 && h.rfind("bearer ", 0) != 0)) {
    return Error::Unauthenticated("authorization header must be 'Bearer <token>'");
  }
  CANOPY_ASSIGN_OR_RETURN(auth::Claims claims, deps.jwt->Verify(h.substr(7), deps.clock->Now()));
  // Roles come from the store, so deleting a user or changing roles takes effect at once.
  auto user = deps.store->users().Get(claims.subject);
  if (!user) {
    if (user.error().code == ErrorCode::kNotFound) return Error::Unauthenticated("user no longer exists");
    return std::move(user).error();
  }
  return Principal{user->id, user->username, user->roles};
}

}  // namespace

std::vector<RouteInfo> RouteTable(const ApiOptions& options) {
  std::vector<RouteInfo> out;
  for (const auto& r : AllRoutes(options)) out.push_back({r.method, r.pattern, r.access});
  return out;
}

std::shared_ptr<net::Router> BuildRouter(const ApiDeps& deps, RouterScope scope) {
  auto router = std::make_shared<net::Router>();
  for (const RouteDef& def : AllRoutes(deps.options)) {
    if (scope == RouterScope::kTiers && !def.tier) continue;
    if (def.async_fn != nullptr) {
      router->AddAsync(def.method, def.pattern,
                       [deps, def](const net::Request& req, net::Responder respond) {
        Principal principal;
        if (def.access != Access::kPublic && def.access != Access::kAdapter) {
          auto p = Authenticate(deps, req);
          if (!p) return respond(net::ErrorResponse(p.error()));
          if (!Allowed(def.access, *p)) {
            return respond(net::ErrorResponse(Error::PermissionDenied(
                fmt::format("your roles do not allow {} {}", def.method, def.pattern))));
          }
          principal = std::move(*p);
        }
        def.async_fn(deps, req, principal, std::move(respond));
      });
      continue;
    }
    router->Add(def.method, def.pattern, [deps, def](const net::Request& req) -> net::Response {
      Principal principal;
      if (def.access != Access::kPublic && def.access != Access::kAdapter) {
        auto p = Authenticate(deps, req);
        if (!p) return net::ErrorResponse(p.error());
        if (!Allowed(def.access, *p)) {
          return net::ErrorResponse(Error::PermissionDenied(
              fmt::format("your roles do not allow {} {}", def.method, def.pattern)));
        }
        principal = std::move(*p);
      }
      auto r = def.fn(deps, req, principal);
      if (!r) return detail::RenderHandlerError(def.pattern, r.error());
      return std::move(*r);
    });
  }
  detail::StartClusterChecks(deps);
  return router;
}

namespace detail {

Result<Json> ParseBody(const net::Request& req) { return ParseJsonObject(req.body); }

net::Response RenderHandlerError(const char* pattern, const Error& e) {
  if (e.code == ErrorCode::kInternal) {
    SPDLOG_ERROR("Request failed route={} error={}", pattern, e.message);
    return net::ErrorResponse(Error::Internal("internal error"));
  }
  return net::ErrorResponse(e);
}

namespace {
bool IsAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
}  // namespace

bool IsValidName(std::string_view s) {
  if (s.empty() || s.size() > 64 || !IsAlnum(s[0])) return false;
  for (char c : s) {
    if (!IsAlnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

bool IsValidTypeName(std::string_view s) {
  if (s.empty() || s.size() > 32 || s[0] < 'a' || s[0] > 'z') return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool IsValidHttpUrl(std::string_view s) {
  std::string_view rest;
  if (s.rfind("http://", 0) == 0) {
    rest = s.substr(7);
  } else if (s.rfind("https://", 0) == 0) {
    rest = s.substr(8);
  } else {
    return false;
  }
  size_t host_end = rest.find('/');
  std::string_view authority = rest.substr(0, host_end);
  if (authority.empty()) return false;
  for (char c : authority) {
    bool ok = IsAlnum(c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
    if (!ok) return false;
  }
  for (char c : s) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return false;
  }
  return true;
}

std::string Iso(TimePoint t) { return FormatRfc3339(t); }

core::ProviderStatus StatusOf(const ApiDeps& deps, const core::ProviderRecord& p) {
  auto limit = deps.options.heartbeat_interval * deps.options.missed_heartbeats_for_down;
  return deps.clock->Now() - p.last_seen <= limit ? core::ProviderStatus::kLive
                                                  : core::ProviderStatus::kDown;
}

Result<core::ProviderRecord> FindLiveAdapter(const ApiDeps& deps, const std::string& type) {
  CANOPY_ASSIGN_OR_RETURN(auto all, deps.store->providers().List());
  const core::ProviderRecord* best = nullptr;
  for (const auto& p : all) {
    if (p.type != type || StatusOf(deps, p) != core::ProviderStatus::kLive) continue;
    if (best == nullptr || p.last_seen > best->last_seen) best = &p;
  }
  if (best == nullptr) {
    return Error::FailedPrecondition(fmt::format("no live provider adapter of type '{}'", type));
  }
  return *best;
}

}  // namespace detail
}  // namespace canopy::api
