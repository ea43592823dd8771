#include "providers/gcp/gcp_auth.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <thread>
#include <vector>

#include "common/backoff.h"
#include "common/ids.h"
#include "providers/http/curl_client.h"
#include "providers/provider.h"

namespace canopy::providers::gcp {
namespace {

Error Invalid(std::string m) {
  return MakeProviderError(ProviderErrorKind::kInvalidRequest, std::move(m));
}

bool Charset(std::string_view s, std::string_view allowed, size_t min, size_t max) {
  return s.size() >= min && s.size() <= max &&
         s.find_first_not_of(allowed) == std::string_view::npos;
}
constexpr std::string_view kLowerDigits = "abcdefghijklmnopqrstuvwxyz0123456789";
constexpr std::string_view kAlnum =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

// The RSA private key of a PEM text; null when it is not one. OpenSSL's error queue may name the
// PEM's contents, so it is cleared rather than reported.
PkeyPtr ReadRsaKey(const SecretString& pem) {
  const std::string& text = pem.Reveal();
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), &BIO_free);
  PkeyPtr key(nullptr, &EVP_PKEY_free);
  if (bio) key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (key && !EVP_PKEY_is_a(key.get(), "RSA")) key.reset();
  return key;
}

std::string Truncate(std::string s, size_t n) {
  if (s.size() > n) {
    s.resize(n);
    s += "...";
  }
  return s;
}

}  // namespace

Result<ServiceAccountKey> ParseServiceAccountKey(const Json& j) {
  const char* shape =
      "a GCP credential is a service-account key JSON {type: service_account, project_id, "
      "private_key_id, private_key, client_email, token_uri, ...}";
  if (!j.is_object()) return Invalid(shape);
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string()) {
      return Invalid(fmt::format("GCP credential field '{}' must be a string", Truncate(k, 64)));
    }
  }
  auto field = [&](const char* name) { return j.value(name, std::string()); };
  if (field("type") != "service_account") {
    return Invalid(std::string("GCP credential: type must be service_account; ") + shape);
  }
  for (const char* required :
       {"project_id", "private_key_id", "private_key", "client_email", "token_uri"}) {
    if (field(required).empty()) {
      return Invalid(fmt::format("GCP credential: {} is required; {}", required, shape));
    }
  }
  ServiceAccountKey k;
  k.project_id = field("project_id");
  k.private_key_id = field("private_key_id");
  k.client_email = field("client_email");
  k.client_id = field("client_id");
  k.token_uri = field("token_uri");
  k.cluster_id = field(kClusterField);
  // Project ids ("my-project-123", legacy "example.com:my-project") become parts of URLs.
  if (!Charset(k.project_id, std::string(kLowerDigits) + "-.:", 1, 100) ||
      k.project_id.find("..") != std::string::npos) {
    return Invalid("GCP credential: project_id is not a project id");
  }
  if (!Charset(k.private_key_id, std::string(kAlnum) + "-_", 1, 128)) {
    return Invalid("GCP credential: private_key_id must be 1 to 128 letters, digits, - or _");
  }
  auto at = k.client_email.find('@');
  if (!Charset(k.client_email, std::string(kAlnum) + "._-+@", 3, 254) || at == 0 ||
      at == std::string::npos || k.client_email.find('@', at + 1) != std::string::npos ||
      at + 1 == k.client_email.size()) {
    return Invalid("GCP credential: client_email is not a service account's email");
  }
  if ((k.token_uri.rfind("https://", 0) != 0 && k.token_uri.rfind("http://", 0) != 0) ||
      k.token_uri.size() > 512 ||
      k.token_uri.find_first_of(" \t\r\n\"'<>\\") != std::string::npos) {
    return Invalid("GCP credential: token_uri must be an http(s) URL");
  }
  if (!k.cluster_id.empty() && !Charset(k.cluster_id, std::string(kAlnum) + "._-", 1, 64)) {
    return Invalid(fmt::format("GCP credential: {} is not a cluster id", kClusterField));
  }
  k.private_key = SecretString(field("private_key"));
  if (!ReadRsaKey(k.private_key)) {
    return Invalid("GCP credential: private_key is not an RSA private key in PEM (PKCS#8)");
  }
  return k;
}

Result<std::string> MakeJwtAssertion(const ServiceAccountKey& key, TimePoint now,
                                     std::string_view scope) {
  PkeyPtr pkey = ReadRsaKey(key.private_key);
  if (!pkey) return Invalid("GCP credential: private_key is not an RSA private key in PEM");
  nlohmann::ordered_json header{{"alg", "RS256"}, {"typ", "JWT"}, {"kid", key.private_key_id}};
  const int64_t iat = UnixSeconds(now);
  nlohmann::ordered_json claims{{"iss", key.client_email},
                                {"scope", std::string(scope)},
                                {"aud", key.token_uri},
                                {"iat", iat},
                                {"exp", iat + 3600}};
  std::string signing_input = Base64UrlEncode(header.dump()) + "." + Base64UrlEncode(claims.dump());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  size_t sig_len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &sig_len,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1) {
    ERR_clear_error();
    return Error::Internal("RS256 signing failed");
  }
  std::vector<unsigned char> sig(sig_len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &sig_len,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1) {
    ERR_clear_error();
    return Error::Internal("RS256 signing failed");
  }
  return signing_input + "." +
         Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(sig.data()), sig_len));
}

Result<AccessToken> ExchangeJwt(const ServiceAccountKey& key, const std::string& token_url,
                                const Clock& clock, const RetryPolicy& retry) {
  const std::string what = "OAuth token for " + key.client_email;
  CurlClient http;
  const int attempts = std::max(1, retry.max_attempts);
  for (int attempt = 0;; ++attempt) {
    TimePoint now = clock.Now();
    CANOPY_ASSIGN_OR_RETURN(std::string jwt, MakeJwtAssertion(key, now));
    net::ClientRequest req;
    req.method = "POST";
    req.url = token_url;
    req.headers["Content-Type"] = "application/x-www-form-urlencoded";
    req.headers["Accept"] = "application/json";
    req.body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" + jwt;
    req.timeout = std::chrono::seconds(30);
    auto resp = http.Do(req);
    OPENSSL_cleanse(req.body.data(), req.body.size());
    const bool last = attempt + 1 >= attempts;
    if (!resp) {
      bool retryable = resp.error().code == ErrorCode::kUnavailable ||
                       resp.error().code == ErrorCode::kDeadlineExceeded;
      if (retryable && !last) {
        std::this_thread::sleep_for(Backoff(attempt, retry.base, retry.max));
        continue;
      }
      return MakeProviderError(
          retryable ? ProviderErrorKind::kTransient : ProviderErrorKind::kInvalidRequest,
          fmt::format("{}: cannot reach the token endpoint: {}", what, resp.error().message));
    }
    auto body = ParseJson(resp->body);
    if (resp->status == 200) {
      if (!body || !body->is_object() || !(*body)["access_token"].is_string() ||
          (*body)["access_token"].get<std::string>().empty()) {
        return Error::Provider(what + ": the token endpoint answered without an access_token");
      }
      int64_t expires_in = 3600;
      if (auto it = body->find("expires_in"); it != body->end()) {
        if (it->is_number_integer()) {
          expires_in = it->get<int64_t>();
        } else if (it->is_string()) {
          try {
            expires_in = std::stoll(it->get<std::string>());
          } catch (const std::exception&) {
          }
        }
      }
      AccessToken t{SecretString((*body)["access_token"].get<std::string>()),
                    now + std::chrono::seconds(std::clamp<int64_t>(expires_in, 0, 86400))};
      (*body)["access_token"] = "";
      return t;
    }
    std::string error, description;
    if (body && body->is_object()) {
      if ((*body)["error"].is_string()) error = (*body)["error"].get<std::string>();
      if ((*body)["error_description"].is_string())
        description = (*body)["error_description"].get<std::string>();
    }
    if ((resp->status == 429 || resp->status >= 500) && !last) {
      SPDLOG_DEBUG("GCP token exchange retried attempt={} status={}", attempt + 1, resp->status);
      std::this_thread::sleep_for(Backoff(attempt, retry.base, retry.max));
      continue;
    }
    std::string msg =
        fmt::format("{}: HTTP {}{}{}", what, resp->status, error.empty() ? "" : " " + error,
                    description.empty() ? "" : ": " + Truncate(description, 300));
    if (resp->status == 429 || resp->status >= 500)
      return MakeProviderError(ProviderErrorKind::kTransient, msg);
    if (resp->status >= 400 && resp->status < 500)
      return MakeProviderError(ProviderErrorKind::kAuth, msg);
    return Error::Provider(msg);
  }
}

TokenCache::TokenCache(ClockPtr clock)
    : clock_(clock ? std::move(clock) : std::make_shared<SystemClock>()) {}

namespace {
std::string DigestOf(const ServiceAccountKey& key) {
  return Sha256Hex(key.private_key.Reveal() + "\n" + key.token_uri);
}
}  // namespace

Result<SecretString> TokenCache::Get(const ServiceAccountKey& key,
                                     const std::function<Result<AccessToken>()>& fetch) {
  const auto id = std::make_pair(key.client_email, key.private_key_id);
  const std::string digest = DigestOf(key);
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it != entries_.end() && ConstantTimeEquals(it->second.digest, digest) &&
        clock_->Now() < it->second.expires_at - kMargin) {
      return it->second.token;
    }
  }
  CANOPY_ASSIGN_OR_RETURN(AccessToken t, fetch());
  std::lock_guard lock(mu_);
  entries_[id] = Entry{digest, t.token, t.expires_at};
  return t.token;
}

void TokenCache::Drop(const ServiceAccountKey& key) {
  std::lock_guard lock(mu_);
  entries_.erase(std::make_pair(key.client_email, key.private_key_id));
}

void TokenCache::DropAccount(const std::string& client_email) {
  std::lock_guard lock(mu_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = it->first.first == client_email ? entries_.erase(it) : std::next(it);
  }
}

size_t TokenCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace canopy::providers::gcp
