// GcpProvider: the Provider interface on Google Compute Engine, with key pairs kept in Secret
// Manager, firewalls as VPC firewall rules reaching instances through network tags, and cluster
// identities as service accounts (mapping and wire contract: docs/providers/gcp.md).
// Idempotency is by labels (`canopy-id`), looked up before anything is created, plus Compute
// `requestId`s derived from the idempotency key, so a retry after a crash finds the first object.
// A cluster identity's credential carries its cluster id (`canopy_cluster`); the adapter confines
// it to its cluster's firewalls and instances before each call, as the AWS adapter does.
// Thread-safe; no credential is kept between calls (the token cache keeps access tokens, the
// offer caches public data only).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "providers/gcp/gcp_client.h"
#include "providers/provider.h"

namespace canopy::providers::gcp {

enum class HostKeySource { kGuestAttributes, kSerial };

struct GcpOptions {
  GcpEndpoints endpoints;  ///< config `endpoint_url` / `endpoints`
  ClockPtr clock;          ///< dates JWT assertions and token expiry; null = the system clock
  RetryPolicy retry;
  OperationPolicy operations;
  std::string default_region = "us-central1";  ///< for calls whose context has no region
  /// The zone of a region's instances; a region without an entry uses its first UP zone by name.
  std::map<std::string, std::string> zones;
  /// VPC network of instances and firewall rules.
  std::string network = "global/networks/default";
  /// Subnetwork name per region (optional; else the network's auto subnet).
  std::map<std::string, std::string> subnetworks;
  /// Instances get no external address (no accessConfigs) and report their internal IP.
  bool private_addresses = false;
  /// Offered images: images.getFromFamily of these families ("debian-12", or "project/family").
  std::vector<std::string> image_families = {"debian-12", "debian-11", "ubuntu-2204-lts",
                                             "ubuntu-2404-lts-amd64"};
  /// Offline price list (CSV MachineType,...,Region,PriceHour,...); empty: none.
  std::string price_catalog;
  std::chrono::seconds offers_ttl{600};
  HostKeySource host_key_source = HostKeySource::kGuestAttributes;
};

class GcpProvider final : public Provider {
 public:
  explicit GcpProvider(GcpOptions options);
  ~GcpProvider() override;

  ProviderInfo Info() const override;
  Status ValidateCredential(const CallContext& ctx) override;
  Result<Offers> ListOffers(const CallContext& ctx) override;
  Result<Quote> GetQuote(const CallContext& ctx, const std::string& instance_type,
                         int count) override;
  std::string DefaultSshUser(const std::string& image) const override;

  Result<Instance> CreateInstance(const CallContext& ctx, const InstanceSpec& spec) override;
  Result<std::vector<Instance>> FindInstancesByTag(const CallContext& ctx, const std::string& key,
                                                   const std::string& value) override;
  Result<Instance> DescribeInstance(const CallContext& ctx, const ProviderHandle& h) override;
  Result<Instance> WaitUntilRunning(const CallContext& ctx, const ProviderHandle& h,
                                    std::chrono::seconds timeout) override;
  Status StopInstance(const CallContext& ctx, const ProviderHandle& h) override;
  Status StartInstance(const CallContext& ctx, const ProviderHandle& h) override;
  Status TerminateInstance(const CallContext& ctx, const ProviderHandle& h) override;

  Result<KeyPair> CreateKeyPair(const CallContext& ctx, const std::string& name) override;
  Result<KeyPair> GetKeyPair(const CallContext& ctx, const std::string& name) override;

  Result<Firewall> CreateFirewall(const CallContext& ctx, const FirewallSpec& spec) override;
  Result<bool> FirewallExists(const CallContext& ctx, const std::string& firewall_id) override;
  Status AttachFirewall(const CallContext& ctx, const ProviderHandle& instance,
                        const std::string& firewall_id) override;
  Status DetachFirewall(const CallContext& ctx, const ProviderHandle& instance,
                        const std::string& firewall_id) override;
  Status DeleteFirewall(const CallContext& ctx, const std::string& firewall_id) override;

  Result<ClusterIdentity> CreateClusterIdentity(const CallContext& ctx,
                                                const std::string& cluster_id) override;
  Status DeleteClusterIdentity(const CallContext& ctx, const std::string& identity_id) override;

  // Naming and request shapes (pure; tests and the docs read them).

  /// "canopy-" + 12 hex digits of sha256(canopy_id): an RFC 1035 name for instances and firewall
  /// rules (also the firewall's network tag).
  static std::string ResourceName(const std::string& canopy_id);
  /// A label value: `value` itself when it is at most 63 of [a-z0-9_-], else "h-" + 40 hex
  /// digits of its sha256 (stable, so lookups by label find it).
  static std::string LabelValue(const std::string& value);
  /// A label key: lower-cased, other characters than [a-z0-9_-] as '_', starting with a letter
  /// ("k" prepended otherwise), at most 63 characters.
  static std::string LabelKey(const std::string& key);
  /// The Compute requestId of a create: a UUID (version-5 layout) of sha256(canopy_id "/" key).
  static std::string RequestId(const std::string& canopy_id, const std::string& idempotency_key);
  /// Secret Manager secret id of key pair `name`: "canopy-keypair-<name>".
  static std::string KeyPairSecretId(const std::string& name);
  /// Service account id of a cluster identity: "canopy-c-" + 10 hex of sha256(cluster_id).
  static std::string ClusterAccountId(const std::string& cluster_id);
  /// instances.insert body of `spec` in `zone`/`region`, with `ssh_user` and its `public_key`.
  Json InstanceBody(const InstanceSpec& spec, const std::string& region, const std::string& zone,
                    const std::string& ssh_user, const std::string& public_key) const;
  /// firewalls.insert body (invalid_request when rules cannot be one GCP rule); `cluster_id` may
  /// be empty.
  /// The VPC firewall rules of a Canopy firewall: one per distinct source list (a GCP rule has one
  /// source list for all its ports), named FirewallPartName(id, i), all targeting tag `id`.
  Result<std::vector<Json>> FirewallBodies(const FirewallSpec& spec,
                                           const std::string& cluster_id) const;
  static std::string FirewallPartName(const std::string& firewall_id, size_t part);
  static constexpr size_t kMaxFirewallParts = 16;
  /// instances.setTags body.
  static Json SetTagsBody(const std::vector<std::string>& items, const std::string& fingerprint);
  /// PROVISIONING/STAGING -> pending, RUNNING, STOPPING/SUSPENDING -> stopping,
  /// TERMINATED/SUSPENDED -> stopped, else pending.
  static InstanceState StateOf(const std::string& gce_status);
  /// The host key to pin from getGuestAttributes(queryPath=hostkeys/): the SHA256 fingerprint of
  /// the ED25519 key, else ECDSA, else RSA; "" when none is there.
  static std::string HostKeyFromGuestAttributes(const Json& guest_attributes);
  /// An Instance from a Compute Instance resource (options decide the address).
  Instance FromGce(const Json& gce) const;

 private:
  Status EnsureFirewallRule(const ServiceAccountKey& k, const Json& body,
                            const std::string& canopy_id);
  Status DeleteFirewallParts(const ServiceAccountKey& k, const std::string& id, size_t from);
  Status DeleteFirewallRule(const ServiceAccountKey& k, const std::string& name);
  Status ChangeTags(const CallContext& ctx, const ProviderHandle& instance,
                    const std::string& firewall_id, bool attach);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace canopy::providers::gcp
