// PacketCapture: records the TCP payloads crossing a network interface (AF_PACKET, needs root)
// while it runs, so that tests can look at what really went over the wire: e.g. that no
// plaintext HTTP crossed a bridge. Only IPv4 TCP segments with a payload are kept.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace canopy::testing {

struct TcpSegment {
  std::string src, dst;  // IPv4 addresses
  uint16_t sport = 0, dport = 0;
  std::string payload;
};

// Whether `payload` starts like an HTTP/1 request or response (plaintext HTTP).
bool LooksLikePlainHttp(const std::string& payload);
// Whether `payload` starts with a TLS record header (handshake, alert or application data).
bool LooksLikeTls(const std::string& payload);

class PacketCapture {
 public:
  // Starts capturing on `ifname` ("lo", a veth; "" = every interface, which also sees frames a
  // bridge forwards between its ports); with `ports`, only segments from or to one
  // of them are kept. Fails the test when the socket cannot be opened.
  explicit PacketCapture(const std::string& ifname, std::set<uint16_t> ports = {});
  ~PacketCapture();
  // Stops (idempotent) and returns what was captured.
  std::vector<TcpSegment> Stop();

 private:
  void Loop();
  int fd_ = -1;
  std::set<uint16_t> ports_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<TcpSegment> segments_;
  std::thread thread_;
};

}  // namespace canopy::testing
