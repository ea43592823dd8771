// RemoteProvider: the Provider interface over HTTP to an adapter service (canopyd provider).
// The root builds one per request with the adapter's URL and key; credentials travel per request.
// Thread-safe (HttpClient is).
#pragma once

#include <string>

#include "common/secret.h"
#include "net/client.h"
#include "providers/provider.h"

namespace canopy::providers::remote {

class RemoteProvider final : public Provider {
 public:
  RemoteProvider(std::string base_url, SecretString adapter_key, ProviderInfo info);
  ProviderInfo Info() const override { return info_; }
  Status ValidateCredential(const CredentialSecret& secret) override;

 private:
  // POSTs `body` to base_url + path with the adapter key; parses the JSON answer.
  Result<Json> Call(const std::string& method, const std::string& path, const Json& body) const;

  std::string base_url_;
  SecretString adapter_key_;
  ProviderInfo info_;
  net::HttpClient http_;
};

}  // namespace canopy::providers::remote
