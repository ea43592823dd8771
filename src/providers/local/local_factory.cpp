#include "providers/local/local_factory.h"

#include "providers/local/local_provider.h"

namespace canopy::providers::local {

Result<Json> LocalProviderFactory::ValidateConfig(const Json& config) const {
  Json c = config.is_null() ? Json::object() : config;
  if (!c.is_object()) {
    return Error::InvalidArgument("local provider config must be a JSON object");
  }
  for (const auto& [k, v] : c.items()) {
    if (k == "state_dir" || k == "bridge" || k == "subnet" || k == "images_dir") {
      if (!v.is_string()) {
        return Error::InvalidArgument(k + " must be a string");
      }
    } else if (k == "boot_delay_ms") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 3'600'000) {
        return Error::InvalidArgument("boot_delay_ms must be an integer in [0, 3600000]");
      }
    } else if (k == "fail_rate") {
      if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1) {
        return Error::InvalidArgument("fail_rate must be a number between 0 and 1");
      }
    } else if (k == "capacity") {
      if (!v.is_object()) {
        return Error::InvalidArgument("capacity must be an object {instance_type: count}");
      }
      for (const auto& [t, n] : v.items()) {
        if (!n.is_number_integer() || n.get<int64_t>() < 0 || n.get<int64_t>() > 1'000'000) {
          return Error::InvalidArgument("capacity." + t + " must be a non-negative integer");
        }
      }
    } else {
      return Error::InvalidArgument("unknown local provider option '" + k + "'");
    }
  }
  return c;
}

Result<ProviderPtr> LocalProviderFactory::Create(const Json& config) const {
  CANOPY_ASSIGN_OR_RETURN(Json c, ValidateConfig(config));
  return MakeLocalProvider(c);
}

Result<ProviderPtr> MakeLocalProvider(const Json& config) {
  LocalOptions o;
  if (config.is_null()) {
    auto p = LocalProvider::Create(o);
    if (!p) {
      return std::move(p).error();
    }
    return ProviderPtr(std::move(*p));
  }
  if (!config.is_object()) {
    return Error::InvalidArgument("local provider config must be a JSON object");
  }
  for (const auto& [k, v] : config.items()) {
    if (k != "state_dir" && k != "bridge" && k != "subnet" && k != "boot_delay_ms" &&
        k != "fail_rate" && k != "capacity" && k != "images_dir") {
      return Error::InvalidArgument("unknown local provider option '" + k + "'");
    }
  }
  CANOPY_ASSIGN_OR_RETURN(auto state_dir, GetOptString(config, "state_dir", 512));
  if (state_dir) {
    o.state_dir = *state_dir;
  }
  CANOPY_ASSIGN_OR_RETURN(auto images_dir, GetOptString(config, "images_dir", 512));
  if (images_dir) {
    o.images_dir = *images_dir;
  }
  CANOPY_ASSIGN_OR_RETURN(auto bridge, GetOptString(config, "bridge", 15));
  if (bridge) {
    o.bridge = *bridge;
  }
  CANOPY_ASSIGN_OR_RETURN(auto subnet, GetOptString(config, "subnet", 64));
  if (subnet) {
    o.subnet = *subnet;
  }
  CANOPY_ASSIGN_OR_RETURN(auto delay, GetOptInt(config, "boot_delay_ms", 0, 3'600'000));
  if (delay) {
    o.boot_delay = std::chrono::milliseconds(*delay);
  }
  if (config.contains("fail_rate")) {
    if (!config["fail_rate"].is_number()) {
      return Error::InvalidArgument("fail_rate must be a number between 0 and 1");
    }
    o.fail_rate = config["fail_rate"].get<double>();
  }
  if (config.contains("capacity")) {
    const Json& c = config["capacity"];
    if (!c.is_object()) {
      return Error::InvalidArgument("capacity must be an object {instance_type: count}");
    }
    for (const auto& [k, v] : c.items()) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 1'000'000) {
        return Error::InvalidArgument("capacity." + k + " must be a non-negative integer");
      }
      o.capacity[k] = v.get<int>();
    }
  }
  auto p = LocalProvider::Create(std::move(o));
  if (!p) {
    return std::move(p).error();
  }
  return ProviderPtr(std::move(*p));
}

}  // namespace canopy::providers::local
