// The roles that run on instances (cluster, node, probe), shared by canopyd (every role, linked
// against the host's libraries) and canopyd-agent (these roles only, linked statically: what the
// installer pushes to instances). Flag parsing only; the daemons live in src/cluster, src/node.
#pragma once

#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <thread>

#include "cluster/cluster_service.h"
#include "common/shell.h"
#include "node/node_agent.h"

namespace canopy::exe {

using canopy::BlockStopSignals;  // common/shell.h: before any thread; ServeUntilSignal waits

// Starts `service` (anything with Start/Run/Stop), runs it until SIGINT or SIGTERM, stops it.
// The stop signals must already be blocked (BlockStopSignals) before any thread exists.
template <class Service>
int ServeUntilSignal(Service& service, const sigset_t& sigs, const char* what) {
  auto st = service.Start();
  if (!st) {
    SPDLOG_ERROR("{} failed to start: {}", what, st.error().message);
    return 1;
  }
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    SPDLOG_INFO("Stopping {} signal={}", what, sig);
    service.Stop();
  });
  service.Run();
  waiter.join();
  return 0;
}

// Adds the `cluster`, `node` and `probe` subcommands to `app`; after parsing, Run() runs the one
// given, or answers nullopt when it was another subcommand.
class AgentRoles {
 public:
  explicit AgentRoles(CLI::App& app);
  std::optional<int> Run(const std::string& log_level);

 private:
  cluster::ClusterOptions co_;
  int64_t link_interval_ = 0;
  int64_t node_heartbeat_ = 5;
  node::NodeOptions no_;
  std::string probe_url_;
  int64_t probe_timeout_ = 10;
  CLI::App* cluster_ = nullptr;
  CLI::App* node_ = nullptr;
  CLI::App* probe_ = nullptr;
};

}  // namespace canopy::exe
