#include "support/aws_sim.h"

#include <unistd.h>

#include <filesystem>

#include "support/sim_script.h"

namespace canopy::testing {

AwsSim::~AwsSim() { Stop(); }

Status AwsSim::Start(const LocalTestNet& net) {
  // The net's /24 is the VPC: its addresses are the test's alone (LocalTestNet locks them).
  const std::string subnet = net.Options().subnet;
  started_ = true;
  CANOPY_ASSIGN_OR_RETURN(
      info_, StartSimScript("aws-sim", dir_.str(),
                            {"--bridge", net.bridge(), "--subnet", subnet, "--vpc-cidr", subnet}));
  return OkStatus();
}

std::string AwsSim::MachineState(const std::string& instance_id) const {
  for (const auto& r : SimMachineRecords(dir_.str())) {
    if (r.value("canopy_id", "") == instance_id) return r.value("state", "");
  }
  return "";
}

int AwsSim::MachineCount() const { return static_cast<int>(SimMachineRecords(dir_.str()).size()); }

void AwsSim::Stop() {
  if (!started_) return;
  started_ = false;
  StopSimScript("aws-sim", dir_.str());
}

}  // namespace canopy::testing
