// GCP credentials: the service-account key JSON Google issues, the RS256 JWT assertion signed with
// its private key (OpenSSL 3), the OAuth 2.0 JWT-bearer exchange (RFC 7523) for an access token,
// and a thread-safe cache of access tokens per (client_email, private_key_id). See
// docs/providers/gcp.md "Credential". The private key never appears in logs or error messages;
// access tokens are held as SecretString.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "common/clock.h"
#include "common/json.h"
#include "common/result.h"
#include "common/secret.h"

namespace canopy::providers::gcp {

inline constexpr const char* kCloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform";
inline constexpr const char* kJwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Field a cluster identity's credential carries besides Google's key JSON.
inline constexpr const char* kClusterField = "canopy_cluster";

struct RetryPolicy {
  int max_attempts = 5;
  std::chrono::milliseconds base{200};
  std::chrono::milliseconds max{5000};
};

/// A service-account key ("type": "service_account"), validated.
struct ServiceAccountKey {
  std::string project_id;
  std::string private_key_id;
  SecretString private_key;  ///< PKCS#8 PEM, RSA
  std::string client_email;
  std::string client_id;
  std::string token_uri;   ///< as in the key: the JWT's `aud` (and where tokens come from)
  std::string cluster_id;  ///< kClusterField: set for a cluster identity's credential
};

/// Parses and validates the credential secret: required type=service_account, project_id,
/// private_key_id, private_key (an RSA private key in PEM), client_email, token_uri (http(s));
/// ids are checked against their character sets (they become parts of URLs). Errors are
/// invalid_request provider errors naming the field, never quoting the private key.
Result<ServiceAccountKey> ParseServiceAccountKey(const Json& credential);

/// The signed assertion: base64url(header).base64url(claims).base64url(RS256 signature), without
/// padding; header {"alg":"RS256","typ":"JWT","kid":private_key_id}, claims {"iss":client_email,
/// "scope","aud":token_uri,"iat":now,"exp":now+3600}.
Result<std::string> MakeJwtAssertion(const ServiceAccountKey& key, TimePoint now,
                                     std::string_view scope = kCloudPlatformScope);

struct AccessToken {
  SecretString token;
  TimePoint expires_at;
};

/// POSTs the assertion to `token_url` (form body grant_type=...&assertion=...). 400/401/403 (e.g.
/// `invalid_grant`) -> auth; 429, 5xx and transport failures are retried with backoff, then
/// transient. `now` dates the assertion and the expiry.
Result<AccessToken> ExchangeJwt(const ServiceAccountKey& key, const std::string& token_url,
                                const Clock& clock, const RetryPolicy& retry);

/// Access tokens per (client_email, private_key_id), each valid until 60 s before it expires. An
/// entry is used only for the very key (and token_uri) it was obtained with: a credential that
/// names a known account and key id but carries another private key never gets its token.
/// Thread-safe; `fetch` runs outside the lock.
class TokenCache {
 public:
  explicit TokenCache(ClockPtr clock);

  static constexpr std::chrono::seconds kMargin{60};

  /// The cached token of `key`, or the one `fetch` gets (then cached).
  Result<SecretString> Get(const ServiceAccountKey& key,
                           const std::function<Result<AccessToken>()>& fetch);
  /// Forgets the token of `key` (an API answered 401).
  void Drop(const ServiceAccountKey& key);
  /// Forgets every token of an account (its service account was deleted).
  void DropAccount(const std::string& client_email);
  size_t size() const;

 private:
  struct Entry {
    std::string digest;  ///< sha256 of the private key and token_uri
    SecretString token;
    TimePoint expires_at;
  };
  ClockPtr clock_;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, Entry> entries_;
};

}  // namespace canopy::providers::gcp
