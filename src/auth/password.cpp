#include "auth/password.h"

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <charconv>
#include <cstring>
#include <string>
#include <string_view>

namespace canopy::auth {
namespace {

constexpr size_t kSaltBytes = 16;
constexpr uint32_t kHashBytes = 32;
constexpr std::string_view kPrefix = "$argon2id$";
// Bounds on parameters read from a stored hash before libargon2 acts on them: a corrupted or
// planted hash must not make one login allocate gigabytes or spin for minutes.
constexpr uint32_t kMaxVerifyMemoryKib = 1024 * 1024;  // 1 GiB
constexpr uint32_t kMaxVerifyTimeCost = 64;
constexpr uint32_t kMaxVerifyParallelism = 64;
constexpr size_t kMaxEncodedBytes = 512;

bool ValidLength(const std::string& pw) { return !pw.empty() && pw.size() <= kMaxPasswordBytes; }

// Reads "<key>=<uint32>" at the front of `s` and advances past it.
bool ReadParam(std::string_view* s, std::string_view key, uint32_t* out) {
  if (s->substr(0, key.size()) != key || s->size() < key.size() + 1 || (*s)[key.size()] != '=') {
    return false;
  }
  s->remove_prefix(key.size() + 1);
  auto [ptr, ec] = std::from_chars(s->data(), s->data() + s->size(), *out);
  if (ec != std::errc() || ptr == s->data()) return false;
  s->remove_prefix(static_cast<size_t>(ptr - s->data()));
  return true;
}

// Checks "$argon2id$[v=N$]m=M,t=T,p=P$..." and the bounds above.
bool ParamsWithinBounds(std::string_view enc) {
  if (enc.substr(0, kPrefix.size()) != kPrefix) return false;
  enc.remove_prefix(kPrefix.size());
  if (enc.substr(0, 2) == "v=") {
    size_t dollar = enc.find('$');
    if (dollar == std::string_view::npos) return false;
    enc.remove_prefix(dollar + 1);
  }
  uint32_t m = 0;
  uint32_t t = 0;
  uint32_t p = 0;
  if (!ReadParam(&enc, "m", &m) || enc.empty() || enc[0] != ',') return false;
  enc.remove_prefix(1);
  if (!ReadParam(&enc, "t", &t) || enc.empty() || enc[0] != ',') return false;
  enc.remove_prefix(1);
  if (!ReadParam(&enc, "p", &p)) return false;
  return m <= kMaxVerifyMemoryKib && t <= kMaxVerifyTimeCost && p <= kMaxVerifyParallelism;
}

}  // namespace

Result<std::string> HashPassword(const SecretString& password, const KdfParams& params) {
  const std::string& pw = password.Reveal();
  if (pw.empty()) return Error::InvalidArgument("password must not be empty");
  if (pw.size() > kMaxPasswordBytes) {
    return Error::InvalidArgument("password must be at most 1024 bytes");
  }
  unsigned char salt[kSaltBytes];
  if (RAND_bytes(salt, sizeof salt) != 1) return Error::Internal("cannot generate a salt");
  const size_t len = argon2_encodedlen(params.time_cost, params.memory_kib, params.parallelism,
                                       kSaltBytes, kHashBytes, Argon2_id);
  std::string encoded(len, '\0');
  const int rc = argon2id_hash_encoded(params.time_cost, params.memory_kib, params.parallelism,
                                       pw.data(), pw.size(), salt, sizeof salt, kHashBytes,
                                       encoded.data(), encoded.size());
  OPENSSL_cleanse(salt, sizeof salt);
  switch (rc) {
    case ARGON2_OK:
      break;
    case ARGON2_MEMORY_ALLOCATION_ERROR:
      return Error{ErrorCode::kResourceExhausted, "not enough memory to hash the password", {}};
    case ARGON2_TIME_TOO_SMALL:
    case ARGON2_TIME_TOO_LARGE:
    case ARGON2_MEMORY_TOO_LITTLE:
    case ARGON2_MEMORY_TOO_MUCH:
    case ARGON2_LANES_TOO_FEW:
    case ARGON2_LANES_TOO_MANY:
    case ARGON2_THREADS_TOO_FEW:
    case ARGON2_THREADS_TOO_MANY:
      return Error::InvalidArgument("invalid password hashing parameters");
    default:
      return Error::Internal("password hashing failed");
  }
  encoded.resize(std::strlen(encoded.c_str()));
  return encoded;
}

bool VerifyPassword(const SecretString& password, const std::string& encoded_hash) {
  const std::string& pw = password.Reveal();
  if (!ValidLength(pw)) return false;
  if (encoded_hash.size() > kMaxEncodedBytes || !ParamsWithinBounds(encoded_hash)) return false;
  // argon2id_verify recomputes the hash and compares in constant time; any decoding error of a
  // malformed hash is a non-OK return, which we treat as "does not match".
  return argon2id_verify(encoded_hash.c_str(), pw.data(), pw.size()) == ARGON2_OK;
}

}  // namespace canopy::auth
