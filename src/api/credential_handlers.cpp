// /api/v1/credentials (validated through a provider, stored encrypted, never returned) and
// /api/v1/offers (what a provider offers one credential, asked live; nothing is cached).
#include "api/detail/context.h"
#include "common/clock.h"

namespace canopy::api::detail {
namespace {

Json CredentialJson(const core::Credential& c) {
  return {{"id", c.id},
          {"name", c.name},
          {"provider", c.provider},
          {"adapter_id", c.adapter_id},
          {"created_at", FormatRfc3339(c.created_at)}};
}

}  // namespace

std::vector<RouteDef> CredentialRoutes(control::Credentials* credentials) {
  auto create = [credentials](const net::Request& req,
                              const Principal& p) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    CANOPY_ASSIGN_OR_RETURN(std::string name, GetString(body, "name", 64));
    CANOPY_TRY(CheckName(name, "name"));
    CANOPY_ASSIGN_OR_RETURN(std::string provider, GetString(body, "provider", 32));
    CANOPY_ASSIGN_OR_RETURN(auto adapter, GetOptString(body, "adapter", 64));
    CANOPY_ASSIGN_OR_RETURN(Json secret_json, GetObject(body, "secret"));
    providers::CredentialSecret secret(std::move(secret_json));
    body = Json();  // drop the plaintext copy early
    CANOPY_ASSIGN_OR_RETURN(core::Credential c, credentials->Add(name, provider, std::move(secret),
                                                                 p.user_id, adapter.value_or("")));
    return JsonResponse(201, CredentialJson(c));
  };
  auto list = [credentials](const net::Request&, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto all, credentials->List());
    Json out = Json::array();
    for (const auto& c : all) out.push_back(CredentialJson(c));
    return JsonResponse(200, out);
  };
  auto get = [credentials](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto c, credentials->Get(req.Param("id")));
    return JsonResponse(200, CredentialJson(c));
  };
  auto del = [credentials](const net::Request& req, const Principal& p) -> Result<net::Response> {
    CANOPY_TRY(credentials->Delete(req.Param("id"), p.user_id));
    return NoContent();
  };
  return {
      {"POST", "/api/v1/credentials", Access::kInfra, create, nullptr, false, false,
       Lane::kProvider},
      {"GET", "/api/v1/credentials", Access::kInfra, list},
      {"GET", "/api/v1/credentials/{id}", Access::kInfra, get},
      {"DELETE", "/api/v1/credentials/{id}", Access::kInfra, del},
  };
}

std::vector<RouteDef> OfferRoutes(control::CloudAccess* clouds) {
  auto offers = [clouds](const net::Request& req, const Principal&) -> Result<net::Response> {
    std::string provider = req.Query("provider");
    std::string credential_id = req.Query("credential_id");
    std::string region = req.Query("region");
    if (credential_id.empty()) {
      return Error::InvalidArgument("query parameter 'credential_id' is required");
    }
    if (provider.size() > 32 || region.size() > 64 || credential_id.size() > 64) {
      return Error::InvalidArgument("query parameter too long");
    }
    CANOPY_ASSIGN_OR_RETURN(auto v, clouds->Offers(credential_id, provider, region));
    Json types = Json::array();
    for (const auto& t : v.offers.instance_types) {
      types.push_back({{"name", t.name},
                       {"vcpus", t.vcpus},
                       {"memory_mib", t.memory_mib},
                       {"gpus", t.gpus},
                       {"price_hour", t.price_hour ? Json(*t.price_hour) : Json()},
                       {"price_note", t.price_note}});
    }
    Json images = Json::array();
    for (const auto& i : v.offers.images) images.push_back({{"id", i.id}, {"name", i.name}});
    return JsonResponse(200, Json{{"provider", v.credential.provider},
                                  {"credential_id", v.credential.id},
                                  {"region", region.empty() ? Json() : Json(region)},
                                  {"regions", v.offers.regions},
                                  {"instance_types", types},
                                  {"images", images}});
  };
  return {
      {"GET", "/api/v1/offers", Access::kInfra, offers, nullptr, false, false, Lane::kProvider},
  };
}

std::vector<RouteDef> OperationRoutes(control::Operations* ops_service) {
  auto get = [ops_service](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto op, ops_service->Get(req.Param("id")));
    return JsonResponse(200, ops::OperationToJson(op));
  };
  auto list = [ops_service](const net::Request& req, const Principal&) -> Result<net::Response> {
    std::string target = req.Query("target");
    if (target.size() > 128) return Error::InvalidArgument("query 'target' is too long");
    CANOPY_ASSIGN_OR_RETURN(auto all, ops_service->List(target));
    Json out = Json::array();
    for (const auto& op : all) out.push_back(ops::OperationToJson(op));
    return JsonResponse(200, out);
  };
  return {
      {"GET", "/api/v1/operations", Access::kAnyUser, list},
      {"GET", "/api/v1/operations/{id}", Access::kAnyUser, get},
  };
}

}  // namespace canopy::api::detail
