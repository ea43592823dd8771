// Discovery: Google API discovery documents (../shared/reference/gcp/*-api.json) as the request
// validator of the Compute Engine test double (src/sim/gce_double.h). It finds the method of a
// request by HTTP method and path template (`flatPath`, then `path` for the declared parameters,
// with `{param}` = one segment and `{+param}` = several), checks path and query parameters
// (required, type, enum, pattern, unknown ones refused) and the JSON body against the method's
// request schema (`$ref`s, unknown fields refused, types, int64 as strings, enums, patterns,
// `additionalProperties` maps, fields the schema annotates as required for the method), and
// reports the first mismatch as Google does (HTTP 400, INVALID_ARGUMENT). Immutable after
// loading: thread-safe for concurrent validation.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/json.h"
#include "common/result.h"

namespace canopy::sim {

/// A Google JSON error answer: {"error":{"code","message","errors":[{"message","domain",
/// "reason"[,"location","locationType"]}][,"status"]}}.
struct GoogleError {
  int code = 400;
  std::string status = "INVALID_ARGUMENT";  ///< "" = no status field (Compute's resource errors)
  std::string reason = "badRequest";
  std::string message;
  std::string location;       ///< errors[0].location when set
  std::string location_type;  ///< errors[0].locationType when set ("parameter", "header")

  Json ToJson() const;
};

/// 400 INVALID_ARGUMENT with `reason` ("badRequest", "invalid", "required", "invalidParameter").
GoogleError InvalidRequest(std::string message, std::string reason = "badRequest");

/// Query parameters of a request target in order, decoded, repeated ones kept.
using QueryList = std::vector<std::pair<std::string, std::string>>;
/// Splits and percent-decodes a query string ("a=1&b=x%2Fy"); nullopt on a bad escape.
std::optional<QueryList> ParseQueryString(std::string_view query);

/// A request matched to a method of a discovery document and validated.
struct ApiCall {
  std::string api;        ///< the document's "name": "compute", "iam", ...
  std::string method_id;  ///< "compute.instances.insert"
  std::string http_method;
  /// Declared path parameters, decoded ("project" -> "p"; IAM's "name" -> "projects/p/...").
  std::map<std::string, std::string> path;
  /// Query parameters (standard ones included), decoded; repeated ones in order.
  std::map<std::string, std::vector<std::string>> query;
  Json body;  ///< the request body (object) when the method takes one, else null

  /// The path or (first) query parameter `name`, "" when absent.
  std::string Param(std::string_view name) const;
};

class Discovery {
 public:
  Discovery();
  ~Discovery();
  Discovery(const Discovery&) = delete;
  Discovery& operator=(const Discovery&) = delete;

  /// Adds one discovery document (kInvalidArgument when it is not one).
  Status Add(const Json& doc);
  /// Reads and adds a discovery document file.
  Status AddFile(const std::string& path);
  /// The four documents of the Compute Engine double from `dir` (compute-v1-api.json,
  /// cloudresourcemanager-v1-api.json, iam-v1-api.json, secretmanager-v1-api.json).
  static Result<std::unique_ptr<Discovery>> LoadGcp(const std::string& dir);

  /// Finds the method of `http_method` + `target` (the raw request target: percent-encoded path
  /// and query, e.g. "/compute/v1/projects/p/zones/z/instances?filter=...") and validates its
  /// parameters and `body`. Fills `call` and returns nullopt when valid; else the first mismatch
  /// (404 notFound when no method matches).
  std::optional<GoogleError> Validate(std::string_view http_method, std::string_view target,
                                      std::string_view body, ApiCall* call) const;

  /// Validates `value` against schema `schema` of API `api` (e.g. a response body in tests).
  /// `what` names the value in messages; `method_id` picks the fields required for that method.
  std::optional<GoogleError> ValidateValue(std::string_view api, std::string_view schema,
                                           const Json& value, std::string_view what = "",
                                           std::string_view method_id = "") const;

  /// The method definition of `method_id` ("compute.instances.get"), nullptr when unknown.
  const Json* Method(std::string_view method_id) const;
  /// The `response` schema name of `method_id`, "" when none.
  std::string ResponseSchema(std::string_view method_id) const;

 private:
  struct Doc;
  struct Template;
  struct MethodEntry;
  const Doc* DocOf(std::string_view api) const;
  std::optional<GoogleError> CheckParam(const Json& def, std::string_view name,
                                        const std::vector<std::string>& values, bool in_path) const;
  std::optional<GoogleError> CheckValue(const Doc& doc, const Json& schema, const Json& v,
                                        const std::string& where, std::string_view method_id,
                                        int depth) const;
  bool PatternMatches(const std::string& pattern, const std::string& value) const;

  std::vector<std::unique_ptr<Doc>> docs_;
  std::vector<MethodEntry> methods_;
  std::map<std::string, const MethodEntry*, std::less<>> by_id_;
  mutable std::mutex regex_mu_;
  mutable std::map<std::string, std::shared_ptr<const std::regex>> regexes_;  // nullptr = bad
};

}  // namespace canopy::sim
