// SecretBox: AES-256-GCM encryption of secrets at rest under the master key. The master key comes
// from CANOPY_MASTER_KEY (64 hex chars or base64 of 32 bytes) or from DATA_DIR/master.key
// (created 0600 on first start). Sealed format: version byte | 12-byte nonce | ciphertext | tag.
// `aad` binds a ciphertext to its row (e.g. the credential id). Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "common/result.h"
#include "common/secret.h"

namespace canopy::auth {

class SecretBox {
 public:
  static Result<std::unique_ptr<SecretBox>> FromKey(const SecretString& key32);
  // env_key: the value of CANOPY_MASTER_KEY ("" when unset). Otherwise reads/creates key_path.
  static Result<std::unique_ptr<SecretBox>> LoadOrCreate(const std::string& key_path,
                                                         const std::string& env_key);
  ~SecretBox();

  Result<std::string> Seal(const SecretString& plaintext, std::string_view aad) const;
  // kInternal "secret could not be decrypted" on tampering, wrong key or wrong aad.
  Result<SecretString> Open(std::string_view sealed, std::string_view aad) const;

 private:
  explicit SecretBox(SecretString key);
  SecretString key_;
};

}  // namespace canopy::auth
