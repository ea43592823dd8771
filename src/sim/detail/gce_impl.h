// The state and internals of GceDouble (src/sim/gce_double.h), shared by its three files:
// gce_double.cpp (HTTP, tokens, IAM, Resource Manager, Secret Manager, operations, faults),
// gce_compute.cpp (the Compute API: catalog, instances, firewalls) and gce_machines.cpp (the
// machine behind each instance, its firewall). Everything below `mu` is guarded by it.
#pragma once

#include <openssl/evp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "net/http.h"
#include "providers/local/local_provider.h"
#include "sim/discovery.h"
#include "sim/gce_double.h"

namespace canopy::sim {

namespace gce {

inline constexpr char kApiBase[] = "https://www.googleapis.com/compute/v1/";
inline constexpr char kEmptyFingerprint[] = "42WmSpB8rSM=";  // GCE's fingerprint of nothing

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::shared_ptr<EVP_PKEY>;

struct ServiceAccount {
  std::string account_id, email, unique_id, display_name, description, etag;
  std::map<std::string, PkeyPtr> keys;  // key id -> the RSA key (the double verifies with it)
  std::map<std::string, std::string> key_created;  // key id -> RFC 3339
};

struct AccessToken {
  std::string email;
  TimePoint expiry;
};

struct SecretVersion {
  std::string data;  // base64, as given
  std::string create_time;
  std::string state = "ENABLED";
};

struct SecretEntry {
  std::string id, create_time, etag;
  Json replication, labels;
  std::vector<SecretVersion> versions;  // version N at index N-1
};

struct Operation {
  std::string name, zone;  // zone "" = global
  std::string id, type, target_link, target_id, user;
  std::string status = "PENDING";
  int progress = 0;
  std::string insert_time, start_time, end_time;
  int polls = 0;
  int need_polls = 2;
  std::chrono::steady_clock::time_point created;
  std::chrono::milliseconds min_duration{0};
  bool work_done = false;        // the change it stands for is complete (or failed)
  int64_t firewall_version = 0;  // DONE only once every machine applied this rule version
  Json error;                    // {errors:[...]} when it failed
  int http_error_status = 0;
  std::string http_error_message;
};
using OperationPtr = std::shared_ptr<Operation>;

struct Instance {
  std::string zone, region, name, id, created;
  std::string machine_type;  // name
  int cpus = 1;
  std::string description;
  Json metadata_items = Json::array();
  std::string metadata_fingerprint;
  Json labels = Json::object();
  std::string label_fingerprint;
  std::vector<std::string> tags;
  std::string tags_fingerprint;
  Json service_accounts;  // echoed when given
  Json scheduling;
  std::string network, subnetwork;  // URLs
  std::string network_ip, nat_ip, access_config_name;
  bool wants_nat = false;
  std::string source_image, image_family, blank_image;  // blank "" = no machine for it
  std::string disk_size_gb = "10";
  std::string ssh_key;       // the public key for admin ("ssh-ed25519 AAAA... admin")
  std::string create_error;  // why no machine can be made (refused ssh user, ...)
  bool guest_attributes = false;
  std::string last_start, last_stop;

  // Lifecycle: the API sets `desired` (and the status it shows at once); the instance's worker
  // brings the machine in line and sets the rest.
  std::string status = "PROVISIONING";
  std::string desired = "RUNNING";  // RUNNING, TERMINATED, DELETED
  bool busy = false;                // a worker runs for it
  bool removed = false;             // deleted: gone from the maps
  std::string machine_id;           // the local instance (its provider id), "" = none yet
  providers::ProviderHandle machine_handle;
  bool machine_running = false;
  bool keys_published = false;   // booted: host key in the guest attributes and on the console
  std::string host_key;          // "ssh-ed25519 AAAA..." (no comment)
  std::string host_key_sha256;   // "SHA256:..."
  std::string serial;            // console output (serial port 1)
  int64_t firewall_applied = 0;  // the rule version its machine's firewall has
  std::string firewall_key;      // the rules applied, canonical text
  std::string local_firewall;    // the local firewall id attached
  // Operations waiting for the instance to reach a state ("RUNNING", "TERMINATED", "DELETED").
  std::vector<std::pair<std::string, OperationPtr>> ops;
};
using InstancePtr = std::shared_ptr<Instance>;

struct Firewall {
  Json res;  // the resource as GET shows it
};

struct Faults {
  int rate_limited = 0;                 // the next N API requests get 429
  int unavailable = 0;                  // the next N API requests get 503
  std::map<std::string, int> stockout;  // zone -> inserts left to fail (-1 = until cleared)
  std::map<std::string, int> quota;     // region ("" = global) -> inserts left (-1 = always)
  int slow_polls = 0;                   // > 0: operations need this many polls
  std::chrono::milliseconds slow_min{0};
  Json ToJson() const;
};

/// A handler's answer: a JSON body with a status, or a Google error.
struct Reply {
  int status = 200;
  Json body;
  static Reply Ok(Json b) { return Reply{200, std::move(b)}; }
  static Reply Err(const GoogleError& e) { return Reply{e.code, e.ToJson()}; }
};

// Google error helpers (Compute's resource errors have no "status"; the others do).
GoogleError NotFound(const std::string& message, bool with_status = false);
GoogleError AlreadyExists(const std::string& message, bool with_status = false);
GoogleError Forbidden(const std::string& message, bool with_status = true);
GoogleError Invalid(const std::string& message);  // 400 reason "invalid", no status
GoogleError NotImplemented(const std::string& method_id);

std::string NewNumericId();
std::string NowRfc3339(const Clock& clock);

}  // namespace gce

struct GceDouble::Impl : std::enable_shared_from_this<GceDouble::Impl> {
  explicit Impl(GceDoubleOptions o) : opts(std::move(o)) {}

  // --- gce_double.cpp ---
  Status Init();
  net::Response Serve(const net::Request& req);
  net::Response Token(const net::Request& req);
  net::Response Admin(const net::Request& req);
  gce::Reply Dispatch(const ApiCall& call, const std::string& caller);
  std::optional<GoogleError> Authorize(const ApiCall& call, const std::string& caller);
  std::string ProjectNumber() const { return project_number; }
  bool IsOwnProject(const std::string& p) const { return p == opts.project || p == project_number; }
  gce::Reply Crm(const ApiCall& call);
  gce::Reply Iam(const ApiCall& call);
  gce::Reply SecretManager(const ApiCall& call);
  Result<Json> CreateKey(const std::string& email);  // caller holds mu
  gce::Reply OperationGet(const ApiCall& call, bool wait);
  gce::OperationPtr NewOperation(const std::string& zone, const std::string& type,
                                 const std::string& target_link, const std::string& target_id,
                                 const std::string& user);  // caller holds mu
  void Advance(gce::Operation& op);                         // caller holds mu
  Json RenderOperation(const gce::Operation& op) const;
  std::string OperationLink(const gce::Operation& op) const;
  std::string TokenUrl() const { return base_url + "/token"; }
  void StopAll();
  Status AddFault(const Json& f);
  void ClearFaults();
  Json InstancesJson() const;

  // --- gce_compute.cpp ---
  gce::Reply Compute(const ApiCall& call, const std::string& caller);
  gce::Reply InstanceInsert(const ApiCall& call, const std::string& caller);
  gce::Reply InstanceAction(const ApiCall& call, const std::string& caller);
  gce::Reply SetTags(const ApiCall& call, const std::string& caller);
  gce::Reply FirewallChange(const ApiCall& call, const std::string& caller);
  Json RenderInstance(const gce::Instance& in) const;
  std::string ZoneLink(const std::string& zone) const;
  std::string InstanceLink(const gce::Instance& in) const;
  std::optional<std::string> AllocateAddress();                                  // caller holds mu
  std::string AllocateNatAddress();                                              // caller holds mu
  std::vector<providers::FirewallRule> RulesFor(const gce::Instance& in) const;  // holds mu

  // --- gce_machines.cpp ---
  void Kick(const gce::InstancePtr& in);  // caller holds mu: runs the instance's worker
  void Converge(const gce::InstancePtr& in);
  Status CreateMachine(const gce::InstancePtr& in);
  Status BootMachine(const gce::InstancePtr& in);
  Status StopMachine(const gce::InstancePtr& in);
  Status DeleteMachine(const gce::InstancePtr& in);
  Status SyncMachineFirewall(const gce::InstancePtr& in);
  void FirewallsChanged();  // caller holds mu: every machine's firewall is brought in line
  bool FirewallsSettled(int64_t version) const;  // caller holds mu
  // Completes the instance's operations waiting for `reached` (all of them when it failed or is
  // gone: `error` = {errors:[...]}). Caller holds mu.
  void FinishOps(gce::Instance& in, const std::string& reached, const Json& error = nullptr,
                 int http = 0, const std::string& http_message = "");
  void RemoveInstance(gce::Instance& in);  // caller holds mu: forgets it, frees its addresses
  providers::CallContext LocalCtx() const;

  GceDoubleOptions opts;
  std::unique_ptr<Discovery> discovery;
  std::unique_ptr<providers::local::LocalProvider> local;
  std::unique_ptr<net::HttpServer> server;
  std::string base_url;
  std::string project_number;
  std::string owner_email;
  Json owner_key;
  uint32_t range_base = 0, range_size = 0, gateway = 0;

  mutable std::mutex mu;
  std::condition_variable changed;  // notified when an instance's worker finishes a step
  bool stopping = false;
  std::map<std::string, gce::ServiceAccount> accounts;  // email -> account
  std::map<std::string, gce::AccessToken> tokens;       // access token -> whose
  Json policy_bindings = Json::array();
  int64_t policy_version = 1;
  std::string policy_etag;
  std::map<std::string, gce::SecretEntry> secrets;      // secret id -> secret
  std::map<std::string, gce::OperationPtr> operations;  // name -> operation
  std::map<std::string, std::string> request_ids;       // requestId -> operation name
  std::map<std::string, gce::InstancePtr> instances;    // "zone/name" -> instance
  std::map<std::string, gce::Firewall> firewalls;       // name -> rule
  int64_t firewall_version = 0;
  std::set<std::string> used_addresses, used_nat;
  std::map<std::string, std::future<void>> workers;  // instance id -> its worker
  gce::Faults faults;
};

}  // namespace canopy::sim
