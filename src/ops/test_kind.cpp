#include "ops/test_kind.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

namespace canopy::ops {
namespace {

struct Spec {
  int64_t steps = 0;
  int64_t step_ms = 0;
  std::string marker_file;
  std::optional<int64_t> fail_at;
  int64_t transient_failures = 0;
};

Result<Spec> ParseSpec(const Json& data) {
  Spec spec;
  CANOPY_ASSIGN_OR_RETURN(spec.steps, GetInt(data, "steps", 1, TestStepsKind::kMaxSteps));
  CANOPY_ASSIGN_OR_RETURN(auto step_ms, GetOptInt(data, "step_ms", 0, 60000));
  spec.step_ms = step_ms.value_or(0);
  CANOPY_ASSIGN_OR_RETURN(auto marker, GetOptString(data, "marker_file", 4096));
  spec.marker_file = marker.value_or("");
  CANOPY_ASSIGN_OR_RETURN(spec.fail_at, GetOptInt(data, "fail_at", 0, spec.steps - 1));
  CANOPY_ASSIGN_OR_RETURN(auto transient, GetOptInt(data, "transient_failures", 0, 1000));
  spec.transient_failures = transient.value_or(0);
  return spec;
}

std::string StepNameAt(int64_t i) { return fmt::format("step-{}", i + 1); }

Status AppendLine(const std::string& path, const std::string& line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Error::Internal(fmt::format("cannot open marker file: {}", std::strerror(errno)));
  }
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      int e = errno;
      ::close(fd);
      return Error::Internal(fmt::format("cannot write marker file: {}", std::strerror(e)));
    }
    done += static_cast<size_t>(n);
  }
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) {
    return Error::Internal(fmt::format("cannot sync marker file: {}", std::strerror(e)));
  }
  return OkStatus();
}

}  // namespace

std::vector<std::string> TestStepsKind::Steps() const {
  std::vector<std::string> names;
  for (int64_t i = 0; i < kMaxSteps; ++i) {
    names.push_back(StepNameAt(i));
  }
  return names;
}

Result<std::vector<std::string>> TestStepsKind::StepsFor(const Json& data) const {
  CANOPY_ASSIGN_OR_RETURN(Spec spec, ParseSpec(data));
  std::vector<std::string> names;
  for (int64_t i = 0; i < spec.steps; ++i) {
    names.push_back(StepNameAt(i));
  }
  return names;
}

Result<StepResult> TestStepsKind::RunStep(size_t step, StepContext& ctx) {
  CANOPY_ASSIGN_OR_RETURN(Spec spec, ParseSpec(ctx.op.data));
  if (!spec.marker_file.empty()) {
    CANOPY_TRY(
        AppendLine(spec.marker_file, fmt::format("{} {} {}\n", ctx.op.id, step, ctx.op.attempt)));
  }
  if (spec.fail_at && static_cast<size_t>(*spec.fail_at) == step) {
    return Error::Provider(
        fmt::format("test step {} failed as requested", StepNameAt(*spec.fail_at)));
  }
  if (ctx.op.attempt < spec.transient_failures) {
    return Error::Unavailable("test step failed transiently as requested");
  }
  // Sleep in short slices so Stop() is not held up by a long step.
  constexpr auto kSlice = std::chrono::milliseconds(10);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(spec.step_ms);
  while (true) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      break;
    }
    if (ctx.stop.stop_requested()) {
      return Error::Unavailable("test step interrupted");
    }
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(kSlice, deadline - now));
  }
  return StepResult::Next();
}

}  // namespace canopy::ops
