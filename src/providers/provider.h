// Provider: the provider-agnostic interface every cloud implements (fake, local, aws, gcp, and
// RemoteProvider, which forwards to an adapter service over HTTP). One Provider object serves many
// credentials: each call carries a CallContext with the decrypted credential and the region, and
// the implementation keeps no credential after the call (the thesis's credentials-bound service per
// request). Implementations must be thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/result.h"
#include "common/secret.h"

namespace canopy::providers {

/// Contract version implemented by this build (see docs/contracts/provider-adapter.md).
inline constexpr int kContractVersion = 1;

/// Tag key carrying the Canopy id of the resource that owns a cloud object.
inline constexpr const char* kCanopyIdTag = "canopy-id";
/// Instances and firewalls of a cluster carry kClusterTag=<cluster id>. A cluster identity is
/// confined to them: it may only create firewalls (tagged with its cluster automatically), check
/// them, attach/detach its cluster's firewalls to/from its cluster's instances, and delete its
/// cluster's firewalls. Anything else with it is an `auth` error.
inline constexpr const char* kClusterTag = "canopy-cluster";

/// Typed provider errors. Each maps to an ErrorCode and sets Error::reason to the kind's name, so
/// callers can retry (transient), fail over to another offer/cloud (capacity, quota) or give up.
enum class ProviderErrorKind { kCapacity, kQuota, kAuth, kInvalidRequest, kNotFound, kTransient };
std::string_view ProviderErrorKindName(ProviderErrorKind k);
/// capacity -> kResourceExhausted, quota -> kResourceExhausted, auth -> kUnauthenticated,
/// invalid_request -> kInvalidArgument, not_found -> kNotFound, transient -> kUnavailable.
Error MakeProviderError(ProviderErrorKind kind, std::string message);
/// The kind of an error produced by MakeProviderError (from reason, else from code).
ProviderErrorKind KindOf(const Error& e);

/// What an adapter reports about itself.
struct ProviderInfo {
  std::string type;                       ///< "fake", "local", "aws", ...
  std::string adapter_version;            ///< version of the adapter build
  std::vector<int> contract_versions;     ///< contract versions it speaks
  std::vector<std::string> capabilities;  ///< optional features, e.g. "gpu", "cluster_identity"
};

/// The decrypted credential secret JSON, as it travels to the provider for one call.
using CredentialSecret = Secret<Json>;

/// Per-call context: the credential and the region the call applies to.
struct CallContext {
  CredentialSecret credential;
  std::string region;
};

/// Opaque, versioned handle of a cloud object, persisted by the caller as soon as it is returned
/// (Nomad's TaskHandle). Only the provider that made it interprets `data`.
struct ProviderHandle {
  int version = 1;
  Json data = Json::object();
};

enum class InstanceState { kPending, kRunning, kStopping, kStopped, kTerminated };
std::string_view InstanceStateName(InstanceState s);

struct InstanceSpec {
  std::string canopy_id;        ///< tagged as kCanopyIdTag; one instance per canopy_id
  std::string idempotency_key;  ///< same key + same canopy_id -> the same instance, never a second
  std::string name;             ///< human-readable name (may be ignored)
  std::string instance_type;
  std::string image;
  int disk_gb = 10;
  std::string key_pair;                     ///< name of a key pair made by CreateKeyPair
  std::vector<std::string> firewalls;       ///< firewall ids attached at creation
  std::map<std::string, std::string> tags;  ///< extra tags (kCanopyIdTag is added)
};

struct Instance {
  ProviderHandle handle;
  std::string provider_id;  ///< the cloud's id, for display and logs
  std::string canopy_id;
  InstanceState state = InstanceState::kPending;
  std::string address;  ///< where the broker reaches it (public IP, or namespace address)
  std::string private_address;
  std::string ssh_user;  ///< user for SSH
  uint16_t ssh_port = 22;
  std::string host_key_sha256;  ///< "SHA256:..." host key fingerprint when the cloud reports it
  std::vector<std::string> firewalls;
  std::map<std::string, std::string> tags;
};

struct KeyPair {
  std::string name;
  std::string public_key;    ///< OpenSSH format
  SecretString private_key;  ///< OpenSSH/PEM private key
  std::string fingerprint;
};

struct FirewallRule {
  uint16_t port = 0;
  std::string protocol = "tcp";           ///< "tcp" or "udp"
  std::vector<std::string> source_cidrs;  ///< empty = anywhere
};

struct FirewallSpec {
  std::string canopy_id;  ///< tag; one firewall per canopy_id
  std::string name;
  std::vector<FirewallRule> rules;
  std::map<std::string, std::string> tags;
};

struct Firewall {
  std::string id;
  std::string name;
  std::string canopy_id;
  std::vector<FirewallRule> rules;
};

/// A limited identity for one cluster: may only manage its workers' firewalls.
struct ClusterIdentity {
  std::string id;
  CredentialSecret credential;  ///< a credential secret the cluster passes in CallContext
};

struct InstanceType {
  std::string name;
  int vcpus = 0;
  int64_t memory_mib = 0;
  int gpus = 0;
  std::optional<double> price_hour;  ///< USD; nullopt when unknown
  std::string price_note;            ///< why the price is unknown, or its source
};

struct Image {
  std::string id;
  std::string name;
};

struct Offers {
  std::vector<std::string> regions;
  std::vector<InstanceType> instance_types;
  std::vector<Image> images;
};

struct Quote {
  std::string instance_type;
  int count = 0;
  std::optional<double> price_hour_each;
  std::optional<double> price_hour_total;
  std::string note;
};

/// The provider-agnostic interface. Every method returns a Result; errors use
/// MakeProviderError kinds. Mandatory unless marked optional (optional ones may return
/// kNotSupported; kFailedPrecondition means a state problem, never "not offered").
class Provider {
 public:
  virtual ~Provider() = default;

  /// Identity of this provider implementation.
  virtual ProviderInfo Info() const = 0;
  /// Checks that the credential is well-formed and accepted by the cloud (auth error if not).
  virtual Status ValidateCredential(const CallContext& ctx) = 0;
  /// Regions, instance types (with prices when known) and images. ctx.region may be empty.
  virtual Result<Offers> ListOffers(const CallContext& ctx) = 0;
  /// Price of `count` instances of `instance_type`.
  virtual Result<Quote> GetQuote(const CallContext& ctx, const std::string& instance_type,
                                 int count) = 0;
  /// Default SSH user of an image.
  virtual std::string DefaultSshUser(const std::string& image) const = 0;

  /// Creates the instance, or returns the existing one with the same canopy_id (idempotent: the
  /// implementation looks up by tag before creating).
  virtual Result<Instance> CreateInstance(const CallContext& ctx, const InstanceSpec& spec) = 0;
  /// Every live (not terminated) instance tagged kCanopyIdTag=canopy_id; empty when none.
  virtual Result<std::vector<Instance>> FindInstancesByTag(const CallContext& ctx,
                                                           const std::string& key,
                                                           const std::string& value) = 0;
  /// Current state. kNotFound when the cloud no longer knows it.
  virtual Result<Instance> DescribeInstance(const CallContext& ctx, const ProviderHandle& h) = 0;
  /// Waits until running with an address (kDeadlineExceeded after `timeout`).
  virtual Result<Instance> WaitUntilRunning(const CallContext& ctx, const ProviderHandle& h,
                                            std::chrono::seconds timeout) = 0;
  virtual Status StopInstance(const CallContext& ctx, const ProviderHandle& h) = 0;
  virtual Status StartInstance(const CallContext& ctx, const ProviderHandle& h) = 0;
  /// NotFound counts as success.
  virtual Status TerminateInstance(const CallContext& ctx, const ProviderHandle& h) = 0;

  /// Creates a key pair and stores its private key with the provider (AWS: Secrets Manager),
  /// or returns the stored one when `name` exists.
  virtual Result<KeyPair> CreateKeyPair(const CallContext& ctx, const std::string& name) = 0;
  /// kNotFound when absent.
  virtual Result<KeyPair> GetKeyPair(const CallContext& ctx, const std::string& name) = 0;

  /// Creates, or returns the existing firewall with the same canopy_id.
  virtual Result<Firewall> CreateFirewall(const CallContext& ctx, const FirewallSpec& spec) = 0;
  virtual Result<bool> FirewallExists(const CallContext& ctx, const std::string& firewall_id) = 0;
  /// Attaching an attached firewall, or detaching a detached one, succeeds.
  virtual Status AttachFirewall(const CallContext& ctx, const ProviderHandle& instance,
                                const std::string& firewall_id) = 0;
  virtual Status DetachFirewall(const CallContext& ctx, const ProviderHandle& instance,
                                const std::string& firewall_id) = 0;
  /// NotFound counts as success.
  virtual Status DeleteFirewall(const CallContext& ctx, const std::string& firewall_id) = 0;

  /// Optional: a limited identity for a cluster (only its cluster's firewalls; see kClusterTag).
  virtual Result<ClusterIdentity> CreateClusterIdentity(const CallContext& ctx,
                                                        const std::string& cluster_id) = 0;
  /// NotFound counts as success.
  virtual Status DeleteClusterIdentity(const CallContext& ctx, const std::string& identity_id) = 0;
};
using ProviderPtr = std::unique_ptr<Provider>;

}  // namespace canopy::providers
