// JWT issuing and verification with Ed25519 (alg "EdDSA", pinned: no other alg is accepted).
// The signing key persists in the data dir (PEM, mode 0600). Keys rotate: the current key signs,
// retired keys (`<path>.retired-<unix seconds>-<kid prefix>`, 0600) only verify, each until the
// tokens it signed have expired, and are then deleted; a token names its key by "kid".
// Thread-safe.
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
  int64_t generation = 0;  // "gen": the user's token generation (absent in a token: 0)
  // "nbf" is always set equal to "iat" by Sign.
};

struct JwtRotation {
  // MaybeRotate replaces a current key older than this (by its file's modification time);
  // zero: never on its own (Rotate still works).
  std::chrono::seconds max_key_age{std::chrono::hours(24 * 30)};
  // How long a retired key keeps verifying: the longest lifetime of a token it signed.
  std::chrono::seconds token_ttl{std::chrono::hours(12)};
};

class JwtKeys {
 public:
  // Loads the Ed25519 key from `path`, or creates it (0600) when the file does not exist, and
  // the retired keys still within `rotation.token_ttl` of `now` (older ones are deleted).
  // A key file with wrong permissions or content -> kFailedPrecondition.
  static Result<std::unique_ptr<JwtKeys>> LoadOrCreate(const std::string& path,
                                                       const JwtRotation& rotation = {},
                                                       TimePoint now = SystemClock().Now());
  ~JwtKeys();

  std::string key_id() const;  // "kid" of the signing key: RFC 7638 thumbprint of its public key
  Result<std::string> Sign(const Claims& c) const;
  // Checks structure, header alg/kid (the current or a retired key), signature, iss, and
  // exp/nbf against `now`. Every failure -> kUnauthenticated with a short message.
  Result<Claims> Verify(std::string_view token, TimePoint now) const;
  // {"keys":[{"kty":"OKP","crv":"Ed25519","x":...,"kid":...,"alg":"EdDSA","use":"sig"}, ...]}:
  // the signing key first, then the retired keys that still verify.
  Json Jwks() const;

  // A new signing key; the previous one is retired (verifies for rotation.token_ttl). Returns
  // the new kid.
  Result<std::string> Rotate(TimePoint now);
  // Rotates when the signing key is older than rotation.max_key_age, and forgets retired keys
  // past their time. Cheap when there is nothing to do.
  Status MaybeRotate(TimePoint now);

 private:
  struct Impl;
  explicit JwtKeys(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace canopy::auth
