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

Status CheckNewPassword(const SecretString& password, std::string_view field) {
  if (password.Reveal().size() < kMinPasswordLength) {
    return Error::InvalidArgument(
        fmt::format("field '{}' must have at least {} characters", field, kMinPasswordLength));
  }
  if (password.Reveal().size() > auth::kMaxPasswordBytes) {
    return Error::InvalidArgument(
        fmt::format("field '{}' must have at most {} bytes", field, auth::kMaxPasswordBytes));
  }
  return OkStatus();
}

bool Principal::Has(core::Role r) const {
  return std::find(roles.begin(), roles.end(), r) != roles.end();
}

Users::Users(store::Store& store, ClockPtr clock, IdGeneratorPtr ids, auth::JwtKeys& jwt,
             std::chrono::seconds token_ttl, LoginThrottleOptions throttle)
    : store_(store),
      clock_(std::move(clock)),
      ids_(std::move(ids)),
      jwt_(jwt),
      token_ttl_(token_ttl),
      throttle_(clock_, throttle) {}

Result<LoginToken> Users::Login(const std::string& username, const SecretString& password,
                                const std::string& address, int64_t* retry_after_s) {
  CANOPY_TRY(throttle_.Admit(username, address, retry_after_s));
  auto user = store_.users().GetByUsername(username);
  if (!user) {
    if (user.error().code != ErrorCode::kNotFound) return std::move(user).error();
    (void)auth::VerifyPassword(password, DummyHash());
    throttle_.Failed(username, address);
    SPDLOG_INFO("Login refused reason=unknown_user");
    return Error::Unauthenticated("invalid username or password");
  }
  if (!auth::VerifyPassword(password, user->password_hash)) {
    throttle_.Failed(username, address);
    SPDLOG_INFO("Login refused reason=wrong_password user={}", user->id);
    return Error::Unauthenticated("invalid username or password");
  }
  if (auto st = jwt_.MaybeRotate(clock_->Now()); !st) {
    SPDLOG_ERROR("JWT signing key rotation failed error={}", st.error().message);
  }
  auth::Claims c;
  c.subject = user->id;
  c.username = user->username;
  c.generation = user->token_generation;
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
  if (claims.generation != user->token_generation) {
    return Error::Unauthenticated("token revoked by a password change");
  }
  return Principal{user->id, user->username, user->roles};
}

Json Users::Jwks() const { return jwt_.Jwks(); }

Result<std::string> Users::RotateSigningKey() {
  CANOPY_ASSIGN_OR_RETURN(std::string kid, jwt_.Rotate(clock_->Now()));
  SPDLOG_INFO("Rotated the JWT signing key kid={}", kid);
  return kid;
}

Status Users::ChangePassword(const std::string& user_id, const SecretString& current,
                             const SecretString& next, const std::string& address) {
  CANOPY_TRY(CheckNewPassword(next, "new_password"));
  CANOPY_ASSIGN_OR_RETURN(core::User user, store_.users().Get(user_id));
  CANOPY_TRY(throttle_.Admit(user.username, address));
  if (!auth::VerifyPassword(current, user.password_hash)) {
    throttle_.Failed(user.username, address);
    SPDLOG_INFO("Password change refused reason=wrong_password user={}", user_id);
    return Error::Unauthenticated("current password is wrong");
  }
  CANOPY_ASSIGN_OR_RETURN(std::string hash, auth::HashPassword(next));
  CANOPY_ASSIGN_OR_RETURN(int64_t gen, store_.users().ChangePassword(user_id, hash));
  SPDLOG_INFO("Password changed user={} token_generation={}", user_id, gen);
  return OkStatus();
}

Status Users::SetPassword(const std::string& user_id, const SecretString& next,
                          const std::string& by) {
  CANOPY_TRY(CheckNewPassword(next, "password"));
  CANOPY_ASSIGN_OR_RETURN(std::string hash, auth::HashPassword(next));
  auto gen = store_.users().ChangePassword(user_id, hash);
  if (!gen) {
    if (gen.error().code == ErrorCode::kNotFound) {
      return Error::NotFound(fmt::format("user '{}' not found", user_id));
    }
    return std::move(gen).error();
  }
  SPDLOG_INFO("Password set user={} by={} token_generation={}", user_id, by, *gen);
  return OkStatus();
}

Result<core::User> Users::Create(const std::string& username, SecretString password,
                                 std::vector<core::Role> roles) {
  CANOPY_TRY(CheckNewPassword(password, "password"));
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
