#include "providers/builtin.h"

#include "providers/aws/aws_factory.h"
#include "providers/fake/fake_factory.h"
#include "providers/gcp/gcp_factory.h"
#include "providers/local/local_factory.h"

namespace canopy::providers {

Status RegisterBuiltinProviders(ProviderRegistry& registry) {
  CANOPY_TRY(registry.Register(std::make_unique<fake::FakeProviderFactory>()));
  CANOPY_TRY(registry.Register(std::make_unique<local::LocalProviderFactory>()));
  CANOPY_TRY(registry.Register(std::make_unique<aws::AwsProviderFactory>()));
  CANOPY_TRY(registry.Register(std::make_unique<gcp::GcpProviderFactory>()));
  return OkStatus();
}

}  // namespace canopy::providers
