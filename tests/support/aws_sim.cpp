#include "support/aws_sim.h"

#include <unistd.h>

#include <filesystem>

#include "support/moto.h"

namespace canopy::testing {

AwsSim::~AwsSim() { Stop(); }

Status AwsSim::Start(const LocalTestNet& net) {
  std::string py = FindPython();
  if (py.empty()) return Error::FailedPrecondition("python3 is not on PATH");
  const std::string log = dir_.str() + "/start.log";
  // The net's /24 is the VPC: its addresses are the test's alone (LocalTestNet locks them).
  const std::string subnet = net.Options().subnet;
  Process start(
      {py, SourceDir() + "/scripts/sim/aws-sim", "start", "--quiet", "--dir", dir_.str() + "/sim",
       "--bridge", net.bridge(), "--subnet", subnet, "--vpc-cidr", subnet, "--canopy-sim",
       BinDir() + "/canopy-sim", "--parent-pid", std::to_string(::getpid())},
      {}, log);
  int rc = start.Wait();
  started_ = true;
  if (rc != 0) {
    return Error::Unavailable("scripts/sim/aws-sim start failed (" + std::to_string(rc) +
                              "): " + ReadFile(log));
  }
  auto info = ParseJson(ReadFile(dir_.str() + "/sim/sim.json"));
  if (!info) return info.error();
  info_ = *info;
  return OkStatus();
}

namespace {

// The machines' records (the local provider's instances/<id>/instance.json).
std::vector<Json> MachineRecords(const std::string& sim_dir) {
  std::vector<Json> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(sim_dir + "/machines/instances", ec)) {
    auto rec = ParseJson(ReadFile((e.path() / "instance.json").string()));
    if (rec && rec->is_object()) out.push_back(*rec);
  }
  return out;
}

}  // namespace

std::string AwsSim::MachineState(const std::string& instance_id) const {
  for (const auto& r : MachineRecords(dir_.str() + "/sim")) {
    if (r.value("canopy_id", "") == instance_id) return r.value("state", "");
  }
  return "";
}

int AwsSim::MachineCount() const {
  return static_cast<int>(MachineRecords(dir_.str() + "/sim").size());
}

void AwsSim::Stop() {
  if (!started_) return;
  started_ = false;
  std::string py = FindPython();
  Process stop({py, SourceDir() + "/scripts/sim/aws-sim", "stop", "--keep-logs", "--dir",
                dir_.str() + "/sim"},
               {}, dir_.str() + "/stop.log");
  stop.Wait();
}

}  // namespace canopy::testing
