// ProviderFactory: the abstract factory of one provider type (fake, local, aws, ...). Builds a
// Provider from adapter configuration JSON. Used by ProviderRegistry and `canopyd provider`.
// Implementations must be thread-safe.
#pragma once

#include <memory>
#include <string>

#include "common/json.h"
#include "common/result.h"
#include "providers/provider.h"

namespace canopy::providers {

class ProviderFactory {
 public:
  virtual ~ProviderFactory() = default;
  /// The provider type, e.g. "fake".
  virtual std::string Name() const = 0;
  /// The normalized configuration (defaults filled in), or kInvalidArgument naming the bad key.
  virtual Result<Json> ValidateConfig(const Json& config) const = 0;
  /// A provider built from `config` (validated first).
  virtual Result<ProviderPtr> Create(const Json& config) const = 0;
};
using ProviderFactoryPtr = std::unique_ptr<ProviderFactory>;

}  // namespace canopy::providers
