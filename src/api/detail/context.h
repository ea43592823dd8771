// Internal to api/: the handler signature, the caller's identity and shared helpers.
#pragma once

#include <string>
#include <vector>

#include "api/api.h"
#include "common/json.h"
#include "core/types.h"
#include "net/error_mapping.h"
#include "net/http.h"

namespace canopy::api::detail {

struct Principal {
  std::string user_id;
  std::string username;
  std::vector<core::Role> roles;
};

using HandlerFn = Result<net::Response> (*)(const ApiDeps&, const net::Request&, const Principal&);
// A long-poll handler: answers through the Responder, possibly later from another thread.
using AsyncHandlerFn = void (*)(const ApiDeps&, const net::Request&, const Principal&,
                                net::Responder);

struct RouteDef {
  const char* method;
  const char* pattern;
  Access access;
  HandlerFn fn;
  bool test_only = false;
  AsyncHandlerFn async_fn = nullptr;  // when set, used instead of fn
  // Called by the lower tiers (clusters pairing and linking, adapters registering): also served
  // on the root's tier listener (BuildRouter with RouterScope::kTiers).
  bool tier = false;
};

// Handlers, one group per resource (each in its own <resource>_handlers.cpp).
std::vector<RouteDef> SystemRoutes();
std::vector<RouteDef> AuthRoutes();
std::vector<RouteDef> UserRoutes();
std::vector<RouteDef> ProviderRoutes();
std::vector<RouteDef> CredentialRoutes();
std::vector<RouteDef> OperationRoutes();
std::vector<RouteDef> ClusterRoutes();
std::vector<RouteDef> OfferRoutes();
std::vector<RouteDef> BrokerRoutes();
std::vector<RouteDef> ServiceRoutes();
// Starts the hub's periodic OFFLINE check (cluster_handlers.cpp); called by BuildRouter.
void StartClusterChecks(const ApiDeps& deps);
// The response for a failed handler: internal errors are logged and answered bare.
net::Response RenderHandlerError(const char* pattern, const Error& e);

// JSON helpers.
inline net::Response JsonResponse(int status, const Json& j) { return net::Response::FromJson(status, j); }
Result<Json> ParseBody(const net::Request& req);
std::string Iso(TimePoint t);

// Names of users, credentials, clusters: 1-64 of [A-Za-z0-9._-], starting alphanumeric.
bool IsValidName(std::string_view s);
// Provider type names: 1-32 of [a-z0-9_-], starting with a letter.
bool IsValidTypeName(std::string_view s);
// http(s)://host[:port][/path] with no spaces or control characters.
bool IsValidHttpUrl(std::string_view s);

// `e` unless it is kNotFound, then kNotFound with `message` (hides the store's wording).
Error NotFoundOr(Error e, const char* message);
// The cluster row; kNotFound "cluster not found".
Result<core::Cluster> LoadCluster(const ApiDeps& deps, const std::string& id);

// A new cluster row: fresh id, name, kind and state, created now by `user_id`.
core::Cluster NewClusterRow(const ApiDeps& deps, const std::string& name, core::ClusterKind kind,
                            core::ClusterState state, const std::string& user_id);

// Finds a live adapter of `type`; kFailedPrecondition when none is live.
Result<core::ProviderRecord> FindLiveAdapter(const ApiDeps& deps, const std::string& type);
core::ProviderStatus StatusOf(const ApiDeps& deps, const core::ProviderRecord& p);

}  // namespace canopy::api::detail
