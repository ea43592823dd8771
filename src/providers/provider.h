// Provider: the provider-agnostic interface every cloud adapter implements (AWS, GCP, local, fake).
// This is the first slice (identity and credential validation); instances, firewalls, key pairs
// and offers are added by the provider-adapter work. Implementations must be thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/result.h"
#include "common/secret.h"

namespace canopy::providers {

/// What an adapter reports about itself.
struct ProviderInfo {
  std::string type;                     ///< "fake", "local", "aws", ...
  std::string adapter_version;          ///< version of the adapter build
  std::vector<int> contract_versions;   ///< contract versions it speaks (see docs/contracts)
  std::vector<std::string> capabilities;
};

/// A cloud credential as it travels to the adapter: the decrypted secret JSON.
using CredentialSecret = Secret<Json>;

class Provider {
 public:
  virtual ~Provider() = default;
  /// Identity of this provider implementation.
  virtual ProviderInfo Info() const = 0;
  /// Checks that `secret` is well-formed and accepted by the cloud. kInvalidArgument for a
  /// malformed secret, kUnauthenticated when the cloud rejects it, kUnavailable when the cloud
  /// cannot be reached. Never echoes the secret in the error message.
  virtual Status ValidateCredential(const CredentialSecret& secret) = 0;
};
using ProviderPtr = std::unique_ptr<Provider>;

}  // namespace canopy::providers
