// Drain readiness: have the jobs a drain moved off a node come up elsewhere? Asked by the broker's
// worker.shutdown drain step before it stops an instance (src/broker/README.md "drain"). Reads
// the scheduler's instance rows; thread-safe as the store is.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "store/store.h"

namespace canopy::scheduler {

// Whether something answers a TCP connect at addr:port (default: net::TcpConnects, 300 ms).
using TcpCheck = std::function<bool(const std::string& addr, int port)>;
TcpCheck DefaultTcpCheck();

// The jobs among `jobs` that do not run on a node other than `old_node` yet. A job counts as
// moved when its instance is running elsewhere and, for a service with a TCP port open to
// anyone, answers a TCP connect at its new address (process listening, firewall open). Jobs whose
// instance is gone or being removed count as moved (nobody wants them any more).
Result<std::vector<std::string>> JobsNotYetMoved(store::Store& store,
                                                 const std::vector<std::string>& jobs,
                                                 const std::string& old_node, const TcpCheck& tcp);

}  // namespace canopy::scheduler
