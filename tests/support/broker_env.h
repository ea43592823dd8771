// BrokerEnv: a root (its API on loopback, its tiers' listener on the test network's bridge
// address, so clusters on local instances can dial it), a local provider adapter on a
// private LocalTestNet, and a credential "local" — what `canopy up` makes, for the broker's
// end-to-end and crash tests. Cleans up every namespace it made (LocalTestNet) even on failure.
// Needs root.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/json.h"
#include "providers/provider.h"
#include "support/daemons.h"
#include "support/local_env.h"
#include "support/test_util.h"

namespace canopy::testing {

class BrokerEnv {
 public:
  // `root_flags` / `adapter_flags` are added to the daemons' command lines.
  explicit BrokerEnv(std::vector<std::string> root_flags = {},
                     std::vector<std::string> adapter_flags = {});
  ~BrokerEnv();

  // Starts root and adapter, waits for the adapter to be live, adds the credential.
  void Start();
  RootDaemon& root() { return *root_; }
  AdapterDaemon& adapter() { return *adapter_; }
  // Starts the adapter again after a KillHard (same identity).
  void RestartAdapter();
  // Restarts a root that died (or was killed) on the same ports with the same data dir.
  void RestartRoot();
  const std::string& admin() const { return admin_; }
  const std::string& credential_id() const { return credential_id_; }
  LocalTestNet& net() { return net_; }

  ApiReply Call(const std::string& method, const std::string& path, const std::string& body = "");
  // POST /api/v1/clusters for a local cluster with `workers` initial workers; returns the 202 body.
  // On a blank image by default, as new clusters are; a blank image that is not built on this
  // host fails the test with how to build it (ExpectBlankImageBuilt).
  Json CreateCluster(const std::string& name, int workers,
                     const std::string& image = kBlankTestImage);
  // Polls GET /api/v1/operations/{id} until succeeded/failed or `timeout`; returns the last view.
  Json WaitOperation(const std::string& op_id, std::chrono::seconds timeout);
  // Polls until the operation's current step is `step` (state running or pending), or it ends.
  bool WaitStep(const std::string& op_id, const std::string& step, std::chrono::seconds timeout);
  Json Cluster(const std::string& id);
  Json Workers(const std::string& cluster_id);
  // The adapter as the root reaches it (its key from the adapter's identity file).
  std::unique_ptr<providers::Provider> Adapter();
  static providers::CallContext LocalContext();
  // Live instances tagged with the cluster's id (cluster VM + workers), asked of the adapter.
  int InstancesOf(const std::string& cluster_id);
  // Names of live canopy-* namespaces (as `ip netns list` shows them).
  static std::vector<std::string> Namespaces();
  // PIDs inside namespace `ns` (empty when none or absent).
  static std::vector<std::string> PidsIn(const std::string& ns);

 private:
  TempDir dir_;
  LocalTestNet net_;
  std::vector<std::string> root_flags_, adapter_flags_;
  std::unique_ptr<RootDaemon> root_;
  std::unique_ptr<AdapterDaemon> adapter_;
  std::string admin_, credential_id_;
};

}  // namespace canopy::testing
