// The root's REST API v1: builds the router with every route, its access rule and handler.
// Handlers validate input and answer errors as {"error":{"code","message"}} (net/error_mapping).
// The returned Router is immutable; handlers are thread-safe (they share only thread-safe deps).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "auth/jwt.h"
#include "auth/secret_box.h"
#include "common/clock.h"
#include "common/ids.h"
#include "core/types.h"
#include "net/http.h"
#include "ops/engine.h"
#include "store/store.h"

namespace canopy::api {

struct ApiOptions {
  std::chrono::seconds token_ttl{3600};
  std::chrono::seconds provider_token_ttl{3600};
  std::chrono::seconds heartbeat_interval{5};
  int missed_heartbeats_for_down = 3;
  // Clusters (src/cluster/README.md): pairing token lifetime, the link interval suggested to
  // clusters at pairing, how many missed link intervals make a cluster OFFLINE, the longest
  // long-poll a link call may ask for, and how often the OFFLINE check runs.
  std::chrono::seconds cluster_token_ttl{3600};
  std::chrono::seconds link_interval{10};
  int missed_links_for_offline = 3;
  std::chrono::seconds max_link_wait{60};
  std::chrono::milliseconds offline_check_every{1000};
  bool enable_test_ops = false;
  std::string test_ops_marker_file;  // where test.steps operations write their markers
};

// Parks clusters' long-poll link calls until a command arrives (api/clusters.h). One per root,
// shared by every copy of ApiDeps; thread-safe.
class ClusterLinkHub;
std::shared_ptr<ClusterLinkHub> NewClusterLinkHub();
// Job reports of clusters and the scheduler's bell (api/services.h); one per root, shared.
class ServiceBoard;
std::shared_ptr<ServiceBoard> NewServiceBoard();

struct ApiDeps {
  store::Store* store = nullptr;
  auth::JwtKeys* jwt = nullptr;
  auth::SecretBox* secrets = nullptr;
  ops::Engine* engine = nullptr;
  ClockPtr clock;
  IdGeneratorPtr ids;
  std::shared_ptr<net::Metrics> metrics;
  ApiOptions options;
  std::shared_ptr<ClusterLinkHub> cluster_hub = NewClusterLinkHub();
  std::shared_ptr<ServiceBoard> service_board = NewServiceBoard();
};

// Who may call a route.
enum class Access {
  kPublic,    // no token
  kAdapter,   // a provider adapter's key (checked by the handler)
  kAnyUser,   // any valid user token
  kAdmin,
  kInfra,     // admin or infra
  kApp,       // admin or app
  kInfraOrApp,
};

struct RouteInfo {
  std::string method;
  std::string pattern;
  Access access;
};

// Which routes a router serves: every route (the API listener), or only those the lower tiers
// call (cluster pairing and link, adapter registration and heartbeat, /healthz) for a listener
// that faces instances (root --cluster-listen) without exposing the user API there.
enum class RouterScope { kAll, kTiers };

// Also starts the periodic cluster OFFLINE check on deps.cluster_hub (stops with the hub).
std::shared_ptr<net::Router> BuildRouter(const ApiDeps& deps, RouterScope scope = RouterScope::kAll);
// Every route with its access rule (for the role-matrix tests and the OpenAPI check).
std::vector<RouteInfo> RouteTable(const ApiOptions& options);

// The OpenAPI 3 document served at /api/v1/openapi.json.
const std::string& OpenApiDocument();

}  // namespace canopy::api
