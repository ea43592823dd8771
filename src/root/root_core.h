// RootCore: the root's application layer, wired: every control service (users, adapters,
// credentials, cloud access, the cluster tier and its command queue, cloud clusters, services,
// operations) over one store, and the routers that expose them. Owns two threads between Start()
// and Stop(): the link hub's and the periodic OFFLINE check. The operations engine, the broker's
// kinds, the scheduler and the firewall sync are wired beside it by RunRoot (root_daemon.cpp) or
// by tests. Not copyable; the services it hands out are thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "api/api.h"
#include "auth/jwt.h"
#include "auth/secret_box.h"
#include "common/clock.h"
#include "common/ids.h"
#include "control/adapters.h"
#include "control/cloud_access.h"
#include "control/cloud_clusters.h"
#include "control/cluster_commands.h"
#include "control/cluster_tier.h"
#include "control/credentials.h"
#include "control/link_hub.h"
#include "control/operations.h"
#include "control/service_board.h"
#include "control/services.h"
#include "control/tier_ca.h"
#include "control/users.h"
#include "net/http.h"
#include "net/work_lane.h"
#include "ops/engine.h"
#include "store/store.h"

namespace canopy::root {

struct RootCoreOptions {
  std::chrono::seconds token_ttl{3600};
  control::AdapterOptions adapters;
  control::TierOptions tier;
  std::chrono::milliseconds offline_check_every{1000};
  bool enable_test_ops = false;
  std::string test_ops_marker_file;  // where test.steps operations write their markers
  // Bounded lanes (api::ApiServices): Argon2 work and synchronous adapter calls. 0 threads for
  // the KDF lane = half the cores (at least 1).
  size_t kdf_threads = 0;
  size_t kdf_queue = 64;
  size_t provider_threads = 8;
  size_t provider_queue = 128;
  control::LoginThrottleOptions login_throttle;
  // The root's CA for its tiers (null: it issues no certificates; tiers and adapters are
  // reached over plain HTTP — in-process tests).
  std::shared_ptr<control::TierCa> ca;
};

class RootCore {
 public:
  // `opener` null = the production AdapterOpener (providers reached through live adapters).
  RootCore(store::Store& store, auth::JwtKeys& jwt, const auth::SecretBox& secrets, ClockPtr clock,
           IdGeneratorPtr ids, ops::OperationQueue& queue, RootCoreOptions opts,
           std::unique_ptr<control::ProviderOpener> opener = nullptr);
  RootCore(const RootCore&) = delete;
  RootCore& operator=(const RootCore&) = delete;
  ~RootCore();  // Stop()

  void Start();
  void Stop();

  control::LinkHub& hub() { return hub_; }
  control::ServiceBoard& board() { return board_; }
  control::ClusterCommands& commands() { return commands_; }
  control::ClusterTier& tier() { return tier_; }
  control::Users& users() { return users_; }
  control::Adapters& adapters() { return adapters_; }
  control::ProviderOpener& opener() { return *opener_; }
  control::CloudAccess& clouds() { return clouds_; }
  control::Credentials& credentials() { return credentials_; }
  control::CloudClusters& cloud_clusters() { return cloud_clusters_; }
  control::Services& services() { return services_; }
  control::Operations& operations() { return operations_; }
  store::Store& store() { return store_; }
  const ClockPtr& clock() const { return clock_; }
  const IdGeneratorPtr& ids() const { return ids_; }
  const auth::SecretBox& secrets() const { return secrets_; }

  std::shared_ptr<net::Router> Router(api::RouterScope scope = api::RouterScope::kAll,
                                      std::shared_ptr<net::Metrics> metrics = nullptr);

 private:
  store::Store& store_;
  const auth::SecretBox& secrets_;
  ClockPtr clock_;
  IdGeneratorPtr ids_;
  RootCoreOptions opts_;
  control::LinkHub hub_;
  control::ServiceBoard board_;
  control::ClusterCommands commands_;
  control::ClusterTier tier_;
  control::Users users_;
  control::Adapters adapters_;
  std::unique_ptr<control::ProviderOpener> opener_;
  control::CloudAccess clouds_;
  control::Credentials credentials_;
  control::CloudClusters cloud_clusters_;
  control::Services services_;
  control::Operations operations_;
  std::jthread offline_;
  // Shared with the routers; shut down by Stop() so that no task outlives the services above.
  std::shared_ptr<net::WorkLane> kdf_lane_;
  std::shared_ptr<net::WorkLane> provider_lane_;
};

}  // namespace canopy::root
