// Load-test helper for bench/http_idle.sh (not a Google Benchmark):
//   http_server_bench serve [port] [io_threads] [worker_threads]
//     serves GET /healthz ("ok") on 127.0.0.1 until SIGINT/SIGTERM; prints "PORT <n>".
//   http_server_bench idle <port> <connections> <probes> <hold_seconds>
//     opens <connections> keep-alive connections (one request each, then idle), prints "READY",
//     measures <probes> new connect+request round trips, prints percentiles, holds, exits.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "net/http.h"

namespace {

using Clock = std::chrono::steady_clock;

int Serve(uint16_t port, size_t io_threads, size_t workers) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread starts

  auto router = std::make_shared<canopy::net::Router>();
  router->Add("GET", "/healthz",
              [](const canopy::net::Request&) { return canopy::net::Response::Text(200, "ok"); });
  canopy::net::ServerOptions opts;
  opts.port = port;
  opts.io_threads = io_threads;
  opts.worker_threads = workers;
  auto server = canopy::net::HttpServer::Start(
      opts, router,
      [](const canopy::Error& e) { return canopy::net::Response::Text(500, e.message); },
      std::make_shared<canopy::net::Metrics>());
  if (!server) {
    std::fprintf(stderr, "start failed: %s\n", server.error().ToString().c_str());
    return 1;
  }
  std::printf("PORT %u\n", (*server)->port());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  auto t0 = Clock::now();
  (*server)->Stop();
  std::printf("STOPPED in %.1f ms\n",
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  return 0;
}

int Connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// One GET /healthz on fd; true on a 200 reply ("ok" body).
bool Request(int fd) {
  static const std::string kReq = "GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n";
  if (send(fd, kReq.data(), kReq.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(kReq.size())) {
    return false;
  }
  std::string got;
  char buf[4096];
  while (got.find("\r\n\r\nok") == std::string::npos) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      return false;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  return got.starts_with("HTTP/1.1 200");
}

int Idle(uint16_t port, int conns, int probes, int hold_s) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  std::vector<int> fds;
  fds.reserve(static_cast<size_t>(conns));
  auto t0 = Clock::now();
  for (int i = 0; i < conns; ++i) {
    int fd = Connect(port);
    if (fd < 0 || !Request(fd)) {
      std::fprintf(stderr, "idle connection %d failed\n", i);
      return 1;
    }
    fds.push_back(fd);
  }
  std::printf("READY %d idle connections opened in %.0f ms\n", conns,
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  std::fflush(stdout);
  std::vector<double> ms;
  for (int i = 0; i < probes; ++i) {
    auto s = Clock::now();
    int fd = Connect(port);
    bool ok = fd >= 0 && Request(fd);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s).count());
    if (fd >= 0) {
      close(fd);
    }
    if (!ok) {
      std::fprintf(stderr, "probe %d failed\n", i);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))];
  };
  std::printf("PROBES n=%d p50=%.2f ms p99=%.2f ms max=%.2f ms\n", probes, pct(0.5), pct(0.99),
              ms.back());
  // The idle links still work.
  int bad = 0;
  for (size_t i = 0; i < fds.size(); i += 97) {
    bad += Request(fds[i]) ? 0 : 1;
  }
  std::printf("IDLE_RECHECK failures=%d\n", bad);
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(hold_s));
  for (int fd : fds) {
    close(fd);
  }
  return bad == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  if (!a.empty() && a[0] == "serve") {
    return Serve(a.size() > 1 ? static_cast<uint16_t>(std::stoi(a[1])) : 0,
                 a.size() > 2 ? std::stoul(a[2]) : 2, a.size() > 3 ? std::stoul(a[3]) : 8);
  }
  if (a.size() == 5 && a[0] == "idle") {
    return Idle(static_cast<uint16_t>(std::stoi(a[1])), std::stoi(a[2]), std::stoi(a[3]),
                std::stoi(a[4]));
  }
  std::fprintf(stderr,
               "usage: %s serve [port] [io_threads] [workers] | idle <port> <conns> <probes> "
               "<hold_s>\n",
               argv[0]);
  return 2;
}
