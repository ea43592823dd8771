#include "providers/fake/fake_factory.h"

#include <fmt/format.h>

#include "providers/fake/fake_provider.h"

namespace canopy::providers::fake {

Result<Json> FakeProviderFactory::ValidateConfig(const Json& config) const {
  Json c = config.is_null() ? Json::object() : config;
  if (!c.is_object()) {
    return Error::InvalidArgument("fake provider config must be a JSON object");
  }
  for (const auto& [k, v] : c.items()) {
    if (k != "capacity") {
      return Error::InvalidArgument(fmt::format("unknown fake provider config key '{}'", k));
    }
  }
  if (!c.contains("capacity")) {
    c["capacity"] = Json::object();
  }
  if (!c["capacity"].is_object()) {
    return Error::InvalidArgument("'capacity' must be an object of type -> count");
  }
  for (const auto& [k, v] : c["capacity"].items()) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0) {
      return Error::InvalidArgument(fmt::format("capacity of '{}' must be a count >= 0", k));
    }
  }
  return c;
}

Result<ProviderPtr> FakeProviderFactory::Create(const Json& config) const {
  CANOPY_ASSIGN_OR_RETURN(Json c, ValidateConfig(config));
  auto p = std::make_unique<FakeProvider>();
  for (const auto& [k, v] : c["capacity"].items()) {
    p->SetCapacity(k, static_cast<int>(v.get<int64_t>()));
  }
  return ProviderPtr(std::move(p));
}

}  // namespace canopy::providers::fake
