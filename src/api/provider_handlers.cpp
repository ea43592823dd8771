// Provider registry: registration tokens, adapter registration and heartbeats, list, detach.
#include <fmt/format.h>
#include <spdlog/spdlog.h>


#include "api/detail/context.h"
#include "common/ids.h"

namespace canopy::api::detail {
namespace {

constexpr std::string_view kTokenPrefix = "cpt_";

Json ProviderJson(const ApiDeps& deps, const core::ProviderRecord& p) {
  return {{"id", p.id},
          {"type", p.type},
          {"url", p.url},
          {"status", core::ProviderStatusName(StatusOf(deps, p))},
          {"last_seen", Iso(p.last_seen)},
          {"registered_at", Iso(p.registered_at)},
          {"version", p.version},
          {"capabilities", p.capabilities}};
}

Result<net::Response> CreateToken(const ApiDeps& deps, const net::Request& req, const Principal& p) {
  auto ttl = deps.options.provider_token_ttl;
  if (!req.body.empty()) {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    CANOPY_ASSIGN_OR_RETURN(auto secs, GetOptInt(body, "ttl_seconds", 60, 7 * 24 * 3600));
    if (secs) ttl = std::chrono::seconds(*secs);
  }
  std::string token = std::string(kTokenPrefix) + RandomToken(32);
  core::ProviderToken t;
  t.id = deps.ids->NewId("ptk");
  t.token_hash = Sha256Hex(token);
  t.created_at = deps.clock->Now();
  t.expires_at = t.created_at + ttl;
  t.created_by = p.user_id;
  CANOPY_TRY(deps.store->provider_tokens().Create(t));
  SPDLOG_INFO("Created provider token token_id={} by={}", t.id, p.user_id);
  return JsonResponse(201, {{"token", token}, {"expires_at", Iso(t.expires_at)}});
}

Status ValidateUrl(const std::string& url) {
  if (!IsValidHttpUrl(url)) return Error::InvalidArgument("field 'url' must be an http(s) URL");
  return OkStatus();
}

Result<net::Response> Register(const ApiDeps& deps, const net::Request& req, const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
  CANOPY_ASSIGN_OR_RETURN(std::string token, GetString(body, "token", 256));
  CANOPY_ASSIGN_OR_RETURN(std::string type, GetString(body, "type", 32));
  if (!IsValidTypeName(type)) {
    return Error::InvalidArgument("field 'type' must be a lower-case provider name");
  }
  CANOPY_ASSIGN_OR_RETURN(std::string url, GetString(body, "url", 512));
  CANOPY_TRY(ValidateUrl(url));
  CANOPY_ASSIGN_OR_RETURN(auto version, GetOptString(body, "version", 64));
  Json caps = Json::object();
  if (body.contains("capabilities") && !body["capabilities"].is_null()) {
    if (!body["capabilities"].is_array() && !body["capabilities"].is_object()) {
      return Error::InvalidArgument("field 'capabilities' must be an array or an object");
    }
    caps = body["capabilities"];
  }
  if (body.contains("contract_versions")) {
    caps = Json{{"features", caps}, {"contract_versions", body["contract_versions"]}};
  }
  std::string adapter_key = RandomToken(32);
  core::ProviderRecord p;
  p.id = deps.ids->NewId("prv");
  p.type = type;
  p.url = url;
  p.capabilities = caps;
  p.version = version.value_or("");
  p.registered_at = p.last_seen = deps.clock->Now();
  CANOPY_ASSIGN_OR_RETURN(p.key_ciphertext, deps.secrets->Seal(SecretString(adapter_key), p.id));
  CANOPY_TRY(deps.store->Transaction([&](store::Store& tx) -> Status {
    CANOPY_TRY(tx.provider_tokens().Consume(Sha256Hex(token), deps.clock->Now()));
    return tx.providers().Create(p);
  }));
  SPDLOG_INFO("Registered provider adapter provider={} type={} url={}", p.id, p.type, p.url);
  return JsonResponse(201, {{"id", p.id},
                            {"adapter_key", adapter_key},
                            {"heartbeat_interval_seconds", deps.options.heartbeat_interval.count()}});
}

// Checks the adapter key presented as a bearer token against the stored (encrypted) key.
Result<core::ProviderRecord> AuthenticateAdapter(const ApiDeps& deps, const net::Request& req) {
  std::string h = req.Header("authorization");
  if (h.rfind("Bearer ", 0) != 0) return Error::Unauthenticated("missing adapter key");
  auto p = deps.store->providers().Get(req.Param("id"));
  if (!p) {
    if (p.error().code == ErrorCode::kNotFound) return Error::NotFound("provider adapter not registered");
    return std::move(p).error();
  }
  CANOPY_ASSIGN_OR_RETURN(SecretString key, deps.secrets->Open(p->key_ciphertext, p->id));
  if (!ConstantTimeEquals(h.substr(7), key.Reveal())) return Error::Unauthenticated("wrong adapter key");
  return *p;
}

Result<net::Response> Heartbeat(const ApiDeps& deps, const net::Request& req, const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(core::ProviderRecord p, AuthenticateAdapter(deps, req));
  if (!req.body.empty()) {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    CANOPY_ASSIGN_OR_RETURN(auto url, GetOptString(body, "url", 512));
    if (url && *url != p.url) {
      CANOPY_TRY(ValidateUrl(*url));
      p.url = *url;
      CANOPY_TRY(deps.store->providers().Update(p));
      SPDLOG_INFO("Provider adapter moved provider={} url={}", p.id, p.url);
    }
  }
  CANOPY_TRY(deps.store->providers().Touch(p.id, deps.clock->Now()));
  return JsonResponse(200, {{"status", "live"}});
}

Result<net::Response> ListProviders(const ApiDeps& deps, const net::Request&, const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(auto all, deps.store->providers().List());
  Json out = Json::array();
  for (const auto& p : all) out.push_back(ProviderJson(deps, p));
  return JsonResponse(200, out);
}

Result<net::Response> GetProvider(const ApiDeps& deps, const net::Request& req, const Principal&) {
  auto p = deps.store->providers().Get(req.Param("id"));
  if (!p) return p.error().code == ErrorCode::kNotFound ? Error::NotFound("provider adapter not found")
                                                        : std::move(p).error();
  return JsonResponse(200, ProviderJson(deps, *p));
}

Result<net::Response> DetachProvider(const ApiDeps& deps, const net::Request& req, const Principal& pr) {
  std::string id = req.Param("id");
  auto st = deps.store->providers().Delete(id);
  if (!st) return st.error().code == ErrorCode::kNotFound ? Error::NotFound("provider adapter not found")
                                                          : std::move(st).error();
  SPDLOG_INFO("Detached provider adapter provider={} by={}", id, pr.user_id);
  return net::Response{204, "application/json", "", {}};
}

}  // namespace

std::vector<RouteDef> ProviderRoutes() {
  return {
      {"POST", "/api/v1/provider-tokens", Access::kInfra, CreateToken},
      {"POST", "/api/v1/providers/register", Access::kPublic, Register, false, nullptr, true},
      {"POST", "/api/v1/providers/{id}/heartbeat", Access::kAdapter, Heartbeat, false, nullptr, true},
      {"GET", "/api/v1/providers", Access::kInfra, ListProviders},
      {"GET", "/api/v1/providers/{id}", Access::kInfra, GetProvider},
      {"DELETE", "/api/v1/providers/{id}", Access::kInfra, DetachProvider},
  };
}

}  // namespace canopy::api::detail
