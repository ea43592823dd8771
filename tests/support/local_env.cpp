#include "support/local_env.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "common/ids.h"
#include "providers/local/local_exec.h"

namespace canopy::testing {

namespace fs = std::filesystem;
using providers::local::LocalProvider;
using providers::local::NetnsPids;
using providers::local::RunCommand;

LocalTestNet::LocalTestNet() {
  bridge_ = "cbt" + RandomHex(4);
  int octet = std::stoi(RandomHex(1), nullptr, 16);
  subnet_ = "198.19." + std::to_string(octet) + ".0/24";
}

LocalTestNet::~LocalTestNet() { Cleanup(); }

bool LocalTestNet::Available() { return geteuid() == 0; }

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
  if (!Available()) {
    return;
  }
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(state_dir()) / "instances", ec)) {
    std::string id = e.path().filename().string();
    std::string ns = LocalProvider::NetnsName(id);
    for (int pid : NetnsPids(ns)) {
      kill(pid, SIGKILL);
    }
    for (int i = 0; i < 100 && !NetnsPids(ns).empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    (void)RunCommand({"/usr/sbin/ip", "netns", "del", ns});
    (void)RunCommand({"/usr/sbin/ip", "link", "del", LocalProvider::VethName(id)});
  }
  if (fs::exists("/sys/class/net/" + bridge_)) {
    (void)RunCommand({"/usr/sbin/ip", "link", "del", bridge_});
  }
}

}  // namespace canopy::testing
