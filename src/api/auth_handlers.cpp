// POST /api/v1/auth/login and GET /api/v1/auth/jwks.
#include <spdlog/spdlog.h>

#include "api/detail/context.h"
#include "auth/password.h"
#include "common/secret.h"

namespace canopy::api::detail {
namespace {

// A valid Argon2id hash of a random string: verifying against it for unknown users keeps login
// time independent of whether the username exists.
const std::string& DummyHash() {
  static const std::string h = [] {
    auto r = auth::HashPassword(SecretString(RandomToken(16)));
    return r ? *r : std::string();
  }();
  return h;
}

Result<net::Response> Login(const ApiDeps& deps, const net::Request& req, const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
  CANOPY_ASSIGN_OR_RETURN(std::string username, GetString(body, "username", 128));
  CANOPY_ASSIGN_OR_RETURN(std::string password_plain, GetString(body, "password", 1024));
  SecretString password(std::move(password_plain));
  auto user = deps.store->users().GetByUsername(username);
  if (!user) {
    if (user.error().code != ErrorCode::kNotFound) return std::move(user).error();
    (void)auth::VerifyPassword(password, DummyHash());
    SPDLOG_INFO("Login refused reason=unknown_user");
    return Error::Unauthenticated("invalid username or password");
  }
  if (!auth::VerifyPassword(password, user->password_hash)) {
    SPDLOG_INFO("Login refused reason=wrong_password user={}", user->id);
    return Error::Unauthenticated("invalid username or password");
  }
  auth::Claims c;
  c.subject = user->id;
  c.username = user->username;
  for (auto r : user->roles) c.roles.emplace_back(core::RoleName(r));
  c.issued_at = UnixSeconds(deps.clock->Now());
  c.expires_at = c.issued_at + deps.options.token_ttl.count();
  c.token_id = RandomHex(12);
  CANOPY_ASSIGN_OR_RETURN(std::string token, deps.jwt->Sign(c));
  SPDLOG_INFO("Login succeeded user={}", user->id);
  return JsonResponse(200, {{"access_token", token},
                            {"token_type", "Bearer"},
                            {"expires_in", deps.options.token_ttl.count()}});
}

Result<net::Response> Jwks(const ApiDeps& deps, const net::Request&, const Principal&) {
  return JsonResponse(200, deps.jwt->Jwks());
}

}  // namespace

std::vector<RouteDef> AuthRoutes() {
  return {
      {"POST", "/api/v1/auth/login", Access::kPublic, Login},
      {"GET", "/api/v1/auth/jwks", Access::kPublic, Jwks},
  };
}

}  // namespace canopy::api::detail
