// LocalTestNet: a private network for tests of the local provider (its own bridge, a /24 inside
// 198.19.0.0/16 and a state dir), and the cleanup that removes every namespace, veth, process
// and the bridge it made, even when the test failed. Needs root (Available() says so).
#pragma once

#include <string>
#include <vector>

#include "providers/local/local_provider.h"
#include "support/test_util.h"

namespace canopy::testing {

class LocalTestNet {
 public:
  LocalTestNet();
  ~LocalTestNet();
  LocalTestNet(const LocalTestNet&) = delete;
  LocalTestNet& operator=(const LocalTestNet&) = delete;

  /// True when this process can create instances (runs as root).
  static bool Available();
  /// Options for a LocalProvider on this network (state under the temp dir).
  providers::local::LocalOptions Options() const;
  /// The same as provider config JSON (for `canopyd provider --type local --config`).
  Json Config() const;
  const std::string& bridge() const { return bridge_; }
  /// The bridge's address: how instances reach services on this host.
  std::string gateway() const;
  /// The network's CIDR ("198.18.N.0/24").
  const std::string& subnet() const { return subnet_; }
  std::string state_dir() const;
  /// Kills every process of every instance and removes namespaces, veths and the bridge.
  void Cleanup();

 private:
  TempDir dir_;
  std::string bridge_;
  std::string subnet_;
  int lock_fd_ = -1;  // flock on /tmp/canopy-testnet-<octet>.lock, held for the net's lifetime
};

// The image the e2e and crash suites create clusters and workers on: a blank image, as new
// clusters get by default (the first offered). scripts/local-images.sh builds it (scripts/setup.sh
// runs that as root, so CI has it). Sanitizer builds (CANOPY_TEST_HOST_IMAGE) push the sanitized
// canopyd, which needs this host's libasan and libubsan: their broker flows run on the host
// filesystem image instead.
#ifdef CANOPY_TEST_HOST_IMAGE
inline constexpr char kBlankTestImage[] = "debian-12";
#else
inline constexpr char kBlankTestImage[] = "debian-12-minbase";
#endif

// Whether blank image `image` is built in the local provider's default images dir (true for a
// host image, which needs none). If not, adds a test failure (never a skip) that says how to
// build it.
bool ExpectBlankImageBuilt(const std::string& image = kBlankTestImage);

// The argv of a tiny HTTP server on `port` for services on blank-image workers: a perl one-liner
// (IO::Socket::INET is in perl-base, which is Essential in Debian, so every Debian/Ubuntu image
// has it; minbase has no python3). It answers any request with `HTTP/1.0 200 OK` and the body
// "hello from ADDRESS" (the address the client reached). The README's service runs the same.
std::vector<std::string> HelloServiceArgv(int port);

// Whether a TCP connection from this host to address:port completes within `timeout_ms`.
bool TcpConnects(const std::string& address, uint16_t port, int timeout_ms = 500);

}  // namespace canopy::testing
