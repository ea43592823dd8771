#include "auth/jwt.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "auth/detail/private_file.h"
#include "common/ids.h"
#include "common/secret.h"

namespace canopy::auth {
namespace {

constexpr std::string_view kWhat = "JWT signing key";
constexpr size_t kMaxKeyFileBytes = 16 * 1024;
constexpr size_t kEd25519KeyBytes = 32;
constexpr size_t kEd25519SigBytes = 64;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

// Messages are deliberately short and never echo token content.
Error Unauth(std::string_view msg) { return Error::Unauthenticated(std::string(msg)); }

// Refuses a passphrase prompt: OpenSSL's default callback would read the terminal for an
// encrypted PEM, which must simply fail in a daemon.
int NoPassphrase(char*, int, int, void*) { return -1; }

Result<SecretString> GenerateKeyPem() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!key) return Error::Internal("cannot generate the JWT signing key");
  // Secure-heap BIO: the PEM text is wiped when freed.
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio || PEM_write_bio_PKCS8PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr,
                                            nullptr) != 1) {
    return Error::Internal("cannot encode the JWT signing key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || data == nullptr) return Error::Internal("cannot encode the JWT signing key");
  return SecretString(std::string(data, static_cast<size_t>(len)));
}

Result<PkeyPtr> ParseKeyPem(const SecretString& pem, const std::string& path) {
  const std::string& text = pem.Reveal();
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!bio) return Error::Internal("cannot read the JWT signing key");
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) {
    return Error::FailedPrecondition(fmt::format(
        "{} file {} does not hold an unencrypted Ed25519 private key (PKCS#8 PEM)", kWhat, path));
  }
  return key;
}

bool IsBase64UrlChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// Strict base64url: URL alphabet only, no padding, and canonical (unused trailing bits zero), so
// that one token has exactly one encoding.
bool DecodeSegment(std::string_view in, std::string* out) {
  if (in.empty()) return false;
  for (char c : in) {
    if (!IsBase64UrlChar(c)) return false;
  }
  if (!Base64UrlDecode(in, out)) return false;
  return Base64UrlEncode(*out) == in;
}

std::string Sha256(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<const char*>(md), sizeof md);
}

const Json* Field(const Json& obj, const char* name) {
  auto it = obj.find(name);
  return it == obj.end() ? nullptr : &*it;
}

bool ReadString(const Json& obj, const char* name, std::string* out) {
  const Json* v = Field(obj, name);
  if (v == nullptr || !v->is_string()) return false;
  *out = v->get_ref<const std::string&>();
  return true;
}

// JSON integers only (we issue integer NumericDates); rejects floats and values beyond int64.
bool ReadInt(const Json& obj, const char* name, int64_t* out) {
  const Json* v = Field(obj, name);
  if (v == nullptr || !v->is_number_integer()) return false;
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(u);
  } else {
    *out = v->get<int64_t>();
  }
  return true;
}

// One Ed25519 key with what signing and verifying with it need.
struct KeyEntry {
  PkeyPtr key;
  std::string x;           // base64url of the 32-byte public key
  std::string kid;         // RFC 7638 thumbprint
  std::string header_b64;  // base64url of the fixed header for this key
  TimePoint retired_at{};  // retired keys: when they stopped signing
  std::string file;        // retired keys: their file
};
using KeyPtr = std::shared_ptr<const KeyEntry>;

Result<std::shared_ptr<KeyEntry>> MakeEntry(const SecretString& pem, const std::string& path) {
  CANOPY_ASSIGN_OR_RETURN(PkeyPtr key, ParseKeyPem(pem, path));
  auto e = std::make_shared<KeyEntry>();
  unsigned char pub[kEd25519KeyBytes];
  size_t pub_len = sizeof pub;
  if (EVP_PKEY_get_raw_public_key(key.get(), pub, &pub_len) != 1 || pub_len != sizeof pub) {
    return Error::Internal("cannot read the JWT public key");
  }
  e->key = std::move(key);
  e->x = Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(pub), pub_len));
  // RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
  e->kid =
      Base64UrlEncode(Sha256(fmt::format(R"({{"crv":"Ed25519","kty":"OKP","x":"{}"}})", e->x)));
  // kid is base64url, so it needs no JSON escaping.
  e->header_b64 =
      Base64UrlEncode(fmt::format(R"({{"alg":"EdDSA","typ":"JWT","kid":"{}"}})", e->kid));
  return e;
}

// The modification time of `path` (when its key started signing).
TimePoint ModifiedAt(const std::string& path, TimePoint fallback) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return fallback;
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(
      std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
}

// A retired key verifies for the token lifetime after its retirement, plus the clock leeway.
bool Expired(const KeyEntry& e, const JwtRotation& r, TimePoint now) {
  return now > e.retired_at + r.token_ttl + std::chrono::seconds(kJwtNotBeforeLeeway) +
                   std::chrono::seconds(60);
}

}  // namespace

struct JwtKeys::Impl {
  std::string path;
  JwtRotation rotation;
  mutable std::shared_mutex mu;
  KeyPtr current;
  TimePoint current_since{};
  std::vector<KeyPtr> retired;  // oldest first

  Status LoadCurrent(TimePoint now) {
    CANOPY_ASSIGN_OR_RETURN(SecretString pem, detail::LoadOrCreatePrivateFile(
                                                  path, kMaxKeyFileBytes, kWhat, GenerateKeyPem));
    CANOPY_ASSIGN_OR_RETURN(auto e, MakeEntry(pem, path));
    current = std::move(e);
    current_since = ModifiedAt(path, now);
    return OkStatus();
  }

  // Loads `<path>.retired-<seconds>-*` files still within their time; deletes older ones.
  Status LoadRetired(TimePoint now) {
    std::filesystem::path p(path);
    std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : ".";
    const std::string prefix = p.filename().string() + ".retired-";
    std::error_code ec;
    std::vector<std::shared_ptr<KeyEntry>> found;
    for (const auto& f : std::filesystem::directory_iterator(dir, ec)) {
      std::string name = f.path().filename().string();
      if (name.rfind(prefix, 0) != 0) continue;
      std::string rest = name.substr(prefix.size());
      int64_t secs = 0;
      auto [end, err] = std::from_chars(rest.data(), rest.data() + rest.size(), secs);
      if (err != std::errc() || end == rest.data()) continue;
      auto e = std::make_shared<KeyEntry>();
      e->retired_at = TimePoint(std::chrono::seconds(secs));
      e->file = f.path().string();
      if (Expired(*e, rotation, now)) {
        std::filesystem::remove(e->file, ec);
        continue;
      }
      CANOPY_ASSIGN_OR_RETURN(auto pem, detail::ReadPrivateFile(e->file, kMaxKeyFileBytes, kWhat));
      if (!pem) continue;
      CANOPY_ASSIGN_OR_RETURN(auto loaded, MakeEntry(*pem, e->file));
      loaded->retired_at = e->retired_at;
      loaded->file = e->file;
      found.push_back(std::move(loaded));
    }
    std::sort(found.begin(), found.end(),
              [](const auto& a, const auto& b) { return a->retired_at < b->retired_at; });
    retired.assign(found.begin(), found.end());
    return OkStatus();
  }

  // Under the exclusive lock.
  void Prune(TimePoint now) {
    std::error_code ec;
    std::erase_if(retired, [&](const KeyPtr& e) {
      if (!Expired(*e, rotation, now)) return false;
      std::filesystem::remove(e->file, ec);
      return true;
    });
  }

  // Under the exclusive lock.
  Result<std::string> RotateLocked(TimePoint now) {
    CANOPY_ASSIGN_OR_RETURN(SecretString pem, GenerateKeyPem());
    CANOPY_ASSIGN_OR_RETURN(auto next, MakeEntry(pem, path));
    const std::string retired_file =
        fmt::format("{}.retired-{}-{}", path, UnixSeconds(now), current->kid.substr(0, 8));
    if (::rename(path.c_str(), retired_file.c_str()) != 0) {
      return Error::Internal(fmt::format("cannot retire the {} {}", kWhat, path));
    }
    // A crash here leaves no current key: the next start creates one and loads the retired.
    CANOPY_ASSIGN_OR_RETURN(bool created, detail::CreatePrivateFile(path, pem, kWhat));
    if (!created) {
      return Error::Internal(fmt::format("the {} {} appeared while rotating", kWhat, path));
    }
    // Published entries are immutable (readers hold them without the lock): the retired one is
    // a new entry sharing the old key object.
    auto retired_entry = std::make_shared<KeyEntry>();
    retired_entry->x = current->x;
    retired_entry->kid = current->kid;
    retired_entry->header_b64 = current->header_b64;
    if (EVP_PKEY_up_ref(current->key.get()) != 1) {
      return Error::Internal("cannot keep the retired JWT key");
    }
    retired_entry->key.reset(current->key.get());
    retired_entry->retired_at = now;
    retired_entry->file = retired_file;
    retired.push_back(std::move(retired_entry));
    current = std::move(next);
    current_since = now;
    Prune(now);
    return current->kid;
  }

  KeyPtr Find(std::string_view kid) const {
    std::shared_lock lock(mu);
    if (current->kid == kid) return current;
    for (const auto& e : retired) {
      if (e->kid == kid) return e;
    }
    return nullptr;
  }
};

JwtKeys::JwtKeys(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JwtKeys::~JwtKeys() = default;

Result<std::unique_ptr<JwtKeys>> JwtKeys::LoadOrCreate(const std::string& path,
                                                       const JwtRotation& rotation, TimePoint now) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->rotation = rotation;
  CANOPY_TRY(impl->LoadCurrent(now));
  CANOPY_TRY(impl->LoadRetired(now));
  return std::unique_ptr<JwtKeys>(new JwtKeys(std::move(impl)));
}

std::string JwtKeys::key_id() const {
  std::shared_lock lock(impl_->mu);
  return impl_->current->kid;
}

Result<std::string> JwtKeys::Rotate(TimePoint now) {
  std::unique_lock lock(impl_->mu);
  return impl_->RotateLocked(now);
}

Status JwtKeys::MaybeRotate(TimePoint now) {
  const JwtRotation& r = impl_->rotation;
  {
    std::shared_lock lock(impl_->mu);
    bool old = r.max_key_age.count() > 0 && now - impl_->current_since > r.max_key_age;
    bool stale = !impl_->retired.empty() && Expired(*impl_->retired.front(), r, now);
    if (!old && !stale) return OkStatus();
  }
  std::unique_lock lock(impl_->mu);
  if (r.max_key_age.count() > 0 && now - impl_->current_since > r.max_key_age) {
    CANOPY_TRY(impl_->RotateLocked(now));
  }
  impl_->Prune(now);
  return OkStatus();
}

Result<std::string> JwtKeys::Sign(const Claims& c) const {
  if (c.subject.empty()) return Error::InvalidArgument("token subject is required");
  if (c.expires_at <= c.issued_at) {
    return Error::InvalidArgument("token must expire after it is issued");
  }
  nlohmann::ordered_json payload;
  payload["iss"] = std::string(kJwtIssuer);
  payload["sub"] = c.subject;
  payload["name"] = c.username;
  payload["roles"] = c.roles;
  payload["iat"] = c.issued_at;
  payload["nbf"] = c.issued_at;
  payload["exp"] = c.expires_at;
  payload["jti"] = c.token_id.empty() ? RandomToken(16) : c.token_id;
  if (c.generation != 0) payload["gen"] = c.generation;
  const std::string payload_text =
      payload.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);

  KeyPtr key;
  {
    std::shared_lock lock(impl_->mu);
    key = impl_->current;
  }
  std::string token = key->header_b64;
  token += '.';
  token += Base64UrlEncode(payload_text);

  MdCtxPtr ctx(EVP_MD_CTX_new());
  unsigned char sig[kEd25519SigBytes];
  size_t sig_len = sizeof sig;
  // Ed25519 is a one-shot signature: no digest (NULL md) and a single EVP_DigestSign call.
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key->key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig, &sig_len, reinterpret_cast<const unsigned char*>(token.data()),
                     token.size()) != 1 ||
      sig_len != sizeof sig) {
    return Error::Internal("cannot sign token");
  }
  token += '.';
  token += Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(sig), sig_len));
  if (token.size() > kMaxJwtBytes) return Error::InvalidArgument("token claims are too large");
  return token;
}

Result<Claims> JwtKeys::Verify(std::string_view token, TimePoint now) const {
  if (token.size() > kMaxJwtBytes) return Unauth("token too large");
  const size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos) return Unauth("malformed token");
  const size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return Unauth("malformed token");
  }
  const std::string_view header_b64 = token.substr(0, dot1);
  const std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view sig_b64 = token.substr(dot2 + 1);
  const std::string_view signing_input = token.substr(0, dot2);

  // Header: the algorithm is pinned to EdDSA before anything else is trusted.
  std::string header_text;
  if (!DecodeSegment(header_b64, &header_text)) return Unauth("malformed token");
  auto header = ParseJson(header_text);
  if (!header || !header->is_object()) return Unauth("malformed token");
  std::string alg;
  if (!ReadString(*header, "alg", &alg) || alg != "EdDSA") {
    return Unauth("token algorithm not accepted");
  }
  // We understand no critical extensions (RFC 7515 4.1.11), so a token naming any is refused.
  if (Field(*header, "crit") != nullptr) return Unauth("malformed token");
  if (const Json* typ = Field(*header, "typ");
      typ != nullptr && !(typ->is_string() && typ->get_ref<const std::string&>() == "JWT")) {
    return Unauth("malformed token");
  }
  std::string kid;
  if (!ReadString(*header, "kid", &kid)) return Unauth("unknown token key");
  KeyPtr key = impl_->Find(kid);
  if (key == nullptr) return Unauth("unknown token key");

  // Signature, checked before the payload is parsed.
  std::string sig;
  if (!DecodeSegment(sig_b64, &sig) || sig.size() != kEd25519SigBytes) {
    return Unauth("invalid token signature");
  }
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key->key.get()) != 1) {
    return Error::Internal("cannot verify token");
  }
  if (EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(signing_input.data()),
                       signing_input.size()) != 1) {
    return Unauth("invalid token signature");
  }

  // Claims.
  std::string payload_text;
  if (!DecodeSegment(payload_b64, &payload_text)) return Unauth("malformed token");
  auto payload = ParseJson(payload_text);
  if (!payload || !payload->is_object()) return Unauth("malformed token claims");
  std::string iss;
  if (!ReadString(*payload, "iss", &iss) || iss != kJwtIssuer) {
    return Unauth("token issuer not accepted");
  }
  Claims c;
  int64_t nbf = 0;
  if (!ReadString(*payload, "sub", &c.subject) || c.subject.empty() ||
      !ReadString(*payload, "name", &c.username) || !ReadString(*payload, "jti", &c.token_id) ||
      !ReadInt(*payload, "iat", &c.issued_at) || !ReadInt(*payload, "nbf", &nbf) ||
      !ReadInt(*payload, "exp", &c.expires_at)) {
    return Unauth("malformed token claims");
  }
  if (Field(*payload, "gen") != nullptr && !ReadInt(*payload, "gen", &c.generation)) {
    return Unauth("malformed token claims");
  }
  const Json* roles = Field(*payload, "roles");
  if (roles == nullptr || !roles->is_array()) return Unauth("malformed token claims");
  for (const Json& r : *roles) {
    if (!r.is_string()) return Unauth("malformed token claims");
    c.roles.push_back(r.get<std::string>());
  }

  const int64_t now_s = UnixSeconds(now);
  if (now_s >= c.expires_at) return Unauth("token expired");
  // "How far in the future", computed in unsigned arithmetic so that no claim value can overflow.
  const auto too_early = [now_s](int64_t t) {
    const auto leeway = static_cast<uint64_t>(kJwtNotBeforeLeeway.count());
    return t > now_s && static_cast<uint64_t>(t) - static_cast<uint64_t>(now_s) > leeway;
  };
  if (too_early(nbf) || too_early(c.issued_at)) return Unauth("token not yet valid");
  return c;
}

Json JwtKeys::Jwks() const {
  Json keys = Json::array();
  std::shared_lock lock(impl_->mu);
  auto add = [&keys](const KeyEntry& e) {
    Json key = Json::object();
    key["kty"] = "OKP";
    key["crv"] = "Ed25519";
    key["x"] = e.x;
    key["kid"] = e.kid;
    key["alg"] = "EdDSA";
    key["use"] = "sig";
    keys.push_back(std::move(key));
  };
  add(*impl_->current);
  for (auto it = impl_->retired.rbegin(); it != impl_->retired.rend(); ++it) add(**it);
  Json out = Json::object();
  out["keys"] = std::move(keys);
  return out;
}

}  // namespace canopy::auth
