// --wait: follows one long-running operation (GET /api/v1/operations/{id}) until it succeeds or
// fails, or one service (GET /api/v1/services/{id}) until its instances run or are gone, showing
// progress on stderr only. Time comes from the injected Clock and the pauses from
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
// settings.timeout passes (kDeadlineExceeded). Progress goes to `err`: with `err_is_terminal` the
// current step's line is rewritten in place with "\r" and each step the operation passes becomes a
// line that stays ("kind: step 2/8 firewalls done in 0.4s", or "skipped" for a step an early
// finish never ran); else one line per change of state or step. Either way every step passed gets
// a line, in order, also those that began and ended between two polls, and before the line that
// says the operation succeeded or failed. The progress is always ended with a newline before
// returning, so an error line starts on a line of its own.
Result<Json> WaitForOperation(const std::string& op_id, const OperationFetcher& fetch,
                              const Clock& clock, const SleepFn& sleep, std::ostream& err,
                              bool err_is_terminal, const WaitSettings& settings = {});

// What --wait on a service waits for.
enum class ServiceGoal {
  kRunning,  // as many instances as the service's replicas, every one "running"
  kStopped,  // no instances left
};

// Fetches the service with the given id (its JSON as served by the API).
using ServiceFetcher = std::function<Result<Json>(const std::string& service_id)>;

// Whether `service` has reached `goal`.
bool ServiceReached(const Json& service, ServiceGoal goal);

// The progress text of one poll, e.g. "service web: pending, 0/2 running, 2 pending (3s) -
// no_worker_capacity: ...": the service's state, its instances by state and the reason the
// service (else its first instance that is not running) gives. Values from the server have
// control characters replaced.
std::string ServiceProgressText(const Json& service, ServiceGoal goal,
                                std::chrono::seconds elapsed);

// Polls `fetch(service_id)` every settings.interval until ServiceReached (returns the service) or
// settings.timeout passes (kDeadlineExceeded: "gave up waiting for service <name> to run after
// <N>s (<state>, <instances>: <reason>); ..."). Other poll failures end the wait at once (a
// kUnavailable one only after settings.max_unavailable_polls in a row). Progress as for
// WaitForOperation.
Result<Json> WaitForService(const std::string& service_id, ServiceGoal goal,
                            const ServiceFetcher& fetch, const Clock& clock, const SleepFn& sleep,
                            std::ostream& err, bool err_is_terminal,
                            const WaitSettings& settings = {});

// Real sleep (std::this_thread::sleep_for).
void RealSleep(std::chrono::milliseconds d);

// Whether standard error is a terminal (isatty(2)).
bool StderrIsTerminal();

}  // namespace canopy::cli
