#include "net/probe.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "net/client.h"

namespace canopy::net {

Status Probe(const std::string& url, std::chrono::milliseconds timeout) {
  using namespace std::chrono_literals;
  const auto until = std::chrono::steady_clock::now() + timeout;
  // Reachability only: a TLS handshake with any certificate shows the tier above answers. Trust
  // is the pinned connection's business (the CA fingerprint the tier was given).
  auto reach_only = std::make_shared<TlsClientConfig>();
  reach_only->unverified = true;
  HttpClient client(reach_only);
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

bool TcpConnects(const std::string& addr, int port, std::chrono::milliseconds timeout) {
  if (port <= 0 || port > 65535) return false;
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, addr.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, addr.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in6);
  } else {
    return false;
  }
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool ok = false;
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
  if (rc == 0) {
    ok = true;
  } else if (errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
      int err = 0;
      socklen_t elen = sizeof err;
      ok = ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0;
    }
  }
  ::close(fd);
  return ok;
}

}  // namespace canopy::net
