#include "cli/wait.h"

#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <ostream>
#include <thread>
#include <utility>

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

  void Show(const Json& op, std::chrono::seconds elapsed) {
    ProgressParts p = Describe(op);
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

void RealSleep(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }

bool StderrIsTerminal() { return isatty(STDERR_FILENO) != 0; }

}  // namespace canopy::cli
