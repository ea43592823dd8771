// Blocking TCP helpers for net tests that need to speak raw bytes to the server (garbage,
// partial requests, idle connections) or act as a minimal fake server for the client.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <string>

namespace canopy::net::testing {

class RawSocket {
 public:
  RawSocket() = default;
  explicit RawSocket(int fd) : fd_(fd) {}
  ~RawSocket() { Close(); }
  RawSocket(RawSocket&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  RawSocket& operator=(RawSocket&& o) noexcept {
    if (this != &o) {
      Close();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }

  // From `source` (another loopback address such as "127.0.0.2": a different peer to the server).
  static RawSocket ConnectFrom(uint16_t port, const char* source) { return Open(port, source); }

  static RawSocket Connect(uint16_t port) {
    RawSocket s = Open(port, nullptr);
    int one = 1;
    if (s.ok()) setsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
  }

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  void Close() {
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

  bool Send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads what arrives within `timeout`; stops early at EOF (sets *eof) or once `until` is seen.
  std::string Recv(std::chrono::milliseconds timeout, bool* eof = nullptr,
                   const std::string& until = "") {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    if (eof != nullptr) {
      *eof = false;
    }
    for (;;) {
      auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return out;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) {
        return out;
      }
      char buf[65536];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        if (eof != nullptr) {
          *eof = true;
        }
        return out;
      }
      out.append(buf, static_cast<size_t>(n));
      if (!until.empty() && out.find(until) != std::string::npos) {
        return out;
      }
    }
  }

  // Reads one HTTP response with a Content-Length body (enough for our server's replies).
  std::string RecvResponse(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    std::string out = Recv(timeout, nullptr, "\r\n\r\n");
    size_t end = out.find("\r\n\r\n");
    if (end == std::string::npos) {
      return out;
    }
    size_t len = 0;
    std::string lower = out.substr(0, end);
    for (auto& c : lower) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    size_t cl = lower.find("content-length:");
    if (cl != std::string::npos) {
      len = std::stoul(lower.substr(cl + 15));
    }
    while (out.size() < end + 4 + len) {
      bool eof = false;
      std::string more = Recv(timeout, &eof, "");
      if (more.empty()) {
        break;
      }
      out += more;
      if (eof) {
        break;
      }
    }
    return out;
  }

  // Waits for the peer to close; true if it did within `timeout`.
  bool WaitClosed(std::chrono::milliseconds timeout) {
    bool eof = false;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!eof && std::chrono::steady_clock::now() < deadline) {
      Recv(std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now()),
           &eof);
    }
    return eof;
  }

 private:
  static RawSocket Open(uint16_t port, const char* source) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (source != nullptr) {
      sockaddr_in src{};
      src.sin_family = AF_INET;
      inet_pton(AF_INET, source, &src.sin_addr);
      if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
        close(fd);
        return RawSocket();
      }
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(fd);
      return RawSocket();
    }
    return RawSocket(fd);
  }

  int fd_ = -1;
};

// Raises the soft RLIMIT_NOFILE towards `want` (bounded by the hard limit); returns the result.
inline rlim_t RaiseFdLimit(rlim_t want) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < want) {
    rl.rlim_cur = std::min(want, rl.rlim_max);
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

}  // namespace canopy::net::testing
