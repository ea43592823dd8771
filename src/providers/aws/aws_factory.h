// Factory of the AWS provider from adapter configuration JSON (`canopyd provider --type aws`).
// Endpoints: AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE> from the environment, overridden by
// config `endpoint_url` / `endpoints`. Thread-safe (stateless).
#pragma once

#include "common/json.h"
#include "common/result.h"
#include "providers/aws/aws_provider.h"
#include "providers/factory.h"

namespace canopy::providers::aws {

/// config keys (all optional): endpoint_url (string), endpoints ({ec2|iam|sts|secretsmanager|
/// pricing: url}), default_region, console_host_keys (bool), image_owners ([string]),
/// image_name_patterns ([string]), instance_types ([pattern], e.g. "t3.*"), max_images (1..500),
/// price_catalog (CSV path), pricing_api (bool), max_attempts (1..10), retry_base_ms (1..10000),
/// offers_ttl_s (0..86400), ssh_address_override ("HOST[:PORT]", emulators only). Unknown keys are
/// errors.
Result<AwsOptions> ParseAwsOptions(const Json& config, AwsEndpoints from_env);

class AwsProviderFactory final : public ProviderFactory {
 public:
  std::string Name() const override { return "aws"; }
  Result<Json> ValidateConfig(const Json& config) const override;
  Result<ProviderPtr> Create(const Json& config) const override;
};

}  // namespace canopy::providers::aws
