// Operations engine: runs persisted, step-wise operations (create cluster, add workers, ...).
// Each kind is a state machine of named steps. Workers (std::jthread) claim due operations under a
// lease, renew it while working, run one step at a time and persist every transition with a
// compare-and-swap on `version`. Delivery is at-least-once: a step may run again after a crash,
// so steps must be idempotent. Engine is thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/result.h"
#include "core/types.h"
#include "store/store.h"

namespace canopy::ops {

// What a step tells the engine.
struct StepResult {
  enum class Kind {
    kNext,     // step done: advance (or succeed after the last step)
    kWait,     // not done yet, nothing failed (e.g. waiting for a VM): run again after `delay`
    kSucceed,  // the whole operation is done now (skip remaining steps)
  };
  Kind kind = Kind::kNext;
  std::chrono::milliseconds delay{0};

  static StepResult Next() { return {Kind::kNext, {}}; }
  static StepResult Wait(std::chrono::milliseconds d) { return {Kind::kWait, d}; }
  static StepResult Succeed() { return {Kind::kSucceed, {}}; }
};

// Passed to a step. `op.data` may be changed by the step; it is persisted with the transition.
struct StepContext {
  core::Operation& op;
  store::Store& store;
  const Clock& clock;
  std::stop_token stop;  // requested when the engine stops; long steps should check it
};

// One operation kind. A step returning an error: retryable codes (IsRetryable) are retried with
// capped exponential backoff and jitter up to max_attempts; other codes fail the operation.
// One instance serves every operation of its kind from all workers at once: it must be
// thread-safe (keep per-operation state in op.data, not in members).
class OperationKind {
 public:
  virtual ~OperationKind() = default;
  virtual std::string Name() const = 0;
  virtual std::vector<std::string> Steps() const = 0;
  // The step names of one operation with this `data`, fixed at Enqueue and persisted with the
  // operation (the engine never calls Steps() for a stored operation). Kinds whose step list
  // depends on their input override this; it also validates `data` (kInvalidArgument), so a bad
  // request fails at Enqueue rather than in a worker. Defaults to Steps().
  virtual Result<std::vector<std::string>> StepsFor(const Json& /*data*/) const { return Steps(); }
  virtual Result<StepResult> RunStep(size_t step, StepContext& ctx) = 0;
  // Called once when the operation fails terminally (cleanup hook; must be idempotent).
  virtual void OnFailed(StepContext& /*ctx*/) {}
  // Tries of one step before a retryable error becomes terminal (attempt + 1 < MaxAttempts).
  virtual int MaxAttempts() const { return 8; }
};
using OperationKindPtr = std::unique_ptr<OperationKind>;

struct EngineOptions {
  // Lease owner id (unique per process; generated when empty). Worker i holds leases as
  // "<owner>/w<i>", so two workers of one engine never share a lease.
  std::string owner;
  size_t workers = 4;
  std::chrono::milliseconds lease{15000};
  std::chrono::milliseconds poll_interval{500};
  std::chrono::milliseconds backoff_base{500};
  std::chrono::milliseconds backoff_max{60000};
  // Tests only (crash injection): called after a step returns and before its outcome is
  // persisted, the most dangerous moment to die (the cloud call happened, the engine has not
  // recorded it). `canopyd root --test-kill-after-step KIND/STEP` raises SIGKILL here once;
  // in-process tests return true instead, and the worker drops the operation as a killed process
  // would: nothing more is written, the lease runs out and the operation is claimed again.
  std::function<bool(const core::Operation& op, const std::string& step_name)> after_step_hook;
};

// Where request handlers and operations put new operations: what they need of the engine and
// no more. Implemented by Engine. Thread-safe.
class OperationQueue {
 public:
  virtual ~OperationQueue() = default;
  // Builds a new pending operation of `kind` for `target_id` with `data` and stores it through
  // `tx` (so callers can create it in the same transaction as the desired state). kNotFound for
  // an unknown kind. Call Wake() after the transaction commits.
  virtual Result<core::Operation> Enqueue(store::Store& tx, const std::string& kind,
                                          const std::string& target_id, Json data) const = 0;
  virtual void Wake() = 0;  // new work is due: skip the poll wait
};

// Transitions (each one persisted with a CAS; a kConflict means another worker owns the
// operation now, and this one drops it without writing again):
//   claim -> state running, current step running (started_at kept from its first try) -> run:
//   Next     step succeeded; the next step runs under the same lease; after the last one the
//            operation succeeded and the lease is released.
//   Wait(d)  run again at now+d; lease released; attempt reset (waiting is not failing).
//   Succeed  operation succeeded; the remaining steps are marked succeeded with null timestamps.
//   error    retryable and attempt+1 < MaxAttempts(): attempt++, last_error_* set, run again
//            after Backoff(attempt) (full jitter, common/backoff.h), lease released. Otherwise the
//            step and the operation fail, OnFailed() runs, then the failure is persisted.
//   stop     a step that returns (any error) while the engine stops is not counted as an
//            attempt: the operation is released, due now, and the step runs again elsewhere.
//   lost     when lease renewal (every lease/3) finds another owner, the step's stop token is
//            requested and nothing more is written.
// All timestamps and due times come from the injected Clock; poll and renewal sleeps are wall time.
class Engine final : public OperationQueue {
 public:
  Engine(store::Store& store, ClockPtr clock, IdGeneratorPtr ids, EngineOptions opts);
  ~Engine();  // Stop()s

  // kAlreadyExists for a duplicate name. Call before Start().
  Status Register(OperationKindPtr kind);
  bool HasKind(const std::string& name) const;

  Result<core::Operation> Enqueue(store::Store& tx, const std::string& kind,
                                  const std::string& target_id, Json data) const override;

  void Start();
  void Stop();
  void Wake() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// JSON view of an operation for the API:
//   {id, kind, target_id, state, step, step_index, steps:[{name,state,started_at,finished_at}],
//    attempt, created_at, updated_at, error?:{code,message}, last_error?:{code,message}}
// `step` is the name of the current step (for a failed operation, the step that failed), null once
// every step is done. Timestamps are RFC 3339, null when unset. `error` appears only when the
// operation failed; `last_error` only while it is retrying after an error. op.data never appears.
Json OperationToJson(const core::Operation& op);

}  // namespace canopy::ops
