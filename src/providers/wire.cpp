#include "providers/wire.h"

#include <fmt/format.h>

namespace canopy::providers::wire {
namespace {

// nlohmann throws on type mismatches; every reader runs inside Guard so that a malformed document
// becomes an invalid_request error instead of an exception.
template <class F>
auto Guard(const char* what, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception&) {
    return MakeProviderError(ProviderErrorKind::kInvalidRequest,
                             fmt::format("malformed {} document", what));
  }
}

std::string Str(const Json& j, const char* k) {
  return j.contains(k) && !j[k].is_null() ? j.at(k).get<std::string>() : std::string();
}

Json Rules(const std::vector<FirewallRule>& rules) {
  Json a = Json::array();
  for (const auto& r : rules) {
    a.push_back(ToJson(r));
  }
  return a;
}

std::vector<FirewallRule> RulesFrom(const Json& j) {
  std::vector<FirewallRule> out;
  if (!j.is_array()) {
    return out;
  }
  for (const auto& r : j) {
    FirewallRule fr;
    fr.port = r.at("port").get<uint16_t>();
    fr.protocol = r.value("protocol", std::string("tcp"));
    fr.source_cidrs = r.value("source_cidrs", std::vector<std::string>{});
    out.push_back(std::move(fr));
  }
  return out;
}

std::optional<double> OptDouble(const Json& j, const char* k) {
  if (!j.contains(k) || j[k].is_null()) {
    return std::nullopt;
  }
  return j[k].get<double>();
}

Json FromOpt(const std::optional<double>& v) { return v ? Json(*v) : Json(nullptr); }

}  // namespace

Json ToJson(const ProviderInfo& v) {
  return {{"type", v.type},
          {"adapter_version", v.adapter_version},
          {"contract_versions", v.contract_versions},
          {"capabilities", v.capabilities}};
}

Json ToJson(const ProviderHandle& v) { return {{"version", v.version}, {"data", v.data}}; }

Json ToJson(const InstanceSpec& v) {
  return {{"canopy_id", v.canopy_id},
          {"idempotency_key", v.idempotency_key},
          {"name", v.name},
          {"instance_type", v.instance_type},
          {"image", v.image},
          {"disk_gb", v.disk_gb},
          {"key_pair", v.key_pair},
          {"firewalls", v.firewalls},
          {"tags", v.tags}};
}

Json ToJson(const Instance& v) {
  return {{"handle", ToJson(v.handle)},
          {"provider_id", v.provider_id},
          {"canopy_id", v.canopy_id},
          {"state", InstanceStateName(v.state)},
          {"address", v.address},
          {"private_address", v.private_address},
          {"ssh_user", v.ssh_user},
          {"ssh_port", v.ssh_port},
          {"host_key_sha256", v.host_key_sha256},
          {"firewalls", v.firewalls},
          {"tags", v.tags}};
}

Json ToJson(const KeyPair& v) {
  return {{"name", v.name},
          {"public_key", v.public_key},
          {"private_key", v.private_key.Reveal()},
          {"fingerprint", v.fingerprint}};
}

Json ToJson(const FirewallRule& v) {
  return {{"port", v.port}, {"protocol", v.protocol}, {"source_cidrs", v.source_cidrs}};
}

Json ToJson(const FirewallSpec& v) {
  return {
      {"canopy_id", v.canopy_id}, {"name", v.name}, {"rules", Rules(v.rules)}, {"tags", v.tags}};
}

Json ToJson(const Firewall& v) {
  return {{"id", v.id}, {"name", v.name}, {"canopy_id", v.canopy_id}, {"rules", Rules(v.rules)}};
}

Json ToJson(const ClusterIdentity& v) {
  return {{"id", v.id}, {"credential", v.credential.Reveal()}};
}

Json ToJson(const Offers& v) {
  Json types = Json::array();
  for (const auto& t : v.instance_types) {
    types.push_back({{"name", t.name},
                     {"vcpus", t.vcpus},
                     {"memory_mib", t.memory_mib},
                     {"gpus", t.gpus},
                     {"price_hour", FromOpt(t.price_hour)},
                     {"price_note", t.price_note}});
  }
  Json images = Json::array();
  for (const auto& i : v.images) {
    images.push_back({{"id", i.id}, {"name", i.name}});
  }
  return {{"regions", v.regions}, {"instance_types", types}, {"images", images}};
}

Json ToJson(const Quote& v) {
  return {{"instance_type", v.instance_type},
          {"count", v.count},
          {"price_hour_each", FromOpt(v.price_hour_each)},
          {"price_hour_total", FromOpt(v.price_hour_total)},
          {"note", v.note}};
}

Result<InstanceState> InstanceStateFromName(std::string_view name) {
  for (InstanceState s :
       {InstanceState::kPending, InstanceState::kRunning, InstanceState::kStopping,
        InstanceState::kStopped, InstanceState::kTerminated}) {
    if (InstanceStateName(s) == name) {
      return s;
    }
  }
  return MakeProviderError(ProviderErrorKind::kInvalidRequest,
                           fmt::format("unknown instance state '{}'", name));
}

Result<ProviderInfo> ProviderInfoFromJson(const Json& j) {
  return Guard("provider info", [&]() -> Result<ProviderInfo> {
    ProviderInfo v;
    v.type = j.at("type").get<std::string>();
    v.adapter_version = Str(j, "adapter_version");
    v.contract_versions = j.value("contract_versions", std::vector<int>{});
    v.capabilities = j.value("capabilities", std::vector<std::string>{});
    return v;
  });
}

Result<ProviderHandle> HandleFromJson(const Json& j) {
  return Guard("handle", [&]() -> Result<ProviderHandle> {
    ProviderHandle h;
    h.version = j.at("version").get<int>();
    h.data = j.at("data");
    return h;
  });
}

Result<InstanceSpec> InstanceSpecFromJson(const Json& j) {
  return Guard("instance spec", [&]() -> Result<InstanceSpec> {
    InstanceSpec v;
    v.canopy_id = j.at("canopy_id").get<std::string>();
    v.idempotency_key = Str(j, "idempotency_key");
    v.name = Str(j, "name");
    v.instance_type = j.at("instance_type").get<std::string>();
    v.image = j.at("image").get<std::string>();
    v.disk_gb = j.value("disk_gb", 10);
    v.key_pair = Str(j, "key_pair");
    v.firewalls = j.value("firewalls", std::vector<std::string>{});
    v.tags = j.value("tags", std::map<std::string, std::string>{});
    return v;
  });
}

Result<Instance> InstanceFromJson(const Json& j) {
  return Guard("instance", [&]() -> Result<Instance> {
    Instance v;
    CANOPY_ASSIGN_OR_RETURN(v.handle, HandleFromJson(j.at("handle")));
    v.provider_id = Str(j, "provider_id");
    v.canopy_id = Str(j, "canopy_id");
    CANOPY_ASSIGN_OR_RETURN(v.state, InstanceStateFromName(j.at("state").get<std::string>()));
    v.address = Str(j, "address");
    v.private_address = Str(j, "private_address");
    v.ssh_user = Str(j, "ssh_user");
    v.ssh_port = j.value("ssh_port", static_cast<uint16_t>(22));
    v.host_key_sha256 = Str(j, "host_key_sha256");
    v.firewalls = j.value("firewalls", std::vector<std::string>{});
    v.tags = j.value("tags", std::map<std::string, std::string>{});
    return v;
  });
}

Result<KeyPair> KeyPairFromJson(const Json& j) {
  return Guard("key pair", [&]() -> Result<KeyPair> {
    KeyPair v;
    v.name = j.at("name").get<std::string>();
    v.public_key = Str(j, "public_key");
    v.private_key = SecretString(Str(j, "private_key"));
    v.fingerprint = Str(j, "fingerprint");
    return v;
  });
}

Result<FirewallSpec> FirewallSpecFromJson(const Json& j) {
  return Guard("firewall spec", [&]() -> Result<FirewallSpec> {
    FirewallSpec v;
    v.canopy_id = j.at("canopy_id").get<std::string>();
    v.name = Str(j, "name");
    v.rules = RulesFrom(j.value("rules", Json::array()));
    v.tags = j.value("tags", std::map<std::string, std::string>{});
    return v;
  });
}

Result<Firewall> FirewallFromJson(const Json& j) {
  return Guard("firewall", [&]() -> Result<Firewall> {
    Firewall v;
    v.id = j.at("id").get<std::string>();
    v.name = Str(j, "name");
    v.canopy_id = Str(j, "canopy_id");
    v.rules = RulesFrom(j.value("rules", Json::array()));
    return v;
  });
}

Result<ClusterIdentity> ClusterIdentityFromJson(const Json& j) {
  return Guard("cluster identity", [&]() -> Result<ClusterIdentity> {
    ClusterIdentity v;
    v.id = j.at("id").get<std::string>();
    v.credential = CredentialSecret(j.value("credential", Json::object()));
    return v;
  });
}

Result<Offers> OffersFromJson(const Json& j) {
  return Guard("offers", [&]() -> Result<Offers> {
    Offers v;
    v.regions = j.value("regions", std::vector<std::string>{});
    for (const auto& t : j.value("instance_types", Json::array())) {
      InstanceType it;
      it.name = t.at("name").get<std::string>();
      it.vcpus = t.value("vcpus", 0);
      it.memory_mib = t.value("memory_mib", int64_t{0});
      it.gpus = t.value("gpus", 0);
      it.price_hour = OptDouble(t, "price_hour");
      it.price_note = Str(t, "price_note");
      v.instance_types.push_back(std::move(it));
    }
    for (const auto& i : j.value("images", Json::array())) {
      v.images.push_back(Image{i.at("id").get<std::string>(), Str(i, "name")});
    }
    return v;
  });
}

Result<Quote> QuoteFromJson(const Json& j) {
  return Guard("quote", [&]() -> Result<Quote> {
    Quote v;
    v.instance_type = j.at("instance_type").get<std::string>();
    v.count = j.value("count", 0);
    v.price_hour_each = OptDouble(j, "price_hour_each");
    v.price_hour_total = OptDouble(j, "price_hour_total");
    v.note = Str(j, "note");
    return v;
  });
}

}  // namespace canopy::providers::wire
