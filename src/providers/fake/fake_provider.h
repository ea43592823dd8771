// FakeProvider: an in-memory provider for tests and demos. A credential secret is valid when it
// is an object with a non-empty string "api_key" that does not start with "invalid". Thread-safe.
#pragma once

#include "providers/provider.h"

namespace canopy::providers::fake {

class FakeProvider final : public Provider {
 public:
  ProviderInfo Info() const override;
  Status ValidateCredential(const CredentialSecret& secret) override;
};

}  // namespace canopy::providers::fake
