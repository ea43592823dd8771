#include "auth/secret_box.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <climits>
#include <string>
#include <utility>

#include "auth/detail/private_file.h"
#include "common/ids.h"

namespace canopy::auth {
namespace {

constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr char kVersion = 0x01;
constexpr size_t kOverhead = 1 + kNonceBytes + kTagBytes;
// Far above any credential; keeps every length well inside OpenSSL's int parameters.
constexpr size_t kMaxPlaintextBytes = 16 * 1024 * 1024;
constexpr size_t kMaxAadBytes = 64 * 1024;
constexpr std::string_view kWhat = "master key";

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const unsigned char* U(const char* p) { return reinterpret_cast<const unsigned char*>(p); }
unsigned char* U(char* p) { return reinterpret_cast<unsigned char*>(p); }

Error BadEnvKey() {
  return Error::InvalidArgument("CANOPY_MASTER_KEY must be 32 bytes as hex or base64");
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

// 64 hex digits, or canonical padded standard base64 of exactly 32 bytes (44 characters, as
// printed by `openssl rand -base64 32`). Nothing is trimmed: a stray character is an error.
Result<SecretString> ParseEnvKey(const std::string& env) {
  std::string key;
  if (env.size() == 2 * kKeyBytes) {
    key.resize(kKeyBytes);
    for (size_t i = 0; i < kKeyBytes; ++i) {
      int hi = HexValue(env[2 * i]);
      int lo = HexValue(env[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        OPENSSL_cleanse(key.data(), key.size());
        return BadEnvKey();
      }
      key[i] = static_cast<char>(hi * 16 + lo);
    }
    return SecretString(std::move(key));
  }
  if (env.size() == 44 && env[43] == '=') {
    for (size_t i = 0; i < 43; ++i) {
      if (!IsBase64Char(env[i])) return BadEnvKey();
    }
    bool ok = Base64Decode(env, &key) && key.size() == kKeyBytes && Base64Encode(key) == env;
    if (!ok) {
      OPENSSL_cleanse(key.data(), key.size());
      return BadEnvKey();
    }
    return SecretString(std::move(key));
  }
  return BadEnvKey();
}

Result<SecretString> GenerateKey() {
  std::string key(kKeyBytes, '\0');
  if (RAND_bytes(U(key.data()), static_cast<int>(key.size())) != 1) {
    return Error::Internal("cannot generate the master key");
  }
  return SecretString(std::move(key));
}

Error DecryptFailed() { return Error::Internal("secret could not be decrypted"); }

}  // namespace

SecretBox::SecretBox(SecretString key) : key_(std::move(key)) {}
SecretBox::~SecretBox() = default;

Result<std::unique_ptr<SecretBox>> SecretBox::FromKey(const SecretString& key32) {
  if (key32.Reveal().size() != kKeyBytes) {
    return Error::InvalidArgument("master key must be exactly 32 bytes");
  }
  return std::unique_ptr<SecretBox>(new SecretBox(key32));
}

Result<std::unique_ptr<SecretBox>> SecretBox::LoadOrCreate(const std::string& key_path,
                                                           const std::string& env_key) {
  // The environment wins; the key file is then neither read nor created.
  if (!env_key.empty()) {
    CANOPY_ASSIGN_OR_RETURN(SecretString key, ParseEnvKey(env_key));
    return FromKey(key);
  }
  CANOPY_ASSIGN_OR_RETURN(SecretString key,
                          detail::LoadOrCreatePrivateFile(key_path, kKeyBytes, kWhat, GenerateKey));
  if (key.Reveal().size() != kKeyBytes) {
    return Error::FailedPrecondition("master key file " + key_path + " must hold exactly 32 bytes");
  }
  return FromKey(key);
}

Result<std::string> SecretBox::Seal(const SecretString& plaintext, std::string_view aad) const {
  const std::string& pt = plaintext.Reveal();
  if (pt.size() > kMaxPlaintextBytes) return Error::InvalidArgument("secret is too large");
  if (aad.size() > kMaxAadBytes) return Error::InvalidArgument("secret context is too large");

  std::string out(kOverhead + pt.size(), '\0');
  out[0] = kVersion;
  char* nonce = out.data() + 1;
  char* body = nonce + kNonceBytes;
  char* tag = body + pt.size();
  // A fresh random 96-bit nonce per message; never reused under one key in practice (the
  // collision bound stays negligible far beyond the number of secrets Canopy stores).
  if (RAND_bytes(U(nonce), static_cast<int>(kNonceBytes)) != 1) {
    return Error::Internal("cannot generate a nonce");
  }
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  int final_len = 0;
  if (!ctx ||
      EVP_EncryptInit_ex2(ctx.get(), EVP_aes_256_gcm(), U(key_.Reveal().data()), U(nonce),
                          nullptr) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, U(aad.data()), static_cast<int>(aad.size())) !=
          1 ||
      EVP_EncryptUpdate(ctx.get(), U(body), &len, U(pt.data()), static_cast<int>(pt.size())) != 1 ||
      static_cast<size_t>(len) != pt.size() ||
      EVP_EncryptFinal_ex(ctx.get(), U(body + len), &final_len) != 1 || final_len != 0 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagBytes), tag) != 1) {
    return Error::Internal("secret could not be encrypted");
  }
  return out;
}

Result<SecretString> SecretBox::Open(std::string_view sealed, std::string_view aad) const {
  if (sealed.size() < kOverhead || sealed[0] != kVersion ||
      sealed.size() - kOverhead > kMaxPlaintextBytes || aad.size() > kMaxAadBytes) {
    return DecryptFailed();
  }
  const char* nonce = sealed.data() + 1;
  const char* body = nonce + kNonceBytes;
  const size_t body_len = sealed.size() - kOverhead;
  std::string tag(body + body_len, kTagBytes);  // the ctrl call takes a non-const pointer

  std::string pt(body_len, '\0');
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  int final_len = 0;
  bool ok =
      ctx &&
      EVP_DecryptInit_ex2(ctx.get(), EVP_aes_256_gcm(), U(key_.Reveal().data()), U(nonce),
                          nullptr) == 1 &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, U(aad.data()), static_cast<int>(aad.size())) ==
          1 &&
      EVP_DecryptUpdate(ctx.get(), U(pt.data()), &len, U(body), static_cast<int>(body_len)) == 1 &&
      static_cast<size_t>(len) == body_len &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagBytes),
                          tag.data()) == 1 &&
      // Final checks the tag; nothing of `pt` is released unless it matches.
      EVP_DecryptFinal_ex(ctx.get(), U(pt.data() + len), &final_len) == 1;
  if (!ok) {
    OPENSSL_cleanse(pt.data(), pt.size());
    return DecryptFailed();
  }
  SecretString out(std::move(pt));
  // A short string moved from keeps its bytes in the inline buffer: wipe what is left there.
  OPENSSL_cleanse(pt.data(), pt.capacity());
  return out;
}

}  // namespace canopy::auth
