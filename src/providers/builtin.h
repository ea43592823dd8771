// The provider types built into this binary. Used by canopyd and tests. Thread-safe.
#pragma once

#include "providers/registry.h"

namespace canopy::providers {

/// Registers every built-in provider factory (fake, ...) in `registry`.
Status RegisterBuiltinProviders(ProviderRegistry& registry);

}  // namespace canopy::providers
