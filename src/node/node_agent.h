// NodeAgent: the `canopyd node` daemon. Registers with its cluster using a single-use node token
// (identity.json, 0600, in the data dir keeps the node id and key, so a restart re-registers with
// the key and keeps the id), then heartbeats with this machine's resource figures. The cluster
// records the source address of the connection unless --advertise-address is given; the capacity
// reported may be given (--cpu-millis / --memory-mib) instead of the /proc figures. Runs the jobs
// the cluster assigns (heartbeat reply `jobs`, reconciled by a JobRunner; statuses go back in every
// heartbeat). Protocol: src/cluster/README.md. Start() once, Run() on one thread, Stop() from any.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "common/result.h"
#include "common/secret.h"
#include "net/tier_identity.h"
#include "node/job_runner.h"
#include "node/resources.h"

namespace canopy::node {

struct NodeOptions {
  std::string cluster_url;
  std::string token;  // node registration token (first start only)
  // Or a 0600 file holding it (what the installer delivers): removed once registered.
  std::string token_file;
  // The root CA, for an https cluster: its fingerprint (pinned at first contact) or a PEM file.
  std::string ca_fingerprint;
  std::string ca_file;
  std::string data_dir;
  std::string advertise_address;  // "" = the cluster sees our source address
  std::chrono::milliseconds job_stop_grace{5000};
  std::string cgroup_root = "/sys/fs/cgroup";  // "" = run jobs without cgroup limits
  std::string job_user = "canopy-job";         // "" = jobs run as the agent's user
  // Capacity offered to jobs, reported instead of the /proc figures (0 = the /proc figure;
  // memory_available_mib is capped at memory_mib): --cpu-millis / --memory-mib.
  int64_t cpu_millis = 0;
  int64_t memory_mib = 0;
};

class NodeAgent {
 public:
  explicit NodeAgent(NodeOptions opts);
  // Registers (with the saved identity, else the token). Unreachable cluster -> retried by Run()
  // when an identity exists; a refused token -> kUnauthenticated.
  Status Start();
  // Heartbeats until Stop(); re-registers when the cluster answers that the node is unknown.
  void Run();
  void Stop();
  std::string node_id() const;
  // Statuses of the jobs this node runs (empty before Start()).
  std::vector<JobStatus> JobStatuses() const;

 private:
  Status Register(bool with_key);
  Status Heartbeat();
  bool LoadIdentity();
  Status SaveIdentity();
  void SleepFor(std::chrono::milliseconds d);
  // The figures reported to the cluster: /proc, overridden by the capacity options.
  NodeResources Resources() const;

  NodeOptions opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool registered_ = false;
  std::string node_id_;
  SecretString node_key_;
  std::chrono::seconds heartbeat_{5};
  std::unique_ptr<JobRunner> jobs_;         // created by Start(); stops its jobs when destroyed
  std::unique_ptr<net::TierIdentity> tls_;  // an https cluster: the CA, this node's certificate
  bool secure() const { return opts_.cluster_url.starts_with("https://"); }
};

}  // namespace canopy::node
