// IdGenerator: injected source of resource ids and random tokens. RandomIdGenerator uses OpenSSL's
// CSPRNG and is thread-safe. Ids look like "<prefix>-<16 lowercase base32 chars>".
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace canopy {

class IdGenerator {
 public:
  virtual ~IdGenerator() = default;
  virtual std::string NewId(std::string_view prefix) = 0;
};
using IdGeneratorPtr = std::shared_ptr<IdGenerator>;

class RandomIdGenerator final : public IdGenerator {
 public:
  std::string NewId(std::string_view prefix) override;
};

// `n` bytes from the CSPRNG, as lowercase hex / URL-safe base64 without padding.
std::string RandomHex(size_t n);
std::string RandomToken(size_t n);

// Encoding helpers shared across components.
std::string HexEncode(std::string_view bytes);
std::string Base64UrlEncode(std::string_view bytes);
// Returns false on invalid input.
bool Base64UrlDecode(std::string_view in, std::string* out);
std::string Base64Encode(std::string_view bytes);
bool Base64Decode(std::string_view in, std::string* out);
std::string Sha256Hex(std::string_view data);
// Constant-time comparison.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace canopy
