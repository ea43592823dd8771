// Factory of the local provider from adapter configuration JSON (`canopyd provider --type local`,
// `canopy up`). Thread-safe (stateless).
#pragma once

#include "common/json.h"
#include "common/result.h"
#include "providers/factory.h"
#include "providers/provider.h"

namespace canopy::providers::local {

/// config keys (all optional): state_dir (string), bridge (string), subnet (IPv4 CIDR),
/// boot_delay_ms (int), fail_rate (0..1), capacity ({"local.small": n, ...}).
/// Unknown keys are errors. Not root -> kFailedPrecondition.
Result<ProviderPtr> MakeLocalProvider(const Json& config);

/// The registry's entry for `--type local`: ValidateConfig checks the keys and value types
/// (without touching the machine); Create builds the provider (needs root).
class LocalProviderFactory final : public ProviderFactory {
 public:
  std::string Name() const override { return "local"; }
  Result<Json> ValidateConfig(const Json& config) const override;
  Result<ProviderPtr> Create(const Json& config) const override;
};

}  // namespace canopy::providers::local
