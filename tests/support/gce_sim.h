// GceSim: the GCP simulator (scripts/sim/gcp-sim: the Compute Engine double of src/sim/gce_double.h
// with a machine behind every instance) for a test, on the test's own network (LocalTestNet), so
// a GCP cluster can reach ACTIVE offline. Stopped (every machine terminated) when destroyed; the
// simulator also stops by itself when the test process dies. Also the client side of the
// double's wire for tests: a service-account JWT signed with OpenSSL (RS256), the token exchange
// and JSON calls.
#pragma once

#include <string>

#include "common/json.h"
#include "common/result.h"
#include "support/local_env.h"
#include "support/test_util.h"

namespace canopy::testing {

/// The discovery documents the double validates against (../shared/reference/gcp).
std::string GcpReferenceDir();

class GceSim {
 public:
  GceSim() = default;
  ~GceSim();
  GceSim(const GceSim&) = delete;
  GceSim& operator=(const GceSim&) = delete;

  /// Starts it on `net`'s bridge, instances getting addresses of `net`'s subnet. An error (with
  /// the simulator's output) when it cannot start.
  Status Start(const LocalTestNet& net, int boot_delay_ms = 0);
  void Stop();

  /// sim.json: endpoint_url, project, credential (the owner's key JSON), adapter_config, ...
  const Json& info() const { return info_; }
  std::string url() const { return info_.value("endpoint_url", ""); }
  std::string dir() const { return dir_.str(); }
  std::string Log() const { return ReadFile(dir_.str() + "/sim/gce.log"); }
  /// The state of instance `name`'s machine as its record says ("running", "stopped", ...); ""
  /// when it has none.
  std::string MachineState(const std::string& name) const;
  /// Machines that exist (any state).
  int MachineCount() const;

 private:
  TempDir dir_;
  Json info_;
  bool started_ = false;
};

/// A JWT bearer assertion for service-account key `key` (its JSON), as the GCP adapter makes it
/// (docs/providers/gcp.md): RS256 over the key's private_key, kid = private_key_id, claims
/// {iss, scope, aud = token_uri, iat = now, exp = now + 3600} with `overrides` merged in. A
/// non-empty `sign_with_pem` signs with that PKCS#8 key instead (a wrong signature).
Result<std::string> ServiceAccountJwt(const Json& key, const Json& overrides = Json::object(),
                                      const std::string& sign_with_pem = "");

struct GceAnswer {
  int status = 0;
  Json body;
};
/// POST `token_url` with the JWT bearer grant; the answer as it came.
Result<GceAnswer> ExchangeJwt(const std::string& token_url, const std::string& assertion);
/// The access token for `key` (JWT made and exchanged); an error when refused.
Result<std::string> AccessToken(const Json& key);
/// A JSON call of the double's API: `path` is appended to `base` ("http://127.0.0.1:N").
Result<GceAnswer> GceCall(const std::string& base, const std::string& method,
                          const std::string& path, const std::string& token,
                          const Json& body = nullptr);

}  // namespace canopy::testing
