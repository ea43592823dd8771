// PostJson: one JSON request from a lower tier to the tier above (adapter → root, cluster → root,
// node → cluster): bearer auth, timeouts, and the three ways it can fail turned into Errors.
// Thread-safe (HttpClient keeps a connection cache per thread).
#pragma once

#include <chrono>
#include <string>

#include "common/json.h"
#include "common/result.h"
#include "common/secret.h"
#include "net/tls.h"

namespace canopy::net {

struct JsonCall {
  std::string url;
  Json body = Json::object();
  SecretString bearer;  // sent as `Authorization: Bearer …` when not empty
  std::chrono::milliseconds timeout{10000};
  std::chrono::milliseconds connect_timeout{3000};
  std::string peer;  // for messages, e.g. "root at http://10.0.0.1:8080"
  // For https: the CA to trust, the name to expect, the client certificate (null: system roots).
  TlsClientConfigPtr tls;
};

/// POSTs call.body. A 2xx reply gives its JSON object ({} for an empty body). Transport failure:
/// kUnavailable "cannot reach <peer>"; other status: the peer's API error (ErrorFromResponse);
/// a 2xx body that is not a JSON object: kInternal "<peer> sent a malformed answer". Messages never
/// contain the request (it may carry tokens).
Result<Json> PostJson(const JsonCall& call);

}  // namespace canopy::net
