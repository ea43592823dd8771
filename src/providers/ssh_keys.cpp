#include "providers/ssh_keys.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "common/ids.h"

namespace canopy::providers {
namespace {

constexpr std::string_view kOpenSshBegin = "-----BEGIN OPENSSH PRIVATE KEY-----";
constexpr std::string_view kOpenSshEnd = "-----END OPENSSH PRIVATE KEY-----";
constexpr std::string_view kOpenSshMagic{"openssh-key-v1\0", 15};

void PutU32(std::string& out, uint32_t n) {
  out.push_back(static_cast<char>((n >> 24) & 0xff));
  out.push_back(static_cast<char>((n >> 16) & 0xff));
  out.push_back(static_cast<char>((n >> 8) & 0xff));
  out.push_back(static_cast<char>(n & 0xff));
}

void PutString(std::string& out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

// Reads one RFC 4251 string at `pos`; false when the buffer is too short.
bool GetString(std::string_view in, size_t& pos, std::string_view* out) {
  if (in.size() < pos + 4) return false;
  uint32_t n = (static_cast<uint32_t>(static_cast<unsigned char>(in[pos])) << 24) |
               (static_cast<uint32_t>(static_cast<unsigned char>(in[pos + 1])) << 16) |
               (static_cast<uint32_t>(static_cast<unsigned char>(in[pos + 2])) << 8) |
               static_cast<uint32_t>(static_cast<unsigned char>(in[pos + 3]));
  pos += 4;
  if (in.size() - pos < n) return false;
  *out = in.substr(pos, n);
  pos += n;
  return true;
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

std::string KeyType(std::string_view blob) {
  size_t pos = 0;
  std::string_view type;
  if (!GetString(blob, pos, &type)) return "";
  return std::string(type);
}

// The binary body of an OpenSSH private key file (base64 between the markers, whitespace
// ignored); false when the text is not one.
bool OpenSshBody(const std::string& text, std::string* body) {
  auto b = text.find(kOpenSshBegin);
  if (b == std::string::npos) return false;
  auto e = text.find(kOpenSshEnd, b);
  if (e == std::string::npos) return false;
  std::string b64;
  for (size_t i = b + kOpenSshBegin.size(); i < e; ++i) {
    char ch = text[i];
    if (ch != '\n' && ch != '\r' && ch != ' ' && ch != '\t') b64.push_back(ch);
  }
  bool ok = Base64Decode(b64, body);
  OPENSSL_cleanse(b64.data(), b64.size());
  return ok;
}

}  // namespace

std::string FingerprintOfBlob(std::string_view blob) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_Digest(blob.data(), blob.size(), md, &md_len, EVP_sha256(), nullptr) != 1) return "";
  return "SHA256:" +
         StripPadding(Base64Encode(std::string_view(reinterpret_cast<const char*>(md), md_len)));
}

Result<std::string> FingerprintOfPublicKey(std::string_view key) {
  std::string_view b64 = key;
  // "type base64 [comment]": the second field.
  if (auto sp = key.find(' '); sp != std::string_view::npos && key.substr(0, 4) != "AAAA") {
    b64 = key.substr(sp + 1);
    if (auto end = b64.find(' '); end != std::string_view::npos) b64 = b64.substr(0, end);
  }
  while (!b64.empty() && (b64.back() == '\n' || b64.back() == '\r' || b64.back() == ' '))
    b64.remove_suffix(1);
  std::string blob;
  if (b64.empty() || !Base64Decode(b64, &blob) || KeyType(blob).empty()) {
    return Error::InvalidArgument("not an SSH public key");
  }
  return FingerprintOfBlob(blob);
}

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
  PublicKeyInfo info;
  info.public_key = type + " " + Base64Encode(blob);
  info.fingerprint = FingerprintOfBlob(blob);
  return info;
}

Result<PublicKeyInfo> PublicKeyFromPrivateKey(const SecretString& private_key) {
  std::string body;
  if (!OpenSshBody(private_key.Reveal(), &body)) return PublicKeyFromPem(private_key);
  // magic, cipher, kdf, kdf options, key count, first public key (readable without decrypting).
  std::string_view in = body;
  size_t pos = kOpenSshMagic.size();
  std::string_view cipher, kdf, kdf_opts, pub;
  bool ok = in.substr(0, kOpenSshMagic.size()) == kOpenSshMagic && GetString(in, pos, &cipher) &&
            GetString(in, pos, &kdf) && GetString(in, pos, &kdf_opts) && in.size() >= pos + 4;
  if (ok) {
    pos += 4;
    ok = GetString(in, pos, &pub) && !KeyType(pub).empty();
  }
  PublicKeyInfo info;
  if (ok) {
    info.public_key = KeyType(pub) + " " + Base64Encode(pub);
    info.fingerprint = FingerprintOfBlob(pub);
  }
  OPENSSL_cleanse(body.data(), body.size());
  if (!ok) return Error::InvalidArgument("the key material is not an OpenSSH private key");
  return info;
}

Result<GeneratedKey> GenerateEd25519(const std::string& comment) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"), &EVP_PKEY_free);
  if (!key) return Error::Internal("Ed25519 key generation failed");
  unsigned char pub[32], seed[32];
  size_t pub_len = sizeof pub, seed_len = sizeof seed;
  uint32_t check = 0;
  if (EVP_PKEY_get_raw_public_key(key.get(), pub, &pub_len) != 1 || pub_len != sizeof pub ||
      EVP_PKEY_get_raw_private_key(key.get(), seed, &seed_len) != 1 || seed_len != sizeof seed ||
      RAND_bytes(reinterpret_cast<unsigned char*>(&check), sizeof check) != 1) {
    OPENSSL_cleanse(seed, sizeof seed);
    return Error::Internal("Ed25519 key generation failed");
  }
  const std::string_view pub_raw(reinterpret_cast<const char*>(pub), sizeof pub);
  std::string blob;
  PutString(blob, "ssh-ed25519");
  PutString(blob, pub_raw);

  // PROTOCOL.key: the unencrypted private section, padded to the cipher block size (8).
  std::string priv;
  PutU32(priv, check);
  PutU32(priv, check);
  PutString(priv, "ssh-ed25519");
  PutString(priv, pub_raw);
  std::string secret(reinterpret_cast<const char*>(seed), sizeof seed);
  secret.append(pub_raw);  // OpenSSH keeps seed || public key
  PutString(priv, secret);
  PutString(priv, comment);
  for (char pad = 1; priv.size() % 8 != 0; ++pad) priv.push_back(pad);

  std::string file(kOpenSshMagic);
  PutString(file, "none");
  PutString(file, "none");
  PutString(file, "");
  PutU32(file, 1);
  PutString(file, blob);
  PutString(file, priv);
  std::string b64 = Base64Encode(file);
  std::string text(kOpenSshBegin);
  text.push_back('\n');
  for (size_t i = 0; i < b64.size(); i += 70) {
    text.append(b64, i, 70);
    text.push_back('\n');
  }
  text.append(kOpenSshEnd);
  text.push_back('\n');
  OPENSSL_cleanse(seed, sizeof seed);
  OPENSSL_cleanse(secret.data(), secret.size());
  OPENSSL_cleanse(priv.data(), priv.size());
  OPENSSL_cleanse(file.data(), file.size());
  OPENSSL_cleanse(b64.data(), b64.size());

  GeneratedKey g;
  g.public_key = "ssh-ed25519 " + Base64Encode(blob);
  g.fingerprint = FingerprintOfBlob(blob);
  g.private_key = SecretString(text);
  OPENSSL_cleanse(text.data(), text.size());
  return g;
}

std::string HostKeyFromConsole(const std::string& console) {
  const std::string begin = "-----BEGIN SSH HOST KEY FINGERPRINTS-----";
  const std::string end = "-----END SSH HOST KEY FINGERPRINTS-----";
  auto b = console.rfind(begin);
  if (b == std::string::npos) return "";
  auto e = console.find(end, b);
  if (e == std::string::npos) return "";
  std::map<std::string, std::string> by_type;  // "ED25519" -> "SHA256:..."
  std::istringstream in(console.substr(b + begin.size(), e - b - begin.size()));
  std::string line;
  while (std::getline(in, line)) {
    auto fp = line.find("SHA256:");
    auto open = line.rfind('(');
    auto close = line.rfind(')');
    if (fp == std::string::npos || open == std::string::npos || close == std::string::npos ||
        close < open)
      continue;
    std::string value = line.substr(fp, line.find_first_of(" \t\r", fp) - fp);
    by_type[line.substr(open + 1, close - open - 1)] = value;
  }
  for (const char* t : {"ED25519", "ECDSA", "RSA"}) {
    if (auto it = by_type.find(t); it != by_type.end()) return it->second;
  }
  return "";
}

}  // namespace canopy::providers
