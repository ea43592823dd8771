// ClusterTier: the root's side of its clusters (protocol: src/cluster/README.md): pairing tokens,
// edge cluster registration, pairing, the long-poll link (state reports in, commands out, acks),
// the OFFLINE check, and reading cluster rows. The HTTP layer (api/cluster_handlers.cpp) parses
// requests into these calls and renders their results. Thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "auth/secret_box.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/json.h"
#include "control/cluster_commands.h"
#include "control/link_hub.h"
#include "control/service_board.h"
#include "control/tier_ca.h"
#include "core/types.h"
#include "store/store.h"

namespace canopy::control {

struct TierOptions {
  std::chrono::seconds cluster_token_ttl{3600};  // pairing tokens
  std::chrono::seconds link_interval{10};        // suggested to clusters at pairing
  int missed_links_for_offline = 3;              // missed link intervals that make it OFFLINE
  std::chrono::seconds max_link_wait{60};        // the longest long-poll a link call may ask for
};

struct ClusterTokenGrant {
  std::string token;  // the plaintext token, shown once ("cct_..."); only its hash is stored
  std::string cluster_id;
  TimePoint expires_at{};
};

// Certificate signing requests a cluster sends at pairing and, to renew, on a link call.
struct ClusterCsrs {
  std::string csr;          // its TLS key's (server and client certificate)
  std::string node_ca_csr;  // its node CA key's (optional)
  bool empty() const { return csr.empty() && node_ca_csr.empty(); }
};

struct PairResult {
  std::string cluster_id;
  std::string cluster_key;  // the bearer key of the cluster's link calls
  int64_t link_interval_seconds = 0;
  ClusterCerts certs;  // signed by the root's CA (empty when the root has none or none was asked)
  std::string ca_pem;  // the root's CA (empty when it has none)
};

// What a cluster reports on a link call (validated by the HTTP layer).
struct LinkReport {
  std::optional<std::string> url;      // its advertised API URL
  std::optional<std::string> version;  // its canopyd version
  std::optional<int64_t> link_interval_seconds;
  std::vector<core::ClusterNodeInfo> nodes;
  Json resources = Json::object();
  Json acks;                 // [{id, ok, result?, error?}] or null
  std::optional<Json> jobs;  // its full job list, when it sent one
  ClusterCsrs csrs;          // renewal of its certificates, when due
};

struct LinkReply {
  std::vector<core::ClusterCommand> commands;  // pending ones, counted as delivered
  Json acked = Json::array();                  // the ack ids taken
  int64_t link_interval_seconds = 0;
  ClusterCerts certs;  // renewed certificates, when the report asked for them
};

// A new cluster row: fresh id, name, kind and state, created now by `user_id`.
core::Cluster NewClusterRow(IdGenerator& ids, const Clock& clock, const std::string& name,
                            core::ClusterKind kind, core::ClusterState state,
                            const std::string& user_id);

class ClusterTier {
 public:
  ClusterTier(store::Store& store, ClockPtr clock, IdGeneratorPtr ids,
              const auth::SecretBox& secrets, LinkHub& hub, ClusterCommands& commands,
              ServiceBoard& board, TierOptions opts, TierCa* ca = nullptr);

  // A single-use pairing token for the existing cluster row `cluster_id` (e.g. a cloud cluster
  // the broker installs: passed to `canopyd cluster --token`). kNotFound for an unknown cluster.
  // ttl 0 = options.cluster_token_ttl.
  Result<ClusterTokenGrant> CreateToken(const std::string& cluster_id,
                                        std::chrono::seconds ttl = std::chrono::seconds(0),
                                        const std::string& created_by = "broker");
  // A new edge cluster (PAIRING) and its pairing token; kAlreadyExists for a taken name.
  Result<ClusterTokenGrant> CreateEdgeCluster(const std::string& name, std::chrono::seconds ttl,
                                              const std::string& user_id);
  // Consumes a pairing token: the cluster is ACTIVE at `url` with a new key (pairing again
  // replaces the key: the old one stops working) and, when the root has a CA, certificates for
  // `csrs`. kUnauthenticated for a bad token; kConflict while DELETING; kInvalidArgument for a
  // bad CSR (the token is then not consumed).
  Result<PairResult> Pair(const std::string& token, const std::string& url,
                          const std::string& version, const ClusterCsrs& csrs = {});
  // The root's CA (null: none; its tiers speak plain HTTP).
  const TierCa* ca() const { return ca_; }
  // The cluster whose key `key` is (kUnauthenticated otherwise; kNotFound for an unknown id).
  Result<core::Cluster> Authenticate(const std::string& cluster_id, const std::string& key);

  // One link call of `cluster` (authenticated): applies its acks, records its report (nodes,
  // resources, jobs for the scheduler) and answers with its pending commands: at once when there
  // are some or `wait` is zero, else when one arrives or `wait` passes (the answer then comes
  // from the hub's thread). `done` is called exactly once.
  using LinkDone = std::function<void(Result<LinkReply>)>;
  void Link(const core::Cluster& cluster, LinkReport report, std::chrono::seconds wait,
            LinkDone done);
  std::chrono::seconds MaxLinkWait() const { return opts_.max_link_wait; }

  // Marks OFFLINE every ACTIVE cluster that missed opts.missed_links_for_offline link intervals;
  // returns their ids. The daemon runs it periodically; reads run it first too.
  Result<std::vector<std::string>> MarkOffline();
  Result<std::vector<core::Cluster>> List();
  // kNotFound "cluster not found".
  Result<core::Cluster> Get(const std::string& id);

 private:
  Result<LinkReply> Reply(const std::string& cluster_id, const Json& acked, int64_t interval);

  store::Store& store_;
  ClockPtr clock_;
  IdGeneratorPtr ids_;
  const auth::SecretBox& secrets_;
  LinkHub& hub_;
  ClusterCommands& commands_;
  ServiceBoard& board_;
  TierOptions opts_;
  TierCa* ca_;
};

}  // namespace canopy::control
