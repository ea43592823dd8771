#include "control/users.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "auth/password.h"

namespace canopy::control {
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

}  // namespace

bool Principal::Has(core::Role r) const {
  return std::find(roles.begin(), roles.end(), r) != roles.end();
}

Users::Users(store::Store& store, ClockPtr clock, IdGeneratorPtr ids, const auth::JwtKeys& jwt,
             std::chrono::seconds token_ttl)
    : store_(store),
      clock_(std::move(clock)),
      ids_(std::move(ids)),
      jwt_(jwt),
      token_ttl_(token_ttl) {}

Result<LoginToken> Users::Login(const std::string& username, const SecretString& password) {
  auto user = store_.users().GetByUsername(username);
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
  c.issued_at = UnixSeconds(clock_->Now());
  c.expires_at = c.issued_at + token_ttl_.count();
  c.token_id = RandomHex(12);
  CANOPY_ASSIGN_OR_RETURN(std::string token, jwt_.Sign(c));
  SPDLOG_INFO("Login succeeded user={}", user->id);
  return LoginToken{std::move(token), token_ttl_.count()};
}

Result<Principal> Users::Authenticate(const std::string& token) {
  CANOPY_ASSIGN_OR_RETURN(auth::Claims claims, jwt_.Verify(token, clock_->Now()));
  auto user = store_.users().Get(claims.subject);
  if (!user) {
    if (user.error().code == ErrorCode::kNotFound) {
      return Error::Unauthenticated("user no longer exists");
    }
    return std::move(user).error();
  }
  return Principal{user->id, user->username, user->roles};
}

Json Users::Jwks() const { return jwt_.Jwks(); }

Result<core::User> Users::Create(const std::string& username, SecretString password,
                                 std::vector<core::Role> roles) {
  if (password.Reveal().size() < 8) {
    return Error::InvalidArgument("field 'password' must have at least 8 characters");
  }
  core::User u;
  for (auto r : roles) {
    if (!u.HasRole(r)) u.roles.push_back(r);
  }
  CANOPY_ASSIGN_OR_RETURN(u.password_hash, auth::HashPassword(password));
  u.id = ids_->NewId("usr");
  u.username = username;
  u.created_at = clock_->Now();
  auto st = store_.users().Create(u);
  if (!st) {
    if (st.error().code == ErrorCode::kAlreadyExists) {
      return Error::AlreadyExists(fmt::format("user '{}' already exists", username));
    }
    return std::move(st).error();
  }
  SPDLOG_INFO("Created user user={}", u.id);
  return u;
}

Result<std::vector<core::User>> Users::List() { return store_.users().List(); }

Status Users::Delete(const std::string& id, const std::string& by) {
  Status st = store_.Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(core::User u, tx.users().Get(id));
    if (u.HasRole(core::Role::kAdmin)) {
      CANOPY_ASSIGN_OR_RETURN(auto all, tx.users().List());
      auto admins = std::count_if(all.begin(), all.end(), [](const core::User& x) {
        return x.HasRole(core::Role::kAdmin);
      });
      if (admins <= 1) return Error::Conflict("cannot delete the last admin");
    }
    return tx.users().Delete(id);
  });
  if (!st) {
    if (st.error().code == ErrorCode::kNotFound) {
      return Error::NotFound(fmt::format("user '{}' not found", id));
    }
    return st;
  }
  SPDLOG_INFO("Deleted user user={} by={}", id, by);
  return OkStatus();
}

}  // namespace canopy::control
