// HttpClient: outbound HTTP(S) over Boost.Beast, used by the CLI, by the root to call provider
// adapters, and by adapters/clusters/nodes to call the tier above. No shared library beyond
// OpenSSL, so the agent links statically. Calls to cloud APIs use providers::CurlClient (same
// contract). Thread-safe: each thread keeps one keep-alive connection.
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "common/result.h"
#include "net/tls.h"

namespace canopy::net {

struct ClientRequest {
  std::string method = "GET";
  std::string url;
  std::map<std::string, std::string> headers;
  std::string body;
  std::chrono::milliseconds timeout{30000};
  std::chrono::milliseconds connect_timeout{5000};
};

struct ClientResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
};

class HttpClient {
 public:
  HttpClient() = default;
  // https calls trust `tls->ca_pem` (else the system's roots), check `tls->expect_cn` and present
  // `tls`'s client certificate.
  explicit HttpClient(TlsClientConfigPtr tls) : tls_(std::move(tls)) {}

  // Any HTTP status is a successful Result. Transport failures: connection refused/reset ->
  // kUnavailable, timeout -> kDeadlineExceeded, bad URL -> kInvalidArgument. Messages never
  // include request headers or bodies (they may carry secrets).
  Result<ClientResponse> Do(const ClientRequest& req) const;

 private:
  TlsClientConfigPtr tls_;
};

}  // namespace canopy::net
