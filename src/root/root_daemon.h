// RootDaemon: wires the root control plane (store, auth keys, master key, operations engine,
// REST API, HTTP server) and runs it until a signal. Used by `canopyd root`. Not copyable.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace canopy::root {

struct RootOptions {
  std::string listen = "127.0.0.1:8080";
  std::string data_dir = "./canopy-data";
  std::string database;  // "" -> SQLite file in data_dir
  std::string log_level = "info";
  std::chrono::seconds token_ttl{3600};
  std::chrono::seconds heartbeat_interval{5};
  std::chrono::milliseconds op_lease{15000};
  size_t op_workers = 4;
  size_t http_workers = 8;
  // Limits against abuse (net::ServerOptions): open connections in all and per peer address,
  // handlers queued or running, the idle keep-alive timeout.
  size_t max_connections = 10000;
  size_t max_connections_per_address = 512;
  size_t max_pending_requests = 1024;
  std::chrono::seconds idle_timeout{60};
  // New adapters get no credential until an infra user approves them.
  bool require_adapter_approval = false;
  // The JWT signing key is replaced when older than this (0 = never on its own).
  std::chrono::hours jwt_key_max_age{24 * 30};
  bool enable_test_ops = false;
  // Broker (src/broker): the root URL installed clusters dial ("" = derived from --listen, which
  // only works when that address is reachable from the instances), the canopyd binary uploaded
  // to instances ("" = canopyd-dist next to this binary, else this binary), and the link and
  // node heartbeat intervals given to installed clusters.
  std::string cluster_url;
  // A second listener for the lower tiers only (cluster pairing and link, adapter registration,
  // /healthz), e.g. on the local provider's bridge gateway while --listen stays on loopback. It
  // binds even before that address exists. "" = none. When set and cluster_url is "", installed
  // clusters dial it.
  std::string cluster_listen;
  std::string canopyd_binary;
  // Sources allowed to the instances' SSH port and cluster API port (CIDRs; empty = anyone).
  std::vector<std::string> ssh_sources;
  std::vector<std::string> cluster_api_sources;
  int64_t cluster_link_interval = 2;
  int64_t cluster_node_heartbeat = 2;
  // How long one install attempt waits for an instance's sshd (cloud images boot slowly).
  int64_t ssh_wait_seconds = 120;
  // Sweeper (src/broker/sweeper.h): seconds between passes (0 = off); terminate orphans or only
  // report them.
  int64_t sweep_interval = 600;
  bool sweep_delete = false;
  // TLS (docs/security.md): listeners not on loopback always speak TLS; `tls_on_loopback` makes
  // the loopback ones do too. The root's certificate carries the listen hosts, loopback and
  // `tls_names`. The operator may bring the API listener's certificate and the CA.
  bool tls_on_loopback = false;
  // Tests only: lifetime of the certificates the root issues to clusters and adapters (0 = 30
  // days), to see them renewed.
  int64_t test_tier_cert_seconds = 0;
  std::vector<std::string> tls_names;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string ca_cert_file;
  std::string ca_key_file;
  // Tests only: "KIND/STEP" or "KIND/STEP@ACTION" (data.action) -> SIGKILL this process once, right
  // after that step of an operation of that kind returns and before the engine records it (a marker
  // file in the data dir makes it once per data dir, so the restarted root goes on).
  std::string test_kill_after_step;
  // Tests only: passed to installed clusters as --test-kill-after-command.
  std::string test_cluster_kill_after_command;
};

// Runs until SIGINT/SIGTERM. Returns a process exit code.
int RunRoot(const RootOptions& opts);

}  // namespace canopy::root
