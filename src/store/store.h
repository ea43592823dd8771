// Store: one repository interface per resource, behind which SQLite (store/sqlite) and later
// PostgreSQL implementations sit. No SQL lives outside src/store/. Implementations are thread-safe.
// The store never invents ids or timestamps: callers pass them in (Nomad's rule).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/result.h"
#include "core/types.h"

namespace canopy::store {

/// Users. Usernames are unique (Create of a taken name -> kAlreadyExists).
class UserRepo {
 public:
  virtual ~UserRepo() = default;
  virtual Status Create(const core::User& u) = 0;
  /// kNotFound when absent.
  virtual Result<core::User> Get(const std::string& id) = 0;
  virtual Result<core::User> GetByUsername(const std::string& username) = 0;
  /// Ordered by created_at, then id.
  virtual Result<std::vector<core::User>> List() = 0;
  /// kNotFound when absent.
  virtual Status Delete(const std::string& id) = 0;
  virtual Result<int64_t> Count() = 0;
  /// Sets the password hash and increments the token generation, in one statement (kNotFound
  /// when absent). Returns the new generation.
  virtual Result<int64_t> ChangePassword(const std::string& id,
                                         const std::string& password_hash) = 0;
};

/// Provider registration tokens (stored hashed).
class ProviderTokenRepo {
 public:
  virtual ~ProviderTokenRepo() = default;
  virtual Status Create(const core::ProviderToken& t) = 0;
  /// Atomically marks the token with this hash used at `now`, if it exists, is unused and has not
  /// expired; returns it. Otherwise kUnauthenticated (one message for all cases, so callers
  /// cannot probe which tokens exist).
  virtual Result<core::ProviderToken> Consume(const std::string& token_hash, TimePoint now) = 0;
};

/// Registered provider adapters.
class ProviderRepo {
 public:
  virtual ~ProviderRepo() = default;
  virtual Status Create(const core::ProviderRecord& p) = 0;
  virtual Result<core::ProviderRecord> Get(const std::string& id) = 0;
  /// Ordered by registered_at, then id.
  virtual Result<std::vector<core::ProviderRecord>> List() = 0;
  /// Records a heartbeat. kNotFound when absent.
  virtual Status Touch(const std::string& id, TimePoint now) = 0;
  /// Updates url, capabilities and version (re-registration of a known adapter).
  virtual Status Update(const core::ProviderRecord& p) = 0;
  virtual Status Delete(const std::string& id) = 0;
};

/// Cloud credentials (secret stored encrypted by the caller). Names are unique.
class CredentialRepo {
 public:
  virtual ~CredentialRepo() = default;
  virtual Status Create(const core::Credential& c) = 0;
  virtual Result<core::Credential> Get(const std::string& id) = 0;
  virtual Result<core::Credential> GetByName(const std::string& name) = 0;
  virtual Result<std::vector<core::Credential>> List() = 0;
  virtual Status Delete(const std::string& id) = 0;
};

/// Persisted operations (see ops/engine.h).
class OperationRepo {
 public:
  virtual ~OperationRepo() = default;
  /// Stores `op` as given (version as given, normally 1).
  virtual Status Create(const core::Operation& op) = 0;
  virtual Result<core::Operation> Get(const std::string& id) = 0;
  /// Newest first.
  virtual Result<std::vector<core::Operation>> ListByTarget(const std::string& target_id) = 0;
  virtual Result<std::vector<core::Operation>> List(size_t limit) = 0;
  /// Claims up to `limit` operations that are pending or running, due (next_run_at <= now), and
  /// whose lease is free or expired (lease_until <= now): sets lease_owner/lease_until, bumps
  /// version, and returns them as stored after the claim. Atomic across threads and processes.
  virtual Result<std::vector<core::Operation>> ClaimDue(const std::string& owner, TimePoint now,
                                                        TimePoint lease_until, size_t limit) = 0;
  /// Extends the lease if `owner` still holds it; kConflict otherwise.
  virtual Status RenewLease(const std::string& id, const std::string& owner,
                            TimePoint lease_until) = 0;
  /// Compare-and-swap: writes every mutable field of `op` if the stored version equals
  /// op.version, storing op.version + 1. kConflict when the version moved on.
  virtual Status Update(const core::Operation& op) = 0;
};

/// What a cluster reports on each link call (see src/cluster/README.md).
struct ClusterLinkRecord {
  std::string url;
  std::string software_version;
  int64_t link_interval_seconds = 0;
  std::vector<core::ClusterNodeInfo> nodes;
  Json resources = Json::object();
};

/// Clusters (edge and cloud). Names are unique (kAlreadyExists). Every write bumps `version`.
class ClusterRepo {
 public:
  virtual ~ClusterRepo() = default;
  /// Stores `c` as given (version as given, normally 1).
  virtual Status Create(const core::Cluster& c) = 0;
  /// kNotFound when absent.
  virtual Result<core::Cluster> Get(const std::string& id) = 0;
  virtual Result<core::Cluster> GetByName(const std::string& name) = 0;
  /// Ordered by created_at, then id.
  virtual Result<std::vector<core::Cluster>> List() = 0;
  /// Compare-and-swap: writes every mutable field of `c` (all but id, kind, created_at, created_by)
  /// if the stored version equals c.version, storing c.version + 1. kConflict when the version
  /// moved on, kNotFound when absent.
  virtual Status Update(const core::Cluster& c) = 0;
  /// Records a link call at `now`: url, software version, link interval, nodes, resources and
  /// last_seen; an OFFLINE cluster becomes ACTIVE again. Bumps version; returns the row after.
  virtual Result<core::Cluster> RecordLink(const std::string& id, const ClusterLinkRecord& r,
                                           TimePoint now) = 0;
  /// Every ACTIVE cluster whose last link call is older than `missed_links` times its link
  /// interval at `now` becomes OFFLINE (version bumped). Returns the ids it changed.
  virtual Result<std::vector<std::string>> MarkStaleOffline(TimePoint now,
                                                            int64_t missed_links) = 0;
  /// Deletes the row with its tokens and commands. kNotFound when absent.
  virtual Status Delete(const std::string& id) = 0;
};

/// Cluster pairing tokens (stored hashed).
class ClusterTokenRepo {
 public:
  virtual ~ClusterTokenRepo() = default;
  virtual Status Create(const core::ClusterToken& t) = 0;
  /// Like ProviderTokenRepo::Consume: atomically marks the unused, unexpired token with this hash
  /// used at `now` and returns it; otherwise kUnauthenticated (one message for all cases).
  virtual Result<core::ClusterToken> Consume(const std::string& token_hash, TimePoint now) = 0;
};

/// Commands queued for clusters, delivered on their links until acknowledged.
class ClusterCommandRepo {
 public:
  virtual ~ClusterCommandRepo() = default;
  virtual Status Create(const core::ClusterCommand& c) = 0;
  virtual Result<core::ClusterCommand> Get(const std::string& id) = 0;
  /// Pending commands of a cluster, oldest first, at most `limit`.
  virtual Result<std::vector<core::ClusterCommand>> ListPending(const std::string& cluster_id,
                                                                size_t limit) = 0;
  /// Counts one more delivery of each (pending) command at `now`.
  virtual Status MarkDelivered(const std::vector<std::string>& ids, TimePoint now) = 0;
  /// Completes a pending command of `cluster_id` with `state` (succeeded or failed) and its
  /// result or `error` (code name, message and reason are kept; null when it succeeded).
  /// Completing an already completed command changes nothing and is OK (acks may be repeated);
  /// a command of another cluster or an unknown id is kNotFound.
  virtual Status Complete(const std::string& id, const std::string& cluster_id,
                          core::ClusterCommandState state, const Json& result, const Error* error,
                          TimePoint now) = 0;
};

/// Worker rows of cloud clusters (the broker's). Names are unique (kAlreadyExists).
class WorkerRepo {
 public:
  virtual ~WorkerRepo() = default;
  /// Stores `w` as given (version as given, normally 1). kNotFound for an unknown cluster.
  virtual Status Create(const core::Worker& w) = 0;
  /// kNotFound when absent.
  virtual Result<core::Worker> Get(const std::string& id) = 0;
  /// Workers of one cluster ordered by created_at, then id.
  virtual Result<std::vector<core::Worker>> ListByCluster(const std::string& cluster_id) = 0;
  /// Every worker, ordered by created_at, then id (the sweeper's view).
  virtual Result<std::vector<core::Worker>> List() = 0;
  /// Compare-and-swap like ClusterRepo::Update (all but id, cluster_id, name, created_at).
  virtual Status Update(const core::Worker& w) = 0;
  /// kNotFound when absent.
  virtual Status Delete(const std::string& id) = 0;
};

/// Services and their instances (migration 0004). Instances are written by the root's scheduler
/// only (one writer), so they have no version.
class ServiceRepo {
 public:
  virtual ~ServiceRepo() = default;
  /// kAlreadyExists when the name is taken.
  virtual Status Create(const core::Service& s) = 0;
  /// kNotFound when absent.
  virtual Result<core::Service> Get(const std::string& id) = 0;
  /// Ordered by created_at, then id.
  virtual Result<std::vector<core::Service>> List() = 0;
  /// Compare-and-swap on version (kConflict when it moved); spec, replicas, deployed, updated_at.
  virtual Status Update(const core::Service& s) = 0;
  /// kNotFound when absent; kFailedPrecondition while it has instances.
  virtual Status Delete(const std::string& id) = 0;

  /// Inserts or replaces the instance with this job_id.
  virtual Status PutInstance(const core::ServiceInstance& i) = 0;
  /// Instances of one service ("" = all), ordered by service_id, replica.
  virtual Result<std::vector<core::ServiceInstance>> ListInstances(
      const std::string& service_id) = 0;
  /// kNotFound when absent.
  virtual Status DeleteInstance(const std::string& job_id) = 0;
};

/// The whole store. Transaction() runs `fn` atomically (all or nothing); repositories reached
/// through the Store& passed to `fn` take part in it. Nested calls join the outer transaction.
class Store {
 public:
  virtual ~Store() = default;
  virtual UserRepo& users() = 0;
  virtual ProviderTokenRepo& provider_tokens() = 0;
  virtual ProviderRepo& providers() = 0;
  virtual CredentialRepo& credentials() = 0;
  virtual OperationRepo& operations() = 0;
  virtual ClusterRepo& clusters() = 0;
  virtual ClusterTokenRepo& cluster_tokens() = 0;
  virtual ClusterCommandRepo& cluster_commands() = 0;
  virtual WorkerRepo& workers() = 0;
  virtual ServiceRepo& services() = 0;
  virtual Status Transaction(const std::function<Status(Store&)>& fn) = 0;
};
using StorePtr = std::unique_ptr<Store>;

/// Opens the store described by `url`: a filesystem path or "sqlite:PATH" for SQLite
/// (migrations are applied on open); "postgres://..." is reserved for the PostgreSQL store.
Result<StorePtr> OpenStore(const std::string& url);

}  // namespace canopy::store
