// CloudAccess: opens a stored credential for cloud calls: the credential row, its decrypted
// secret and a provider of its type (through ProviderOpener), and a cluster's limited identity.
// Also the offers use case and the mapping of provider errors to API errors. Used by the
// request handlers, the broker's operations, the firewall sync and the sweeper. Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "auth/secret_box.h"
#include "control/adapters.h"
#include "core/types.h"
#include "providers/provider.h"
#include "store/store.h"

namespace canopy::control {

struct OpenedProvider {
  core::Credential credential;
  std::shared_ptr<providers::Provider> provider;
  providers::CredentialSecret secret;

  providers::CallContext Context(const std::string& region) const {
    return providers::CallContext{secret, region};
  }
};

struct OffersView {
  core::Credential credential;
  std::string region;
  providers::Offers offers;
};

class CloudAccess {
 public:
  CloudAccess(store::Store& store, const auth::SecretBox& secrets, ProviderOpener& opener);

  // kNotFound "credential not found"; kFailedPrecondition (reason kReasonNoLiveAdapter) when no
  // provider of its type is reachable.
  Result<OpenedProvider> Open(const std::string& credential_id);
  // A credential by id, or by name for convenience (kNotFound "credential not found").
  Result<core::Credential> FindCredential(const std::string& id_or_name);
  // What the provider offers this credential now (region may be empty). `provider`, when not
  // empty, must be the credential's type (kInvalidArgument). Provider errors as ProviderCallError.
  Result<OffersView> Offers(const std::string& credential_id, const std::string& provider,
                            const std::string& region);

  // The cluster's limited identity as a call context (for changes the cluster may make itself:
  // its service firewalls); the full credential's context when the provider has no identities.
  Result<providers::CallContext> IdentityContext(const core::Cluster& c,
                                                 const providers::CallContext& full) const;
  // Seals a cluster identity's credential for ClusterCloud::identity_sealed.
  Result<std::string> SealIdentity(const std::string& cluster_id,
                                   const providers::CredentialSecret& credential) const;

 private:
  store::Store& store_;
  const auth::SecretBox& secrets_;
  ProviderOpener& opener_;
};

// A provider call's error as an API answer: user-actionable errors keep their meaning (400, 422),
// adapter trouble is 503, anything else provider_error.
Error ProviderCallError(const std::string& provider, const Error& e);

}  // namespace canopy::control
