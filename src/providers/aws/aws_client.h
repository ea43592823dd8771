// AwsClient: signed calls to AWS (or an AWS-compatible endpoint such as moto) without an SDK.
// Two wire protocols: Query (EC2, IAM, STS: form-encoded POST, XML answer) and JSON 1.1
// (Secrets Manager, Pricing: X-Amz-Target, JSON answer). Every request is signed with SigV4.
// Retries: throttling, 5xx and transport failures, with capped exponential backoff and full
// jitter; calls marked non-idempotent (RunInstances, CreateKeyPair, ...) are retried only on
// throttling, which AWS answers before doing anything. AWS errors become typed provider errors
// (MapAwsError). Endpoints follow the AWS SDK conventions (AWS_ENDPOINT_URL,
// AWS_ENDPOINT_URL_<SERVICE>). Thread-safe; keeps no credential.
#pragma once

#include <boost/property_tree/ptree.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/json.h"
#include "common/result.h"
#include "providers/aws/sigv4.h"

namespace canopy::providers::aws {

using Xml = boost::property_tree::ptree;

/// Where each service is reached. Service keys: "ec2", "iam", "sts", "secretsmanager", "pricing".
struct AwsEndpoints {
  std::string all;                          ///< AWS_ENDPOINT_URL: every service (empty: AWS)
  std::map<std::string, std::string> each;  ///< AWS_ENDPOINT_URL_<SERVICE> and config overrides

  /// The base URL (scheme://host[:port]) of `service` in `region`.
  std::string UrlFor(const std::string& service, const std::string& region) const;
  /// The region a request to `service` is signed for (IAM and Pricing are global: us-east-1).
  static std::string SigningRegion(const std::string& service, const std::string& region);
  /// Reads AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_{EC2,IAM,STS,SECRETS_MANAGER,PRICING}.
  static AwsEndpoints FromEnvironment();
};

struct RetryPolicy {
  int max_attempts = 5;
  std::chrono::milliseconds base{200};
  std::chrono::milliseconds max{5000};
};

/// One AWS error answer.
struct AwsError {
  int http_status = 0;
  std::string code;     ///< "InvalidInstanceID.NotFound", "ThrottlingException", ...
  std::string message;  ///< AWS's message (never carries our secret)
};

/// The typed provider error for an AWS error answer of `operation` (e.g. "EC2 RunInstances").
Error MapAwsError(const AwsError& e, const std::string& operation);
/// Whether AWS asks to slow down (retry after a backoff even for non-idempotent calls).
bool IsThrottling(const AwsError& e);
/// Parses an XML (Query protocol) or JSON error body.
AwsError ParseAwsError(int http_status, const std::string& body);

/// Ordered Query parameters ("Action" and "Version" are added by the client).
using QueryParams = std::vector<std::pair<std::string, std::string>>;

/// One form field as the AWS SDKs encode Query bodies (SigV4 escaping, space as '+').
std::string FormEncode(std::string_view s);

/// XML helpers over a parsed answer.
std::string XmlText(const Xml& node, const std::string& path);
/// The <item> (or <member>) children of the element at `path` (empty when absent).
std::vector<const Xml*> XmlItems(const Xml& node, const std::string& path);
/// Parses an XML document; the root element's children (namespace attributes dropped).
Result<Xml> ParseXml(const std::string& body);

class AwsClient {
 public:
  // `clock` dates the signatures (AWS refuses ones more than 15 minutes off); null = the system's.
  AwsClient(AwsEndpoints endpoints, RetryPolicy retry, ClockPtr clock = nullptr);
  ~AwsClient();

  /// A Query-protocol call; the answer's root element (e.g. <RunInstancesResponse>).
  Result<Xml> Query(const SigV4Credentials& creds, const std::string& service,
                    const std::string& region, const std::string& action, const QueryParams& params,
                    bool idempotent = true) const;
  /// A JSON 1.1 call with X-Amz-Target `target` (e.g. "secretsmanager.GetSecretValue").
  Result<Json> JsonCall(const SigV4Credentials& creds, const std::string& service,
                        const std::string& region, const std::string& target, const Json& body,
                        bool idempotent = true) const;

  const AwsEndpoints& endpoints() const { return endpoints_; }

 private:
  struct Answer {
    int status = 0;
    std::string body;
  };
  Result<Answer> Send(const SigV4Credentials& creds, const std::string& service,
                      const std::string& region, const std::string& body,
                      const std::vector<std::pair<std::string, std::string>>& extra_headers,
                      const std::string& what, bool idempotent) const;

  AwsEndpoints endpoints_;
  RetryPolicy retry_;
  ClockPtr clock_;
};

/// Version string of each Query service's API.
const char* ApiVersion(const std::string& service);

}  // namespace canopy::providers::aws
