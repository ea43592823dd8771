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

class Users {
 public:
  Users(store::Store& store, ClockPtr clock, IdGeneratorPtr ids, const auth::JwtKeys& jwt,
        std::chrono::seconds token_ttl);

  // kUnauthenticated "invalid username or password" for an unknown user and a wrong password
  // alike (the same Argon2 work either way).
  Result<LoginToken> Login(const std::string& username, const SecretString& password);
  // The principal of a bearer token (kUnauthenticated when invalid, expired, or its user is gone).
  Result<Principal> Authenticate(const std::string& token);
  Json Jwks() const;

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
  const auth::JwtKeys& jwt_;
  std::chrono::seconds token_ttl_;
};

}  // namespace canopy::control
