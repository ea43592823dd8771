#include "cli/wait.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <optional>
#include <ostream>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "cli/api_client.h"
#include "cli/commands.h"
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

size_t StepCount(const Json& op) {
  return op.is_object() && op.contains("steps") && op["steps"].is_array() ? op["steps"].size() : 0;
}

// The index of the current step: step_index, else the position of the named step; nullopt when
// neither says.
std::optional<size_t> CurrentStepIndex(const Json& op) {
  if (!op.is_object()) {
    return std::nullopt;
  }
  if (op.contains("step_index") && op["step_index"].is_number_integer() &&
      op["step_index"].get<int64_t>() >= 0) {
    return static_cast<size_t>(op["step_index"].get<int64_t>());
  }
  std::string name = StringMember(op, "step");
  size_t total = StepCount(op);
  if (!name.empty()) {
    for (size_t i = 0; i < total; ++i) {
      if (op["steps"][i].is_object() && StringMember(op["steps"][i], "name") == name) {
        return i;
      }
    }
  }
  return std::nullopt;
}

// "step 4/8 instance" for the step at `index` (0-based) of `total`, named `name`.
std::string StepLabel(size_t index, size_t total, const std::string& name) {
  size_t pos = std::min(index + 1, total);
  return name.empty() ? fmt::format("step {}/{}", pos, total)
                      : fmt::format("step {}/{} {}", pos, total, name);
}

// "step 4/8 instance": the 1-based position of the current step.
std::string StepText(const Json& op) {
  std::string name = StringMember(op, "step");
  size_t total = StepCount(op);
  std::optional<size_t> index = CurrentStepIndex(op);
  if (!index || total == 0) {
    return name.empty() ? "" : fmt::format("step {}", name);
  }
  return StepLabel(*index, total, name);
}

// How many steps lie behind the operation: every step before the current one, all of them once
// it succeeded; nullopt when the operation does not say where it is.
std::optional<size_t> StepsPassed(const Json& op) {
  size_t total = StepCount(op);
  if (StringMember(op, "state") == "succeeded") {
    return total;
  }
  std::optional<size_t> index = CurrentStepIndex(op);
  if (!index) {
    return std::nullopt;
  }
  return std::min(*index, total);
}

// "0.4s", "12s", "3m05s", "1h02m".
std::string FormatDuration(std::chrono::milliseconds d) {
  int64_t ms = std::max<int64_t>(0, d.count());
  if (ms < 10'000) {
    return fmt::format("{}.{}s", ms / 1000, (ms % 1000) / 100);
  }
  int64_t s = ms / 1000;
  if (s < 60) {
    return fmt::format("{}s", s);
  }
  if (s < 3600) {
    return fmt::format("{}m{:02}s", s / 60, s % 60);
  }
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

std::optional<TimePoint> TimeMember(const Json& obj, const char* key) {
  if (!obj.is_object()) {
    return std::nullopt;
  }
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) {
    return std::nullopt;
  }
  return ParseRfc3339(it->get<std::string>());
}

// The permanent line of a step the operation has passed, e.g.
// "cluster.create: step 2/8 firewalls done in 0.4s". A step that succeeded with null times never
// ran (the operation finished early: "skipped"); the time taken is shown when the step says when
// it started and finished.
std::string PassedStepText(const Json& op, size_t index) {
  std::string kind = StringMember(op, "kind");
  if (kind.empty()) {
    kind = "operation";
  }
  const Json& step = op["steps"][index];
  std::string label = StepLabel(index, StepCount(op), StringMember(step, "name"));
  std::string state = StringMember(step, "state");
  std::optional<TimePoint> started = TimeMember(step, "started_at");
  std::optional<TimePoint> finished = TimeMember(step, "finished_at");
  std::string took;
  if (started && finished) {
    took =
        FormatDuration(std::chrono::duration_cast<std::chrono::milliseconds>(*finished - *started));
  }
  if (state == "failed") {
    return took.empty() ? fmt::format("{}: {} failed", kind, label)
                        : fmt::format("{}: {} failed after {}", kind, label, took);
  }
  // The engine sends null times for a step that never ran; a root that sends no times at all
  // says nothing about it.
  auto is_null = [&step](const char* key) {
    auto it = step.find(key);
    return it != step.end() && it->is_null();
  };
  if (state == "succeeded" && is_null("started_at") && is_null("finished_at")) {
    return fmt::format("{}: {} skipped", kind, label);
  }
  return took.empty() ? fmt::format("{}: {} done", kind, label)
                      : fmt::format("{}: {} done in {}", kind, label, took);
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

// Progress on stderr: one line rewritten in place on a terminal, else a line per change; lines
// that must stay (steps passed) are written in full on both.
class Progress {
 public:
  Progress(std::ostream& err, bool terminal) : err_(err), terminal_(terminal) {}

  bool terminal() const { return terminal_; }

  // Shows `p`; returns whether a new line was written (always on a terminal).
  bool Show(const ProgressParts& p, std::chrono::seconds elapsed) {
    std::string text = fmt::format("{} ({}s){}", p.head, elapsed.count(), p.tail);
    if (terminal_) {
      Rewrite(text);
      open_ = true;
      return true;
    }
    std::string key = p.head + p.tail;
    if (key != last_key_) {
      err_ << text << '\n' << std::flush;
      last_key_ = std::move(key);
      return true;
    }
    return false;
  }

  // A line that stays: on a terminal it takes the place of the line being rewritten.
  void Permanent(const std::string& text) {
    if (terminal_) {
      Rewrite(text);
      err_ << '\n' << std::flush;
      open_ = false;
      width_ = 0;
      return;
    }
    err_ << text << '\n' << std::flush;
  }

  // Ends a line rewritten in place.
  void End() {
    if (open_) {
      err_ << '\n' << std::flush;
      open_ = false;
      width_ = 0;
    }
  }

 private:
  // Writes `text` over the current line, blanking out what is left of a longer text before it.
  void Rewrite(const std::string& text) {
    std::string line = "\r" + text;
    if (text.size() < width_) {
      line.append(width_ - text.size(), ' ');
    }
    width_ = text.size();
    err_ << line << std::flush;
  }

  std::ostream& err_;
  bool terminal_;
  bool open_ = false;
  size_t width_ = 0;
  std::string last_key_;
};

// Shows each poll of an operation so that every step it passes gets a line, in order, even when
// several steps finish between two polls (a poll sees only the current one).
class OperationProgress {
 public:
  OperationProgress(std::ostream& err, bool terminal) : progress_(err, terminal) {}

  void Show(const Json& op, std::chrono::seconds elapsed) {
    std::optional<size_t> passed = StepsPassed(op);
    if (passed) {
      // On a terminal a step's line only stays once the step is over; elsewhere the line
      // printed when the step was current already stays, so only steps never seen get one.
      for (size_t i = reported_; i < *passed; ++i) {
        progress_.Permanent(PassedStepText(op, i));
      }
      reported_ = std::max(reported_, *passed);
    }
    bool printed = progress_.Show(Describe(op), elapsed);
    if (printed && !progress_.terminal() && StringMember(op, "state") == "running" && passed &&
        *passed < StepCount(op)) {
      reported_ = std::max(reported_, *passed + 1);
    }
  }

  void End() { progress_.End(); }

 private:
  Progress progress_;
  size_t reported_ = 0;  // steps [0, reported_) have a line that stays
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
constexpr std::string_view kInstanceStates[] = {"pending",    "scheduled", "starting", "running",
                                                "restarting", "exited",    "failed",   "removing"};

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
  OperationProgress progress(err, err_is_terminal);
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
    progress.Show(*op, elapsed);
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
                            std::ostream& err, bool err_is_terminal, const WaitSettings& settings) {
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
