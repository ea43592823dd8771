// Factory of FakeProvider from configuration JSON. Thread-safe (stateless).
#pragma once

#include "providers/factory.h"

namespace canopy::providers::fake {

/// config keys (all optional): capacity ({"fake.small": n, ...}). Unknown keys are errors.
class FakeProviderFactory final : public ProviderFactory {
 public:
  std::string Name() const override { return "fake"; }
  Result<Json> ValidateConfig(const Json& config) const override;
  Result<ProviderPtr> Create(const Json& config) const override;
};

}  // namespace canopy::providers::fake
