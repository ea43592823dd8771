// AwsSim: the AWS simulator (scripts/sim/aws-sim) for a test: moto with signature checks and a
// machine behind every EC2 instance in a VPC on the test's own network (LocalTestNet), so an AWS
// cluster can reach ACTIVE offline. Stopped (every machine terminated) when destroyed; the
// simulator also stops by itself when the test process dies.
#pragma once

#include <string>

#include "common/json.h"
#include "common/result.h"
#include "support/local_env.h"
#include "support/test_util.h"

namespace canopy::testing {

class AwsSim {
 public:
  AwsSim() = default;
  ~AwsSim();
  AwsSim(const AwsSim&) = delete;
  AwsSim& operator=(const AwsSim&) = delete;

  /// Starts it on `net`'s bridge, the VPC being `net`'s whole subnet. An error (with the
  /// simulator's output) when it cannot start.
  Status Start(const LocalTestNet& net);
  void Stop();

  /// sim.json: endpoint_url, region, vpc_id, subnet_id, credential, adapter_config...
  const Json& info() const { return info_; }
  std::string dir() const { return dir_.str(); }
  std::string MachinesLog() const { return ReadFile(dir_.str() + "/sim/machines.log"); }
  /// The state of EC2 instance `instance_id`'s machine as its record says ("running",
  /// "stopped", ...); "" when it has none.
  std::string MachineState(const std::string& instance_id) const;
  /// Machines that exist (any state).
  int MachineCount() const;

 private:
  TempDir dir_;
  Json info_;
  bool started_ = false;
};

}  // namespace canopy::testing
