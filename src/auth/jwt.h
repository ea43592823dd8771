// JWT issuing and verification with Ed25519 (alg "EdDSA", pinned: no other alg is accepted).
// The signing key persists in the data dir (PEM, mode 0600). Thread-safe after construction.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/json.h"
#include "common/result.h"

namespace canopy::auth {

// Value of the "iss" claim; Verify rejects any other issuer.
inline constexpr std::string_view kJwtIssuer = "canopy";
// Verify rejects longer tokens before any decoding; Sign refuses claims that would exceed it.
inline constexpr size_t kMaxJwtBytes = 8 * 1024;
// Clock skew tolerated on "nbf"/"iat" (a token minted by a root whose clock runs slightly ahead).
// "exp" gets no leeway: a token is never accepted after its expiry (valid while now < exp).
inline constexpr std::chrono::seconds kJwtNotBeforeLeeway{30};

struct Claims {
  std::string subject;  // user id
  std::string username;
  std::vector<std::string> roles;
  int64_t issued_at = 0;   // unix seconds
  int64_t expires_at = 0;  // unix seconds
  std::string token_id;    // jti; Sign generates a random one when empty
  // "nbf" is always set equal to "iat" by Sign.
};

class JwtKeys {
 public:
  // Loads the Ed25519 key from `path`, or creates it (0600) when the file does not exist.
  // A key file with wrong permissions or content -> kFailedPrecondition.
  static Result<std::unique_ptr<JwtKeys>> LoadOrCreate(const std::string& path);
  ~JwtKeys();

  std::string key_id() const;  // "kid": RFC 7638 thumbprint of the public key
  Result<std::string> Sign(const Claims& c) const;
  // Checks structure, header alg/kid, signature, iss, and exp/nbf against `now`.
  // Every failure -> kUnauthenticated with a short message.
  Result<Claims> Verify(std::string_view token, TimePoint now) const;
  // {"keys":[{"kty":"OKP","crv":"Ed25519","x":...,"kid":...,"alg":"EdDSA","use":"sig"}]}
  Json Jwks() const;

 private:
  struct Impl;
  explicit JwtKeys(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace canopy::auth
