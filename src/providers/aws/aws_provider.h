// AwsProvider: the Provider interface on AWS EC2, with key pairs kept in Secrets Manager, cluster
// identities as IAM users and credential checks with STS (mapping in docs/providers/aws.md).
// Idempotency is by tags (`canopy-id`), found with DescribeInstances/DescribeSecurityGroups
// filters before anything is created, so a retry after a crash finds the first object.
// A cluster identity's credential carries its cluster id; its IAM policy confines it on AWS, and
// the adapter checks the same tags before each call (moto evaluates IAM actions but not
// conditions). Thread-safe; no credential is kept between calls (offer and price caches hold
// public data only).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "providers/aws/aws_client.h"
#include "providers/provider.h"

namespace canopy::providers::aws {

struct AwsOptions {
  AwsEndpoints endpoints;  ///< from the environment, then config `endpoint_url(s)`
  ClockPtr clock;          ///< dates request signatures; null = the system clock
  RetryPolicy retry;
  std::string default_region = "us-east-1";  ///< for calls whose context has no region
  /// Offered images: DescribeImages by these owners and name patterns, newest first.
  std::vector<std::string> image_owners = {"amazon", "099720109477", "136693071363"};
  std::vector<std::string> image_name_patterns = {"al2023-ami-2023*-x86_64", "debian-12-amd64-*",
                                                  "ubuntu/images/*ubuntu-*-22.04-amd64-server-*",
                                                  "ubuntu/images/*ubuntu-*-24.04-amd64-server-*"};
  int max_images = 20;
  /// Offered instance types: DescribeInstanceTypes filtered by these patterns ("t3.*"); empty: all.
  std::vector<std::string> instance_type_patterns;
  /// Offline price list (CSV InstanceType,Region,PriceHour); empty: none.
  std::string price_catalog;
  /// Ask the AWS Pricing API (GetProducts) for prices the catalog lacks.
  bool pricing_api = true;
  std::chrono::seconds offers_ttl{600};
  std::chrono::seconds price_ttl{86400};
  std::chrono::seconds price_failure_ttl{600};
  /// Read the SSH host key fingerprints cloud-init prints to the console (GetConsoleOutput) and
  /// wait for them in WaitUntilRunning, so the broker can pin the host key. Off for emulators,
  /// which have no console (the install then stops before connecting).
  bool console_host_keys = true;
  /// Launch instances into this subnet per region (RunInstances SubnetId; security groups are
  /// made in the subnet's VPC); a region without one uses its default VPC.
  std::map<std::string, std::string> subnets;
  /// Report instances' private addresses as their addresses (SSH and the cluster's URL): for a
  /// root inside the VPC or joined to it by VPN or peering, and for the simulator (scripts/sim/).
  bool private_addresses = false;
  /// Emulators only (moto hands out fake public IPs nobody may connect to): report this
  /// "HOST[:PORT]" as every instance's SSH address.
  std::string ssh_address_override;
};

class AwsProvider final : public Provider {
 public:
  explicit AwsProvider(AwsOptions options);
  ~AwsProvider() override;

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

  /// The IAM policy document of a cluster identity (least privilege; tests and docs read it).
  static Json ClusterPolicy(const std::string& cluster_id);
  /// The fingerprint ("SHA256:...") to pin from a console log: the last block cloud-init printed
  /// between "-----BEGIN SSH HOST KEY FINGERPRINTS-----" and "-----END ...", preferring ED25519,
  /// then ECDSA, then RSA (libssh's order); "" when there is none.
  static std::string HostKeyFromConsole(const std::string& console);
  /// Name of the Secrets Manager secret holding key pair `name`.
  static std::string KeyPairSecretName(const std::string& name);

 private:
  Status InstanceAction(const CallContext& ctx, const ProviderHandle& h, const char* action,
                        const char* what, bool gone_ok);
  Status ChangeGroups(const CallContext& ctx, const ProviderHandle& instance,
                      const std::string& firewall_id, bool attach);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace canopy::providers::aws
