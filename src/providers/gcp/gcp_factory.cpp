#include "providers/gcp/gcp_factory.h"

#include <fmt/format.h>

#include <filesystem>

namespace canopy::providers::gcp {
namespace {

constexpr std::string_view kNameChars = "abcdefghijklmnopqrstuvwxyz0123456789-";

Status CheckUrl(const std::string& key, const std::string& url) {
  if ((url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) ||
      url.find_first_of(" \t\r\n?#") != std::string::npos) {
    return Error::InvalidArgument(fmt::format("{} must be an http:// or https:// URL", key));
  }
  return OkStatus();
}

bool GceName(std::string_view s, size_t max = 63) {
  return !s.empty() && s.size() <= max && s.find_first_not_of(kNameChars) == std::string::npos &&
         s.front() >= 'a' && s.front() <= 'z' && s.back() != '-';
}

}  // namespace

Result<GcpOptions> ParseGcpOptions(const Json& config) {
  GcpOptions o;
  Json c = config.is_null() ? Json::object() : config;
  if (!c.is_object()) return Error::InvalidArgument("gcp provider config must be a JSON object");
  for (const auto& [k, v] : c.items()) {
    if (k == "endpoint_url") {
      CANOPY_ASSIGN_OR_RETURN(o.endpoints.all, GetString(c, k, 512));
      CANOPY_TRY(CheckUrl(k, o.endpoints.all));
    } else if (k == "endpoints") {
      if (!v.is_object())
        return Error::InvalidArgument("endpoints must be an object {service: url}");
      for (const auto& [svc, url] : v.items()) {
        if (!GcpEndpoints::IsService(svc)) {
          return Error::InvalidArgument(fmt::format(
              "endpoints.{}: unknown service (compute, crm, iam, secretmanager, token)", svc));
        }
        if (!url.is_string())
          return Error::InvalidArgument(fmt::format("endpoints.{} must be a string", svc));
        CANOPY_TRY(CheckUrl("endpoints." + svc, url.get<std::string>()));
        o.endpoints.each[svc] = url.get<std::string>();
      }
    } else if (k == "default_region") {
      CANOPY_ASSIGN_OR_RETURN(o.default_region, GetString(c, k, 63));
      if (!GceName(o.default_region))
        return Error::InvalidArgument("default_region must be a region name (us-central1)");
    } else if (k == "zones") {
      if (!v.is_object()) return Error::InvalidArgument("zones must be an object {region: zone}");
      for (const auto& [region, zone] : v.items()) {
        if (!GceName(region) || !zone.is_string() || !GceName(zone.get<std::string>()) ||
            zone.get<std::string>().rfind(region + "-", 0) != 0) {
          return Error::InvalidArgument(
              fmt::format("zones.{} must be a zone of that region (e.g. {}-a)", region, region));
        }
        o.zones[region] = zone.get<std::string>();
      }
    } else if (k == "network") {
      CANOPY_ASSIGN_OR_RETURN(std::string n, GetString(c, k, 256));
      if (GceName(n)) {
        o.network = "global/networks/" + n;
      } else {
        auto slash = n.rfind('/');
        bool path = (n.rfind("global/networks/", 0) == 0 || n.rfind("projects/", 0) == 0) &&
                    slash != std::string::npos && GceName(n.substr(slash + 1)) &&
                    n.find_first_not_of(std::string(kNameChars) + "/.:") == std::string::npos &&
                    n.find("..") == std::string::npos && n.find("//") == std::string::npos;
        if (!path) {
          return Error::InvalidArgument(
              "network must be a network name or global/networks/NAME (projects/P/global/...)");
        }
        o.network = n;
      }
    } else if (k == "subnetworks") {
      if (!v.is_object())
        return Error::InvalidArgument("subnetworks must be an object {region: subnetwork name}");
      for (const auto& [region, name] : v.items()) {
        if (!GceName(region) || !name.is_string() || !GceName(name.get<std::string>())) {
          return Error::InvalidArgument(
              fmt::format("subnetworks.{} must be a subnetwork name", region));
        }
        o.subnetworks[region] = name.get<std::string>();
      }
    } else if (k == "private_addresses") {
      CANOPY_ASSIGN_OR_RETURN(o.private_addresses, GetOptBool(c, k, false));
    } else if (k == "image_families") {
      CANOPY_ASSIGN_OR_RETURN(o.image_families, GetStringArray(c, k, 32, 128));
      for (const auto& f : o.image_families) {
        auto slash = f.find('/');
        bool ok = slash == std::string::npos
                      ? GceName(f) && (f.rfind("debian-", 0) == 0 || f.rfind("ubuntu-", 0) == 0)
                      : GceName(f.substr(0, slash)) && GceName(f.substr(slash + 1));
        if (!ok) {
          return Error::InvalidArgument(
              fmt::format("image_families: '{}' must be debian-*/ubuntu-* or PROJECT/FAMILY", f));
        }
      }
    } else if (k == "price_catalog") {
      CANOPY_ASSIGN_OR_RETURN(o.price_catalog, GetString(c, k, 1024));
      std::error_code ec;
      if (!std::filesystem::is_regular_file(o.price_catalog, ec)) {
        return Error::InvalidArgument("price_catalog: no such file: " + o.price_catalog);
      }
    } else if (k == "max_attempts") {
      CANOPY_ASSIGN_OR_RETURN(int64_t n, GetInt(c, k, 1, 10));
      o.retry.max_attempts = static_cast<int>(n);
    } else if (k == "retry_base_ms") {
      CANOPY_ASSIGN_OR_RETURN(int64_t n, GetInt(c, k, 1, 10000));
      o.retry.base = std::chrono::milliseconds(n);
    } else if (k == "offers_ttl_s") {
      CANOPY_ASSIGN_OR_RETURN(int64_t n, GetInt(c, k, 0, 86400));
      o.offers_ttl = std::chrono::seconds(n);
    } else if (k == "host_key_source") {
      CANOPY_ASSIGN_OR_RETURN(std::string s, GetString(c, k, 32));
      if (s == "guest_attributes") {
        o.host_key_source = HostKeySource::kGuestAttributes;
      } else if (s == "serial") {
        o.host_key_source = HostKeySource::kSerial;
      } else {
        return Error::InvalidArgument("host_key_source must be guest_attributes or serial");
      }
    } else if (k == "operation_poll_ms") {
      CANOPY_ASSIGN_OR_RETURN(int64_t n, GetInt(c, k, 1, 10000));
      o.operations.poll = std::chrono::milliseconds(n);
      o.operations.max_poll = std::max(o.operations.max_poll, o.operations.poll);
    } else {
      return Error::InvalidArgument(fmt::format("unknown gcp provider option '{}'", k));
    }
  }
  return o;
}

Result<Json> GcpProviderFactory::ValidateConfig(const Json& config) const {
  CANOPY_TRY(ParseGcpOptions(config));
  return config.is_null() ? Json::object() : config;
}

Result<ProviderPtr> GcpProviderFactory::Create(const Json& config) const {
  CANOPY_ASSIGN_OR_RETURN(GcpOptions o, ParseGcpOptions(config));
  return ProviderPtr(std::make_unique<GcpProvider>(std::move(o)));
}

}  // namespace canopy::providers::gcp
