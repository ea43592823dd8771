// CurlClient: outbound HTTP(S) to cloud APIs over libcurl (TLS to the public internet, the
// environment's proxies, connection reuse). The same request, answer and error contract as
// net::HttpClient, which Canopy's own tiers use (Beast, statically linkable); only provider
// adapters, which run next to the root, link libcurl. Thread-safe: each thread reuses its own
// connection cache (keep-alive).
#pragma once

#include "common/result.h"
#include "net/client.h"

namespace canopy::providers {

class CurlClient {
 public:
  // Any HTTP status is a successful Result. Transport failures: connection refused/reset ->
  // kUnavailable, timeout -> kDeadlineExceeded, bad URL -> kInvalidArgument. Messages never
  // include request headers or bodies (they may carry secrets).
  Result<net::ClientResponse> Do(const net::ClientRequest& req) const;
};

}  // namespace canopy::providers
