// Users: login (Argon2id passwords, EdDSA-signed JWTs), the caller's identity for each request
// (roles are read from the store every time, so deleting a user or changing roles takes effect at
// once), and user management. Thread-safe.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "auth/jwt.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/secret.h"
#include "control/login_throttle.h"
#include "core/types.h"
#include "store/store.h"

namespace canopy::control {

// Who is calling.
struct Principal {
  std::string user_id;
  std::string username;
  std::vector<core::Role> roles;
  bool Has(core::Role r) const;
};

struct LoginToken {
  std::string access_token;
  int64_t expires_in = 0;  // seconds
};

// Shortest password accepted for a new password (NIST SP 800-63B's minimum is 8; we ask 12).
inline constexpr size_t kMinPasswordLength = 12;
// kInvalidArgument naming `field` when `password` is shorter than kMinPasswordLength.
Status CheckNewPassword(const SecretString& password, std::string_view field);

class Users {
 public:
  Users(store::Store& store, ClockPtr clock, IdGeneratorPtr ids, auth::JwtKeys& jwt,
        std::chrono::seconds token_ttl, LoginThrottleOptions throttle = {});

  // kUnauthenticated "invalid username or password" for an unknown user and a wrong password
  // alike (the same Argon2 work either way). kResourceExhausted (reason "login_throttled", the
  // wait in `*retry_after_s`) after too many failures for the username or from `address`,
  // without checking the password. Rotates the signing key when it is due.
  Result<LoginToken> Login(const std::string& username, const SecretString& password,
                           const std::string& address = "", int64_t* retry_after_s = nullptr);
  // The principal of a bearer token (kUnauthenticated when invalid, expired, revoked by a
  // password change, or its user is gone).
  Result<Principal> Authenticate(const std::string& token);
  Json Jwks() const;
  // A new signing key now; tokens signed by the old one verify until they expire. The new kid.
  Result<std::string> RotateSigningKey();

  // The caller's own password: `current` must match (kUnauthenticated, throttled like a login),
  // `next` must be long enough. Every token issued before is revoked.
  Status ChangePassword(const std::string& user_id, const SecretString& current,
                        const SecretString& next, const std::string& address = "");
  // An admin sets another user's password (kNotFound): revokes that user's tokens.
  Status SetPassword(const std::string& user_id, const SecretString& next, const std::string& by);

  // kInvalidArgument for a short password; kAlreadyExists for a taken username.
  Result<core::User> Create(const std::string& username, SecretString password,
                            std::vector<core::Role> roles);
  Result<std::vector<core::User>> List();
  // kConflict for the last admin; kNotFound.
  Status Delete(const std::string& id, const std::string& by);

 private:
  store::Store& store_;
  ClockPtr clock_;
  IdGeneratorPtr ids_;
  auth::JwtKeys& jwt_;
  std::chrono::seconds token_ttl_;
  LoginThrottle throttle_;
};

}  // namespace canopy::control
