// Internal to api/: route definitions, the handler signature and shared parsing helpers.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "api/api.h"
#include "common/json.h"
#include "control/users.h"
#include "net/error_mapping.h"
#include "net/http.h"

namespace canopy::api::detail {

using control::Principal;

using Handler = std::function<Result<net::Response>(const net::Request&, const Principal&)>;
// A long-poll handler: answers through the Responder, possibly later from another thread.
using AsyncHandler = std::function<void(const net::Request&, const Principal&, net::Responder)>;

// Where a route's handler runs: on the server's worker pool (most routes), or on a bounded lane
// of its own, so that a flood of one kind cannot starve the rest (heartbeats, link polls).
enum class Lane {
  kDefault,
  kKdf,       // Argon2 password work (login, password changes, new users)
  kProvider,  // synchronous calls to provider adapters (credential validation, offers)
};

struct RouteDef {
  const char* method;
  const char* pattern;
  Access access;
  Handler fn;
  AsyncHandler async_fn = nullptr;  // when set, used instead of fn
  bool test_only = false;
  // Called by the lower tiers (clusters pairing and linking, adapters registering): also served
  // on the root's tier listener (RouterScope::kTiers).
  bool tier = false;
  Lane lane = Lane::kDefault;
};

// Route groups, one per resource (each in its own <resource>_handlers.cpp). A group captures
// only its own application service (null when only the table is wanted: RouteTable).
std::vector<RouteDef> SystemRoutes(std::shared_ptr<net::Metrics> metrics, control::Operations* ops);
std::vector<RouteDef> AuthRoutes(control::Users* users);
std::vector<RouteDef> UserRoutes(control::Users* users);
std::vector<RouteDef> ProviderRoutes(control::Adapters* adapters);
std::vector<RouteDef> CredentialRoutes(control::Credentials* credentials);
std::vector<RouteDef> OperationRoutes(control::Operations* ops);
std::vector<RouteDef> ClusterRoutes(control::ClusterTier* tier);
std::vector<RouteDef> OfferRoutes(control::CloudAccess* clouds);
std::vector<RouteDef> BrokerRoutes(control::CloudClusters* clusters);
std::vector<RouteDef> ServiceRoutes(control::Services* services);

// The response for a failed handler: internal errors are logged and answered bare.
net::Response RenderHandlerError(const char* pattern, const Error& e);

inline net::Response JsonResponse(int status, const Json& j) {
  return net::Response::FromJson(status, j);
}
inline net::Response NoContent() { return net::Response{204, "application/json", "", {}}; }
// The body as a JSON object (kInvalidArgument otherwise).
Result<Json> ParseBody(const net::Request& req);
// The body as a JSON object, {} when empty.
Result<Json> ParseOptionalBody(const net::Request& req);
// The token of an "Authorization: Bearer <token>" header ("" when absent or malformed).
std::string BearerToken(const net::Request& req);
// kInvalidArgument "field 'NAME' must be ..." unless control::IsValidName.
Status CheckName(const std::string& value, const char* field);

}  // namespace canopy::api::detail
