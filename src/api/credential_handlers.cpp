// /api/v1/credentials: validated through a live adapter, stored encrypted, never returned.
#include <fmt/format.h>
#include <spdlog/spdlog.h>


#include "api/detail/context.h"
#include "providers/remote/remote_provider.h"

namespace canopy::api::detail {
namespace {

Json CredentialJson(const core::Credential& c) {
  return {{"id", c.id}, {"name", c.name}, {"provider", c.provider}, {"created_at", Iso(c.created_at)}};
}

Result<net::Response> CreateCredential(const ApiDeps& deps, const net::Request& req, const Principal& p) {
  CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
  CANOPY_ASSIGN_OR_RETURN(std::string name, GetString(body, "name", 64));
  if (!IsValidName(name)) {
    return Error::InvalidArgument("field 'name' must be 1-64 letters, digits, '.', '_' or '-'");
  }
  CANOPY_ASSIGN_OR_RETURN(std::string provider, GetString(body, "provider", 32));
  CANOPY_ASSIGN_OR_RETURN(Json secret_json, GetObject(body, "secret"));
  providers::CredentialSecret secret(std::move(secret_json));
  body = Json();  // drop the plaintext copy early

  if (deps.store->credentials().GetByName(name)) {
    return Error::AlreadyExists(fmt::format("credential '{}' already exists", name));
  }
  CANOPY_ASSIGN_OR_RETURN(core::ProviderRecord adapter, FindLiveAdapter(deps, provider));
  CANOPY_ASSIGN_OR_RETURN(SecretString adapter_key, deps.secrets->Open(adapter.key_ciphertext, adapter.id));
  providers::remote::RemoteProvider remote(adapter.url, std::move(adapter_key),
                                           providers::ProviderInfo{adapter.type, adapter.version, {}, {}});
  SPDLOG_INFO("Validating credential provider={} adapter={}", provider, adapter.id);
  auto valid = remote.ValidateCredential(providers::CallContext{secret, ""});
  if (!valid) {
    const Error& e = valid.error();
    SPDLOG_INFO("Credential validation failed provider={} code={}", provider, ErrorCodeName(e.code));
    switch (e.code) {
      case ErrorCode::kInvalidArgument:
      case ErrorCode::kUnauthenticated:
      case ErrorCode::kPermissionDenied:
        return Error::Unprocessable(fmt::format("the {} provider rejected the credential: {}", provider, e.message));
      case ErrorCode::kUnavailable:
      case ErrorCode::kDeadlineExceeded:
        return Error::Unavailable(fmt::format("cannot validate the credential now: {}", e.message));
      default:
        return Error::Provider(fmt::format("credential validation failed: {}", e.message));
    }
  }
  core::Credential c;
  c.id = deps.ids->NewId("crd");
  c.name = name;
  c.provider = provider;
  c.created_by = p.user_id;
  c.created_at = deps.clock->Now();
  CANOPY_ASSIGN_OR_RETURN(c.secret_ciphertext,
                          deps.secrets->Seal(SecretString(DumpJson(secret.Reveal())), c.id));
  auto st = deps.store->credentials().Create(c);
  if (!st) {
    if (st.error().code == ErrorCode::kAlreadyExists) {
      return Error::AlreadyExists(fmt::format("credential '{}' already exists", name));
    }
    return std::move(st).error();
  }
  SPDLOG_INFO("Stored credential credential={} provider={} by={}", c.id, provider, p.user_id);
  return JsonResponse(201, CredentialJson(c));
}

Result<net::Response> ListCredentials(const ApiDeps& deps, const net::Request&, const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(auto all, deps.store->credentials().List());
  Json out = Json::array();
  for (const auto& c : all) out.push_back(CredentialJson(c));
  return JsonResponse(200, out);
}

Result<net::Response> GetCredential(const ApiDeps& deps, const net::Request& req, const Principal&) {
  auto c = deps.store->credentials().Get(req.Param("id"));
  if (!c) return c.error().code == ErrorCode::kNotFound ? Error::NotFound("credential not found")
                                                        : std::move(c).error();
  return JsonResponse(200, CredentialJson(*c));
}

Result<net::Response> DeleteCredential(const ApiDeps& deps, const net::Request& req, const Principal& p) {
  std::string id = req.Param("id");
  // 409 while a cluster made with it exists: its instance, workers and firewalls are billed to
  // it, and deleting them needs it.
  Status st = deps.store->Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(auto clusters, tx.clusters().List());
    for (const auto& c : clusters) {
      if (c.credential_id == id) {
        return Error::Conflict(fmt::format(
            "credential is in use by cluster '{}'; delete the cluster first", c.name));
      }
    }
    return tx.credentials().Delete(id);
  });
  if (!st) return st.error().code == ErrorCode::kNotFound ? Error::NotFound("credential not found")
                                                          : std::move(st).error();
  SPDLOG_INFO("Deleted credential credential={} by={}", id, p.user_id);
  return net::Response{204, "application/json", "", {}};
}

}  // namespace

std::vector<RouteDef> CredentialRoutes() {
  return {
      {"POST", "/api/v1/credentials", Access::kInfra, CreateCredential},
      {"GET", "/api/v1/credentials", Access::kInfra, ListCredentials},
      {"GET", "/api/v1/credentials/{id}", Access::kInfra, GetCredential},
      {"DELETE", "/api/v1/credentials/{id}", Access::kInfra, DeleteCredential},
  };
}

}  // namespace canopy::api::detail
