// FakeProvider: an in-memory cloud for tests and demos: instances with states and tags, key pairs
// (real Ed25519 keys), firewalls, cluster identities, offers and quotes. A credential secret is
// valid when it is an object with a non-empty string "api_key" that does not start with "invalid".
// Test knobs: FailNext (inject a typed error) and per-type capacity. Thread-safe.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "providers/provider.h"

namespace canopy::providers::fake {

class FakeProvider final : public Provider {
 public:
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

  /// The next call of `method` (the C++ name, e.g. "CreateInstance") fails with `kind`, once.
  void FailNext(const std::string& method, ProviderErrorKind kind);
  /// The next CreateInstance / CreateFirewall / CreateClusterIdentity takes effect and then
  /// answers a transient error, as when the adapter dies after the cloud call. Once.
  void LoseNextAnswer(const std::string& method);
  /// At most `max` live (not terminated) instances of `instance_type`; beyond -> capacity error.
  void SetCapacity(const std::string& instance_type, int max);
  /// Number of live instances (for tests).
  int LiveInstanceCount() const;
  /// A firewall as stored (for tests); nullopt when absent.
  std::optional<Firewall> FirewallById(const std::string& id) const;
  /// false: CreateInstance makes a new instance on every call, as a cloud without idempotency
  /// tokens would, so only the caller's own tag lookup prevents duplicates (crash tests).
  void SetIdempotentCreate(bool on);

 private:
  // Checks the credential and consumes an injected failure for `method`. Caller holds mu_.
  Status Enter(const char* method, const CallContext& ctx);
  // nullopt for a full credential; the identity's cluster id ("" when unknown) otherwise.
  std::optional<std::string> IdentityClusterLocked(const CallContext& ctx) const;
  // With a cluster identity: the instance and the firewall must belong to its cluster.
  Status CheckClusterScopeLocked(const CallContext& ctx, const Instance& inst,
                                 const std::string& firewall_id);
  Result<Instance*> FindLocked(const ProviderHandle& h);

  mutable std::mutex mu_;
  std::map<std::string, ProviderErrorKind> fail_next_;
  std::set<std::string> lose_answer_;
  // An injected lost answer for `method`, consumed. Caller holds mu_.
  bool LoseAnswerLocked(const char* method);
  std::map<std::string, int> capacity_;
  std::map<std::string, Instance> instances_;            // by provider_id
  std::map<std::string, KeyPair> key_pairs_;             // by name
  std::map<std::string, Firewall> firewalls_;            // by id
  std::map<std::string, std::string> identities_;        // id -> cluster id
  std::map<std::string, std::string> firewall_cluster_;  // firewall id -> kClusterTag value
  int next_id_ = 1;
  bool idempotent_create_ = true;
};

}  // namespace canopy::providers::fake
