// canopyd: every Canopy daemon in one binary (root, cluster, node, provider). Thin: flag parsing
// only; the daemons live in src/root, src/providers/adapter, ...
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "common/log.h"
#include "providers/adapter/adapter_service.h"
#include "providers/fake/fake_provider.h"
#include "root/root_daemon.h"

namespace {

int RunProvider(const std::string& type, const canopy::providers::adapter::AdapterOptions& opts,
                const std::string& log_level) {
  canopy::log::Init("provider", log_level);
  canopy::providers::ProviderPtr provider;
  if (type == "fake") {
    provider = std::make_unique<canopy::providers::fake::FakeProvider>();
  } else {
    std::cerr << "error: provider type '" << type << "' is not available in this build (fake)\n";
    return 2;
  }
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  canopy::providers::adapter::AdapterService service(std::move(provider), opts);
  auto st = service.Start();
  if (!st) {
    SPDLOG_ERROR("Provider adapter failed to start: {}", st.error().message);
    return 1;
  }
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    SPDLOG_INFO("Stopping provider adapter signal={}", sig);
    service.Stop();
  });
  service.Run();
  waiter.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"canopyd - Canopy daemons (root, cluster, node, provider)"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->envname("CANOPY_LOG_LEVEL");

  canopy::root::RootOptions ro;
  int64_t token_ttl = 3600, heartbeat = 5, lease_ms = 15000;
  auto* root = app.add_subcommand("root", "Run the root control plane");
  root->add_option("--listen", ro.listen, "HOST:PORT to serve the API on")->capture_default_str();
  root->add_option("--data-dir", ro.data_dir, "Directory for the database and keys")->capture_default_str();
  root->add_option("--database", ro.database, "Database URL (default: SQLite in the data dir)");
  root->add_option("--token-ttl", token_ttl, "Lifetime of login tokens in seconds")->check(CLI::Range(1, 86400 * 30));
  root->add_option("--heartbeat-interval", heartbeat, "Seconds between provider adapter heartbeats")
      ->check(CLI::Range(1, 3600));
  root->add_option("--op-lease-ms", lease_ms, "Operation lease in milliseconds")->check(CLI::Range(200, 600000));
  root->add_option("--op-workers", ro.op_workers, "Operation engine workers")->check(CLI::Range(1, 64));
  root->add_flag("--enable-test-ops", ro.enable_test_ops, "Serve POST /api/v1/test/operations (tests only)");

  canopy::providers::adapter::AdapterOptions po;
  std::string type;
  auto* prov = app.add_subcommand("provider", "Run a provider adapter service");
  prov->add_option("--type", type, "Provider type (fake)")->required();
  prov->add_option("--root", po.root_url, "Root URL")->required();
  prov->add_option("--token", po.token, "Registration token from `canopy provider token`")
      ->envname("CANOPY_PROVIDER_TOKEN");
  prov->add_option("--listen", po.listen, "HOST:PORT to serve the adapter API on")->capture_default_str();
  prov->add_option("--advertise-url", po.advertise_url, "URL the root uses to reach this adapter");
  prov->add_option("--data-dir", po.data_dir, "Directory keeping the adapter's identity");

  CLI11_PARSE(app, argc, argv);
  if (root->parsed()) {
    ro.log_level = log_level;
    ro.token_ttl = std::chrono::seconds(token_ttl);
    ro.heartbeat_interval = std::chrono::seconds(heartbeat);
    ro.op_lease = std::chrono::milliseconds(lease_ms);
    return canopy::root::RunRoot(ro);
  }
  if (prov->parsed()) return RunProvider(type, po, log_level);
  return 2;
}
