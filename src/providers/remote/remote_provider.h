// RemoteProvider: the Provider interface over HTTP to an adapter service (canopyd provider).
// The root builds one per request with the adapter's URL and key; credentials travel per request.
// Thread-safe (HttpClient is).
#pragma once

#include <chrono>
#include <string>

#include "common/secret.h"
#include "net/client.h"
#include "providers/provider.h"

namespace canopy::providers::remote {

class RemoteProvider final : public Provider {
 public:
  // `tls`: how to reach an https adapter (the root's CA, the adapter's expected name, the root's
  // client certificate); null: plain HTTP or the system's roots.
  RemoteProvider(std::string base_url, SecretString adapter_key, ProviderInfo info,
                 net::TlsClientConfigPtr tls = nullptr);
  ProviderInfo Info() const override { return info_; }
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

 private:
  // POSTs {"credential","region", args...} to base_url + "/v1/" + method with the adapter key;
  // parses the JSON answer or turns the API error body back into the typed Error.
  Result<Json> Call(const std::string& method, const CallContext& ctx, Json args,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(60000)) const;

  std::string base_url_;
  SecretString adapter_key_;
  ProviderInfo info_;
  net::HttpClient http_;
};

}  // namespace canopy::providers::remote
