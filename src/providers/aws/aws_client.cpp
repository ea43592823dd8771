#include "providers/aws/aws_client.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>
#include <cstdlib>
#include <ctime>
#include <sstream>
#include <thread>

#include "common/backoff.h"
#include "net/client.h"
#include "providers/http/curl_client.h"
#include "providers/provider.h"

namespace canopy::providers::aws {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string Truncate(std::string s, size_t n) {
  if (s.size() > n) {
    s.resize(n);
    s += "...";
  }
  return s;
}

// "http://127.0.0.1:5099/" -> scheme "http", authority "127.0.0.1:5099" (default ports dropped, as
// curl sends them in Host), path "/".
struct ParsedUrl {
  std::string scheme;
  std::string authority;
  std::string path = "/";
};
Result<ParsedUrl> ParseBaseUrl(const std::string& url) {
  auto sep = url.find("://");
  if (sep == std::string::npos)
    return Error::InvalidArgument("endpoint URL needs a scheme: " + url);
  ParsedUrl p;
  p.scheme = url.substr(0, sep);
  if (p.scheme != "http" && p.scheme != "https") {
    return Error::InvalidArgument("endpoint URL must be http or https: " + url);
  }
  std::string rest = url.substr(sep + 3);
  auto slash = rest.find('/');
  p.authority = rest.substr(0, slash);
  if (slash != std::string::npos) p.path = rest.substr(slash);
  if (p.authority.empty()) return Error::InvalidArgument("endpoint URL has no host: " + url);
  if ((p.scheme == "http" && EndsWith(p.authority, ":80")) ||
      (p.scheme == "https" && EndsWith(p.authority, ":443"))) {
    p.authority.resize(p.authority.rfind(':'));
  }
  return p;
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '/' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

const char* ApiVersion(const std::string& service) {
  if (service == "ec2") return "2016-11-15";
  if (service == "iam") return "2010-05-08";
  if (service == "sts") return "2011-06-15";
  return "";
}

std::string AwsEndpoints::UrlFor(const std::string& service, const std::string& region) const {
  if (auto it = each.find(service); it != each.end() && !it->second.empty())
    return Trimmed(it->second);
  if (!all.empty()) return Trimmed(all);
  if (service == "iam") return "https://iam.amazonaws.com";
  if (service == "pricing") return "https://api.pricing.us-east-1.amazonaws.com";
  return fmt::format("https://{}.{}.amazonaws.com", service, region);
}

std::string AwsEndpoints::SigningRegion(const std::string& service, const std::string& region) {
  if (service == "iam" || service == "pricing") return "us-east-1";
  return region.empty() ? "us-east-1" : region;
}

AwsEndpoints AwsEndpoints::FromEnvironment() {
  AwsEndpoints e;
  if (const char* v = std::getenv("AWS_ENDPOINT_URL"); v != nullptr) e.all = v;
  const std::pair<const char*, const char*> vars[] = {
      {"ec2", "AWS_ENDPOINT_URL_EC2"},
      {"iam", "AWS_ENDPOINT_URL_IAM"},
      {"sts", "AWS_ENDPOINT_URL_STS"},
      {"secretsmanager", "AWS_ENDPOINT_URL_SECRETS_MANAGER"},
      {"pricing", "AWS_ENDPOINT_URL_PRICING"}};
  for (const auto& [svc, var] : vars) {
    if (const char* v = std::getenv(var); v != nullptr && *v != '\0') e.each[svc] = v;
  }
  return e;
}

bool IsThrottling(const AwsError& e) {
  static const char* kCodes[] = {"Throttling",
                                 "ThrottlingException",
                                 "ThrottledException",
                                 "RequestThrottledException",
                                 "RequestLimitExceeded",
                                 "RequestThrottled",
                                 "TooManyRequestsException",
                                 "SlowDown",
                                 "PriorRequestNotComplete",
                                 "EC2ThrottledException",
                                 "BandwidthLimitExceeded"};
  for (const char* c : kCodes) {
    if (e.code == c) return true;
  }
  return e.http_status == 429;
}

Error MapAwsError(const AwsError& e, const std::string& operation) {
  std::string msg =
      fmt::format("{}: {}: {}", operation, e.code.empty() ? std::to_string(e.http_status) : e.code,
                  Truncate(e.message, 400));
  const std::string& c = e.code;
  auto kind = ProviderErrorKind::kInvalidRequest;
  if (IsThrottling(e)) {
    kind = ProviderErrorKind::kTransient;
  } else if (c.rfind("Insufficient", 0) == 0 && EndsWith(c, "Capacity")) {
    kind = ProviderErrorKind::kCapacity;  // InsufficientInstanceCapacity, InsufficientHostCapacity
  } else if (c == "Unsupported" || c == "InsufficientCapacity") {
    kind = ProviderErrorKind::kCapacity;  // type not offered in this zone: another offer may work
  } else if (EndsWith(c, "LimitExceeded") || c == "ServiceQuotaExceededException" ||
             c == "MaxSpotInstanceCountExceeded" || c == "LimitExceededException") {
    kind = ProviderErrorKind::kQuota;
  } else if (c == "AuthFailure" || c == "UnauthorizedOperation" || c == "InvalidClientTokenId" ||
             c == "SignatureDoesNotMatch" || c == "AccessDenied" || c == "AccessDeniedException" ||
             c == "IncompleteSignature" || c == "MissingAuthenticationToken" ||
             c == "ExpiredToken" || c == "ExpiredTokenException" || c == "InvalidAccessKeyId" ||
             c == "UnrecognizedClientException" || c == "OptInRequired" || c == "Blocked" ||
             c.rfind("AuthFailure.", 0) == 0) {
    kind = ProviderErrorKind::kAuth;
  } else if (EndsWith(c, ".NotFound") || c == "NoSuchEntity" || c == "ResourceNotFoundException" ||
             c == "NotFoundException") {
    kind = ProviderErrorKind::kNotFound;
  } else if (EndsWith(c, ".Malformed") || c == "InvalidParameterValue" || c == "InvalidParameter" ||
             c == "InvalidParameterCombination" || c == "ValidationError" ||
             c == "ValidationException" || c == "MissingParameter" ||
             c == "InvalidParameterException" || c == "InvalidRequestException") {
    kind = ProviderErrorKind::kInvalidRequest;
  } else if (c == "DependencyViolation" || c == "IncorrectState" || c == "IncorrectInstanceState" ||
             c == "InternalError" || c == "InternalFailure" || c == "InternalServiceError" ||
             c == "InternalServiceErrorException" || c == "ServiceUnavailable" ||
             c == "Unavailable" || c == "ServiceUnavailableException" || e.http_status >= 500) {
    kind = ProviderErrorKind::kTransient;
  } else if (e.http_status == 401 || e.http_status == 403) {
    kind = ProviderErrorKind::kAuth;
  } else if (e.http_status == 404) {
    kind = ProviderErrorKind::kNotFound;
  }
  return MakeProviderError(kind, std::move(msg));
}

Result<Xml> ParseXml(const std::string& body) {
  Xml doc;
  try {
    std::istringstream in(body);
    // No trim_whitespace: it would fold the line breaks of PEM key material.
    boost::property_tree::read_xml(in, doc);
  } catch (const std::exception& e) {
    return Error::Provider(fmt::format("malformed XML from AWS: {}", Truncate(e.what(), 200)));
  }
  if (doc.empty()) return Error::Provider("empty XML answer from AWS");
  Xml root = doc.front().second;
  root.erase("<xmlattr>");
  return root;
}

std::string XmlText(const Xml& node, const std::string& path) {
  auto v = node.get_optional<std::string>(path);
  return v ? *v : std::string();
}

std::vector<const Xml*> XmlItems(const Xml& node, const std::string& path) {
  std::vector<const Xml*> out;
  auto child = path.empty() ? boost::optional<const Xml&>(node) : node.get_child_optional(path);
  if (!child) return out;
  for (const auto& [k, v] : *child) {
    if (k == "item" || k == "member") out.push_back(&v);
  }
  return out;
}

AwsError ParseAwsError(int http_status, const std::string& body) {
  AwsError e;
  e.http_status = http_status;
  if (!body.empty() && body.front() == '{') {
    auto j = ParseJson(body);
    if (j && j->is_object()) {
      std::string type = j->value("__type", j->value("code", std::string()));
      if (auto hash = type.rfind('#'); hash != std::string::npos) type = type.substr(hash + 1);
      if (auto colon = type.find(':'); colon != std::string::npos) type = type.substr(0, colon);
      e.code = type;
      e.message = j->value("message", j->value("Message", std::string()));
      return e;
    }
  }
  if (body.find('<') != std::string::npos) {
    Xml doc;
    try {
      std::istringstream in(body);
      boost::property_tree::read_xml(in, doc, boost::property_tree::xml_parser::trim_whitespace);
      // <Response><Errors><Error> (EC2), <ErrorResponse><Error> (IAM, STS),
      // <ErrorResponse><Errors><Error>.
      for (const char* path : {"Response.Errors.Error", "ErrorResponse.Error",
                               "ErrorResponse.Errors.Error", "Error"}) {
        if (auto err = doc.get_child_optional(path)) {
          e.code = err->get<std::string>("Code", "");
          e.message = err->get<std::string>("Message", "");
          return e;
        }
      }
    } catch (const std::exception&) {
      // not XML (e.g. an HTML error page): fall through
    }
  }
  e.message = fmt::format("HTTP {} without an AWS error body", http_status);
  return e;
}

AwsClient::AwsClient(AwsEndpoints endpoints, RetryPolicy retry, ClockPtr clock)
    : endpoints_(std::move(endpoints)),
      retry_(retry),
      clock_(clock ? std::move(clock) : std::make_shared<SystemClock>()) {}
AwsClient::~AwsClient() = default;

Result<AwsClient::Answer> AwsClient::Send(
    const SigV4Credentials& creds, const std::string& service, const std::string& region,
    const std::string& body, const std::vector<std::pair<std::string, std::string>>& extra_headers,
    const std::string& what, bool idempotent) const {
  // The region becomes part of a host name: only region-shaped names, never another host.
  if (region.size() > 32 ||
      region.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
    return MakeProviderError(ProviderErrorKind::kInvalidRequest,
                             fmt::format("'{}' is not an AWS region name", region.substr(0, 40)));
  }
  CANOPY_ASSIGN_OR_RETURN(ParsedUrl url, ParseBaseUrl(endpoints_.UrlFor(service, region)));
  const std::string signing_region = AwsEndpoints::SigningRegion(service, region);
  CurlClient http;
  const int attempts = std::max(1, retry_.max_attempts);
  for (int attempt = 0;; ++attempt) {
    SigV4Request req;
    req.method = "POST";
    req.path = url.path;
    req.body = body;
    req.headers.emplace_back("Host", url.authority);
    for (const auto& h : extra_headers) req.headers.push_back(h);
    CANOPY_ASSIGN_OR_RETURN(std::string amz_date, AmzDate(clock_->Now()));
    SigV4Scope scope{std::move(amz_date), signing_region, service};
    CANOPY_TRY(Sign(req, creds, scope));

    net::ClientRequest cr;
    cr.method = "POST";
    cr.url = url.scheme + "://" + url.authority + url.path;
    for (const auto& [k, v] : req.headers) cr.headers[k] = v;
    cr.body = body;
    cr.timeout = std::chrono::seconds(30);
    auto resp = http.Do(cr);
    bool last = attempt + 1 >= attempts;
    if (!resp) {
      bool retryable = resp.error().code == ErrorCode::kUnavailable ||
                       resp.error().code == ErrorCode::kDeadlineExceeded;
      if (retryable && idempotent && !last) {
        std::this_thread::sleep_for(Backoff(attempt, retry_.base, retry_.max));
        continue;
      }
      auto kind = retryable ? ProviderErrorKind::kTransient : ProviderErrorKind::kInvalidRequest;
      return MakeProviderError(kind, fmt::format("{}: cannot reach {}://{}: {}", what, url.scheme,
                                                 url.authority, resp.error().message));
    }
    if (resp->status >= 200 && resp->status < 300)
      return Answer{resp->status, std::move(resp->body)};
    AwsError err = ParseAwsError(resp->status, resp->body);
    if (!last && (IsThrottling(err) || (idempotent && resp->status >= 500))) {
      SPDLOG_DEBUG("AWS call retried operation={} attempt={} code={}", what, attempt + 1, err.code);
      std::this_thread::sleep_for(Backoff(attempt, retry_.base, retry_.max));
      continue;
    }
    return MapAwsError(err, what);
  }
}

// application/x-www-form-urlencoded as the AWS SDKs write it (space as '+'): emulators that
// rebuild the body from parsed form fields to check the signature expect exactly this.
std::string FormEncode(std::string_view s) {
  std::string e = UriEncode(s, false);
  std::string out;
  out.reserve(e.size());
  for (size_t i = 0; i < e.size(); ++i) {
    if (e.compare(i, 3, "%20") == 0) {
      out.push_back('+');
      i += 2;
    } else {
      out.push_back(e[i]);
    }
  }
  return out;
}

Result<Xml> AwsClient::Query(const SigV4Credentials& creds, const std::string& service,
                             const std::string& region, const std::string& action,
                             const QueryParams& params, bool idempotent) const {
  std::string body = "Action=" + FormEncode(action) + "&Version=" + FormEncode(ApiVersion(service));
  for (const auto& [k, v] : params) {
    body += "&" + FormEncode(k) + "=" + FormEncode(v);
  }
  std::string what = (service == "ec2"   ? std::string("EC2")
                      : service == "iam" ? "IAM"
                                         : "STS") +
                     " " + action;
  CANOPY_ASSIGN_OR_RETURN(
      Answer a, Send(creds, service, region, body,
                     {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}}, what,
                     idempotent));
  auto xml = ParseXml(a.body);
  if (!xml) return Error::Provider(what + ": " + xml.error().message);
  return xml;
}

Result<Json> AwsClient::JsonCall(const SigV4Credentials& creds, const std::string& service,
                                 const std::string& region, const std::string& target,
                                 const Json& body, bool idempotent) const {
  std::string what = (service == "secretsmanager" ? std::string("SecretsManager") : "Pricing") +
                     " " + target.substr(target.find('.') + 1);
  CANOPY_ASSIGN_OR_RETURN(
      Answer a, Send(creds, service, region, DumpJson(body),
                     {{"Content-Type", "application/x-amz-json-1.1"}, {"X-Amz-Target", target}},
                     what, idempotent));
  if (a.body.empty()) return Json::object();
  auto j = ParseJson(a.body);
  if (!j) return Error::Provider(what + ": malformed JSON answer");
  return j;
}

}  // namespace canopy::providers::aws
