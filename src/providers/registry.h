// ProviderRegistry: the provider factories known to one process, by name. An instance, never a
// global: main() and tests build their own (see builtin.h). Thread-safe.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "providers/factory.h"

namespace canopy::providers {

class ProviderRegistry {
 public:
  /// kAlreadyExists when a factory of the same name is registered; kInvalidArgument for no name.
  Status Register(ProviderFactoryPtr factory);
  /// kNotFound (listing the known names) for an unknown name; else the factory's Create.
  Result<ProviderPtr> Create(const std::string& name, const Json& config) const;
  /// kNotFound for an unknown name.
  Result<Json> ValidateConfig(const std::string& name, const Json& config) const;
  /// Sorted names.
  std::vector<std::string> Names() const;

 private:
  Result<const ProviderFactory*> Find(const std::string& name) const;

  mutable std::mutex mu_;
  std::map<std::string, ProviderFactoryPtr> factories_;
};

}  // namespace canopy::providers
