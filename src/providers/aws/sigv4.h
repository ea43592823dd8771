// AWS Signature Version 4
// (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html): canonical request,
// string to sign, signing key and the Authorization header. Conformance-tested with the official
// test suite (../shared/reference/sigv4/, tests/providers/aws/sigv4_test.cpp). Pure functions over
// OpenSSL; thread-safe. Failures (OpenSSL, a time gmtime cannot represent) are Results: nothing
// here throws.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "common/secret.h"

namespace canopy::providers::aws {

/// A request as it will be sent. `path` is the raw path (may hold "..", "//", spaces, UTF-8),
/// `query` the raw query string without '?'. Header names keep their case; repeated names and
/// multi-line (folded) values are allowed, as in the test suite.
struct SigV4Request {
  std::string method = "GET";
  std::string path = "/";
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct SigV4Credentials {
  std::string access_key_id;
  SecretString secret_access_key;
  std::string session_token;  ///< empty when none
};

struct SigV4Scope {
  std::string amz_date;  ///< "20150830T123600Z"
  std::string region;    ///< "us-east-1"
  std::string service;   ///< "ec2", "iam", "sts", "secretsmanager", ...
};

/// "20150830T123600Z" for a time (UTC); kInvalidArgument when it cannot be represented.
Result<std::string> AmzDate(TimePoint t);

/// URI-encodes per SigV4: unreserved A-Z a-z 0-9 - _ . ~ kept, every other byte as %XX (upper
/// hex); '/' kept when `keep_slash`.
std::string UriEncode(std::string_view s, bool keep_slash);

/// The canonical request. `normalize_path` removes "." and ".." segments and repeated slashes
/// (every service except S3).
std::string CanonicalRequest(const SigV4Request& req, bool normalize_path = true);

/// "AWS4-HMAC-SHA256\n<date>\n<scope>\n<hex sha256 of the canonical request>".
std::string StringToSign(const SigV4Scope& scope, const std::string& canonical_request);

/// The value of the Authorization header for `req`, which must already carry every header to
/// be signed (Host, X-Amz-Date, and X-Amz-Security-Token when there is a session token).
Result<std::string> Authorization(const SigV4Request& req, const SigV4Credentials& creds,
                                  const SigV4Scope& scope, bool normalize_path = true);

/// Adds X-Amz-Date (scope.amz_date), X-Amz-Security-Token (when creds has one) and
/// Authorization to req.headers; `Host` must already be present.
Status Sign(SigV4Request& req, const SigV4Credentials& creds, const SigV4Scope& scope);

}  // namespace canopy::providers::aws
