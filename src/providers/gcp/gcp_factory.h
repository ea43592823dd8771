// Factory of the GCP provider from adapter configuration JSON (`canopyd provider --type gcp`).
// Thread-safe (stateless).
#pragma once

#include "common/json.h"
#include "common/result.h"
#include "providers/factory.h"
#include "providers/gcp/gcp_provider.h"

namespace canopy::providers::gcp {

/// config keys (all optional): endpoint_url (string; every service, tokens at
/// {endpoint_url}/token), endpoints ({compute|crm|iam|secretmanager|token: url}), default_region,
/// zones ({region: zone}), network (name or "global/networks/NAME"), subnetworks ({region: name}),
/// private_addresses (bool), image_families ([family or project/family]), price_catalog (CSV
/// path), max_attempts (1..10), retry_base_ms (1..10000), offers_ttl_s (0..86400),
/// host_key_source ("guest_attributes" | "serial"), operation_poll_ms (1..10000). Unknown keys are
/// errors.
Result<GcpOptions> ParseGcpOptions(const Json& config);

class GcpProviderFactory final : public ProviderFactory {
 public:
  std::string Name() const override { return "gcp"; }
  Result<Json> ValidateConfig(const Json& config) const override;
  Result<ProviderPtr> Create(const Json& config) const override;
};

}  // namespace canopy::providers::gcp
