// LocalProvider: real instances on this host. Each instance is a network namespace
// `canopy-<id>` on a bridge, with its own address, sshd, disk folder and nftables firewall.
// Used by `canopyd provider --type local` and `canopy up`. Thread-safe; several processes may share
// a state_dir (a lock file serialises creation and address allocation). Needs root.
//
// Adapter restart: a new LocalProvider on the same state_dir re-adopts every instance. An instance
// recorded as running whose namespace or sshd is gone is booted again (as a cloud restarts a
// crashed VM); if that boot fails it is recorded and reported as stopped.
// Stop kills every process of the namespace and removes namespace and veth; the disk folder, host
// key and address stay allocated, so start boots again with the same address and host key.
// Sessions: ForceCommand runs a wrapper that starts in the disk folder with HOME set to it; sftp
// is the external sftp-server (internal-sftp cannot run under ForceCommand).
// Addresses are unique per host, not per state dir: providers with different state dirs on one
// bridge (two `canopy up` data dirs, a test beside a demo) share the host-wide AddressRegistry in
// /run/canopy/local-addresses/<bridge>/ (an flock'ed folder with one file per address naming its
// owner: state dir, instance id, namespace). An instance holds its address from create to
// terminate, stopped or not; Purge and ReleaseAddresses free a state dir's addresses; an entry
// whose owner is gone (no record with that address in its state dir, no namespace) is taken
// over, so crashes and deleted state dirs leak nothing. The registry is in tmpfs: on start a
// provider claims its records' addresses again, and an instance whose address another holds
// meanwhile moves to a free one.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>

#include "providers/provider.h"

namespace canopy::providers::local {

struct LocalOptions {
  std::string state_dir = "/var/lib/canopy/local";
  /// Blank images (scripts/local-images.sh): <images_dir>/<image>/rootfs. An instance of such an
  /// image gets its own root filesystem (an overlay on the image, its disk) in its own mount
  /// namespace. Offers list the built ones first (the default of new clusters), then the host
  /// images "debian-12" / "ubuntu-22.04", which run on this host's filesystem (fast, for tests).
  std::string images_dir = "/var/cache/canopy/images";
  std::string bridge = "canopy0";
  std::string subnet = "198.18.0.0/15";  ///< the gateway is the first host address, on the bridge
  std::chrono::milliseconds boot_delay{0};
  double fail_rate = 0.0;  ///< probability that CreateInstance fails (transient)
  std::map<std::string, int>
      capacity;  ///< max pending+running instances per type; absent = no limit
};

/// OK for euid 0, else kFailedPrecondition with a message explaining why root is needed.
Status CheckRunningAsRoot(unsigned euid);

class LocalProvider final : public Provider {
 public:
  /// Validates options, checks root and host tools, creates state folders and re-adopts instances.
  static Result<std::unique_ptr<LocalProvider>> Create(LocalOptions options);

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
  /// Stores only the public half of a key pair made elsewhere (as EC2 ImportKeyPair does):
  /// instances made with it accept that key; GetKeyPair has no private key to return for it.
  Status ImportKeyPair(const CallContext& ctx, const std::string& name,
                       const std::string& public_key);
  /// CreateInstance at exactly `address` (a host address of the subnet, not the gateway; "" =
  /// any), as a cloud gives a chosen private IP: for simulators of other clouds (src/sim/).
  /// kProviderError (capacity) when another instance on the bridge holds the address.
  Result<Instance> CreateInstanceAt(const CallContext& ctx, const InstanceSpec& spec,
                                    const std::string& address);
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

  /// Network namespace name of an instance id ("canopy-<id>").
  static std::string NetnsName(const std::string& instance_id);
  /// Host-side veth name of an instance id (<= 15 characters).
  static std::string VethName(const std::string& instance_id);
  const LocalOptions& options() const { return opts_; }

  /// Removes everything a provider with `options` made on this host, whether or not one runs:
  /// kills every process of every instance, deletes their namespaces and veths, the bridge and
  /// the state dir. For tests, benchmarks and uninstalling; no provider may use it meanwhile.
  static void Purge(const LocalOptions& options);
  /// Frees every address the provider with `options` holds on its bridge's registry, and the
  /// entries whose owner is gone (Purge does this too); instances and state stay. Only for when
  /// those instances are gone (a test's cleanup): their addresses become free to others.
  static void ReleaseAddresses(const LocalOptions& options);
  /// The host-wide address registry folder of `bridge` (/run/canopy/local-addresses/<bridge>).
  static std::string AddressRegistryDir(const std::string& bridge);

 private:
  explicit LocalProvider(LocalOptions options);
  struct Impl;
  LocalOptions opts_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace canopy::providers::local
