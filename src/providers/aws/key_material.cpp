#include "providers/aws/key_material.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>
#include <vector>

#include "common/ids.h"

namespace canopy::providers::aws {
namespace {

void PutString(std::string& out, std::string_view s) {
  uint32_t n = static_cast<uint32_t>(s.size());
  out.push_back(static_cast<char>((n >> 24) & 0xff));
  out.push_back(static_cast<char>((n >> 16) & 0xff));
  out.push_back(static_cast<char>((n >> 8) & 0xff));
  out.push_back(static_cast<char>(n & 0xff));
  out.append(s);
}

// RFC 4251 mpint of a non-negative number: big-endian, a leading zero byte when the top bit is set.
bool PutMpint(std::string& out, EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1 || bn == nullptr) return false;
  std::vector<unsigned char> bytes(static_cast<size_t>(BN_num_bytes(bn)));
  BN_bn2bin(bn, bytes.data());
  BN_free(bn);
  std::string v;
  if (!bytes.empty() && (bytes[0] & 0x80) != 0) v.push_back('\0');
  v.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  PutString(out, v);
  return true;
}

std::string StripPadding(std::string s) {
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

}  // namespace

Result<PublicKeyInfo> PublicKeyFromPem(const SecretString& private_key_pem) {
  const std::string& pem = private_key_pem.Reveal();
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  if (!bio) return Error::Internal("out of memory");
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  if (!key) return Error::InvalidArgument("the key material is not a PEM private key");
  std::string blob, type;
  if (EVP_PKEY_is_a(key.get(), "RSA")) {
    type = "ssh-rsa";
    PutString(blob, type);
    if (!PutMpint(blob, key.get(), OSSL_PKEY_PARAM_RSA_E) ||
        !PutMpint(blob, key.get(), OSSL_PKEY_PARAM_RSA_N)) {
      return Error::InvalidArgument("cannot read the RSA key's public numbers");
    }
  } else if (EVP_PKEY_is_a(key.get(), "ED25519")) {
    type = "ssh-ed25519";
    unsigned char raw[32];
    size_t len = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(key.get(), raw, &len) != 1 || len != sizeof raw) {
      return Error::InvalidArgument("cannot read the Ed25519 public key");
    }
    PutString(blob, type);
    PutString(blob, std::string_view(reinterpret_cast<const char*>(raw), len));
  } else {
    return Error::InvalidArgument("unsupported key type (RSA or Ed25519 expected)");
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_Digest(blob.data(), blob.size(), md, &md_len, EVP_sha256(), nullptr) != 1) {
    return Error::Internal("SHA-256 failed");
  }
  PublicKeyInfo info;
  info.public_key = type + " " + Base64Encode(blob);
  info.fingerprint =
      "SHA256:" +
      StripPadding(Base64Encode(std::string_view(reinterpret_cast<const char*>(md), md_len)));
  return info;
}

}  // namespace canopy::providers::aws
