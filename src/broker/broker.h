// The broker's operations at the root (thesis §3.3): create and delete cloud clusters, provision
// workers (add, restart, recreate) and shut them down (stop, terminate, delete). Each is a
// persisted operation kind (ops/engine.h) whose steps are idempotent, so a kill -9 of the root,
// the adapter or the cluster at any step neither leaks nor duplicates an instance: intent (the
// row) is written before every create, every cloud object carries its Canopy id as a tag, a step
// looks the object up by tag before it creates one, and handles are saved as soon as returned.
// One file per kind (cluster_create.cpp, ...), each a table of named steps. Flows and failure
// policy: src/broker/README.md. Kinds are thread-safe (state lives in rows and op.data).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/ids.h"
#include "control/cloud_access.h"
#include "control/cluster_commands.h"
#include "control/cluster_tier.h"
#include "install/installer.h"
#include "ops/engine.h"
#include "scheduler/drain_readiness.h"

namespace canopy::broker {

struct BrokerOptions {
  std::string cluster_root_url;       // the root URL installed clusters dial
  std::string canopyd_binary;         // the binary uploaded to instances
  uint16_t cluster_port = 7443;       // where installed clusters serve their nodes
  int64_t link_interval_seconds = 2;  // installed clusters' link long-poll
  int64_t node_heartbeat_seconds = 2;
  size_t parallelism = 8;  // concurrent cloud calls / installs per operation step
  std::chrono::seconds boot_timeout{600};
  std::chrono::seconds pair_timeout{180};
  std::chrono::seconds register_timeout{180};
  std::chrono::seconds drain_timeout{120};     // worker.shutdown waits this long for moved jobs
  std::chrono::seconds preflight_timeout{10};  // `canopyd probe` of the tier above, on the instance
  std::vector<std::string> cluster_extra_args;  // appended to installed clusters' argv (tests)
  // Who may reach the instances the broker makes (CIDRs; empty = anyone, 0.0.0.0/0): SSH only
  // from `ssh_sources` (the root's egress address), the cluster API only from
  // `cluster_api_sources` (the cluster's private network, the root, edge nodes).
  std::vector<std::string> ssh_sources;
  std::vector<std::string> cluster_api_sources;
};

// What the broker's kinds use; every pointer must outlive the engine.
struct BrokerDeps {
  control::CloudAccess* clouds = nullptr;        // providers, credentials, cluster identities
  control::ClusterCommands* commands = nullptr;  // node tokens, pings, drains
  control::ClusterTier* tier = nullptr;          // pairing tokens
  ops::OperationQueue* queue = nullptr;          // cluster.create enqueues its workers
  IdGeneratorPtr ids;
  const install::Installer* installer = nullptr;
  scheduler::TcpCheck tcp = scheduler::DefaultTcpCheck();  // drain readiness
};

// Registers cluster.create, cluster.delete, workers.provision and worker.shutdown
// (control/operation_kinds.h).
Status RegisterBrokerKinds(ops::Engine& engine, const BrokerDeps& deps, const BrokerOptions& opts);

}  // namespace canopy::broker
