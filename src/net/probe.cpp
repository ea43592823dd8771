#include "net/probe.h"

#include <thread>

#include <fmt/format.h>

#include "net/client.h"

namespace canopy::net {

Status Probe(const std::string& url, std::chrono::milliseconds timeout) {
  using namespace std::chrono_literals;
  const auto until = std::chrono::steady_clock::now() + timeout;
  HttpClient client;
  std::string last = "no attempt";
  for (;;) {
    ClientRequest req;
    req.url = url;
    req.connect_timeout = std::min<std::chrono::milliseconds>(2000ms, std::max(timeout, 100ms));
    req.timeout = req.connect_timeout + 1000ms;
    auto r = client.Do(req);
    if (r) return OkStatus();
    if (r.error().code == ErrorCode::kInvalidArgument) {
      return Error::InvalidArgument(fmt::format("cannot probe {}: {}", url, r.error().message));
    }
    last = r.error().message;
    if (std::chrono::steady_clock::now() + 500ms >= until) break;
    std::this_thread::sleep_for(500ms);
  }
  return Error::Unavailable(fmt::format("cannot reach {} from this machine: {}", url, last));
}

}  // namespace canopy::net
