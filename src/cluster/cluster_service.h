// ClusterService: the `canopyd cluster` daemon. Pairs with the root using a single-use cluster
// token (identity.json, 0600, in the data dir keeps the cluster id and key across restarts), serves
// the node API (register, heartbeat) on --listen, keeps its nodes in its own SQLite store, and
// runs the link loop to the root: state report + long-poll for commands + acks, with backoff while
// the root is unreachable (nodes keep being served). Protocol: src/cluster/README.md.
// Thread-safe: Start() once, then Run() on one thread and Stop() from any.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/json.h"
#include "common/result.h"
#include "common/secret.h"
#include "net/http.h"
#include "net/pki.h"
#include "net/tier_identity.h"
#include "store/cluster_store.h"

namespace canopy::cluster {

struct ClusterOptions {
  std::string root_url;
  std::string token;  // pairing token (first start only)
  // Or a 0600 file holding it (what the installer delivers): removed once pairing succeeded.
  std::string token_file;
  // The root CA, for an https root: its fingerprint (pinned at first contact) or a PEM file.
  std::string ca_fingerprint;
  std::string ca_file;
  std::string data_dir;  // identity.json, cluster.db
  std::string listen = "127.0.0.1:0";
  std::string advertise_url;                   // default: http://<listen host>:<port>
  std::chrono::seconds link_interval{0};       // 0 = what the root suggests at pairing
  std::chrono::seconds heartbeat_interval{5};  // told to nodes
  int missed_heartbeats_for_offline = 3;
  std::chrono::seconds node_token_ttl{3600};
  std::string version = "0.1.0";
  // Tests only (crash tests): after the first command of this type has run and its outcome is
  // stored, but before its ack is sent, the process exits at once with _exit(137). "" = off.
  std::string test_kill_after_command;
};

class ClusterService {
 public:
  explicit ClusterService(ClusterOptions opts, ClockPtr clock = std::make_shared<SystemClock>(),
                          IdGeneratorPtr ids = std::make_shared<RandomIdGenerator>());
  ~ClusterService();

  // Opens the store, starts the node API and pairs when there is no identity yet. A root that
  // refuses the token -> kUnauthenticated; an unreachable root is retried by Run().
  Status Start();
  // The link loop; returns after Stop().
  void Run();
  void Stop();

  uint16_t port() const;
  std::string cluster_id() const;
  // Creates a node registration token (also the "create_node_token" command). Thread-safe.
  Result<std::pair<std::string, TimePoint>> CreateNodeToken(std::chrono::seconds ttl);
  // The state report sent on the link (nodes with their online/offline state, aggregate, jobs).
  Result<Json> BuildReport();
  // The "deploy_job" / "undeploy_job" commands (placement policy: src/cluster/README.md).
  // No node fits -> kResourceExhausted with "no_worker_capacity" in the message.
  Result<Json> DeployJob(const Json& args);
  Result<Json> UndeployJob(const Json& args);
  // The "drain_node" / "undrain_node" commands: drain marks the node draining (persisted; no
  // longer a placement candidate) and re-places its jobs with DeployJob's rule, removing those
  // that fit nowhere ({"node_id", "moved": [...], "returned": [...]}); undrain clears the flag.
  // An unknown node gives empty lists.
  Result<Json> DrainNode(const Json& args);
  Result<Json> UndrainNode(const Json& args);
  // Runs one root command {"id", "type", "args"} once per id (a known id answers its stored
  // outcome; the effect and the outcome commit in one store transaction) and returns its ack
  // {"id", "ok", "result"|"error"}. Called by the link loop.
  Json ExecuteCommand(const Json& cmd);

 private:
  Status Pair();
  // TLS (an https root): the root CA known, this cluster's certificate and node CA from the root.
  bool secure() const { return opts_.root_url.starts_with("https://"); }
  Status EnsureNodeCaKey();
  Status AcceptCertificates(const Json& answer);
  void ApplyServerTls();
  Result<std::string> IssueNodeCertificate(const std::string& node_id, const std::string& csr);
  std::optional<net::pki::Authority> NodeCa() const;
  Result<std::string> NodeCaCsr() const;  // for the node CA's key
  Status LinkOnce();
  bool LoadIdentity();
  Status SaveIdentity();
  void SleepFor(std::chrono::milliseconds d);
  std::shared_ptr<net::Router> MakeRouter();
  std::chrono::seconds LinkInterval() const;
  bool Online(const core::NodeRecord& n, TimePoint now) const;
  // DeployJob's fit rule over online nodes not in `excluded` (reported totals minus the jobs
  // placed on them); nullptr when none fits.
  const core::NodeRecord* PickNode(const std::vector<core::NodeRecord>& nodes,
                                   const std::vector<store::JobPlacement>& jobs,
                                   const std::set<std::string>& excluded, int64_t cpu_millis,
                                   int64_t memory_mib, TimePoint now) const;

  ClusterOptions opts_;
  ClockPtr clock_;
  IdGeneratorPtr ids_;
  store::ClusterStorePtr store_;
  std::unique_ptr<net::HttpServer> server_;
  std::unique_ptr<net::TierIdentity> tls_;
  SecretString node_ca_key_;                    // node-ca.key (under mu_)
  std::optional<net::pki::Authority> node_ca_;  // with node-ca.crt from the root (under mu_)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::string cluster_id_;
  SecretString cluster_key_;
  int64_t root_link_interval_ = 10;
  // Full results of executed commands not yet confirmed by the root (the store keeps them without
  // secrets); a command re-delivered after a restart and holding a secret is executed again.
  std::map<std::string, Json> results_;
  bool test_killed_ = false;  // --test-kill-after-command fires once per process (under mu_)
};

}  // namespace canopy::cluster
