// Provider registry: registration tokens, adapter registration and heartbeats, list, detach.
#include "api/detail/context.h"
#include "common/clock.h"
#include "control/names.h"

namespace canopy::api::detail {
namespace {

Json ProviderJson(const control::Adapters& adapters, const core::ProviderRecord& p) {
  return {{"id", p.id},
          {"type", p.type},
          {"url", p.url},
          {"status", core::ProviderStatusName(adapters.StatusOf(p))},
          {"approved", p.approved},
          {"last_seen", FormatRfc3339(p.last_seen)},
          {"registered_at", FormatRfc3339(p.registered_at)},
          {"version", p.version},
          {"capabilities", p.capabilities}};
}

Status CheckUrl(const std::string& url) {
  if (!control::IsValidHttpUrl(url))
    return Error::InvalidArgument("field 'url' must be an http(s) URL");
  return OkStatus();
}

}  // namespace

std::vector<RouteDef> ProviderRoutes(control::Adapters* adapters) {
  auto create_token = [adapters](const net::Request& req,
                                 const Principal& p) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseOptionalBody(req));
    CANOPY_ASSIGN_OR_RETURN(auto secs, GetOptInt(body, "ttl_seconds", 60, 7 * 24 * 3600));
    std::optional<std::chrono::seconds> ttl;
    if (secs) ttl = std::chrono::seconds(*secs);
    CANOPY_ASSIGN_OR_RETURN(auto g, adapters->CreateToken(ttl, p.user_id));
    return JsonResponse(201, {{"token", g.token}, {"expires_at", FormatRfc3339(g.expires_at)}});
  };
  auto reg = [adapters](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    control::AdapterRegistration r;
    CANOPY_ASSIGN_OR_RETURN(r.token, GetString(body, "token", 256));
    CANOPY_ASSIGN_OR_RETURN(r.type, GetString(body, "type", 32));
    if (!control::IsValidTypeName(r.type)) {
      return Error::InvalidArgument("field 'type' must be a lower-case provider name");
    }
    CANOPY_ASSIGN_OR_RETURN(r.url, GetString(body, "url", 512));
    CANOPY_TRY(CheckUrl(r.url));
    CANOPY_ASSIGN_OR_RETURN(auto version, GetOptString(body, "version", 64));
    r.version = version.value_or("");
    CANOPY_ASSIGN_OR_RETURN(auto moving_id, GetOptString(body, "adapter_id", 64));
    CANOPY_ASSIGN_OR_RETURN(auto moving_key, GetOptString(body, "adapter_key", 256));
    r.adapter_id = moving_id.value_or("");
    r.adapter_key = moving_key.value_or("");
    CANOPY_ASSIGN_OR_RETURN(auto csr, GetOptString(body, "csr", 16384));
    r.csr = csr.value_or("");
    if (body.contains("capabilities") && !body["capabilities"].is_null()) {
      if (!body["capabilities"].is_array() && !body["capabilities"].is_object()) {
        return Error::InvalidArgument("field 'capabilities' must be an array or an object");
      }
      r.capabilities = body["capabilities"];
    }
    if (body.contains("contract_versions")) {
      r.capabilities =
          Json{{"features", r.capabilities}, {"contract_versions", body["contract_versions"]}};
    }
    CANOPY_ASSIGN_OR_RETURN(auto id, adapters->Register(r));
    Json out = {{"id", id.id},
                {"adapter_key", id.adapter_key},
                {"heartbeat_interval_seconds", id.heartbeat_interval_seconds}};
    if (!id.certificate.empty()) out["certificate"] = id.certificate;
    if (!id.ca_pem.empty()) out["ca"] = id.ca_pem;
    return JsonResponse(201, out);
  };
  auto heartbeat = [adapters](const net::Request& req, const Principal&) -> Result<net::Response> {
    std::string key = BearerToken(req);
    if (key.empty()) return Error::Unauthenticated("missing adapter key");
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseOptionalBody(req));
    CANOPY_ASSIGN_OR_RETURN(auto url, GetOptString(body, "url", 512));
    if (url) CANOPY_TRY(CheckUrl(*url));
    if (req.tls && !req.peer_cn.empty() &&
        req.peer_cn != control::AdapterCertName(req.Param("id"))) {
      return Error::Unauthenticated("this client certificate belongs to another party");
    }
    CANOPY_ASSIGN_OR_RETURN(auto csr, GetOptString(body, "csr", 16384));
    CANOPY_ASSIGN_OR_RETURN(std::string cert,
                            adapters->Heartbeat(req.Param("id"), key, url, csr.value_or("")));
    Json out = {{"status", "live"}};
    if (!cert.empty()) out["certificate"] = cert;
    return JsonResponse(200, out);
  };
  auto list = [adapters](const net::Request&, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto all, adapters->List());
    Json out = Json::array();
    for (const auto& p : all) out.push_back(ProviderJson(*adapters, p));
    return JsonResponse(200, out);
  };
  auto get = [adapters](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto p, adapters->Get(req.Param("id")));
    return JsonResponse(200, ProviderJson(*adapters, p));
  };
  auto detach = [adapters](const net::Request& req, const Principal& p) -> Result<net::Response> {
    CANOPY_TRY(adapters->Detach(req.Param("id"), p.user_id));
    return NoContent();
  };
  auto approve = [adapters](const net::Request& req, const Principal& p) -> Result<net::Response> {
    CANOPY_TRY(adapters->Approve(req.Param("id"), p.user_id));
    CANOPY_ASSIGN_OR_RETURN(auto got, adapters->Get(req.Param("id")));
    return JsonResponse(200, ProviderJson(*adapters, got));
  };
  return {
      {"POST", "/api/v1/provider-tokens", Access::kInfra, create_token},
      {"POST", "/api/v1/providers/register", Access::kPublic, reg, nullptr, false, true},
      {"POST", "/api/v1/providers/{id}/heartbeat", Access::kAdapter, heartbeat, nullptr, false,
       true},
      {"GET", "/api/v1/providers", Access::kInfra, list},
      {"GET", "/api/v1/providers/{id}", Access::kInfra, get},
      {"DELETE", "/api/v1/providers/{id}", Access::kInfra, detach},
      {"POST", "/api/v1/providers/{id}/approve", Access::kInfra, approve},
  };
}

}  // namespace canopy::api::detail
