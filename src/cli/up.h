// `canopy up`: the embedded default of the product contract. Runs `canopyd root` and a local
// provider adapter (`canopyd provider --type local`) as child processes in the foreground,
// registers the adapter, logs the CLI in as admin (trusting the root's CA, DATA_DIR/root/ca.crt),
// adds a credential named "local", prints the URL, the admin login and the CA's fingerprint, and
// stops both children on SIGINT/SIGTERM (or when one of them dies).
// Needs root (the local provider makes network namespaces). Not thread-safe; one per process.
#pragma once

#include <string>

#include "cli/commands.h"

namespace canopy::cli {

struct UpOptions {
  std::string data_dir = "canopy-data";  // root/, adapter-local/, local/, *.log inside
  // The root's API. It stays private by default (loopback). Clusters installed on local
  // instances dial the root at the local provider's bridge gateway (198.18.0.1): unless --listen
  // already covers that address (0.0.0.0, or the gateway itself), the root gets a second
  // listener there on the same port that serves only what clusters and adapters call.
  std::string listen = "127.0.0.1:8080";
  std::string canopyd;  // path of canopyd; default: next to this binary
};

int Up(Context& ctx, const UpOptions& opts);

}  // namespace canopy::cli
