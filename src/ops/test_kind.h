// TestStepsKind ("test.steps"): an observable operation kind for engine and crash tests. The root
// daemon registers it only when started with its test flag (it writes to a caller-chosen file).
// Thread-safe (stateless; everything per operation comes from op.data).
#pragma once

#include <string>
#include <vector>

#include "ops/engine.h"

namespace canopy::ops {

// op.data:
//   steps               1..20, required: the operation has steps "step-1".."step-<steps>"
//   step_ms             0..60000, default 0: each step then sleeps this long (wall time)
//   marker_file         optional path: every try of step i (0-based, = step_index) first appends
//                       "<op_id> <i> <attempt>\n" (O_APPEND, fsync'd), so a test sees what ran
//   fail_at             optional 0-based step index: that step fails terminally (provider_error)
//   transient_failures  optional, default 0: every step fails with kUnavailable while its
//                       attempt < transient_failures, then succeeds
// A stop requested during the sleep returns kUnavailable so the step runs again later.
// Steps() returns the 20 names an operation can have; StepsFor(data) the operation's own.
class TestStepsKind final : public OperationKind {
 public:
  static constexpr const char* kName = "test.steps";
  static constexpr int kMaxSteps = 20;

  explicit TestStepsKind(int max_attempts = 8) : max_attempts_(max_attempts) {}

  std::string Name() const override { return kName; }
  std::vector<std::string> Steps() const override;
  Result<std::vector<std::string>> StepsFor(const Json& data) const override;
  Result<StepResult> RunStep(size_t step, StepContext& ctx) override;
  int MaxAttempts() const override { return max_attempts_; }

 private:
  int max_attempts_;
};

}  // namespace canopy::ops
