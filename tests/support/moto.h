// MotoServer: the moto AWS emulator (PyPI `moto[server]`) on 127.0.0.1 for the AWS provider's
// tests, with signature checking on (INITIAL_NO_AUTH_ACTION_COUNT=0). An admin IAM user is
// bootstrapped by allowing exactly the three unauthenticated calls that create it
// (/moto-api/reset-auth), so every later request must carry a valid SigV4 signature.
// Shared(): one server per test process (python start-up takes ~2 s), killed at exit.
#pragma once

#include <memory>
#include <string>

#include "common/json.h"
#include "common/result.h"
#include "support/test_util.h"

namespace canopy::testing {

class MotoServer {
 public:
  /// Whether `python3 -m moto.server` can run here (scripts/setup.sh installs it).
  static bool Available();
  /// The process-wide server, started on first use; an error when it cannot start.
  static Result<MotoServer*> Shared();

  ~MotoServer();
  const std::string& url() const { return url_; }
  /// {access_key_id, secret_access_key} of the admin user (made once).
  const Json& admin_credential() const { return admin_; }

 private:
  MotoServer() = default;
  Status Start();
  Status Bootstrap();

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Process> proc_;
  std::string url_;
  Json admin_;
};

/// Path of python3 on PATH ("" when absent).
std::string FindPython();

}  // namespace canopy::testing
