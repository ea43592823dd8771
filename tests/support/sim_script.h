// The cloud simulators' scripts (scripts/sim/aws-sim, scripts/sim/gcp-sim) as tests run them:
// start in a test's folder, bound to the test process (--parent-pid), their sim.json read back;
// stop; the records of their machines (the local provider's instances/<id>/instance.json).
#pragma once

#include <string>
#include <vector>

#include "common/json.h"
#include "common/result.h"

namespace canopy::testing {

/// `scripts/sim/<script> start --quiet --dir <dir>/sim ... --canopy-sim BIN --parent-pid PID`
/// with `args` in between; the sim.json it writes. The script's output in the error otherwise.
Result<Json> StartSimScript(const std::string& script, const std::string& dir,
                            const std::vector<std::string>& args);
/// `scripts/sim/<script> stop --keep-logs --dir <dir>/sim`.
void StopSimScript(const std::string& script, const std::string& dir);
/// The records of the simulator's machines in <dir>/sim/machines.
std::vector<Json> SimMachineRecords(const std::string& dir);

}  // namespace canopy::testing
