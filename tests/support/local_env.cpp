#include "support/local_env.h"

#include <unistd.h>

#include "common/ids.h"

namespace canopy::testing {

using providers::local::LocalProvider;

LocalTestNet::LocalTestNet() {
  bridge_ = "cbt" + RandomHex(4);
  int octet = std::stoi(RandomHex(1), nullptr, 16);
  subnet_ = "198.19." + std::to_string(octet) + ".0/24";
}

LocalTestNet::~LocalTestNet() { Cleanup(); }

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

}  // namespace canopy::testing
