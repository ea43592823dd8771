#include "providers/registry.h"

#include <fmt/format.h>

namespace canopy::providers {

Status ProviderRegistry::Register(ProviderFactoryPtr factory) {
  if (!factory || factory->Name().empty()) {
    return Error::InvalidArgument("a provider factory needs a name");
  }
  std::string name = factory->Name();
  std::lock_guard<std::mutex> l(mu_);
  if (factories_.count(name)) {
    return Error::AlreadyExists(fmt::format("provider type '{}' is already registered", name));
  }
  factories_.emplace(std::move(name), std::move(factory));
  return OkStatus();
}

Result<const ProviderFactory*> ProviderRegistry::Find(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = factories_.find(name);
  if (it == factories_.end()) {
    std::vector<std::string> names;
    for (const auto& [n, f] : factories_) {
      names.push_back(n);
    }
    return Error::NotFound(
        fmt::format("unknown provider type '{}' (known: {})", name,
                    names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "))));
  }
  return it->second.get();
}

Result<ProviderPtr> ProviderRegistry::Create(const std::string& name, const Json& config) const {
  CANOPY_ASSIGN_OR_RETURN(const ProviderFactory* f, Find(name));
  return f->Create(config);
}

Result<Json> ProviderRegistry::ValidateConfig(const std::string& name, const Json& config) const {
  CANOPY_ASSIGN_OR_RETURN(const ProviderFactory* f, Find(name));
  return f->ValidateConfig(config);
}

std::vector<std::string> ProviderRegistry::Names() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> names;
  for (const auto& [n, f] : factories_) {
    names.push_back(n);
  }
  return names;
}

}  // namespace canopy::providers
