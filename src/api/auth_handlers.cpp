// POST /api/v1/auth/login, GET /api/v1/auth/jwks, POST /api/v1/auth/password,
// POST /api/v1/auth/keys/rotate (admin) and /api/v1/users (admin only).
#include <fmt/format.h>

#include "api/detail/context.h"
#include "common/clock.h"

namespace canopy::api::detail {
namespace {

Json UserJson(const core::User& u) {
  Json roles = Json::array();
  for (auto r : u.roles) roles.push_back(core::RoleName(r));
  return {{"id", u.id},
          {"username", u.username},
          {"roles", roles},
          {"created_at", FormatRfc3339(u.created_at)}};
}

}  // namespace

std::vector<RouteDef> AuthRoutes(control::Users* users) {
  auto login = [users](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    CANOPY_ASSIGN_OR_RETURN(std::string username, GetString(body, "username", 128));
    CANOPY_ASSIGN_OR_RETURN(std::string password, GetString(body, "password", 1024));
    int64_t retry_after = 0;
    auto t =
        users->Login(username, SecretString(std::move(password)), req.remote_addr, &retry_after);
    if (!t) {
      net::Response r = RenderHandlerError("/api/v1/auth/login", t.error());
      if (retry_after > 0) r.headers.emplace_back("Retry-After", std::to_string(retry_after));
      return r;
    }
    return JsonResponse(200, {{"access_token", t->access_token},
                              {"token_type", "Bearer"},
                              {"expires_in", t->expires_in}});
  };
  auto jwks = [users](const net::Request&, const Principal&) -> Result<net::Response> {
    return JsonResponse(200, users->Jwks());
  };
  auto password = [users](const net::Request& req, const Principal& p) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    CANOPY_ASSIGN_OR_RETURN(std::string current, GetString(body, "current_password", 1024));
    CANOPY_ASSIGN_OR_RETURN(std::string next, GetString(body, "new_password", 1024));
    CANOPY_TRY(users->ChangePassword(p.user_id, SecretString(std::move(current)),
                                     SecretString(std::move(next)), req.remote_addr));
    return NoContent();
  };
  auto rotate = [users](const net::Request&, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(std::string kid, users->RotateSigningKey());
    return JsonResponse(200, {{"kid", kid}});
  };
  return {
      {"POST", "/api/v1/auth/login", Access::kPublic, login, nullptr, false, false, Lane::kKdf},
      {"GET", "/api/v1/auth/jwks", Access::kPublic, jwks},
      {"POST", "/api/v1/auth/password", Access::kAnyUser, password, nullptr, false, false,
       Lane::kKdf},
      {"POST", "/api/v1/auth/keys/rotate", Access::kAdmin, rotate},
  };
}

std::vector<RouteDef> UserRoutes(control::Users* users) {
  auto create = [users](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    CANOPY_ASSIGN_OR_RETURN(std::string username, GetString(body, "username", 64));
    CANOPY_TRY(CheckName(username, "username"));
    CANOPY_ASSIGN_OR_RETURN(std::string password, GetString(body, "password", 1024));
    CANOPY_TRY(control::CheckNewPassword(SecretString(password), "password"));
    CANOPY_ASSIGN_OR_RETURN(auto role_names, GetStringArray(body, "roles", 3, 16));
    if (role_names.empty())
      return Error::InvalidArgument("field 'roles' must name at least one role");
    std::vector<core::Role> roles;
    for (const auto& n : role_names) {
      auto r = core::ParseRole(n);
      if (!r)
        return Error::InvalidArgument(fmt::format("unknown role '{}' (admin, infra or app)", n));
      roles.push_back(*r);
    }
    CANOPY_ASSIGN_OR_RETURN(core::User u,
                            users->Create(username, SecretString(std::move(password)), roles));
    return JsonResponse(201, UserJson(u));
  };
  auto list = [users](const net::Request&, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto all, users->List());
    Json out = Json::array();
    for (const auto& u : all) out.push_back(UserJson(u));
    return JsonResponse(200, out);
  };
  auto del = [users](const net::Request& req, const Principal& p) -> Result<net::Response> {
    CANOPY_TRY(users->Delete(req.Param("id"), p.user_id));
    return NoContent();
  };
  auto set_password = [users](const net::Request& req,
                              const Principal& p) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    CANOPY_ASSIGN_OR_RETURN(std::string password, GetString(body, "password", 1024));
    CANOPY_TRY(users->SetPassword(req.Param("id"), SecretString(std::move(password)), p.user_id));
    return NoContent();
  };
  return {
      {"POST", "/api/v1/users", Access::kAdmin, create, nullptr, false, false, Lane::kKdf},
      {"GET", "/api/v1/users", Access::kAdmin, list},
      {"DELETE", "/api/v1/users/{id}", Access::kAdmin, del},
      {"PUT", "/api/v1/users/{id}/password", Access::kAdmin, set_password, nullptr, false, false,
       Lane::kKdf},
  };
}

}  // namespace canopy::api::detail
