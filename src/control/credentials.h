// Credentials: cloud credentials validated through a provider of their type before they are
// stored, kept only encrypted (AES-256-GCM under the master key, the row id as associated data)
// and never returned. Thread-safe.
#pragma once

#include <string>
#include <vector>

#include "auth/secret_box.h"
#include "common/clock.h"
#include "common/ids.h"
#include "control/adapters.h"
#include "core/types.h"
#include "providers/provider.h"
#include "store/store.h"

namespace canopy::control {

class Credentials {
 public:
  Credentials(store::Store& store, ClockPtr clock, IdGeneratorPtr ids,
              const auth::SecretBox& secrets, ProviderOpener& opener);

  // Binds the credential to a provider adapter of type `provider` (`adapter`, an adapter id, or
  // the only live approved one: ProviderOpener::Bind), validates `secret` through that adapter
  // (422 when the cloud rejects it, 503 when it cannot be asked now), then stores it. From then
  // on it is decrypted only for that adapter. kAlreadyExists for a taken name.
  Result<core::Credential> Add(const std::string& name, const std::string& provider,
                               providers::CredentialSecret secret, const std::string& user_id,
                               const std::string& adapter = "");
  Result<std::vector<core::Credential>> List();
  Result<core::Credential> Get(const std::string& id);  // kNotFound "credential not found"
  // kConflict while a cluster made with it exists (its resources are billed to it and deleting
  // them needs it).
  Status Delete(const std::string& id, const std::string& user_id);

 private:
  store::Store& store_;
  ClockPtr clock_;
  IdGeneratorPtr ids_;
  const auth::SecretBox& secrets_;
  ProviderOpener& opener_;
};

}  // namespace canopy::control
