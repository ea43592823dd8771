#include "ops/engine.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "common/backoff.h"
#include "common/ids.h"
#include "ops/test_kind.h"
#include "store/store.h"
#include "support/test_util.h"

namespace canopy::ops {
namespace {

using namespace std::chrono_literals;
using core::Operation;
using core::OperationState;
using core::StepState;
using testing::FakeClock;
using testing::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers

std::string DbPath(const TempDir& dir) { return (dir.path() / "canopy.db").string(); }

store::StorePtr MustOpen(const std::string& path) {
  auto s = store::OpenStore(path);
  if (!s) {
    ADD_FAILURE() << "OpenStore: " << s.error().ToString();
    std::abort();
  }
  return std::move(*s);
}

EngineOptions FastOptions(const std::string& owner) {
  EngineOptions o;
  o.owner = owner;
  o.workers = 2;
  o.lease = 300ms;
  o.poll_interval = 20ms;
  o.backoff_base = 5ms;
  o.backoff_max = 20ms;
  return o;
}

// Polls `pred` every 5 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

Operation MustGet(store::Store& s, const std::string& id) {
  auto op = s.operations().Get(id);
  if (!op) {
    ADD_FAILURE() << "Get " << id << ": " << op.error().ToString();
    return Operation{};
  }
  return *op;
}

bool HasState(store::Store& s, const std::string& id, OperationState state) {
  auto op = s.operations().Get(id);
  return op && op->state == state;
}

struct MarkerLine {
  std::string op;
  int64_t step = -1;
  int64_t attempt = -1;
  bool operator==(const MarkerLine& o) const {
    return std::tie(op, step, attempt) == std::tie(o.op, o.step, o.attempt);
  }
};
std::ostream& operator<<(std::ostream& os, const MarkerLine& l) {
  return os << "{" << l.op << " " << l.step << " " << l.attempt << "}";
}

std::vector<MarkerLine> ReadMarker(const std::string& path) {
  std::vector<MarkerLine> out;
  std::istringstream in(testing::ReadFile(path));
  MarkerLine l;
  while (in >> l.op >> l.step >> l.attempt) {
    out.push_back(l);
  }
  return out;
}

std::vector<int64_t> MarkerSteps(const std::string& path, const std::string& op_id) {
  std::vector<int64_t> steps;
  for (const auto& l : ReadMarker(path)) {
    if (l.op == op_id) {
      steps.push_back(l.step);
    }
  }
  return steps;
}

Json TestData(int steps, int step_ms, const std::string& marker) {
  return Json{{"steps", steps}, {"step_ms", step_ms}, {"marker_file", marker}};
}

// A kind whose steps run a test-supplied function; counts calls and OnFailed calls.
struct ScriptState {
  std::function<Result<StepResult>(size_t, StepContext&)> fn;
  std::atomic<int> calls{0};
  std::atomic<int> on_failed{0};
  std::mutex mu;
  std::vector<size_t> steps_run;
};

class ScriptKind final : public OperationKind {
 public:
  ScriptKind(std::string name, std::vector<std::string> steps, std::shared_ptr<ScriptState> st,
             int max_attempts = 8)
      : name_(std::move(name)),
        steps_(std::move(steps)),
        st_(std::move(st)),
        max_attempts_(max_attempts) {}
  std::string Name() const override { return name_; }
  std::vector<std::string> Steps() const override { return steps_; }
  Result<StepResult> RunStep(size_t step, StepContext& ctx) override {
    ++st_->calls;
    {
      std::lock_guard<std::mutex> l(st_->mu);
      st_->steps_run.push_back(step);
    }
    return st_->fn(step, ctx);
  }
  void OnFailed(StepContext& ctx) override {
    EXPECT_EQ(ctx.op.state, OperationState::kFailed);
    ++st_->on_failed;
  }
  int MaxAttempts() const override { return max_attempts_; }

 private:
  std::string name_;
  std::vector<std::string> steps_;
  std::shared_ptr<ScriptState> st_;
  int max_attempts_;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = MustOpen(DbPath(dir_)); }

  std::unique_ptr<Engine> MakeEngine(EngineOptions opts, ClockPtr clock = nullptr) {
    if (clock == nullptr) {
      clock = std::make_shared<SystemClock>();
    }
    auto e = std::make_unique<Engine>(*store_, std::move(clock),
                                      std::make_shared<RandomIdGenerator>(), std::move(opts));
    EXPECT_OK(e->Register(std::make_unique<TestStepsKind>()));
    return e;
  }

  Operation MustEnqueue(Engine& e, const std::string& kind, Json data,
                        const std::string& target = "cl-1") {
    auto op = e.Enqueue(*store_, kind, target, std::move(data));
    if (!op) {
      ADD_FAILURE() << "Enqueue: " << op.error().ToString();
      return Operation{};
    }
    e.Wake();
    return *op;
  }

  std::string Marker() const { return (dir_.path() / "marker.txt").string(); }

  TempDir dir_;
  store::StorePtr store_;
};

// ---------------------------------------------------------------------------------------------
// Running operations

TEST_F(EngineTest, RunsEveryStepInOrderToSuccess) {
  auto e = MakeEngine(FastOptions("a"));
  Operation op = MustEnqueue(*e, TestStepsKind::kName, TestData(4, 10, Marker()));
  e->Start();
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op.id, OperationState::kSucceeded); }));

  std::vector<MarkerLine> want;
  for (int i = 0; i < 4; ++i) {
    want.push_back({op.id, i, 0});
  }
  EXPECT_EQ(ReadMarker(Marker()), want);

  Operation got = MustGet(*store_, op.id);
  EXPECT_EQ(got.step, 4);
  EXPECT_EQ(got.attempt, 0);
  EXPECT_TRUE(got.lease_owner.empty());
  EXPECT_TRUE(got.last_error_code.empty());
  ASSERT_EQ(got.steps.size(), 4u);
  for (size_t i = 0; i < got.steps.size(); ++i) {
    const auto& s = got.steps[i];
    EXPECT_EQ(s.name, "step-" + std::to_string(i + 1));
    EXPECT_EQ(s.state, StepState::kSucceeded);
    ASSERT_TRUE(s.started_at.has_value());
    ASSERT_TRUE(s.finished_at.has_value());
    EXPECT_LE(*s.started_at, *s.finished_at);
    EXPECT_GE(*s.finished_at - *s.started_at, 10ms);
    if (i > 0) {
      EXPECT_LE(*got.steps[i - 1].finished_at, *s.started_at);
    }
  }
  EXPECT_GT(got.version, op.version);
}

TEST_F(EngineTest, RetriesTransientErrorsWithBackoffThenSucceeds) {
  auto e = MakeEngine(FastOptions("a"));
  Json data = TestData(2, 0, Marker());
  data["transient_failures"] = 2;
  Operation op = MustEnqueue(*e, TestStepsKind::kName, data);
  e->Start();
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op.id, OperationState::kSucceeded); }));

  std::vector<MarkerLine> want = {{op.id, 0, 0}, {op.id, 0, 1}, {op.id, 0, 2},
                                  {op.id, 1, 0}, {op.id, 1, 1}, {op.id, 1, 2}};
  EXPECT_EQ(ReadMarker(Marker()), want);
  Operation got = MustGet(*store_, op.id);
  EXPECT_EQ(got.attempt, 0);
  EXPECT_TRUE(got.last_error_code.empty()) << "a later success clears the error";
}

TEST_F(EngineTest, SchedulesRetriesWithinCappedBackoff) {
  auto clock = std::make_shared<FakeClock>();
  EngineOptions opts = FastOptions("a");
  opts.backoff_base = 1000ms;
  opts.backoff_max = 1500ms;
  auto st = std::make_shared<ScriptState>();
  st->fn = [st = st.get()](size_t, StepContext&) -> Result<StepResult> {
    if (st->calls <= 2) {
      return Error::Unavailable("cloud busy");
    }
    return StepResult::Next();
  };
  auto e = MakeEngine(opts, clock);
  ASSERT_OK(
      e->Register(std::make_unique<ScriptKind>("script", std::vector<std::string>{"only"}, st)));
  Operation op = MustEnqueue(*e, "script", Json::object());
  e->Start();

  // First failure: the delay is drawn from [0, base].
  ASSERT_TRUE(WaitFor([&] { return MustGet(*store_, op.id).attempt == 1; }));
  Operation got = MustGet(*store_, op.id);
  EXPECT_EQ(got.state, OperationState::kRunning);
  EXPECT_EQ(got.steps[0].state, StepState::kRunning);
  EXPECT_EQ(got.last_error_code, "unavailable");
  EXPECT_EQ(got.last_error_message, "cloud busy");
  EXPECT_TRUE(got.lease_owner.empty()) << "the lease is released during the backoff";
  auto delay = got.next_run_at - clock->Now();
  EXPECT_GE(delay, 0ms);
  EXPECT_LE(delay, 1000ms);
  Json j = OperationToJson(got);
  EXPECT_EQ(j["last_error"]["code"], "unavailable");
  EXPECT_FALSE(j.contains("error"));

  // Second failure: base * 2 = 2000 ms, capped at 1500 ms.
  clock->Advance(1000ms);
  e->Wake();
  ASSERT_TRUE(WaitFor([&] { return MustGet(*store_, op.id).attempt == 2; }));
  got = MustGet(*store_, op.id);
  delay = got.next_run_at - clock->Now();
  EXPECT_GE(delay, 0ms);
  EXPECT_LE(delay, 1500ms);

  clock->Advance(1500ms);
  e->Wake();
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op.id, OperationState::kSucceeded); }));
  EXPECT_EQ(st->calls, 3);
}

TEST_F(EngineTest, TerminalErrorFailsOperationAndCallsOnFailedOnce) {
  auto e = MakeEngine(FastOptions("a"));
  auto st = std::make_shared<ScriptState>();
  st->fn = [](size_t step, StepContext&) -> Result<StepResult> {
    if (step == 1) {
      return Error::Provider("instance type not offered");
    }
    return StepResult::Next();
  };
  ASSERT_OK(e->Register(
      std::make_unique<ScriptKind>("script", std::vector<std::string>{"a", "b", "c"}, st)));
  Operation op = MustEnqueue(*e, "script", Json::object());
  e->Start();
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op.id, OperationState::kFailed); }));
  ASSERT_TRUE(WaitFor([&] { return st->on_failed.load() >= 1; }, 2s));
  std::this_thread::sleep_for(200ms);  // nothing may run after the failure

  EXPECT_EQ(st->on_failed, 1);
  EXPECT_EQ(st->calls, 2);
  Operation got = MustGet(*store_, op.id);
  EXPECT_EQ(got.step, 1);
  EXPECT_EQ(got.steps[0].state, StepState::kSucceeded);
  EXPECT_EQ(got.steps[1].state, StepState::kFailed);
  EXPECT_TRUE(got.steps[1].finished_at.has_value());
  EXPECT_EQ(got.steps[2].state, StepState::kPending);
  EXPECT_FALSE(got.steps[2].started_at.has_value());
  EXPECT_EQ(got.last_error_code, "provider_error");
  EXPECT_EQ(got.attempt, 0) << "terminal errors are not retried";
  EXPECT_TRUE(got.lease_owner.empty());

  Json j = OperationToJson(got);
  EXPECT_EQ(j["state"], "failed");
  EXPECT_EQ(j["step"], "b");
  EXPECT_EQ(j["error"]["code"], "provider_error");
  EXPECT_EQ(j["error"]["message"], "instance type not offered");
}

TEST_F(EngineTest, TestKindFailAtFailsThatStep) {
  auto e = MakeEngine(FastOptions("a"));
  Json data = TestData(4, 0, Marker());
  data["fail_at"] = 2;
  Operation op = MustEnqueue(*e, TestStepsKind::kName, data);
  e->Start();
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op.id, OperationState::kFailed); }));
  EXPECT_EQ(MarkerSteps(Marker(), op.id), (std::vector<int64_t>{0, 1, 2}));
  Operation got = MustGet(*store_, op.id);
  EXPECT_EQ(got.steps[2].state, StepState::kFailed);
  EXPECT_EQ(got.steps[3].state, StepState::kPending);
  EXPECT_EQ(got.last_error_code, "provider_error");
}

TEST_F(EngineTest, FailsWhenRetryableAttemptsAreExhausted) {
  auto e = MakeEngine(FastOptions("a"));
  auto st = std::make_shared<ScriptState>();
  st->fn = [](size_t, StepContext&) -> Result<StepResult> {
    return Error::Unavailable("still busy");
  };
  ASSERT_OK(e->Register(std::make_unique<ScriptKind>("script", std::vector<std::string>{"a"}, st,
                                                     /*max_attempts=*/3)));
  Operation op = MustEnqueue(*e, "script", Json::object());
  e->Start();
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op.id, OperationState::kFailed); }));
  ASSERT_TRUE(WaitFor([&] { return st->on_failed.load() >= 1; }, 2s));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(st->calls, 3);
  EXPECT_EQ(st->on_failed, 1);
  Operation got = MustGet(*store_, op.id);
  EXPECT_EQ(got.attempt, 2);
  EXPECT_EQ(got.steps[0].state, StepState::kFailed);
  EXPECT_EQ(got.last_error_code, "unavailable");
  EXPECT_EQ(got.last_error_message, "still busy");
}

TEST_F(EngineTest, ExceptionInStepFailsOperation) {
  auto e = MakeEngine(FastOptions("a"));
  auto st = std::make_shared<ScriptState>();
  st->fn = [](size_t, StepContext&) -> Result<StepResult> { throw std::runtime_error("boom"); };
  ASSERT_OK(e->Register(std::make_unique<ScriptKind>("script", std::vector<std::string>{"a"}, st)));
  Operation op = MustEnqueue(*e, "script", Json::object());
  e->Start();
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op.id, OperationState::kFailed); }));
  EXPECT_EQ(MustGet(*store_, op.id).last_error_code, "internal");
  EXPECT_EQ(st->calls, 1);
}

TEST_F(EngineTest, WaitRunsStepAgainOnlyAfterDelay) {
  auto clock = std::make_shared<FakeClock>();
  auto st = std::make_shared<ScriptState>();
  auto e = MakeEngine(FastOptions("a"), clock);
  st->fn = [st = st.get()](size_t, StepContext& ctx) -> Result<StepResult> {
    if (st->calls == 1) {
      ctx.op.data["polls"] = 1;  // persisted with the transition
      return StepResult::Wait(10s);
    }
    return StepResult::Next();
  };
  ASSERT_OK(
      e->Register(std::make_unique<ScriptKind>("script", std::vector<std::string>{"boot"}, st)));
  Operation op = MustEnqueue(*e, "script", Json::object());
  TimePoint t0 = clock->Now();
  e->Start();
  ASSERT_TRUE(WaitFor(
      [&] { return st->calls.load() == 1 && MustGet(*store_, op.id).lease_owner.empty(); }));
  Operation got = MustGet(*store_, op.id);
  EXPECT_EQ(got.state, OperationState::kRunning);
  EXPECT_EQ(got.next_run_at, t0 + 10s);
  EXPECT_EQ(got.data["polls"], 1);

  e->Wake();
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(st->calls, 1) << "not due before the delay";

  clock->Advance(10s);
  e->Wake();
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op.id, OperationState::kSucceeded); }));
  EXPECT_EQ(st->calls, 2);
}

TEST_F(EngineTest, SucceedSkipsRemainingSteps) {
  auto e = MakeEngine(FastOptions("a"));
  auto st = std::make_shared<ScriptState>();
  st->fn = [](size_t, StepContext&) -> Result<StepResult> { return StepResult::Succeed(); };
  ASSERT_OK(e->Register(
      std::make_unique<ScriptKind>("script", std::vector<std::string>{"a", "b", "c"}, st)));
  Operation op = MustEnqueue(*e, "script", Json::object());
  e->Start();
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op.id, OperationState::kSucceeded); }));
  EXPECT_EQ(st->calls, 1);
  Operation got = MustGet(*store_, op.id);
  EXPECT_EQ(got.step, 3);
  EXPECT_TRUE(got.steps[0].finished_at.has_value());
  for (size_t i = 1; i < 3; ++i) {
    EXPECT_EQ(got.steps[i].state, StepState::kSucceeded);
    EXPECT_FALSE(got.steps[i].started_at.has_value()) << "skipped steps never started";
    EXPECT_FALSE(got.steps[i].finished_at.has_value());
  }
  EXPECT_TRUE(OperationToJson(got)["step"].is_null());
}

TEST_F(EngineTest, FailsOperationOfUnknownKind) {
  TimePoint now = std::chrono::system_clock::now();
  Operation op;
  op.id = "op-unknown";
  op.kind = "no.such.kind";
  op.target_id = "cl-1";
  op.steps.push_back({"first", StepState::kPending, std::nullopt, std::nullopt});
  op.version = 1;
  op.next_run_at = now;
  op.created_at = now;
  op.updated_at = now;
  ASSERT_OK(store_->operations().Create(op));
  auto e = MakeEngine(FastOptions("a"));
  e->Start();
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op.id, OperationState::kFailed); }));
  Operation got = MustGet(*store_, op.id);
  EXPECT_EQ(got.last_error_code, "internal");
  EXPECT_NE(got.last_error_message.find("no.such.kind"), std::string::npos);
  EXPECT_EQ(got.steps[0].state, StepState::kFailed);
  EXPECT_TRUE(got.lease_owner.empty());
}

TEST_F(EngineTest, StopInterruptsLongStepPromptly) {
  auto e = MakeEngine(FastOptions("a"));
  Operation op = MustEnqueue(*e, TestStepsKind::kName, TestData(1, 60000, Marker()));
  e->Start();
  ASSERT_TRUE(WaitFor([&] { return !ReadMarker(Marker()).empty(); }));
  auto t = std::chrono::steady_clock::now();
  e->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t, 2s);
  Operation got = MustGet(*store_, op.id);
  EXPECT_EQ(got.state, OperationState::kRunning);
  EXPECT_EQ(got.attempt, 0) << "an interrupted step is not a failed attempt";
  EXPECT_TRUE(got.last_error_code.empty());
  EXPECT_TRUE(got.lease_owner.empty()) << "a graceful stop hands the operation back";
}

// ---------------------------------------------------------------------------------------------
// Leases, ownership and recovery

TEST_F(EngineTest, StoppedMidStepIsResumedByAnotherEngine) {
  auto a = MakeEngine(FastOptions("a"));
  Operation op = MustEnqueue(*a, TestStepsKind::kName, TestData(3, 400, Marker()));
  a->Start();
  ASSERT_TRUE(WaitFor([&] { return MarkerSteps(Marker(), op.id).size() == 2; }));
  a->Stop();
  Operation mid = MustGet(*store_, op.id);
  EXPECT_EQ(mid.step, 1);
  EXPECT_EQ(mid.steps[0].state, StepState::kSucceeded);
  EXPECT_EQ(mid.steps[1].state, StepState::kRunning);

  auto b_store = MustOpen(DbPath(dir_));
  Engine b(*b_store, std::make_shared<SystemClock>(), std::make_shared<RandomIdGenerator>(),
           FastOptions("b"));
  ASSERT_OK(b.Register(std::make_unique<TestStepsKind>()));
  b.Start();
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op.id, OperationState::kSucceeded); }));
  std::vector<MarkerLine> want = {{op.id, 0, 0}, {op.id, 1, 0}, {op.id, 1, 0}, {op.id, 2, 0}};
  EXPECT_EQ(ReadMarker(Marker()), want) << "step 1 reruns from the start, nothing else repeats";
  Operation got = MustGet(*store_, op.id);
  EXPECT_EQ(got.steps[1].started_at, mid.steps[1].started_at) << "first start is kept";
}

TEST_F(EngineTest, ResumesOperationAfterAbandonedLeaseExpires) {
  auto e = MakeEngine(FastOptions("a"));
  Operation op = MustEnqueue(*e, TestStepsKind::kName, TestData(2, 0, Marker()));
  // A process that claimed the operation and died: its lease runs out 400 ms from now.
  auto claim_time = std::chrono::system_clock::now();
  auto claimed = store_->operations().ClaimDue("ghost/w0", claim_time, claim_time + 400ms, 1);
  ASSERT_OK(claimed);
  ASSERT_EQ(claimed->size(), 1u);
  e->Start();
  std::this_thread::sleep_for(150ms);
  EXPECT_TRUE(ReadMarker(Marker()).empty()) << "a live lease is respected";
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op.id, OperationState::kSucceeded); }));
  EXPECT_GE(std::chrono::system_clock::now() - claim_time, 400ms);
  EXPECT_EQ(MarkerSteps(Marker(), op.id), (std::vector<int64_t>{0, 1}));
}

TEST_F(EngineTest, RenewedLeaseKeepsLongStepsWithOneEngine) {
  // Steps last four leases: without renewal the other engine would take them over.
  EngineOptions oa = FastOptions("a");
  oa.lease = 150ms;
  EngineOptions ob = FastOptions("b");
  ob.lease = 150ms;
  auto a = MakeEngine(oa);
  auto b_store = MustOpen(DbPath(dir_));
  Engine b(*b_store, std::make_shared<SystemClock>(), std::make_shared<RandomIdGenerator>(), ob);
  ASSERT_OK(b.Register(std::make_unique<TestStepsKind>()));
  Operation op = MustEnqueue(*a, TestStepsKind::kName, TestData(2, 600, Marker()));
  a->Start();
  b.Start();
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op.id, OperationState::kSucceeded); }));
  std::vector<MarkerLine> want = {{op.id, 0, 0}, {op.id, 1, 0}};
  EXPECT_EQ(ReadMarker(Marker()), want);
}

// Records overlapping runs of the same (operation, step) across engines in this process.
struct Tracker {
  std::mutex mu;
  std::map<std::pair<std::string, size_t>, int> active;
  std::map<std::pair<std::string, size_t>, int> runs;
  std::map<std::string, std::vector<size_t>> order;
  int overlaps = 0;
};

class TrackKind final : public OperationKind {
 public:
  explicit TrackKind(std::shared_ptr<Tracker> t) : t_(std::move(t)) {}
  std::string Name() const override { return "track"; }
  std::vector<std::string> Steps() const override { return {"s1", "s2", "s3"}; }
  Result<StepResult> RunStep(size_t step, StepContext& ctx) override {
    auto key = std::make_pair(ctx.op.id, step);
    {
      std::lock_guard<std::mutex> l(t_->mu);
      if (t_->active[key]++ > 0) {
        ++t_->overlaps;
      }
      ++t_->runs[key];
      t_->order[ctx.op.id].push_back(step);
    }
    std::this_thread::sleep_for(20ms);
    {
      std::lock_guard<std::mutex> l(t_->mu);
      --t_->active[key];
    }
    return StepResult::Next();
  }

 private:
  std::shared_ptr<Tracker> t_;
};

TEST_F(EngineTest, TwoEnginesNeverRunTheSameStepConcurrently) {
  auto tracker = std::make_shared<Tracker>();
  auto b_store = MustOpen(DbPath(dir_));
  std::vector<std::unique_ptr<Engine>> engines;
  engines.push_back(MakeEngine(FastOptions("a")));
  engines.push_back(std::make_unique<Engine>(*b_store, std::make_shared<SystemClock>(),
                                             std::make_shared<RandomIdGenerator>(),
                                             FastOptions("b")));
  for (auto& e : engines) {
    ASSERT_OK(e->Register(std::make_unique<TrackKind>(tracker)));
  }
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i) {
    ids.push_back(MustEnqueue(*engines[0], "track", Json::object()).id);
  }
  for (auto& e : engines) {
    e->Start();
  }
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& id : ids) {
      if (!HasState(*store_, id, OperationState::kSucceeded)) {
        return false;
      }
    }
    return true;
  }));
  std::lock_guard<std::mutex> l(tracker->mu);
  EXPECT_EQ(tracker->overlaps, 0);
  for (const auto& id : ids) {
    EXPECT_EQ(tracker->order[id], (std::vector<size_t>{0, 1, 2})) << id;
    for (size_t s = 0; s < 3; ++s) {
      EXPECT_EQ((tracker->runs[{id, s}]), 1) << id << " step " << s;
    }
  }
}

TEST_F(EngineTest, AbandonsStepWithoutWritingWhenLeaseIsTaken) {
  EngineOptions opts = FastOptions("a");
  opts.lease = 150ms;
  auto st = std::make_shared<ScriptState>();
  std::atomic<bool> started{false};
  std::atomic<bool> saw_stop{false};
  auto e = MakeEngine(opts);
  st->fn = [&](size_t, StepContext& ctx) -> Result<StepResult> {
    started = true;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline && !ctx.stop.stop_requested()) {
      std::this_thread::sleep_for(5ms);
    }
    saw_stop = ctx.stop.stop_requested();
    return StepResult::Next();
  };
  ASSERT_OK(
      e->Register(std::make_unique<ScriptKind>("script", std::vector<std::string>{"a", "b"}, st)));
  Operation op = MustEnqueue(*e, "script", Json::object());
  e->Start();
  ASSERT_TRUE(WaitFor([&] { return started.load(); }));

  // Another owner takes the operation over (as if our lease had expired and been re-claimed).
  Operation stolen = MustGet(*store_, op.id);
  stolen.lease_owner = "thief/w0";
  stolen.lease_until = std::chrono::system_clock::now() + 60s;
  ASSERT_OK(store_->operations().Update(stolen));

  ASSERT_TRUE(WaitFor([&] { return saw_stop.load(); }, 3s)) << "the step learns of the loss";
  std::this_thread::sleep_for(200ms);
  Operation got = MustGet(*store_, op.id);
  EXPECT_EQ(got.version, stolen.version + 1) << "the engine wrote nothing after the loss";
  EXPECT_EQ(got.lease_owner, "thief/w0");
  EXPECT_EQ(got.step, 0);
  EXPECT_EQ(st->calls, 1);
}

TEST_F(EngineTest, DropsOperationOnVersionConflictAndResumesAfterLease) {
  auto st = std::make_shared<ScriptState>();
  auto e = MakeEngine(FastOptions("a"));
  st->fn = [st = st.get()](size_t step, StepContext& ctx) -> Result<StepResult> {
    if (st->calls == 1) {
      // Someone else writes the operation while this step runs.
      auto other = ctx.store.operations().Get(ctx.op.id);
      EXPECT_TRUE(other.has_value());
      other->data["touched"] = true;
      EXPECT_OK(ctx.store.operations().Update(*other));
    }
    ctx.op.data["ran_" + std::to_string(step)] = true;
    return StepResult::Next();
  };
  ASSERT_OK(
      e->Register(std::make_unique<ScriptKind>("script", std::vector<std::string>{"a", "b"}, st)));
  Operation op = MustEnqueue(*e, "script", Json::object());
  e->Start();
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op.id, OperationState::kSucceeded); }));
  {
    std::lock_guard<std::mutex> l(st->mu);
    EXPECT_EQ(st->steps_run, (std::vector<size_t>{0, 0, 1}))
        << "the conflicting run is dropped (step b does not run on stale state) and step a "
           "runs again";
  }
  Operation got = MustGet(*store_, op.id);
  EXPECT_EQ(got.data["touched"], true) << "the engine never overwrote the other write";
  EXPECT_EQ(got.data["ran_0"], true);
  EXPECT_EQ(got.data["ran_1"], true);
}

// A child process runs an engine and is SIGKILLed in the middle of step 1 (the second step); the
// parent's engine resumes the operation once the child's lease expires.
TEST_F(EngineTest, ResumesAfterProcessIsKilledMidStep) {
  const std::string db = DbPath(dir_);
  const std::string marker = Marker();
  std::string op_id;
  {
    // The parent's connection is closed before fork(): SQLite handles must not cross a fork.
    auto e = MakeEngine(FastOptions("parent"));
    op_id = MustEnqueue(*e, TestStepsKind::kName, TestData(4, 500, marker)).id;
  }
  store_.reset();

  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto s = store::OpenStore(db);
    if (!s) {
      _exit(2);
    }
    Engine child(**s, std::make_shared<SystemClock>(), std::make_shared<RandomIdGenerator>(),
                 FastOptions("child"));
    if (!child.Register(std::make_unique<TestStepsKind>())) {
      _exit(3);
    }
    child.Start();
    while (true) {
      pause();
    }
  }
  bool reached = WaitFor([&] { return MarkerSteps(marker, op_id).size() >= 2; });
  std::this_thread::sleep_for(100ms);  // well inside the 500 ms sleep of step 1
  kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(reached) << "child never reached step 1";
  ASSERT_TRUE(WIFSIGNALED(status));

  store_ = MustOpen(db);
  Operation mid = MustGet(*store_, op_id);
  EXPECT_EQ(mid.state, OperationState::kRunning);
  EXPECT_EQ(mid.step, 1);
  EXPECT_EQ(mid.lease_owner.rfind("child/", 0), 0u) << mid.lease_owner;

  auto e = MakeEngine(FastOptions("parent"));
  e->Start();
  ASSERT_TRUE(WaitFor([&] { return HasState(*store_, op_id, OperationState::kSucceeded); }));
  std::vector<int64_t> steps = MarkerSteps(marker, op_id);
  EXPECT_EQ(steps, (std::vector<int64_t>{0, 1, 1, 2, 3}));
  Operation got = MustGet(*store_, op_id);
  for (const auto& s : got.steps) {
    EXPECT_EQ(s.state, StepState::kSucceeded) << s.name;
  }
}

// ---------------------------------------------------------------------------------------------
// Enqueue and registration

TEST_F(EngineTest, EnqueueBuildsPendingOperationWithStepsOfItsData) {
  auto clock = std::make_shared<FakeClock>();
  auto e = MakeEngine(FastOptions("a"), clock);
  auto op = e->Enqueue(*store_, TestStepsKind::kName, "cl-7", TestData(3, 0, Marker()));
  ASSERT_OK(op);
  EXPECT_EQ(op->id.rfind("op-", 0), 0u) << op->id;
  Operation got = MustGet(*store_, op->id);
  EXPECT_EQ(got.kind, "test.steps");
  EXPECT_EQ(got.target_id, "cl-7");
  EXPECT_EQ(got.state, OperationState::kPending);
  EXPECT_EQ(got.version, 1);
  EXPECT_EQ(got.step, 0);
  EXPECT_EQ(got.next_run_at, clock->Now());
  EXPECT_EQ(got.created_at, clock->Now());
  ASSERT_EQ(got.steps.size(), 3u);
  EXPECT_EQ(got.steps[2].name, "step-3");
  EXPECT_EQ(got.steps[2].state, StepState::kPending);
  EXPECT_EQ(got.data["steps"], 3);
}

TEST_F(EngineTest, EnqueueOfUnknownKindIsNotFound) {
  auto e = MakeEngine(FastOptions("a"));
  auto op = e->Enqueue(*store_, "no.such.kind", "cl-1", Json::object());
  ASSERT_FALSE(op.has_value());
  EXPECT_EQ(op.error().code, ErrorCode::kNotFound);
  auto all = store_->operations().List(10);
  ASSERT_OK(all);
  EXPECT_TRUE(all->empty());
}

TEST_F(EngineTest, EnqueueRejectsInvalidData) {
  auto e = MakeEngine(FastOptions("a"));
  for (Json bad :
       {Json{{"steps", 0}}, Json{{"steps", 21}}, Json::object(), Json{{"steps", 2}, {"fail_at", 2}},
        Json{{"steps", 2}, {"step_ms", -1}}, Json::array()}) {
    auto op = e->Enqueue(*store_, TestStepsKind::kName, "cl-1", bad);
    ASSERT_FALSE(op.has_value()) << bad.dump();
    EXPECT_EQ(op.error().code, ErrorCode::kInvalidArgument) << bad.dump();
  }
}

TEST_F(EngineTest, EnqueueTakesPartInTheCallersTransaction) {
  auto e = MakeEngine(FastOptions("a"));
  std::string id;
  Status st = store_->Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(Operation op,
                            e->Enqueue(tx, TestStepsKind::kName, "cl-1", TestData(1, 0, "")));
    id = op.id;
    return Error::Conflict("rolled back on purpose");
  });
  ASSERT_FALSE(st.has_value());
  ASSERT_FALSE(id.empty());
  auto got = store_->operations().Get(id);
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, ErrorCode::kNotFound);
}

TEST_F(EngineTest, RegisterRejectsDuplicateKind) {
  auto e = MakeEngine(FastOptions("a"));
  EXPECT_TRUE(e->HasKind("test.steps"));
  EXPECT_FALSE(e->HasKind("other"));
  Status st = e->Register(std::make_unique<TestStepsKind>());
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code, ErrorCode::kAlreadyExists);
}

// ---------------------------------------------------------------------------------------------
// OperationToJson

Operation SampleOperation() {
  Operation op;
  op.id = "op-abc";
  op.kind = "cluster.create";
  op.target_id = "cl-1";
  op.state = OperationState::kRunning;
  op.step = 1;
  op.steps = {{"create-vm", StepState::kSucceeded, FromUnixMillis(1'000), FromUnixMillis(2'500)},
              {"wait-ssh", StepState::kRunning, FromUnixMillis(2'600), std::nullopt},
              {"install", StepState::kPending, std::nullopt, std::nullopt}};
  op.attempt = 2;
  op.lease_owner = "root/w0";
  op.data = Json{{"instance_id", "i-123"}, {"note", "private"}};
  op.version = 7;
  op.created_at = FromUnixMillis(500);
  op.updated_at = FromUnixMillis(2'600);
  return op;
}

TEST(OperationToJson, RunningOperationShape) {
  Json j = OperationToJson(SampleOperation());
  EXPECT_EQ(j["id"], "op-abc");
  EXPECT_EQ(j["kind"], "cluster.create");
  EXPECT_EQ(j["target_id"], "cl-1");
  EXPECT_EQ(j["state"], "running");
  EXPECT_EQ(j["step"], "wait-ssh");
  EXPECT_EQ(j["step_index"], 1);
  EXPECT_EQ(j["attempt"], 2);
  EXPECT_EQ(j["created_at"], "1970-01-01T00:00:00.500Z");
  EXPECT_EQ(j["updated_at"], "1970-01-01T00:00:02.600Z");
  ASSERT_TRUE(j["steps"].is_array());
  ASSERT_EQ(j["steps"].size(), 3u);
  EXPECT_EQ(j["steps"][0], (Json{{"name", "create-vm"},
                                 {"state", "succeeded"},
                                 {"started_at", "1970-01-01T00:00:01.000Z"},
                                 {"finished_at", "1970-01-01T00:00:02.500Z"}}));
  EXPECT_EQ(j["steps"][1]["state"], "running");
  EXPECT_TRUE(j["steps"][1]["finished_at"].is_null());
  EXPECT_TRUE(j["steps"][2]["started_at"].is_null());
  EXPECT_FALSE(j.contains("error"));
  EXPECT_FALSE(j.contains("last_error"));
  EXPECT_FALSE(j.contains("data"));
  EXPECT_FALSE(j.contains("lease_owner"));
  EXPECT_EQ(j.dump().find("i-123"), std::string::npos) << "op.data never leaks";
}

TEST(OperationToJson, ErrorOnlyWhenFailedAndLastErrorWhileRetrying) {
  Operation op = SampleOperation();
  op.last_error_code = "unavailable";
  op.last_error_message = "cloud busy";
  Json retrying = OperationToJson(op);
  EXPECT_EQ(retrying["last_error"], (Json{{"code", "unavailable"}, {"message", "cloud busy"}}));
  EXPECT_FALSE(retrying.contains("error"));

  op.state = OperationState::kFailed;
  op.steps[1].state = StepState::kFailed;
  Json failed = OperationToJson(op);
  EXPECT_EQ(failed["state"], "failed");
  EXPECT_EQ(failed["error"], (Json{{"code", "unavailable"}, {"message", "cloud busy"}}));
  EXPECT_FALSE(failed.contains("last_error"));
  EXPECT_EQ(failed["step"], "wait-ssh") << "a failed operation names the step that failed";
}

TEST(OperationToJson, FinishedOperationHasNullStep) {
  Operation op = SampleOperation();
  op.state = OperationState::kSucceeded;
  op.step = 3;
  Json j = OperationToJson(op);
  EXPECT_TRUE(j["step"].is_null());
  EXPECT_EQ(j["step_index"], 3);
  EXPECT_FALSE(j.contains("error"));
}

// ---------------------------------------------------------------------------------------------
// Backoff

TEST(Backoff, CeilingDoublesUntilCapped) {
  EXPECT_EQ(BackoffCeiling(0, 500ms, 60000ms), 500ms);
  EXPECT_EQ(BackoffCeiling(1, 500ms, 60000ms), 1000ms);
  EXPECT_EQ(BackoffCeiling(3, 500ms, 60000ms), 4000ms);
  EXPECT_EQ(BackoffCeiling(7, 500ms, 60000ms), 60000ms);  // 64000 capped
  EXPECT_EQ(BackoffCeiling(1000, 500ms, 60000ms), 60000ms) << "no overflow";
  EXPECT_EQ(BackoffCeiling(2, 0ms, 60000ms), 0ms);
  EXPECT_EQ(BackoffCeiling(0, 500ms, 100ms), 100ms);
}

TEST(Backoff, FullJitterStaysWithinCeilingAndVaries) {
  std::set<int64_t> seen;
  for (int i = 0; i < 200; ++i) {
    auto d = Backoff(2, 100ms, 60000ms);
    ASSERT_GE(d, 0ms);
    ASSERT_LE(d, 400ms);
    seen.insert(d.count());
  }
  EXPECT_GT(seen.size(), 20u);
}

}  // namespace
}  // namespace canopy::ops
