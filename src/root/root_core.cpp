#include "root/root_core.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace canopy::root {

RootCore::RootCore(store::Store& store, auth::JwtKeys& jwt, const auth::SecretBox& secrets,
                   ClockPtr clock, IdGeneratorPtr ids, ops::OperationQueue& queue,
                   RootCoreOptions opts, std::unique_ptr<control::ProviderOpener> opener)
    : store_(store),
      secrets_(secrets),
      clock_(clock),
      ids_(ids),
      opts_(std::move(opts)),
      commands_(store, clock, ids, secrets, hub_),
      tier_(store, clock, ids, secrets, hub_, commands_, board_, opts_.tier, opts_.ca.get()),
      users_(store, clock, ids, jwt, opts_.token_ttl, opts_.login_throttle),
      adapters_(store, clock, ids, secrets, opts_.adapters, opts_.ca.get()),
      opener_(opener ? std::move(opener)
                     : std::make_unique<control::AdapterOpener>(adapters_, opts_.ca.get())),
      clouds_(store, secrets, *opener_),
      credentials_(store, clock, ids, secrets, *opener_),
      cloud_clusters_(store, clock, ids, clouds_, queue),
      services_(store, clock, ids, board_, &secrets),
      operations_(store, ids, queue, opts_.test_ops_marker_file),
      kdf_lane_(std::make_shared<net::WorkLane>(
          "kdf",
          opts_.kdf_threads > 0 ? opts_.kdf_threads
                                : std::max<size_t>(1, std::thread::hardware_concurrency() / 2),
          opts_.kdf_queue)),
      provider_lane_(std::make_shared<net::WorkLane>("provider", opts_.provider_threads,
                                                     opts_.provider_queue)) {}

RootCore::~RootCore() { Stop(); }

void RootCore::Start() {
  hub_.Start();
  if (offline_.joinable()) return;
  offline_ = std::jthread([this](std::stop_token stop) {
    std::mutex mu;
    std::condition_variable_any cv;
    const auto every = std::max(opts_.offline_check_every, std::chrono::milliseconds(50));
    while (!stop.stop_requested()) {
      {
        std::unique_lock lock(mu);
        cv.wait_for(lock, stop, every, [] { return false; });
      }
      if (stop.stop_requested()) break;
      auto ids = tier_.MarkOffline();
      if (!ids) SPDLOG_WARN("Cluster offline check failed error={}", ids.error().ToString());
    }
  });
}

void RootCore::Stop() {
  if (offline_.joinable()) {
    offline_.request_stop();
    offline_.join();
  }
  hub_.Stop();
  kdf_lane_->Shutdown();
  provider_lane_->Shutdown();
}

std::shared_ptr<net::Router> RootCore::Router(api::RouterScope scope,
                                              std::shared_ptr<net::Metrics> metrics) {
  api::ApiServices s;
  s.users = &users_;
  s.adapters = &adapters_;
  s.credentials = &credentials_;
  s.clouds = &clouds_;
  s.tier = &tier_;
  s.cloud_clusters = &cloud_clusters_;
  s.services = &services_;
  s.operations = &operations_;
  s.metrics = std::move(metrics);
  s.kdf_lane = kdf_lane_;
  s.provider_lane = provider_lane_;
  api::ApiOptions o;
  o.enable_test_ops = opts_.enable_test_ops;
  return api::BuildRouter(s, o, scope);
}

}  // namespace canopy::root
