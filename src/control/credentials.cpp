#include "control/credentials.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace canopy::control {

Credentials::Credentials(store::Store& store, ClockPtr clock, IdGeneratorPtr ids,
                         const auth::SecretBox& secrets, ProviderOpener& opener)
    : store_(store),
      clock_(std::move(clock)),
      ids_(std::move(ids)),
      secrets_(secrets),
      opener_(opener) {}

Result<core::Credential> Credentials::Add(const std::string& name, const std::string& provider,
                                          providers::CredentialSecret secret,
                                          const std::string& user_id, const std::string& adapter) {
  if (store_.credentials().GetByName(name)) {
    return Error::AlreadyExists(fmt::format("credential '{}' already exists", name));
  }
  CANOPY_ASSIGN_OR_RETURN(std::string adapter_id, opener_.Bind(provider, adapter));
  CANOPY_ASSIGN_OR_RETURN(std::shared_ptr<providers::Provider> p,
                          opener_.ForAdapter(provider, adapter_id));
  SPDLOG_INFO("Validating credential provider={} adapter={}", provider, adapter_id);
  auto valid = p->ValidateCredential(providers::CallContext{secret, ""});
  if (!valid) {
    const Error& e = valid.error();
    SPDLOG_INFO("Credential validation failed provider={} code={}", provider,
                ErrorCodeName(e.code));
    switch (e.code) {
      case ErrorCode::kInvalidArgument:
      case ErrorCode::kUnauthenticated:
      case ErrorCode::kPermissionDenied:
        return Error::Unprocessable(
            fmt::format("the {} provider rejected the credential: {}", provider, e.message));
      case ErrorCode::kUnavailable:
      case ErrorCode::kDeadlineExceeded:
        return Error::Unavailable(fmt::format("cannot validate the credential now: {}", e.message));
      default:
        return Error::Provider(fmt::format("credential validation failed: {}", e.message));
    }
  }
  core::Credential c;
  c.id = ids_->NewId("crd");
  c.name = name;
  c.provider = provider;
  c.created_by = user_id;
  c.created_at = clock_->Now();
  c.adapter_id = adapter_id;
  CANOPY_ASSIGN_OR_RETURN(c.secret_ciphertext,
                          secrets_.Seal(SecretString(DumpJson(secret.Reveal())), c.id));
  auto st = store_.credentials().Create(c);
  if (!st) {
    if (st.error().code == ErrorCode::kAlreadyExists) {
      return Error::AlreadyExists(fmt::format("credential '{}' already exists", name));
    }
    return std::move(st).error();
  }
  SPDLOG_INFO("Stored credential credential={} provider={} by={}", c.id, provider, user_id);
  return c;
}

Result<std::vector<core::Credential>> Credentials::List() { return store_.credentials().List(); }

Result<core::Credential> Credentials::Get(const std::string& id) {
  auto c = store_.credentials().Get(id);
  if (!c && c.error().code == ErrorCode::kNotFound) return Error::NotFound("credential not found");
  return c;
}

Status Credentials::Delete(const std::string& id, const std::string& user_id) {
  Status st = store_.Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(auto clusters, tx.clusters().List());
    for (const auto& c : clusters) {
      if (c.credential_id == id) {
        return Error::Conflict(
            fmt::format("credential is in use by cluster '{}'; delete the cluster first", c.name));
      }
    }
    return tx.credentials().Delete(id);
  });
  if (!st) {
    if (st.error().code == ErrorCode::kNotFound) return Error::NotFound("credential not found");
    return st;
  }
  SPDLOG_INFO("Deleted credential credential={} by={}", id, user_id);
  return OkStatus();
}

}  // namespace canopy::control
