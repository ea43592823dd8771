#include "providers/aws/aws_factory.h"

#include <fmt/format.h>

#include <filesystem>

namespace canopy::providers::aws {
namespace {

Status CheckUrl(const std::string& key, const std::string& url) {
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
    return Error::InvalidArgument(fmt::format("{} must be an http:// or https:// URL", key));
  }
  return OkStatus();
}

}  // namespace

Result<AwsOptions> ParseAwsOptions(const Json& config, AwsEndpoints from_env) {
  AwsOptions o;
  o.endpoints = std::move(from_env);
  Json c = config.is_null() ? Json::object() : config;
  if (!c.is_object()) return Error::InvalidArgument("aws provider config must be a JSON object");
  for (const auto& [k, v] : c.items()) {
    if (k == "endpoint_url") {
      CANOPY_ASSIGN_OR_RETURN(o.endpoints.all, GetString(c, k, 512));
      CANOPY_TRY(CheckUrl(k, o.endpoints.all));
    } else if (k == "endpoints") {
      if (!v.is_object())
        return Error::InvalidArgument("endpoints must be an object {service: url}");
      for (const auto& [svc, url] : v.items()) {
        if (svc != "ec2" && svc != "iam" && svc != "sts" && svc != "secretsmanager" &&
            svc != "pricing") {
          return Error::InvalidArgument(fmt::format(
              "endpoints.{}: unknown service (ec2, iam, sts, secretsmanager, pricing)", svc));
        }
        if (!url.is_string())
          return Error::InvalidArgument(fmt::format("endpoints.{} must be a string", svc));
        CANOPY_TRY(CheckUrl("endpoints." + svc, url.get<std::string>()));
        o.endpoints.each[svc] = url.get<std::string>();
      }
    } else if (k == "default_region") {
      CANOPY_ASSIGN_OR_RETURN(o.default_region, GetString(c, k, 32));
    } else if (k == "image_owners") {
      CANOPY_ASSIGN_OR_RETURN(o.image_owners, GetStringArray(c, k, 16, 64));
    } else if (k == "image_name_patterns") {
      CANOPY_ASSIGN_OR_RETURN(o.image_name_patterns, GetStringArray(c, k, 32, 256));
    } else if (k == "instance_types") {
      CANOPY_ASSIGN_OR_RETURN(o.instance_type_patterns, GetStringArray(c, k, 64, 64));
    } else if (k == "max_images") {
      CANOPY_ASSIGN_OR_RETURN(int64_t n, GetInt(c, k, 1, 500));
      o.max_images = static_cast<int>(n);
    } else if (k == "price_catalog") {
      CANOPY_ASSIGN_OR_RETURN(o.price_catalog, GetString(c, k, 1024));
      std::error_code ec;
      if (!std::filesystem::is_regular_file(o.price_catalog, ec)) {
        return Error::InvalidArgument("price_catalog: no such file: " + o.price_catalog);
      }
    } else if (k == "pricing_api") {
      CANOPY_ASSIGN_OR_RETURN(o.pricing_api, GetOptBool(c, k, true));
    } else if (k == "subnets") {
      if (!v.is_object())
        return Error::InvalidArgument("subnets must be an object {region: subnet id}");
      for (const auto& [region, id] : v.items()) {
        if (!id.is_string() || id.get<std::string>().rfind("subnet-", 0) != 0 ||
            id.get<std::string>().size() > 64) {
          return Error::InvalidArgument(
              fmt::format("subnets.{} must be a subnet id (subnet-...)", region));
        }
        o.subnets[region] = id.get<std::string>();
      }
    } else if (k == "private_addresses") {
      CANOPY_ASSIGN_OR_RETURN(o.private_addresses, GetOptBool(c, k, false));
    } else if (k == "console_host_keys") {
      CANOPY_ASSIGN_OR_RETURN(o.console_host_keys, GetOptBool(c, k, true));
    } else if (k == "max_attempts") {
      CANOPY_ASSIGN_OR_RETURN(int64_t n, GetInt(c, k, 1, 10));
      o.retry.max_attempts = static_cast<int>(n);
    } else if (k == "retry_base_ms") {
      CANOPY_ASSIGN_OR_RETURN(int64_t n, GetInt(c, k, 1, 10000));
      o.retry.base = std::chrono::milliseconds(n);
    } else if (k == "offers_ttl_s") {
      CANOPY_ASSIGN_OR_RETURN(int64_t n, GetInt(c, k, 0, 86400));
      o.offers_ttl = std::chrono::seconds(n);
    } else if (k == "ssh_address_override") {
      CANOPY_ASSIGN_OR_RETURN(o.ssh_address_override, GetString(c, k, 128));
      auto colon = o.ssh_address_override.rfind(':');
      if (colon != std::string::npos) {
        std::string port = o.ssh_address_override.substr(colon + 1);
        if (port.empty() || port.size() > 5 ||
            port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) < 1 ||
            std::stoi(port) > 65535) {
          return Error::InvalidArgument("ssh_address_override must be HOST[:PORT]");
        }
      }
    } else {
      return Error::InvalidArgument(fmt::format("unknown aws provider option '{}'", k));
    }
  }
  return o;
}

Result<Json> AwsProviderFactory::ValidateConfig(const Json& config) const {
  CANOPY_TRY(ParseAwsOptions(config, AwsEndpoints{}));
  return config.is_null() ? Json::object() : config;
}

Result<ProviderPtr> AwsProviderFactory::Create(const Json& config) const {
  CANOPY_ASSIGN_OR_RETURN(AwsOptions o, ParseAwsOptions(config, AwsEndpoints::FromEnvironment()));
  return ProviderPtr(std::make_unique<AwsProvider>(std::move(o)));
}

}  // namespace canopy::providers::aws
