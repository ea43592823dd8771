// GcpClient: JSON REST calls to Google Cloud (Compute v1, Resource Manager v1, IAM v1, Secret
// Manager v1) without an SDK, over providers::CurlClient, with the bearer token of the call's
// service-account key (TokenCache). Retries: 429, `rateLimitExceeded`/`userRateLimitExceeded`
// (answered before anything is done: retried for every call), and 5xx and transport failures
// for idempotent calls only (GET, DELETE, and POSTs carrying a Compute `requestId`). A 401 drops
// the cached token and retries once with a fresh one. Google error bodies become typed provider
// errors (MapGoogleError); Compute operations are polled to DONE and an error in a DONE operation
// is mapped too (MapOperationError). Mapping table: docs/providers/gcp.md "Errors".
// Thread-safe; keeps no credential beyond the token cache.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/json.h"
#include "common/result.h"
#include "providers/gcp/gcp_auth.h"

namespace canopy::providers::gcp {

/// Where each service is reached. Services: "compute", "crm", "iam", "secretmanager", "token".
struct GcpEndpoints {
  std::string all;                          ///< config endpoint_url: every service (empty: Google)
  std::map<std::string, std::string> each;  ///< config endpoints {service: url}

  /// Base URL (scheme://host[:port][/prefix], no trailing slash) of an API service.
  std::string UrlFor(const std::string& service) const;
  /// Where tokens are exchanged: endpoints.token, else {endpoint_url}/token, else the key's uri.
  std::string TokenUrl(const std::string& key_token_uri) const;
  static bool IsService(const std::string& service);
};

/// One Google error answer: {"error":{"code","message","errors":[{"reason"}],"status"}}.
struct GoogleError {
  int http_status = 0;
  std::string status;   ///< "NOT_FOUND", "ALREADY_EXISTS", ... (may be empty)
  std::string reason;   ///< errors[0].reason: "notFound", "alreadyExists", "conditionNotMet", ...
  std::string message;  ///< Google's message (never carries our secret)
};

GoogleError ParseGoogleError(int http_status, const std::string& body);
/// 429 or a rate-limit reason: Google refused before doing anything.
bool IsRateLimited(const GoogleError& e);
/// Worth retrying an idempotent call: rate limits, 5xx, `backendError`/`internalError`.
bool IsTransient(const GoogleError& e);
/// The typed provider error of a synchronous error answer of `what` ("Compute instances.get").
Error MapGoogleError(const GoogleError& e, const std::string& what);
/// The typed provider error of a DONE operation with `error.errors[]`: capacity
/// (*RESOURCE_POOL_EXHAUSTED*, INSUFFICIENT_CAPACITY, *_STOCKOUT) before quota (*QUOTA*), then
/// by code and httpErrorStatusCode. Messages read "<what>: CODE: message[; CODE: message]".
Error MapOperationError(const Json& operation, const std::string& what);
/// Whether a mapped error carries this Google reason / operation code ("alreadyExists", ...).
bool HasGoogleCode(const Error& e, std::string_view code);

/// A finished HTTP exchange: 2xx with its JSON body, or a parsed Google error.
struct Reply {
  int status = 0;
  Json body = Json::object();
  GoogleError error;
  bool ok() const { return status >= 200 && status < 300; }
};

struct OperationPolicy {
  std::chrono::milliseconds poll{200};       ///< first interval, doubled up to max_poll
  std::chrono::milliseconds max_poll{2000};  ///< longest interval between polls
  std::chrono::seconds timeout{600};         ///< then a transient error (the caller retries)
};

class GcpClient {
 public:
  GcpClient(GcpEndpoints endpoints, RetryPolicy retry, OperationPolicy ops,
            ClockPtr clock = nullptr);
  ~GcpClient();

  /// One call: `path` starts with '/' and includes its encoded query. Transport failures after
  /// the retries are errors; any HTTP answer is a Reply.
  Result<Reply> Send(const ServiceAccountKey& key, const std::string& method,
                     const std::string& service, const std::string& path, const Json* body,
                     bool idempotent, const std::string& what) const;
  /// Send, with non-2xx answers mapped to typed errors.
  Result<Json> Call(const ServiceAccountKey& key, const std::string& method,
                    const std::string& service, const std::string& path, const Json* body,
                    bool idempotent, const std::string& what) const;
  /// Polls a Compute operation (zonal, regional or global, from its `zone`/`region`) until DONE;
  /// the DONE operation, or its mapped error.
  Result<Json> Wait(const ServiceAccountKey& key, const Json& operation,
                    const std::string& what) const;

  /// The bearer token of `key` (cached).
  Result<SecretString> Token(const ServiceAccountKey& key) const;
  /// Forgets the tokens of an account (its service account was deleted).
  void DropTokens(const std::string& client_email) const;

  const GcpEndpoints& endpoints() const { return endpoints_; }

 private:
  GcpEndpoints endpoints_;
  RetryPolicy retry_;
  OperationPolicy ops_;
  ClockPtr clock_;
  mutable TokenCache tokens_;
};

/// "/compute/v1/projects/{project}/" + rest.
std::string ComputePath(const std::string& project, const std::string& rest);
/// The last segment of a resource URL or path ("https://.../zones/us-central1-a" -> zone name).
std::string LastSegment(const std::string& url);
/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
std::string QueryEscape(std::string_view s);

}  // namespace canopy::providers::gcp
