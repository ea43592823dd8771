#include "ops/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>

#include "common/backoff.h"
#include "common/log.h"

namespace canopy::ops {
namespace {

using core::Operation;
using core::OperationState;
using core::StepState;

// The lease on one claimed operation, shared by the worker running it and the lease keeper.
struct HeldLease {
  std::string op_id;
  std::string owner;
  std::atomic<TimePoint> until{};
  // Set by the keeper when RenewLease says another owner holds the operation now.
  std::atomic<bool> lost{false};
  // Set by the worker just before it writes the release, so the keeper leaves the lease alone.
  std::atomic<bool> releasing{false};
  // Requested on engine stop or a lost lease; its token is the step's StepContext::stop.
  std::stop_source stop;
};

// Runs a step, turning an escaped exception into a terminal error (third-party code in a step
// must not take the worker thread down).
Result<StepResult> InvokeStep(OperationKind& kind, size_t step, StepContext& ctx) {
  try {
    return kind.RunStep(step, ctx);
  } catch (const std::exception& e) {
    SPDLOG_ERROR("Step threw an exception op={} kind={} step={} what={}", ctx.op.id, ctx.op.kind,
                 step, e.what());
  } catch (...) {
    SPDLOG_ERROR("Step threw an exception op={} kind={} step={}", ctx.op.id, ctx.op.kind, step);
  }
  return Error::Internal("the step failed unexpectedly");
}

void InvokeOnFailed(OperationKind& kind, StepContext& ctx) {
  try {
    kind.OnFailed(ctx);
  } catch (const std::exception& e) {
    SPDLOG_ERROR("Failure hook threw an exception op={} kind={} what={}", ctx.op.id, ctx.op.kind,
                 e.what());
  } catch (...) {
    SPDLOG_ERROR("Failure hook threw an exception op={} kind={}", ctx.op.id, ctx.op.kind);
  }
}

bool HasCurrentStep(const Operation& op) {
  return op.step >= 0 && static_cast<size_t>(op.step) < op.steps.size();
}

void SetError(Operation& op, const Error& err) {
  op.last_error_code = std::string(ErrorCodeName(err.code));
  op.last_error_message = err.message;
}

void ClearError(Operation& op) {
  op.last_error_code.clear();
  op.last_error_message.clear();
}

}  // namespace

struct Engine::Impl {
  Impl(store::Store& s, ClockPtr c, IdGeneratorPtr i, EngineOptions o)
      : store(s), clock(std::move(c)), ids(std::move(i)), opts(std::move(o)) {
    if (opts.owner.empty()) {
      opts.owner = ids->NewId("engine");
    }
    opts.lease = std::max(opts.lease, std::chrono::milliseconds(3));
    opts.poll_interval = std::max(opts.poll_interval, std::chrono::milliseconds(1));
  }

  std::shared_ptr<OperationKind> FindKind(const std::string& name) const {
    std::lock_guard<std::mutex> l(kinds_mu);
    auto it = kinds.find(name);
    return it == kinds.end() ? nullptr : it->second;
  }

  void WorkerLoop(std::stop_token st, size_t index);
  void KeeperLoop(std::stop_token st);
  void RunClaimed(Operation op, const std::string& owner, const std::stop_token& worker_stop);
  bool Persist(Operation& op, HeldLease& lease, bool release);
  void FailUnknownKind(Operation& op, HeldLease& lease);

  void AddLease(const std::shared_ptr<HeldLease>& lease) {
    std::lock_guard<std::mutex> l(leases_mu);
    leases.push_back(lease);
  }
  void RemoveLease(const std::shared_ptr<HeldLease>& lease) {
    std::lock_guard<std::mutex> l(leases_mu);
    leases.erase(std::remove(leases.begin(), leases.end(), lease), leases.end());
  }

  store::Store& store;
  ClockPtr clock;
  IdGeneratorPtr ids;
  EngineOptions opts;

  mutable std::mutex kinds_mu;
  std::map<std::string, std::shared_ptr<OperationKind>> kinds;

  // Wake-ups: Wake() bumps the generation; a worker that saw an older one skips its poll wait.
  std::mutex wake_mu;
  std::condition_variable_any wake_cv;
  uint64_t wake_gen = 0;

  std::mutex leases_mu;
  std::condition_variable_any keeper_cv;
  std::vector<std::shared_ptr<HeldLease>> leases;

  std::mutex threads_mu;  // serializes Start() and Stop()
  std::vector<std::jthread> workers;
  std::jthread keeper;
};

void Engine::Impl::WorkerLoop(std::stop_token st, size_t index) {
  const std::string owner = fmt::format("{}/w{}", opts.owner, index);
  while (!st.stop_requested()) {
    uint64_t seen = 0;
    {
      std::lock_guard<std::mutex> l(wake_mu);
      seen = wake_gen;
    }
    TimePoint now = clock->Now();
    auto claimed = store.operations().ClaimDue(owner, now, now + opts.lease, 1);
    if (!claimed) {
      SPDLOG_WARN("Claiming operations failed worker={} error={}", owner,
                  claimed.error().ToString());
    } else if (!claimed->empty()) {
      for (Operation& op : *claimed) {
        RunClaimed(std::move(op), owner, st);
      }
      continue;  // there may be more due work: claim again before sleeping
    }
    std::unique_lock<std::mutex> l(wake_mu);
    wake_cv.wait_for(l, st, opts.poll_interval, [&] { return wake_gen != seen; });
  }
}

void Engine::Impl::KeeperLoop(std::stop_token st) {
  const auto interval = std::max(opts.lease / 3, std::chrono::milliseconds(1));
  while (!st.stop_requested()) {
    {
      std::unique_lock<std::mutex> l(leases_mu);
      keeper_cv.wait_for(l, st, interval, [] { return false; });
    }
    std::vector<std::shared_ptr<HeldLease>> held;
    {
      std::lock_guard<std::mutex> l(leases_mu);
      held = leases;
    }
    for (const auto& lease : held) {
      if (lease->lost || lease->releasing) {
        continue;
      }
      TimePoint until = clock->Now() + opts.lease;
      Status s = store.operations().RenewLease(lease->op_id, lease->owner, until);
      if (s) {
        TimePoint prev = lease->until.load();
        while (prev < until && !lease->until.compare_exchange_weak(prev, until)) {
        }
      } else if (s.error().code == ErrorCode::kConflict) {
        if (lease->releasing) {
          continue;  // the worker released it meanwhile
        }
        lease->lost = true;
        lease->stop.request_stop();
        SPDLOG_WARN("Lease lost, abandoning operation op={} worker={}", lease->op_id, lease->owner);
      } else {
        // The lease is still ours until it expires; the next tick tries again.
        SPDLOG_WARN("Renewing lease failed op={} worker={} error={}", lease->op_id, lease->owner,
                    s.error().ToString());
      }
    }
  }
}

// Writes `op` with a compare-and-swap on its version. With `release`, the lease is given up in
// the same write. False when the operation must be dropped: the lease was lost, another worker
// moved the version on (kConflict), or the store failed (the lease then expires and the
// operation is resumed from its last persisted state).
bool Engine::Impl::Persist(Operation& op, HeldLease& lease, bool release) {
  if (lease.lost) {
    SPDLOG_WARN("Lease lost, abandoning operation op={} kind={} step={}", op.id, op.kind, op.step);
    return false;
  }
  op.updated_at = clock->Now();
  if (release) {
    lease.releasing = true;
    op.lease_owner.clear();
    op.lease_until = TimePoint{};
  } else {
    op.lease_owner = lease.owner;
    op.lease_until = lease.until.load();
  }
  Status s = store.operations().Update(op);
  if (!s) {
    if (s.error().code == ErrorCode::kConflict) {
      SPDLOG_WARN("Operation changed by another worker, dropping it op={} kind={} step={}", op.id,
                  op.kind, op.step);
    } else {
      SPDLOG_ERROR("Persisting operation failed, dropping it op={} kind={} step={} error={}", op.id,
                   op.kind, op.step, s.error().ToString());
    }
    return false;
  }
  ++op.version;
  return true;
}

void Engine::Impl::FailUnknownKind(Operation& op, HeldLease& lease) {
  TimePoint now = clock->Now();
  op.state = OperationState::kFailed;
  if (HasCurrentStep(op)) {
    auto& step = op.steps[static_cast<size_t>(op.step)];
    step.state = StepState::kFailed;
    step.finished_at = now;
  }
  SetError(op, Error::Internal(
                   fmt::format("operation kind '{}' is not supported by this server", op.kind)));
  SPDLOG_ERROR("Failing operation of unknown kind op={} kind={}", op.id, op.kind);
  Persist(op, lease, /*release=*/true);
}

void Engine::Impl::RunClaimed(Operation op, const std::string& owner,
                              const std::stop_token& worker_stop) {
  auto lease = std::make_shared<HeldLease>();
  lease->op_id = op.id;
  lease->owner = owner;
  lease->until = op.lease_until;
  AddLease(lease);
  struct Unregister {
    Impl* impl;
    std::shared_ptr<HeldLease> lease;
    ~Unregister() { impl->RemoveLease(lease); }
  } unregister{this, lease};
  std::stop_callback forward_stop(worker_stop, [&lease] { lease->stop.request_stop(); });

  std::shared_ptr<OperationKind> kind = FindKind(op.kind);
  if (kind == nullptr) {
    FailUnknownKind(op, *lease);
    return;
  }

  while (true) {
    TimePoint now = clock->Now();
    if (!HasCurrentStep(op)) {
      // No step left (an operation with no steps): nothing to do but finish.
      op.state = OperationState::kSucceeded;
      op.step = static_cast<int64_t>(op.steps.size());
      Persist(op, *lease, /*release=*/true);
      SPDLOG_INFO("Operation succeeded op={} kind={}", op.id, op.kind);
      return;
    }
    if (worker_stop.stop_requested()) {
      // Claimed just as the engine stops: hand it back untouched for another engine.
      op.next_run_at = now;
      Persist(op, *lease, /*release=*/true);
      return;
    }
    const size_t index = static_cast<size_t>(op.step);
    op.state = OperationState::kRunning;
    {
      auto& step = op.steps[index];
      step.state = StepState::kRunning;
      if (!step.started_at) {
        step.started_at = now;
      }
    }
    // This write also proves we still own the operation before the step has side effects.
    if (!Persist(op, *lease, /*release=*/false)) {
      return;
    }

    SPDLOG_INFO("Running step op={} kind={} step={} step_name={} attempt={} worker={}", op.id,
                op.kind, index, op.steps[index].name, op.attempt, owner);
    StepContext ctx{op, store, *clock, lease->stop.get_token()};
    Result<StepResult> r = InvokeStep(*kind, index, ctx);
    if (opts.after_step_hook && opts.after_step_hook(op, op.steps[index].name)) {
      SPDLOG_WARN("Test crash after step: dropping the operation op={} kind={} step={}", op.id,
                  op.kind, index);
      return;
    }

    if (lease->lost) {
      SPDLOG_WARN("Lease lost during step, abandoning operation op={} kind={} step={}", op.id,
                  op.kind, index);
      return;
    }
    const bool stopping = worker_stop.stop_requested();
    now = clock->Now();
    auto& step = op.steps[index];

    if (r) {
      switch (r->kind) {
        case StepResult::Kind::kNext: {
          step.state = StepState::kSucceeded;
          step.finished_at = now;
          op.step = static_cast<int64_t>(index + 1);
          op.attempt = 0;
          ClearError(op);
          op.next_run_at = now;
          if (index + 1 >= op.steps.size()) {
            op.state = OperationState::kSucceeded;
            if (Persist(op, *lease, /*release=*/true)) {
              SPDLOG_INFO("Operation succeeded op={} kind={} step={} step_name={}", op.id, op.kind,
                          index, step.name);
            }
            return;
          }
          // On shutdown, hand the operation back at once rather than start another step.
          if (!Persist(op, *lease, /*release=*/stopping)) {
            return;
          }
          SPDLOG_INFO("Step succeeded op={} kind={} step={} step_name={}", op.id, op.kind, index,
                      step.name);
          if (stopping) {
            return;
          }
          continue;
        }
        case StepResult::Kind::kWait: {
          // A wait is a healthy observation ("not ready yet"): the error count starts over.
          op.attempt = 0;
          ClearError(op);
          op.next_run_at = now + std::max(r->delay, std::chrono::milliseconds(0));
          if (Persist(op, *lease, /*release=*/true)) {
            SPDLOG_INFO("Step waiting op={} kind={} step={} step_name={} delay_ms={}", op.id,
                        op.kind, index, step.name, r->delay.count());
          }
          return;
        }
        case StepResult::Kind::kSucceed: {
          step.state = StepState::kSucceeded;
          step.finished_at = now;
          // The remaining steps are not needed: they count as succeeded but keep null
          // timestamps, which shows they never ran.
          for (size_t i = index + 1; i < op.steps.size(); ++i) {
            op.steps[i].state = StepState::kSucceeded;
          }
          op.step = static_cast<int64_t>(op.steps.size());
          op.attempt = 0;
          ClearError(op);
          op.next_run_at = now;
          op.state = OperationState::kSucceeded;
          if (Persist(op, *lease, /*release=*/true)) {
            SPDLOG_INFO("Operation succeeded early op={} kind={} step={} step_name={}", op.id,
                        op.kind, index, step.name);
          }
          return;
        }
      }
      return;
    }

    const Error& err = r.error();
    if (stopping) {
      // The step most likely gave up because of the stop: not a failure, so the attempt does
      // not count. The step runs again (at-least-once) wherever the operation is claimed next.
      op.next_run_at = now;
      if (Persist(op, *lease, /*release=*/true)) {
        SPDLOG_INFO("Step interrupted by shutdown op={} kind={} step={} step_name={}", op.id,
                    op.kind, index, step.name);
      }
      return;
    }
    SetError(op, err);
    if (IsRetryable(err.code) && op.attempt + 1 < kind->MaxAttempts()) {
      auto delay = Backoff(op.attempt, opts.backoff_base, opts.backoff_max);
      ++op.attempt;
      op.next_run_at = now + delay;
      if (Persist(op, *lease, /*release=*/true)) {
        SPDLOG_WARN(
            "Step failed, retrying op={} kind={} step={} step_name={} attempt={} delay_ms={} "
            "error={}",
            op.id, op.kind, index, step.name, op.attempt, delay.count(), err.ToString());
      }
      return;
    }
    step.state = StepState::kFailed;
    step.finished_at = now;
    op.state = OperationState::kFailed;
    op.next_run_at = now;
    // The hook runs before the failed state is stored: a crash in between re-runs the step and
    // the hook (at-least-once, hence idempotent hooks) instead of losing the cleanup.
    InvokeOnFailed(*kind, ctx);
    if (Persist(op, *lease, /*release=*/true)) {
      SPDLOG_ERROR("Operation failed op={} kind={} step={} step_name={} attempt={} error={}", op.id,
                   op.kind, index, step.name, op.attempt, err.ToString());
    }
    return;
  }
}

Engine::Engine(store::Store& store, ClockPtr clock, IdGeneratorPtr ids, EngineOptions opts)
    : impl_(std::make_unique<Impl>(store, std::move(clock), std::move(ids), std::move(opts))) {}

Engine::~Engine() { Stop(); }

Status Engine::Register(OperationKindPtr kind) {
  if (kind == nullptr) {
    return Error::InvalidArgument("operation kind is null");
  }
  std::string name = kind->Name();
  std::lock_guard<std::mutex> l(impl_->kinds_mu);
  if (impl_->kinds.count(name) != 0) {
    return Error::AlreadyExists(fmt::format("operation kind '{}' is already registered", name));
  }
  impl_->kinds.emplace(std::move(name), std::shared_ptr<OperationKind>(std::move(kind)));
  return OkStatus();
}

bool Engine::HasKind(const std::string& name) const { return impl_->FindKind(name) != nullptr; }

Result<core::Operation> Engine::Enqueue(store::Store& tx, const std::string& kind,
                                        const std::string& target_id, Json data) const {
  std::shared_ptr<OperationKind> k = impl_->FindKind(kind);
  if (k == nullptr) {
    return Error::NotFound(fmt::format("unknown operation kind '{}'", kind));
  }
  if (data.is_null()) {
    data = Json::object();
  }
  if (!data.is_object()) {
    return Error::InvalidArgument("operation data must be a JSON object");
  }
  CANOPY_ASSIGN_OR_RETURN(std::vector<std::string> names, k->StepsFor(data));

  core::Operation op;
  op.id = impl_->ids->NewId("op");
  op.kind = kind;
  op.target_id = target_id;
  op.state = OperationState::kPending;
  op.step = 0;
  for (auto& name : names) {
    core::OperationStep step;
    step.name = std::move(name);
    op.steps.push_back(std::move(step));
  }
  op.attempt = 0;
  TimePoint now = impl_->clock->Now();
  op.next_run_at = now;
  op.data = std::move(data);
  op.version = 1;
  op.created_at = now;
  op.updated_at = now;
  CANOPY_TRY(tx.operations().Create(op));
  SPDLOG_DEBUG("Enqueued operation op={} kind={} target={} steps={}", op.id, op.kind, op.target_id,
               op.steps.size());
  return op;
}

void Engine::Start() {
  std::lock_guard<std::mutex> l(impl_->threads_mu);
  if (!impl_->workers.empty()) {
    return;
  }
  Impl* impl = impl_.get();
  SPDLOG_INFO("Starting operations engine owner={} workers={} lease_ms={}", impl->opts.owner,
              impl->opts.workers, impl->opts.lease.count());
  impl->keeper = std::jthread([impl](std::stop_token st) { impl->KeeperLoop(std::move(st)); });
  for (size_t i = 0; i < impl->opts.workers; ++i) {
    impl->workers.emplace_back(
        [impl, i](std::stop_token st) { impl->WorkerLoop(std::move(st), i); });
  }
}

void Engine::Stop() {
  std::lock_guard<std::mutex> l(impl_->threads_mu);
  if (impl_->workers.empty() && !impl_->keeper.joinable()) {
    return;
  }
  SPDLOG_INFO("Stopping operations engine owner={}", impl_->opts.owner);
  for (auto& w : impl_->workers) {
    w.request_stop();
  }
  // Workers finish (or abandon) their current step first; the keeper renews leases until then.
  for (auto& w : impl_->workers) {
    w.join();
  }
  impl_->workers.clear();
  if (impl_->keeper.joinable()) {
    impl_->keeper.request_stop();
    impl_->keeper.join();
  }
  SPDLOG_INFO("Operations engine stopped owner={}", impl_->opts.owner);
}

void Engine::Wake() {
  {
    std::lock_guard<std::mutex> l(impl_->wake_mu);
    ++impl_->wake_gen;
  }
  impl_->wake_cv.notify_all();
}

Json OperationToJson(const core::Operation& op) {
  auto ts = [](const std::optional<TimePoint>& t) -> Json {
    return t ? Json(FormatRfc3339(*t)) : Json(nullptr);
  };
  Json steps = Json::array();
  for (const auto& s : op.steps) {
    steps.push_back(Json{{"name", s.name},
                         {"state", std::string(core::StepStateName(s.state))},
                         {"started_at", ts(s.started_at)},
                         {"finished_at", ts(s.finished_at)}});
  }
  Json j = Json::object();
  j["id"] = op.id;
  j["kind"] = op.kind;
  j["target_id"] = op.target_id;
  j["state"] = std::string(core::OperationStateName(op.state));
  j["step"] =
      HasCurrentStep(op) ? Json(op.steps[static_cast<size_t>(op.step)].name) : Json(nullptr);
  j["step_index"] = op.step;
  j["steps"] = std::move(steps);
  j["attempt"] = op.attempt;
  j["created_at"] = FormatRfc3339(op.created_at);
  j["updated_at"] = FormatRfc3339(op.updated_at);
  if (op.state == OperationState::kFailed) {
    j["error"] =
        Json{{"code", op.last_error_code.empty() ? std::string("internal") : op.last_error_code},
             {"message", op.last_error_message.empty() ? std::string("the operation failed")
                                                       : op.last_error_message}};
  } else if (op.state != OperationState::kSucceeded && !op.last_error_code.empty()) {
    j["last_error"] = Json{{"code", op.last_error_code}, {"message", op.last_error_message}};
  }
  return j;
}

}  // namespace canopy::ops
