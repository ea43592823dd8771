// Opens a stored credential for a cloud call: finds a live adapter of the credential's provider
// type and decrypts the credential, giving a Provider (RemoteProvider to that adapter) and the
// secret to put in each CallContext. Used by the offers and cluster handlers and by the broker's
// operations (src/broker). Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "api/api.h"
#include "core/types.h"
#include "providers/provider.h"

namespace canopy::api {

struct OpenedProvider {
  core::Credential credential;
  std::unique_ptr<providers::Provider> provider;
  providers::CredentialSecret secret;

  providers::CallContext Context(const std::string& region) const {
    return providers::CallContext{secret, region};
  }
};

// kNotFound "credential not found"; kFailedPrecondition when no adapter of its type is live.
Result<OpenedProvider> OpenProviderForCredential(const ApiDeps& deps,
                                                 const std::string& credential_id);

// A provider call's error as an API answer: user-actionable errors keep their meaning (400, 422),
// adapter trouble is 503, anything else provider_error.
Error ProviderCallError(const std::string& provider, const Error& e);

}  // namespace canopy::api
