#include "control/cloud_access.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/ids.h"

namespace canopy::control {

CloudAccess::CloudAccess(store::Store& store, const auth::SecretBox& secrets,
                         ProviderOpener& opener)
    : store_(store), secrets_(secrets), opener_(opener) {}

Result<OpenedProvider> CloudAccess::Open(const std::string& credential_id) {
  auto cred = store_.credentials().Get(credential_id);
  if (!cred) {
    return cred.error().code == ErrorCode::kNotFound ? Error::NotFound("credential not found")
                                                     : std::move(cred).error();
  }
  CANOPY_ASSIGN_OR_RETURN(std::shared_ptr<providers::Provider> provider,
                          opener_.ForAdapter(cred->provider, cred->adapter_id));
  CANOPY_ASSIGN_OR_RETURN(SecretString secret_text,
                          secrets_.Open(cred->secret_ciphertext, cred->id));
  auto secret_json = ParseJsonObject(secret_text.Reveal());
  if (!secret_json) {
    SPDLOG_ERROR("Stored credential is not a JSON object credential={}", cred->id);
    return Error::Internal("internal error");
  }
  OpenedProvider out;
  out.credential = std::move(cred).value();
  out.provider = std::move(provider);
  out.secret = providers::CredentialSecret(std::move(*secret_json));
  return out;
}

Result<core::Credential> CloudAccess::FindCredential(const std::string& ref) {
  auto c = store_.credentials().Get(ref);
  if (c) return c;
  if (c.error().code != ErrorCode::kNotFound) return std::move(c).error();
  auto by_name = store_.credentials().GetByName(ref);
  if (!by_name && by_name.error().code == ErrorCode::kNotFound) {
    return Error::NotFound("credential not found");
  }
  return by_name;
}

Result<OffersView> CloudAccess::Offers(const std::string& credential_id,
                                       const std::string& provider, const std::string& region) {
  auto cred = store_.credentials().Get(credential_id);
  if (!cred) {
    return cred.error().code == ErrorCode::kNotFound ? Error::NotFound("credential not found")
                                                     : std::move(cred).error();
  }
  if (!provider.empty() && provider != cred->provider) {
    return Error::InvalidArgument(fmt::format("credential '{}' belongs to provider '{}', not '{}'",
                                              cred->name, cred->provider, provider));
  }
  CANOPY_ASSIGN_OR_RETURN(OpenedProvider opened, Open(cred->id));
  auto offers = opened.provider->ListOffers(opened.Context(region));
  if (!offers) {
    SPDLOG_INFO("Listing offers failed provider={} credential={} code={}", cred->provider, cred->id,
                ErrorCodeName(offers.error().code));
    return ProviderCallError(cred->provider, offers.error());
  }
  return OffersView{std::move(opened.credential), region, std::move(*offers)};
}

Result<providers::CallContext> CloudAccess::IdentityContext(
    const core::Cluster& c, const providers::CallContext& full) const {
  providers::CallContext limited = full;
  if (c.cloud.identity != core::IdentityState::kMade || c.cloud.identity_sealed.empty()) {
    return limited;
  }
  std::string sealed;
  if (!Base64Decode(c.cloud.identity_sealed, &sealed)) {
    return Error::Internal("stored cluster identity is corrupt");
  }
  CANOPY_ASSIGN_OR_RETURN(SecretString plain, secrets_.Open(sealed, c.id + "/identity"));
  CANOPY_ASSIGN_OR_RETURN(Json cred, ParseJsonObject(plain.Reveal()));
  limited.credential = providers::CredentialSecret(std::move(cred));
  return limited;
}

Result<std::string> CloudAccess::SealIdentity(const std::string& cluster_id,
                                              const providers::CredentialSecret& credential) const {
  CANOPY_ASSIGN_OR_RETURN(
      std::string sealed,
      secrets_.Seal(SecretString(DumpJson(credential.Reveal())), cluster_id + "/identity"));
  return Base64Encode(sealed);
}

Error ProviderCallError(const std::string& provider, const Error& e) {
  switch (e.code) {
    case ErrorCode::kInvalidArgument:
      return Error::InvalidArgument(
          fmt::format("the {} provider refused: {}", provider, e.message));
    case ErrorCode::kUnauthenticated:
    case ErrorCode::kPermissionDenied:
      return Error::Unprocessable(
          fmt::format("the {} provider rejected the credential: {}", provider, e.message));
    case ErrorCode::kUnavailable:
    case ErrorCode::kDeadlineExceeded:
      return Error::Unavailable(
          fmt::format("cannot ask the {} provider now: {}", provider, e.message));
    default:
      return Error::Provider(fmt::format("the {} provider failed: {}", provider, e.message));
  }
}

}  // namespace canopy::control
