#include "cli/wait.h"

#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <optional>
#include <ostream>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "cli/api_client.h"
#include "cli/output.h"

namespace canopy::cli {

namespace {

// Longest retry message shown in a progress line (a longer one would wrap the rewritten line).
constexpr size_t kMaxRetryMessage = 80;

std::string StringMember(const Json& obj, const char* key) {
  if (!obj.is_object()) {
    return "";
  }
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? CellText(*it) : "";
}

// The message of op[key] ({"code","message"}); empty when absent.
std::string ErrorMessage(const Json& op, const char* key) {
  if (!op.is_object()) {
    return "";
  }
  auto it = op.find(key);
  if (it == op.end() || it->is_null()) {
    return "";
  }
  if (it->is_object()) {
    return StringMember(*it, "message");
  }
  return CellText(*it);
}

std::string Truncate(std::string s, size_t max) {
  if (s.size() <= max) {
    return s;
  }
  size_t cut = max;
  // Never cut inside a UTF-8 sequence.
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  s.resize(cut);
  return s + "...";
}

// "step 4/8 instance": the 1-based position of the current step.
std::string StepText(const Json& op) {
  std::string name = StringMember(op, "step");
  size_t total = 0;
  if (op.contains("steps") && op["steps"].is_array()) {
    total = op["steps"].size();
  }
  int64_t index = -1;
  if (op.contains("step_index") && op["step_index"].is_number_integer()) {
    index = op["step_index"].get<int64_t>();
  }
  if (index < 0 && !name.empty()) {
    // Without step_index: the position of the named step.
    for (size_t i = 0; i < total; ++i) {
      if (op["steps"][i].is_object() && StringMember(op["steps"][i], "name") == name) {
        index = static_cast<int64_t>(i);
        break;
      }
    }
  }
  if (index < 0 || total == 0) {
    return name.empty() ? "" : fmt::format("step {}", name);
  }
  size_t pos = std::min(static_cast<size_t>(index) + 1, total);
  return name.empty() ? fmt::format("step {}/{}", pos, total)
                      : fmt::format("step {}/{} {}", pos, total, name);
}

struct ProgressParts {
  std::string head;  // "cluster.create: step 4/8 instance"
  std::string tail;  // " - retrying: ssh timed out" or empty
};

ProgressParts Describe(const Json& op) {
  std::string kind = StringMember(op, "kind");
  if (kind.empty()) {
    kind = "operation";
  }
  std::string state = StringMember(op, "state");
  std::string step = StepText(op);
  ProgressParts p;
  if (state == "running") {
    p.head = fmt::format("{}: {}", kind, step.empty() ? "running" : step);
    std::string retry = ErrorMessage(op, "last_error");
    if (!retry.empty()) {
      p.tail = " - retrying after: " + Truncate(retry, kMaxRetryMessage);
    }
  } else if (state == "failed") {
    p.head = step.empty() ? fmt::format("{}: failed", kind)
                          : fmt::format("{}: failed at {}", kind, step);
  } else if (state.empty()) {
    p.head = fmt::format("{}: unknown state", kind);
  } else {
    p.head = fmt::format("{}: {}", kind, state);  // pending, succeeded
  }
  return p;
}

// Progress on stderr: one line rewritten in place on a terminal, else a line per change.
class Progress {
 public:
  Progress(std::ostream& err, bool terminal) : err_(err), terminal_(terminal) {}

  void Show(const ProgressParts& p, std::chrono::seconds elapsed) {
    std::string text = fmt::format("{} ({}s){}", p.head, elapsed.count(), p.tail);
    if (terminal_) {
      std::string line = "\r" + text;
      if (text.size() < width_) {
        line.append(width_ - text.size(), ' ');
      }
      width_ = text.size();
      err_ << line << std::flush;
      open_ = true;
      return;
    }
    std::string key = p.head + p.tail;
    if (key != last_key_) {
      err_ << text << '\n' << std::flush;
      last_key_ = std::move(key);
    }
  }

  // Ends a line rewritten in place.
  void End() {
    if (open_) {
      err_ << '\n' << std::flush;
      open_ = false;
    }
  }

 private:
  std::ostream& err_;
  bool terminal_;
  bool open_ = false;
  size_t width_ = 0;
  std::string last_key_;
};

Error FailureOf(const std::string& op_id, const Json& op) {
  std::string state = StringMember(op, "state");
  std::string message = ErrorMessage(op, "error");
  if (message.empty()) {
    message = state == "failed" ? "the operation failed"
                                : fmt::format("the operation ended in state '{}'", state);
  }
  ErrorCode code = ErrorCode::kInternal;
  if (op.contains("error") && op["error"].is_object()) {
    std::optional<ErrorCode> known = ErrorCodeFromName(StringMember(op["error"], "code"));
    if (known) {
      code = *known;
    }
  }
  std::string step = StringMember(op, "step");
  if (step.empty()) {
    return Error{code, fmt::format("operation {} failed: {}", op_id, message), {}};
  }
  return Error{code, fmt::format("operation {} failed at step {}: {}", op_id, step, message), {}};
}

// The next pause: the interval, but not past the deadline (and never zero, so a fake clock that
// only moves in sleep still gets there).
std::chrono::milliseconds Pause(std::chrono::milliseconds interval, TimePoint deadline,
                                TimePoint now) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
  return std::max(std::chrono::milliseconds(1), std::min(interval, left));
}

// ---- services --------------------------------------------------------------------------------

// Instance states in the order a summary lists them; others follow by name.
constexpr std::string_view kInstanceStates[] = {"pending", "scheduled", "starting", "running",
                                                "restarting", "exited",  "failed",  "removing"};

Json Instances(const Json& service) {
  if (service.is_object()) {
    auto it = service.find("instances");
    if (it != service.end() && it->is_array()) {
      return *it;
    }
  }
  return Json::array();
}

// The desired replicas, or -1 when the service does not say.
int64_t Replicas(const Json& service) {
  if (service.is_object()) {
    auto it = service.find("replicas");
    if (it != service.end() && it->is_number_integer()) {
      return it->get<int64_t>();
    }
  }
  return -1;
}

std::string ServiceLabel(const Json& service, const std::string& fallback_id) {
  std::string name = StringMember(service, "name");
  return name.empty() ? fallback_id : name;
}

// "0/2 running, 2 pending" (kRunning) or "1 running, 1 removing" / "no instances" (kStopped).
std::string InstanceSummary(const Json& service, ServiceGoal goal) {
  std::map<std::string, int64_t> counts;
  Json instances = Instances(service);
  for (const Json& i : instances) {
    std::string state = StringMember(i, "state");
    ++counts[state.empty() ? "unknown" : state];
  }
  std::vector<std::string> parts;
  if (goal == ServiceGoal::kRunning) {
    int64_t desired = Replicas(service);
    parts.push_back(fmt::format("{}/{} running", counts["running"],
                                desired < 0 ? static_cast<int64_t>(instances.size()) : desired));
    counts.erase("running");
  } else if (instances.empty()) {
    return "no instances";
  }
  for (std::string_view state : kInstanceStates) {
    auto it = counts.find(std::string(state));
    if (it != counts.end()) {
      if (it->second > 0) {
        parts.push_back(fmt::format("{} {}", it->second, it->first));
      }
      counts.erase(it);
    }
  }
  for (const auto& [state, n] : counts) {
    if (n > 0) {
      parts.push_back(fmt::format("{} {}", n, state));
    }
  }
  std::string out;
  for (const std::string& p : parts) {
    out += out.empty() ? p : ", " + p;
  }
  return out;
}

// Why the service is where it is: its own reason, else that of its first instance that is not
// running; empty when neither gives one.
std::string ServiceReason(const Json& service) {
  std::string reason = ErrorMessage(service, "reason");
  if (!reason.empty()) {
    return reason;
  }
  for (const Json& i : Instances(service)) {
    if (StringMember(i, "state") != "running") {
      reason = ErrorMessage(i, "reason");
      if (!reason.empty()) {
        return reason;
      }
    }
  }
  return "";
}

// "pending, 0/2 running, 2 pending"
std::string ServiceStatus(const Json& service, ServiceGoal goal) {
  std::string state = StringMember(service, "state");
  return fmt::format("{}, {}", state.empty() ? "unknown state" : state,
                     InstanceSummary(service, goal));
}

ProgressParts DescribeService(const Json& service, const std::string& id, ServiceGoal goal) {
  ProgressParts p;
  p.head = fmt::format("service {}: {}", ServiceLabel(service, id), ServiceStatus(service, goal));
  std::string reason = ServiceReason(service);
  if (!reason.empty()) {
    p.tail = " - " + Truncate(reason, kMaxRetryMessage);
  }
  return p;
}

}  // namespace

std::string ProgressText(const Json& op, std::chrono::seconds elapsed) {
  ProgressParts p = Describe(op);
  return fmt::format("{} ({}s){}", p.head, elapsed.count(), p.tail);
}

Result<Json> WaitForOperation(const std::string& op_id, const OperationFetcher& fetch,
                              const Clock& clock, const SleepFn& sleep, std::ostream& err,
                              bool err_is_terminal, const WaitSettings& settings) {
  const TimePoint start = clock.Now();
  const TimePoint deadline = start + settings.timeout;
  Progress progress(err, err_is_terminal);
  int unavailable = 0;
  std::string last_step = "-";
  for (;;) {
    Result<Json> op = fetch(op_id);
    TimePoint now = clock.Now();
    if (!op) {
      if (op.error().code == ErrorCode::kUnavailable &&
          ++unavailable < settings.max_unavailable_polls && now < deadline) {
        sleep(Pause(settings.interval, deadline, now));
        continue;
      }
      progress.End();
      return std::move(op).error();
    }
    unavailable = 0;
    auto elapsed = std::chrono::duration_cast<std::chrono::seconds>(now - start);
    progress.Show(Describe(*op), elapsed);
    std::string state = StringMember(*op, "state");
    if (state == "succeeded") {
      progress.End();
      return op;
    }
    if (state != "pending" && state != "running") {
      progress.End();
      return FailureOf(op_id, *op);
    }
    std::string step = StringMember(*op, "step");
    if (!step.empty()) {
      last_step = step;
    }
    if (now >= deadline) {
      progress.End();
      return Error::DeadlineExceeded(fmt::format(
          "gave up waiting for operation {} after {}s ({} at step {}); it goes on: see canopy "
          "operation show {}",
          op_id, settings.timeout.count(), state, last_step, op_id));
    }
    sleep(Pause(settings.interval, deadline, now));
  }
}

bool ServiceReached(const Json& service, ServiceGoal goal) {
  Json instances = Instances(service);
  if (goal == ServiceGoal::kStopped) {
    return instances.empty();
  }
  int64_t desired = Replicas(service);
  if (desired < 0 || static_cast<size_t>(desired) != instances.size()) {
    return false;
  }
  return std::all_of(instances.begin(), instances.end(),
                     [](const Json& i) { return StringMember(i, "state") == "running"; });
}

std::string ServiceProgressText(const Json& service, ServiceGoal goal,
                                std::chrono::seconds elapsed) {
  ProgressParts p = DescribeService(service, StringMember(service, "id"), goal);
  return fmt::format("{} ({}s){}", p.head, elapsed.count(), p.tail);
}

Result<Json> WaitForService(const std::string& service_id, ServiceGoal goal,
                            const ServiceFetcher& fetch, const Clock& clock, const SleepFn& sleep,
                            std::ostream& err, bool err_is_terminal,
                            const WaitSettings& settings) {
  const TimePoint start = clock.Now();
  const TimePoint deadline = start + settings.timeout;
  Progress progress(err, err_is_terminal);
  int unavailable = 0;
  for (;;) {
    Result<Json> service = fetch(service_id);
    TimePoint now = clock.Now();
    if (!service) {
      if (service.error().code == ErrorCode::kUnavailable &&
          ++unavailable < settings.max_unavailable_polls && now < deadline) {
        sleep(Pause(settings.interval, deadline, now));
        continue;
      }
      progress.End();
      return std::move(service).error();
    }
    unavailable = 0;
    auto elapsed = std::chrono::duration_cast<std::chrono::seconds>(now - start);
    progress.Show(DescribeService(*service, service_id, goal), elapsed);
    if (ServiceReached(*service, goal)) {
      progress.End();
      return service;
    }
    if (now >= deadline) {
      progress.End();
      std::string label = ServiceLabel(*service, service_id);
      std::string reason = ServiceReason(*service);
      return Error::DeadlineExceeded(fmt::format(
          "gave up waiting for service {} to {} after {}s ({}{}); the root keeps at it: see "
          "canopy service show {}",
          label, goal == ServiceGoal::kRunning ? "run" : "stop", settings.timeout.count(),
          ServiceStatus(*service, goal), reason.empty() ? "" : ": " + reason, label));
    }
    sleep(Pause(settings.interval, deadline, now));
  }
}

void RealSleep(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }

bool StderrIsTerminal() { return isatty(STDERR_FILENO) != 0; }

}  // namespace canopy::cli
