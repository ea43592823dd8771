// Password hashing with Argon2id (libargon2), encoded in the PHC string format. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/result.h"
#include "common/secret.h"

namespace canopy::auth {

// Longer passwords are refused (kInvalidArgument on hashing, false on verifying).
inline constexpr size_t kMaxPasswordBytes = 1024;

struct KdfParams {
  uint32_t time_cost = 3;
  uint32_t memory_kib = 19 * 1024;
  uint32_t parallelism = 1;
};

// Fresh 16-byte random salt per call. Empty or too long password -> kInvalidArgument.
Result<std::string> HashPassword(const SecretString& password, const KdfParams& params = {});
// False for a wrong password or a malformed hash. Constant-time comparison.
bool VerifyPassword(const SecretString& password, const std::string& encoded_hash);

}  // namespace canopy::auth
