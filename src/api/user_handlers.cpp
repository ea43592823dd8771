// /api/v1/users (admin only).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "api/detail/context.h"
#include "auth/password.h"

namespace canopy::api::detail {
namespace {

Json UserJson(const core::User& u) {
  Json roles = Json::array();
  for (auto r : u.roles) roles.push_back(core::RoleName(r));
  return {{"id", u.id}, {"username", u.username}, {"roles", roles}, {"created_at", Iso(u.created_at)}};
}

Result<net::Response> CreateUser(const ApiDeps& deps, const net::Request& req, const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
  CANOPY_ASSIGN_OR_RETURN(std::string username, GetString(body, "username", 64));
  if (!IsValidName(username)) {
    return Error::InvalidArgument(
        "field 'username' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit");
  }
  CANOPY_ASSIGN_OR_RETURN(std::string password, GetString(body, "password", 1024));
  if (password.size() < 8) return Error::InvalidArgument("field 'password' must have at least 8 characters");
  CANOPY_ASSIGN_OR_RETURN(auto role_names, GetStringArray(body, "roles", 3, 16));
  if (role_names.empty()) return Error::InvalidArgument("field 'roles' must name at least one role");
  core::User u;
  for (const auto& n : role_names) {
    auto r = core::ParseRole(n);
    if (!r) return Error::InvalidArgument(fmt::format("unknown role '{}' (admin, infra or app)", n));
    if (!u.HasRole(*r)) u.roles.push_back(*r);
  }
  CANOPY_ASSIGN_OR_RETURN(u.password_hash, auth::HashPassword(SecretString(std::move(password))));
  u.id = deps.ids->NewId("usr");
  u.username = username;
  u.created_at = deps.clock->Now();
  auto st = deps.store->users().Create(u);
  if (!st) {
    if (st.error().code == ErrorCode::kAlreadyExists) {
      return Error::AlreadyExists(fmt::format("user '{}' already exists", username));
    }
    return std::move(st).error();
  }
  SPDLOG_INFO("Created user user={}", u.id);
  return JsonResponse(201, UserJson(u));
}

Result<net::Response> ListUsers(const ApiDeps& deps, const net::Request&, const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(auto users, deps.store->users().List());
  Json out = Json::array();
  for (const auto& u : users) out.push_back(UserJson(u));
  return JsonResponse(200, out);
}

Result<net::Response> DeleteUser(const ApiDeps& deps, const net::Request& req, const Principal& p) {
  std::string id = req.Param("id");
  Status st = deps.store->Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(core::User u, tx.users().Get(id));
    if (u.HasRole(core::Role::kAdmin)) {
      CANOPY_ASSIGN_OR_RETURN(auto all, tx.users().List());
      auto admins = std::count_if(all.begin(), all.end(),
                                  [](const core::User& x) { return x.HasRole(core::Role::kAdmin); });
      if (admins <= 1) return Error::Conflict("cannot delete the last admin");
    }
    return tx.users().Delete(id);
  });
  if (!st) {
    if (st.error().code == ErrorCode::kNotFound) return Error::NotFound(fmt::format("user '{}' not found", id));
    return std::move(st).error();
  }
  SPDLOG_INFO("Deleted user user={} by={}", id, p.user_id);
  return net::Response{204, "application/json", "", {}};
}

}  // namespace

std::vector<RouteDef> UserRoutes() {
  return {
      {"POST", "/api/v1/users", Access::kAdmin, CreateUser},
      {"GET", "/api/v1/users", Access::kAdmin, ListUsers},
      {"DELETE", "/api/v1/users/{id}", Access::kAdmin, DeleteUser},
  };
}

}  // namespace canopy::api::detail
