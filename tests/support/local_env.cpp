#include "support/local_env.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "common/ids.h"

namespace canopy::testing {

using providers::local::LocalProvider;

// Test nets of concurrent test processes must not share a /24 (two instances with one address
// answer SSH with different host keys): each holds an exclusive lock on its octet while it lives.
LocalTestNet::LocalTestNet() {
  bridge_ = "cbt" + RandomHex(4);
  int octet = 0;
  for (int attempt = 0; attempt < 512; ++attempt) {
    octet = std::stoi(RandomHex(1), nullptr, 16);
    std::string path = "/tmp/canopy-testnet-" + std::to_string(octet) + ".lock";
    int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) break;  // no lock possible here: a random octet as before
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      lock_fd_ = fd;
      break;
    }
    ::close(fd);
  }
  subnet_ = "198.19." + std::to_string(octet) + ".0/24";
}

LocalTestNet::~LocalTestNet() {
  Cleanup();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

bool LocalTestNet::Available() { return geteuid() == 0; }

std::string LocalTestNet::gateway() const {
  return subnet_.substr(0, subnet_.rfind('.')) + ".1";  // "198.19.N.0/24" -> "198.19.N.1"
}

std::string LocalTestNet::state_dir() const { return (dir_.path() / "state").string(); }

providers::local::LocalOptions LocalTestNet::Options() const {
  providers::local::LocalOptions o;
  o.state_dir = state_dir();
  o.bridge = bridge_;
  o.subnet = subnet_;
  return o;
}

Json LocalTestNet::Config() const {
  return Json{{"state_dir", state_dir()}, {"bridge", bridge_}, {"subnet", subnet_}};
}

void LocalTestNet::Cleanup() {
  if (Available()) {
    LocalProvider::Purge(Options());
  }
}

bool ExpectBlankImageBuilt(const std::string& image) {
  // What the local provider checks before it offers an image (see ImageBuilt).
  if (image.find("-minbase") == std::string::npos) return true;  // this host's filesystem
  const std::string dir = providers::local::LocalOptions().images_dir;
  std::error_code ec;
  if (std::filesystem::exists(dir + "/" + image + "/rootfs/etc/canopy-image", ec)) return true;
  ADD_FAILURE() << "blank image '" << image << "' is not built in " << dir
                << ": as root, run scripts/local-images.sh (scripts/setup.sh runs it; CI does)";
  return false;
}

std::vector<std::string> HelloServiceArgv(int port) {
  // The same script as the README's service (there on one line, in single quotes).
  static constexpr char kScript[] =
      R"($SIG{PIPE}="IGNORE"; )"
      R"($s=IO::Socket::INET->new(LocalPort=>shift,Listen=>64,ReuseAddr=>1) or die "listen: $!"; )"
      R"(while($c=$s->accept){ while(<$c>){last if /^\r?$/} )"
      R"(print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n", )"
      R"("hello from ".$c->sockhost."\n"; close $c })";
  return {"perl", "-MIO::Socket::INET", "-e", kScript, std::to_string(port)};
}

bool TcpConnects(const std::string& address, uint16_t port, int timeout_ms) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  ::inet_pton(AF_INET, address.c_str(), &sa.sin_addr);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  if (!ok && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    ok = ::poll(&p, 1, timeout_ms) == 1 &&
         ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
  }
  ::close(fd);
  return ok;
}

}  // namespace canopy::testing
