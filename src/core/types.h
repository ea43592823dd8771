// Domain types of the root control plane: plain values with no I/O. Thread-compatible.
// Used by store/ (persistence), api/ (handlers) and ops/ (operations engine).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/json.h"

namespace canopy::core {

enum class Role { kAdmin, kInfra, kApp };
std::string_view RoleName(Role r);
std::optional<Role> ParseRole(std::string_view s);

struct User {
  std::string id;
  std::string username;
  std::string password_hash;  // encoded KDF output (never the password)
  std::vector<Role> roles;
  TimePoint created_at{};
  // Access tokens carry the generation they were issued under; a password change increments it,
  // which revokes every token issued before.
  int64_t token_generation = 0;
  bool HasRole(Role r) const;
};

// Single-use, expiring token that lets a provider adapter register. Only its SHA-256 is stored.
struct ProviderToken {
  std::string id;
  std::string token_hash;
  TimePoint expires_at{};
  TimePoint created_at{};
  std::optional<TimePoint> used_at;
  std::string created_by;  // user id
};

// A registered provider adapter. `key_ciphertext` is the adapter's key, encrypted under the
// master key: the adapter presents it on heartbeats, the root presents it when calling the adapter.
struct ProviderRecord {
  std::string id;
  std::string type;  // "local", "aws", "gcp", "fake", ...
  std::string url;   // where the root reaches the adapter
  Json capabilities = Json::object();
  std::string version;
  std::string key_ciphertext;
  TimePoint registered_at{};
  TimePoint last_seen{};
  // Receives credentials only once approved (at registration, unless the root requires an
  // infra user's approval).
  bool approved = true;
};

enum class ProviderStatus { kLive, kDown };
std::string_view ProviderStatusName(ProviderStatus s);

// A stored cloud credential. The secret is only ever held encrypted (AES-256-GCM, master key).
struct Credential {
  std::string id;
  std::string name;
  std::string provider;  // provider type
  std::string secret_ciphertext;
  std::string created_by;
  TimePoint created_at{};
  std::string adapter_id;  // the adapter it was validated by: the only one it is decrypted for
};

enum class OperationState { kPending, kRunning, kSucceeded, kFailed };
std::string_view OperationStateName(OperationState s);
std::optional<OperationState> ParseOperationState(std::string_view s);

enum class StepState { kPending, kRunning, kSucceeded, kFailed };
std::string_view StepStateName(StepState s);
std::optional<StepState> ParseStepState(std::string_view s);

struct OperationStep {
  std::string name;
  StepState state = StepState::kPending;
  std::optional<TimePoint> started_at;
  std::optional<TimePoint> finished_at;
};

// A persisted long-running operation (see ops/engine.h). `version` is bumped on every update and
// used for compare-and-swap. `data` is the operation kind's own state.
struct Operation {
  std::string id;
  std::string kind;
  std::string target_id;
  OperationState state = OperationState::kPending;
  int64_t step = 0;  // index into steps
  std::vector<OperationStep> steps;
  int64_t attempt = 0;
  TimePoint next_run_at{};
  std::string lease_owner;
  TimePoint lease_until{};
  std::string last_error_code;
  std::string last_error_message;
  Json data = Json::object();
  int64_t version = 0;
  TimePoint created_at{};
  TimePoint updated_at{};
};

// ---- clusters (the cluster tier as the root sees it; protocol: src/cluster/README.md) ----

enum class ClusterKind { kEdge, kCloud };
std::string_view ClusterKindName(ClusterKind k);
std::optional<ClusterKind> ParseClusterKind(std::string_view s);

// The contract's cluster states. Edge clusters start at kPairing; cloud clusters at kProvisioning.
enum class ClusterState {
  kProvisioning,
  kInstalling,
  kPairing,
  kActive,
  kFailed,
  kDeleting,
  kOffline
};
std::string_view ClusterStateName(ClusterState s);
std::optional<ClusterState> ParseClusterState(std::string_view s);

// A node as its cluster reports it (the cluster decides: heartbeats within its window).
enum class NodeState { kOnline, kOffline };
std::string_view NodeStateName(NodeState s);
std::optional<NodeState> ParseNodeState(std::string_view s);

// What a node reports about its machine when it registers (each start).
struct NodeSystem {
  std::string os;          // PRETTY_NAME of /etc/os-release ("" when there is none)
  std::string kernel;      // uname -r
  std::string arch;        // uname -m
  int64_t cpus = 0;        // online CPUs
  int64_t memory_mib = 0;  // MemTotal
};
// {"os","kernel","arch","cpus","memory_mib"}.
Json NodeSystemToJson(const NodeSystem& s);
// Reads that document; absent fields stay empty. Wrong types, strings over 256 bytes or negative
// numbers are kInvalidArgument.
Result<NodeSystem> NodeSystemFromJson(const Json& j);

// One node of a cluster as last reported over the cluster's link.
struct ClusterNodeInfo {
  std::string id;
  std::string address;
  NodeState state = NodeState::kOnline;
  int64_t cpu_millis = 0;
  int64_t memory_mib = 0;
  int64_t memory_available_mib = 0;
  double load1 = 0;
  std::optional<TimePoint> last_seen;
  bool draining = false;
  NodeSystem system;  // no new jobs (its worker is being stopped/terminated/deleted)
};

// How the broker logs in to an instance over SSH, as the provider reported it once running.
struct SshLogin {
  std::string user;
  uint16_t port = 22;
  std::string host_key;  // SHA256 fingerprint; "" when the provider reported none
  std::string address;
};

// The cluster's identity step: not run yet, run for a provider without identities, or made.
enum class IdentityState { kUnknown, kNone, kMade };

// What the broker made for a cloud cluster (stored as the clusters.cloud JSON column; the keys
// are those of ClusterCloudToJson). Every field is saved as soon as the cloud call that made it
// returns, so a re-run step finds it.
struct ClusterCloud {
  std::string operation_id;  // the broker operation that last changed the cluster
  std::string key_pair;      // "canopy-<credential id>" once made
  std::string ssh_firewall;  // shared per credential and region
  std::string api_firewall;  // the cluster's own (its API port)
  IdentityState identity = IdentityState::kUnknown;
  std::string identity_id;      // kMade only
  std::string identity_sealed;  // base64 of the SecretBox-sealed credential, aad "<id>/identity"
  Json handle;                  // the instance's provider handle; null until it exists
  std::string provider_id;
  std::string address;
  std::optional<SshLogin> ssh;  // set by the `running` step
  // Per-service firewalls the firewall sync made in this cluster: service id -> firewall id.
  std::map<std::string, std::string> service_firewalls;

  bool HasInstance() const { return !handle.is_null(); }
};
Json ClusterCloudToJson(const ClusterCloud& c);
// Lenient: unknown keys are ignored, missing ones keep their defaults (rows of older versions).
ClusterCloud ClusterCloudFromJson(const Json& j);

// A cluster row. Cloud fields are empty for edge clusters. `key_ciphertext` is the cluster key
// (issued at pairing) sealed with the SecretBox, the cluster id as associated data; empty until
// the cluster has paired. `version` is bumped on every write (compare-and-swap in Update).
struct Cluster {
  std::string id;
  std::string name;
  ClusterKind kind = ClusterKind::kEdge;
  ClusterState state = ClusterState::kPairing;
  std::optional<std::string> credential_id;
  std::optional<std::string> provider;
  std::optional<std::string> region;
  std::optional<std::string> instance_type;
  std::optional<std::string> image;
  std::optional<int64_t> disk_gb;
  std::string cluster_url;       // the cluster's advertised API URL ("" until paired)
  std::string software_version;  // canopyd version reported by the cluster
  std::string key_ciphertext;
  int64_t link_interval_seconds = 0;  // as reported by the cluster on its link
  std::optional<TimePoint> last_seen;
  std::optional<TimePoint> paired_at;
  std::vector<ClusterNodeInfo> nodes;
  Json resources = Json::object();  // aggregate of online nodes: cpu_millis, memory_mib, ...
  // Cloud clusters: what the broker made for this cluster, saved as soon as each cloud call
  // returns (src/broker/README.md). Empty for edge clusters.
  ClusterCloud cloud;
  std::string created_by;
  TimePoint created_at{};
  TimePoint updated_at{};
  int64_t version = 1;
};

// The contract's worker states (a row is consent to cost; it is kept until deleted).
enum class WorkerState { kBooting, kActive, kFailed, kTerminating, kStopped, kTerminated };
std::string_view WorkerStateName(WorkerState s);
std::optional<WorkerState> ParseWorkerState(std::string_view s);

// What an application provider may do to a worker (the contract's worker table).
enum class WorkerAction { kStop, kRestart, kTerminate, kRecreate, kDelete };
std::string_view WorkerActionName(WorkerAction a);
std::optional<WorkerAction> ParseWorkerAction(std::string_view s);
// Restart and recreate boot an instance (workers.provision); the others end one (worker.shutdown).
inline bool BootsInstance(WorkerAction a) {
  return a == WorkerAction::kRestart || a == WorkerAction::kRecreate;
}

// The contract's worker transition table: the state a worker passes through when `action` starts
// from `from`; nullopt when the transition is not allowed (the API answers 409 with the current
// state).
std::optional<WorkerState> WorkerActionThrough(WorkerAction action, WorkerState from);
// A worker in a state that may still cost money (anything but TERMINATED).
inline bool IsBilled(WorkerState s) { return s != WorkerState::kTerminated; }

// A worker VM of a cloud cluster, as the broker at the root tracks it. Its instance carries the
// tag canopy-id=InstanceCanopyId(): recreate bumps `generation`, so a new instance never collides
// with the terminated one. `handle` is the provider handle ({version,data}; null when none).
struct Worker {
  std::string id;
  std::string cluster_id;
  std::string name;
  WorkerState state = WorkerState::kBooting;
  std::string instance_type;
  std::string image;
  int64_t disk_gb = 10;
  int64_t generation = 1;
  Json handle;  // null until the instance exists
  std::string provider_id;
  std::string address;
  std::string node_id;
  std::string last_error;
  std::string operation_id;  // the operation that last changed it
  TimePoint created_at{};
  TimePoint updated_at{};
  int64_t version = 1;

  std::string InstanceCanopyId() const { return id + "-g" + std::to_string(generation); }
};

// Single-use, expiring token that lets a cluster pair with the root. Only its SHA-256 is stored.
struct ClusterToken {
  std::string id;
  std::string cluster_id;
  std::string token_hash;
  TimePoint expires_at{};
  TimePoint created_at{};
  std::optional<TimePoint> used_at;
  std::string created_by;
};

// What the root asks of a cluster over its link (protocol: src/cluster/README.md). The wire and
// the store carry CommandTypeName().
enum class CommandType {
  kPing,
  kCreateNodeToken,
  kDeployJob,
  kUndeployJob,
  kDrainNode,
  kUndrainNode
};
std::string_view CommandTypeName(CommandType t);
std::optional<CommandType> ParseCommandType(std::string_view s);

enum class ClusterCommandState { kPending, kSucceeded, kFailed };
std::string_view ClusterCommandStateName(ClusterCommandState s);
std::optional<ClusterCommandState> ParseClusterCommandState(std::string_view s);

// A command queued for a cluster; delivered on its link (at least once) until acknowledged.
struct ClusterCommand {
  std::string id;
  std::string cluster_id;
  std::string type;  // CommandTypeName() (a cluster answers unknown types with a failure)
  Json args = Json::object();
  ClusterCommandState state = ClusterCommandState::kPending;
  Json result;             // set when succeeded
  std::string error_code;  // set when failed
  std::string error_message;
  std::string error_reason;  // machine-readable (e.g. "no_worker_capacity"); may be empty
  int64_t deliveries = 0;
  TimePoint created_at{};
  std::optional<TimePoint> delivered_at;  // last delivery
  std::optional<TimePoint> completed_at;
};

// ---- the cluster tier's own records (kept in the cluster's store, src/store/cluster_store.h) ----

// A node registered with a cluster. Only the SHA-256 of its key is stored.
struct NodeRecord {
  std::string id;
  std::string hostname;
  std::string address;
  std::string key_hash;
  int64_t cpu_millis = 0;
  int64_t memory_mib = 0;
  int64_t memory_available_mib = 0;
  double load1 = 0;
  NodeSystem system;
  TimePoint registered_at{};
  TimePoint last_heartbeat{};
};

// Single-use, expiring token that lets a node register with its cluster (stored hashed).
struct NodeToken {
  std::string id;
  std::string token_hash;
  TimePoint expires_at{};
  TimePoint created_at{};
  std::optional<TimePoint> used_at;
};

// The outcome of a root command, kept by the cluster so a re-delivered command is answered with
// the same result (no second side effect) and acknowledged until the root confirms it.
struct CommandOutcome {
  std::string id;  // the root's command id
  std::string type;
  bool ok = true;
  Json result = Json::object();
  std::string error_code;
  std::string error_message;
  std::string error_reason;
  bool acknowledged = false;  // the root has confirmed the ack
  TimePoint created_at{};
};

// A service of an application provider (root): what to run and how many replicas. `spec` is
// the validated request (api/services.h): command, env, ports [{port, protocol, source_cidrs}],
// cpu_millis, memory_mib, restart, cluster_id (null = any cluster). `deployed` is the desired
// state; the root's scheduler (src/scheduler) makes the instances follow it.
struct Service {
  std::string id;
  std::string name;
  Json spec = Json::object();
  int64_t replicas = 1;
  bool deployed = false;
  std::string created_by;
  TimePoint created_at{};
  TimePoint updated_at{};
  int64_t version = 1;
};

// A service instance's state at the root: pending (no cluster yet; reason says why), scheduled
// (deploy_job sent to cluster_id), removing (undeploy_job sent), else the state its cluster last
// reported (starting, running, restarting, exited, failed; a cluster's "pending" - placed, the
// node has not started it yet - is starting here, where pending means "no cluster").
enum class InstanceState {
  kPending,
  kScheduled,
  kStarting,
  kRunning,
  kRestarting,
  kExited,
  kFailed,
  kRemoving
};
std::string_view InstanceStateName(InstanceState s);
std::optional<InstanceState> ParseInstanceState(std::string_view s);
// The state a cluster's job report means at the root (unknown words read as starting).
InstanceState InstanceStateFromReport(std::string_view reported);
// On a node: counted against its capacity and its firewall (not pending/scheduled/removing).
inline bool IsOnNode(InstanceState s) {
  return s != InstanceState::kPending && s != InstanceState::kScheduled &&
         s != InstanceState::kRemoving;
}

// Machine-readable reasons of pending instances (ServiceInstance::reason_code).
inline constexpr std::string_view kReasonNoWorkerCapacity = "no_worker_capacity";

// One replica of a deployed service as the root's scheduler sees it. job_id = "<service id>-r<N>"
// is the id the cluster and node use.
struct ServiceInstance {
  std::string job_id;
  std::string service_id;
  int64_t replica = 0;
  std::string cluster_id;
  std::string node_id;
  std::string address;
  InstanceState state = InstanceState::kPending;
  std::string reason_code;  // machine-readable (kReasonNoWorkerCapacity, ...); may be empty
  std::string reason;       // why, for people
  std::string command_id;   // the pending deploy_job / undeploy_job command
  TimePoint created_at{};
  TimePoint updated_at{};
};

}  // namespace canopy::core
