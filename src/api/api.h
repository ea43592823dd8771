// The root's REST API v1, the HTTP layer over the application layer (src/control): every route
// with its access rule, request parsing and response rendering. Handlers hold no state and start
// no threads; the router they make is immutable and thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "control/adapters.h"
#include "control/cloud_access.h"
#include "control/cloud_clusters.h"
#include "control/cluster_tier.h"
#include "control/credentials.h"
#include "control/operations.h"
#include "control/services.h"
#include "control/users.h"
#include "net/http.h"
#include "net/work_lane.h"

namespace canopy::api {

// Who may call a route.
enum class Access {
  kPublic,   // no token
  kAdapter,  // a provider adapter's or a cluster's key (checked by the application layer)
  kAnyUser,  // any valid user token
  kAdmin,
  kInfra,  // admin or infra
  kApp,    // admin or app
  kInfraOrApp,
};

struct RouteInfo {
  std::string method;
  std::string pattern;
  Access access;
};

// The application services the API exposes; each route group is given only its own.
struct ApiServices {
  control::Users* users = nullptr;
  control::Adapters* adapters = nullptr;
  control::Credentials* credentials = nullptr;
  control::CloudAccess* clouds = nullptr;
  control::ClusterTier* tier = nullptr;
  control::CloudClusters* cloud_clusters = nullptr;
  control::Services* services = nullptr;
  control::Operations* operations = nullptr;
  std::shared_ptr<net::Metrics> metrics;  // for GET /metrics (may be null)
  // Bounded lanes for password work and for synchronous adapter calls (null: such routes run
  // on the server's workers like the rest). A full lane answers 503 with Retry-After.
  std::shared_ptr<net::WorkLane> kdf_lane;
  std::shared_ptr<net::WorkLane> provider_lane;
};

struct ApiOptions {
  bool enable_test_ops = false;  // serve POST /api/v1/test/operations
};

// Which routes a router serves: every route (the API listener), or only those the lower tiers
// call (cluster pairing and link, adapter registration and heartbeat, /healthz) for a listener
// that faces instances (root --cluster-listen) without exposing the user API there.
enum class RouterScope { kAll, kTiers };

std::shared_ptr<net::Router> BuildRouter(const ApiServices& services, const ApiOptions& options,
                                         RouterScope scope = RouterScope::kAll);
// Every route with its access rule (for the role-matrix tests and the OpenAPI check).
std::vector<RouteInfo> RouteTable(const ApiOptions& options);

// The OpenAPI 3 document served at /api/v1/openapi.json.
const std::string& OpenApiDocument();

}  // namespace canopy::api
