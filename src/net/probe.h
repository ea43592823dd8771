// Probe: can this machine reach an HTTP(S) endpoint? Used by `canopyd probe`, which the broker
// runs on a fresh instance before starting a tier there, so an unreachable tier above fails the
// install at once with the transport error instead of a pairing timeout minutes later.
// Thread-safe.
#pragma once

#include <chrono>
#include <string>

#include "common/result.h"

namespace canopy::net {

// GETs `url` until it answers with any HTTP status or `timeout` passes (tries every 500 ms).
// OK on an answer; otherwise kUnavailable "cannot reach <url> from this machine: <last error>".
Status Probe(const std::string& url, std::chrono::milliseconds timeout);

// A TCP connect to addr:port (an IPv4 or IPv6 literal) succeeds within `timeout`: something
// listens there and no firewall drops it. The drain step's readiness check of moved services.
bool TcpConnects(const std::string& addr, int port, std::chrono::milliseconds timeout);

}  // namespace canopy::net
