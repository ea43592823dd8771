#include "providers/builtin.h"

#include "providers/fake/fake_factory.h"
#include "providers/local/local_factory.h"

namespace canopy::providers {

Status RegisterBuiltinProviders(ProviderRegistry& registry) {
  CANOPY_TRY(registry.Register(std::make_unique<fake::FakeProviderFactory>()));
  CANOPY_TRY(registry.Register(std::make_unique<local::LocalProviderFactory>()));
  return OkStatus();
}

}  // namespace canopy::providers
