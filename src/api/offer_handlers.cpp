// /api/v1/offers: what a provider offers to one credential (regions, instance types with
// vCPU/memory/GPU/price, images), asked live through an adapter of that provider type with the
// decrypted credential; nothing is cached or stored.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/detail/context.h"
#include "api/provider_access.h"
#include "providers/remote/remote_provider.h"
#include "providers/wire.h"

namespace canopy::api::detail {
namespace {

Result<net::Response> GetOffers(const ApiDeps& deps, const net::Request& req, const Principal&) {
  std::string provider = req.Query("provider");
  std::string credential_id = req.Query("credential_id");
  std::string region = req.Query("region");
  if (credential_id.empty()) {
    return Error::InvalidArgument("query parameter 'credential_id' is required");
  }
  if (provider.size() > 32 || region.size() > 64 || credential_id.size() > 64) {
    return Error::InvalidArgument("query parameter too long");
  }
  auto cred = deps.store->credentials().Get(credential_id);
  if (!cred) {
    return cred.error().code == ErrorCode::kNotFound ? Error::NotFound("credential not found")
                                                     : std::move(cred).error();
  }
  if (provider.empty()) {
    provider = cred->provider;
  } else if (provider != cred->provider) {
    return Error::InvalidArgument(fmt::format("credential '{}' belongs to provider '{}', not '{}'",
                                              cred->name, cred->provider, provider));
  }
  CANOPY_ASSIGN_OR_RETURN(OpenedProvider opened, OpenProviderForCredential(deps, cred->id));
  auto offers = opened.provider->ListOffers(opened.Context(region));
  if (!offers) {
    SPDLOG_INFO("Listing offers failed provider={} credential={} code={}", provider, cred->id,
                ErrorCodeName(offers.error().code));
    return ProviderCallError(provider, offers.error());
  }
  Json types = Json::array();
  for (const auto& t : offers->instance_types) {
    types.push_back({{"name", t.name},
                     {"vcpus", t.vcpus},
                     {"memory_mib", t.memory_mib},
                     {"gpus", t.gpus},
                     {"price_hour", t.price_hour ? Json(*t.price_hour) : Json()},
                     {"price_note", t.price_note}});
  }
  Json images = Json::array();
  for (const auto& i : offers->images) images.push_back({{"id", i.id}, {"name", i.name}});
  return JsonResponse(200, Json{{"provider", provider},
                                {"credential_id", cred->id},
                                {"region", region.empty() ? Json() : Json(region)},
                                {"regions", offers->regions},
                                {"instance_types", types},
                                {"images", images}});
}

}  // namespace

std::vector<RouteDef> OfferRoutes() {
  return {
      {"GET", "/api/v1/offers", Access::kInfra, GetOffers},
  };
}

}  // namespace canopy::api::detail

namespace canopy::api {

Error ProviderCallError(const std::string& provider, const Error& e) {
  switch (e.code) {
    case ErrorCode::kInvalidArgument:
      return Error::InvalidArgument(fmt::format("the {} provider refused: {}", provider, e.message));
    case ErrorCode::kUnauthenticated:
    case ErrorCode::kPermissionDenied:
      return Error::Unprocessable(
          fmt::format("the {} provider rejected the credential: {}", provider, e.message));
    case ErrorCode::kUnavailable:
    case ErrorCode::kDeadlineExceeded:
      return Error::Unavailable(fmt::format("cannot ask the {} provider now: {}", provider, e.message));
    default:
      return Error::Provider(fmt::format("the {} provider failed: {}", provider, e.message));
  }
}

Result<OpenedProvider> OpenProviderForCredential(const ApiDeps& deps,
                                                 const std::string& credential_id) {
  auto cred = deps.store->credentials().Get(credential_id);
  if (!cred) {
    return cred.error().code == ErrorCode::kNotFound ? Error::NotFound("credential not found")
                                                     : std::move(cred).error();
  }
  CANOPY_ASSIGN_OR_RETURN(core::ProviderRecord adapter, detail::FindLiveAdapter(deps, cred->provider));
  CANOPY_ASSIGN_OR_RETURN(SecretString adapter_key,
                          deps.secrets->Open(adapter.key_ciphertext, adapter.id));
  CANOPY_ASSIGN_OR_RETURN(SecretString secret_text,
                          deps.secrets->Open(cred->secret_ciphertext, cred->id));
  auto secret_json = ParseJsonObject(secret_text.Reveal());
  if (!secret_json) {
    SPDLOG_ERROR("Stored credential is not a JSON object credential={}", cred->id);
    return Error::Internal("internal error");
  }
  OpenedProvider out;
  out.credential = std::move(cred).value();
  out.provider = std::make_unique<providers::remote::RemoteProvider>(
      adapter.url, std::move(adapter_key),
      providers::ProviderInfo{adapter.type, adapter.version, {}, {}});
  out.secret = providers::CredentialSecret(std::move(*secret_json));
  return out;
}

}  // namespace canopy::api
