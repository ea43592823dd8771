#include "providers/gcp/gcp_client.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "common/backoff.h"
#include "net/http.h"
#include "providers/http/curl_client.h"
#include "providers/provider.h"

namespace canopy::providers::gcp {
namespace {

std::string Truncate(std::string s, size_t n) {
  if (s.size() > n) {
    s.resize(n);
    s += "...";
  }
  return s;
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '/' || s.back() == ' ')) s.pop_back();
  return s;
}

bool Contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}
bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Compute zone/region/operation names are RFC 1035-like; never a path.
bool SafeName(std::string_view s) {
  return !s.empty() && s.size() <= 128 &&
         s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") ==
             std::string_view::npos;
}

}  // namespace

bool GcpEndpoints::IsService(const std::string& s) {
  return s == "compute" || s == "crm" || s == "iam" || s == "secretmanager" || s == "token";
}

std::string GcpEndpoints::UrlFor(const std::string& service) const {
  if (auto it = each.find(service); it != each.end() && !it->second.empty())
    return Trimmed(it->second);
  if (!all.empty()) return Trimmed(all);
  if (service == "compute") return "https://compute.googleapis.com";
  if (service == "crm") return "https://cloudresourcemanager.googleapis.com";
  if (service == "iam") return "https://iam.googleapis.com";
  if (service == "secretmanager") return "https://secretmanager.googleapis.com";
  return "https://" + service + ".googleapis.com";
}

std::string GcpEndpoints::TokenUrl(const std::string& key_token_uri) const {
  if (auto it = each.find("token"); it != each.end() && !it->second.empty()) return it->second;
  if (!all.empty()) return Trimmed(all) + "/token";
  return key_token_uri;
}

GoogleError ParseGoogleError(int http_status, const std::string& body) {
  GoogleError e;
  e.http_status = http_status;
  auto j = ParseJson(body);
  if (j && j->is_object() && j->contains("error")) {
    const Json& err = (*j)["error"];
    if (err.is_object()) {
      if (err.contains("message") && err["message"].is_string())
        e.message = err["message"].get<std::string>();
      if (err.contains("status") && err["status"].is_string())
        e.status = err["status"].get<std::string>();
      if (err.contains("errors") && err["errors"].is_array() && !err["errors"].empty()) {
        const Json& first = err["errors"][0];
        if (first.is_object() && first.contains("reason") && first["reason"].is_string())
          e.reason = first["reason"].get<std::string>();
        if (e.message.empty() && first.is_object() && first.contains("message") &&
            first["message"].is_string())
          e.message = first["message"].get<std::string>();
      }
      return e;
    }
    if (err.is_string()) {  // OAuth style {"error":"invalid_grant","error_description":...}
      e.reason = err.get<std::string>();
      e.message = j->value("error_description", "");
      return e;
    }
  }
  e.message = fmt::format("HTTP {} without a Google error body", http_status);
  return e;
}

bool IsRateLimited(const GoogleError& e) {
  return e.http_status == 429 || e.reason == "rateLimitExceeded" ||
         e.reason == "userRateLimitExceeded";
}

bool IsTransient(const GoogleError& e) {
  return IsRateLimited(e) || e.http_status >= 500 || e.reason == "backendError" ||
         e.reason == "internalError";
}

Error MapGoogleError(const GoogleError& e, const std::string& what) {
  std::string code = !e.reason.empty() ? e.reason : e.status;
  std::string msg = fmt::format("{}: HTTP {}{}: {}", what, e.http_status,
                                code.empty() ? "" : " " + code, Truncate(e.message, 400));
  auto kind = ProviderErrorKind::kInvalidRequest;
  std::string lower_reason = e.reason;
  std::transform(lower_reason.begin(), lower_reason.end(), lower_reason.begin(),
                 [](unsigned char ch) { return std::tolower(ch); });
  if (IsTransient(e)) {
    kind = ProviderErrorKind::kTransient;
  } else if (Contains(lower_reason, "quota")) {
    kind = ProviderErrorKind::kQuota;
  } else if (e.http_status == 401 || e.http_status == 403 || e.reason == "invalid_grant") {
    kind = ProviderErrorKind::kAuth;
  } else if (e.http_status == 404) {
    kind = ProviderErrorKind::kNotFound;
  }
  return MakeProviderError(kind, std::move(msg));
}

Error MapOperationError(const Json& op, const std::string& what) {
  std::vector<std::pair<std::string, std::string>> errors;  // (code, message)
  if (op.contains("error") && op["error"].is_object() && op["error"].contains("errors") &&
      op["error"]["errors"].is_array()) {
    for (const Json& e : op["error"]["errors"]) {
      if (!e.is_object()) continue;
      errors.emplace_back(e.value("code", std::string()), e.value("message", std::string()));
    }
  }
  int http = op.contains("httpErrorStatusCode") && op["httpErrorStatusCode"].is_number_integer()
                 ? op["httpErrorStatusCode"].get<int>()
                 : 0;
  std::string text;
  for (const auto& [code, message] : errors) {
    if (!text.empty()) text += "; ";
    text += (code.empty() ? "ERROR" : code) + ": " + Truncate(message, 300);
  }
  if (text.empty()) {
    text = fmt::format("operation failed (HTTP {} {})", http,
                       op.value("httpErrorMessage", std::string()));
  }
  std::string msg = Truncate(what + ": " + text, 1000);
  auto is = [&](auto pred) {
    return std::any_of(errors.begin(), errors.end(), [&](const auto& e) { return pred(e.first); });
  };
  ProviderErrorKind kind;
  if (is([](const std::string& c) {
        return Contains(c, "RESOURCE_POOL_EXHAUSTED") || c == "INSUFFICIENT_CAPACITY" ||
               EndsWith(c, "_STOCKOUT") || c == "STOCKOUT";
      })) {
    kind = ProviderErrorKind::kCapacity;
  } else if (is([](const std::string& c) { return Contains(c, "QUOTA"); })) {
    kind = ProviderErrorKind::kQuota;
  } else if (is([](const std::string& c) {
               return Contains(c, "PERMISSIONS_ERROR") || c == "PERMISSION_DENIED" ||
                      c == "FORBIDDEN" || c == "UNAUTHORIZED";
             }) ||
             http == 401 || http == 403) {
    kind = ProviderErrorKind::kAuth;
  } else if (is([](const std::string& c) {
               return c == "RESOURCE_NOT_FOUND" || c == "NOT_FOUND";
             }) ||
             http == 404) {
    kind = ProviderErrorKind::kNotFound;
  } else if (is([](const std::string& c) {
               return c == "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE" || c == "RESOURCE_NOT_READY" ||
                      c == "INTERNAL_ERROR" || c == "RATE_LIMIT_EXCEEDED" ||
                      c == "SERVICE_UNAVAILABLE" || c == "OPERATION_CANCELED_BY_USER";
             }) ||
             http == 429 || http >= 500) {
    kind = ProviderErrorKind::kTransient;
  } else {
    kind = ProviderErrorKind::kInvalidRequest;
  }
  return MakeProviderError(kind, std::move(msg));
}

bool HasGoogleCode(const Error& e, std::string_view code) {
  const std::string& m = e.message;
  for (size_t at = m.find(code); at != std::string::npos; at = m.find(code, at + 1)) {
    bool starts = at == 0 || m[at - 1] == ' ' || m[at - 1] == ';';
    size_t end = at + code.size();
    bool ends = end == m.size() || m[end] == ':' || m[end] == ';' || m[end] == ' ';
    if (starts && ends) return true;
  }
  return false;
}

std::string ComputePath(const std::string& project, const std::string& rest) {
  return "/compute/v1/projects/" + project + "/" + rest;
}

std::string LastSegment(const std::string& url) {
  auto slash = url.rfind('/');
  return slash == std::string::npos ? url : url.substr(slash + 1);
}

std::string QueryEscape(std::string_view s) { return net::UrlEncode(s); }

GcpClient::GcpClient(GcpEndpoints endpoints, RetryPolicy retry, OperationPolicy ops, ClockPtr clock)
    : endpoints_(std::move(endpoints)),
      retry_(retry),
      ops_(ops),
      clock_(clock ? std::move(clock) : std::make_shared<SystemClock>()),
      tokens_(clock_) {}
GcpClient::~GcpClient() = default;

Result<SecretString> GcpClient::Token(const ServiceAccountKey& key) const {
  const std::string url = endpoints_.TokenUrl(key.token_uri);
  return tokens_.Get(key, [&] { return ExchangeJwt(key, url, *clock_, retry_); });
}

void GcpClient::DropTokens(const std::string& client_email) const {
  tokens_.DropAccount(client_email);
}

Result<Reply> GcpClient::Send(const ServiceAccountKey& key, const std::string& method,
                              const std::string& service, const std::string& path, const Json* body,
                              bool idempotent, const std::string& what) const {
  if (path.empty() || path.front() != '/')
    return Error::Internal("GCP call path must start with /");
  const std::string base = endpoints_.UrlFor(service);
  CurlClient http;
  const int attempts = std::max(1, retry_.max_attempts);
  bool refreshed = false;
  for (int attempt = 0;; ++attempt) {
    CANOPY_ASSIGN_OR_RETURN(SecretString token, Token(key));
    net::ClientRequest req;
    req.method = method;
    req.url = base + path;
    req.headers["Authorization"] = "Bearer " + token.Reveal();
    req.headers["Accept"] = "application/json";
    if (body != nullptr) {
      req.headers["Content-Type"] = "application/json";
      req.body = DumpJson(*body);
    }
    req.timeout = std::chrono::seconds(60);
    auto resp = http.Do(req);
    OPENSSL_cleanse(req.headers["Authorization"].data(), req.headers["Authorization"].size());
    const bool last = attempt + 1 >= attempts;
    if (!resp) {
      bool retryable = resp.error().code == ErrorCode::kUnavailable ||
                       resp.error().code == ErrorCode::kDeadlineExceeded;
      if (retryable && idempotent && !last) {
        SPDLOG_DEBUG("GCP call retried after a transport error operation={} attempt={}", what,
                     attempt + 1);
        std::this_thread::sleep_for(Backoff(attempt, retry_.base, retry_.max));
        continue;
      }
      return MakeProviderError(
          retryable ? ProviderErrorKind::kTransient : ProviderErrorKind::kInvalidRequest,
          fmt::format("{}: cannot reach {}: {}", what, base, resp.error().message));
    }
    Reply r;
    r.status = resp->status;
    if (r.ok()) {
      if (!resp->body.empty()) {
        auto j = ParseJson(resp->body);
        if (!j) return Error::Provider(what + ": malformed JSON answer");
        r.body = std::move(*j);
      }
      return r;
    }
    r.error = ParseGoogleError(resp->status, resp->body);
    if (resp->status == 401 && !refreshed) {
      // The token expired early or was revoked: one more try with a fresh one.
      refreshed = true;
      tokens_.Drop(key);
      --attempt;
      continue;
    }
    if (!last && (IsRateLimited(r.error) || (idempotent && IsTransient(r.error)))) {
      SPDLOG_DEBUG("GCP call retried operation={} attempt={} status={} reason={}", what,
                   attempt + 1, resp->status, r.error.reason);
      std::this_thread::sleep_for(Backoff(attempt, retry_.base, retry_.max));
      continue;
    }
    return r;
  }
}

Result<Json> GcpClient::Call(const ServiceAccountKey& key, const std::string& method,
                             const std::string& service, const std::string& path, const Json* body,
                             bool idempotent, const std::string& what) const {
  CANOPY_ASSIGN_OR_RETURN(Reply r, Send(key, method, service, path, body, idempotent, what));
  if (!r.ok()) return MapGoogleError(r.error, what);
  return std::move(r.body);
}

Result<Json> GcpClient::Wait(const ServiceAccountKey& key, const Json& operation,
                             const std::string& what) const {
  if (!operation.is_object()) return Error::Provider(what + ": the answer is not an operation");
  Json op = operation;
  const std::string name = op.value("name", std::string());
  if (!SafeName(name)) return Error::Provider(what + ": the answer names no operation");
  std::string scope = "global/operations/";
  if (op.contains("zone") && op["zone"].is_string() && !op["zone"].get<std::string>().empty()) {
    std::string zone = LastSegment(op["zone"].get<std::string>());
    if (!SafeName(zone)) return Error::Provider(what + ": malformed operation zone");
    scope = "zones/" + zone + "/operations/";
  } else if (op.contains("region") && op["region"].is_string() &&
             !op["region"].get<std::string>().empty()) {
    std::string region = LastSegment(op["region"].get<std::string>());
    if (!SafeName(region)) return Error::Provider(what + ": malformed operation region");
    scope = "regions/" + region + "/operations/";
  }
  const std::string path = ComputePath(key.project_id, scope + name);
  const auto deadline = std::chrono::steady_clock::now() + ops_.timeout;
  auto interval = ops_.poll;
  for (;;) {
    if (op.value("status", std::string()) == "DONE") {
      if (op.contains("error") && op["error"].is_object()) return MapOperationError(op, what);
      return op;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return MakeProviderError(
          ProviderErrorKind::kTransient,
          fmt::format("{}: operation {} is still {} after {} s", what, name,
                      op.value("status", std::string("PENDING")), ops_.timeout.count()));
    }
    std::this_thread::sleep_for(interval);
    interval = std::min(ops_.max_poll, interval * 2);
    CANOPY_ASSIGN_OR_RETURN(
        op, Call(key, "GET", "compute", path, nullptr, true, what + " (operation " + name + ")"));
  }
}

}  // namespace canopy::providers::gcp
