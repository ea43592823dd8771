// --wait: follows one long-running operation (GET /api/v1/operations/{id}) until it succeeds or
// fails, showing progress on stderr only. Time comes from the injected Clock and the pauses from
// an injected sleep, so tests neither read the system clock nor really sleep. Used by
// cli/commands. Thread-compatible.
#pragma once

#include <chrono>
#include <functional>
#include <iosfwd>
#include <string>

#include "common/clock.h"
#include "common/json.h"
#include "common/result.h"

namespace canopy::cli {

// Pauses the calling thread (std::this_thread::sleep_for in the binary; fakes in tests).
using SleepFn = std::function<void(std::chrono::milliseconds)>;
// Fetches the operation with the given id (its JSON as served by the API).
using OperationFetcher = std::function<Result<Json>(const std::string& op_id)>;

struct WaitSettings {
  std::chrono::milliseconds interval{500};  // between two polls
  std::chrono::seconds timeout{1800};       // --timeout
  // Consecutive polls allowed to fail with kUnavailable (root briefly unreachable) before giving
  // up; any other poll failure ends the wait at once.
  int max_unavailable_polls = 20;
};

// The progress text of one poll, e.g. "cluster.create: step 4/8 instance (12s)". Values from the
// server have control characters replaced.
std::string ProgressText(const Json& op, std::chrono::seconds elapsed);

// Polls `fetch(op_id)` every settings.interval until the operation's state is "succeeded" (returns
// the final operation) or "failed" (Error "operation <id> failed at step <S>: <message>"), or
// settings.timeout passes (kDeadlineExceeded). Progress goes to `err`: with `err_is_terminal` one
// line rewritten in place with "\r", else one line per change of state or step. The progress is
// always ended with a newline before returning, so an error line starts on a line of its own.
Result<Json> WaitForOperation(const std::string& op_id, const OperationFetcher& fetch,
                              const Clock& clock, const SleepFn& sleep, std::ostream& err,
                              bool err_is_terminal, const WaitSettings& settings = {});

// Real sleep (std::this_thread::sleep_for).
void RealSleep(std::chrono::milliseconds d);

// Whether standard error is a terminal (isatty(2)).
bool StderrIsTerminal();

}  // namespace canopy::cli
