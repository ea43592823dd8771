#include "ops/test_kind.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "store/store.h"
#include "support/test_util.h"

namespace canopy::ops {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

class TestStepsKindTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = store::OpenStore((dir_.path() / "canopy.db").string());
    ASSERT_OK(s);
    store_ = std::move(*s);
    op_.id = "op-test";
    op_.kind = TestStepsKind::kName;
  }

  Result<StepResult> Run(size_t step, Json data, int64_t attempt = 0, std::stop_token stop = {}) {
    op_.data = std::move(data);
    op_.attempt = attempt;
    StepContext ctx{op_, *store_, clock_, std::move(stop)};
    return kind_.RunStep(step, ctx);
  }

  std::string Marker() const { return (dir_.path() / "marker.txt").string(); }

  TempDir dir_;
  store::StorePtr store_;
  SystemClock clock_;
  core::Operation op_;
  TestStepsKind kind_;
};

TEST_F(TestStepsKindTest, StepsForNamesEveryStepOfTheOperation) {
  auto names = kind_.StepsFor(Json{{"steps", 3}});
  ASSERT_OK(names);
  EXPECT_EQ(*names, (std::vector<std::string>{"step-1", "step-2", "step-3"}));
  std::vector<std::string> all = kind_.Steps();
  ASSERT_EQ(all.size(), 20u);
  EXPECT_EQ(all.front(), "step-1");
  EXPECT_EQ(all.back(), "step-20");
  EXPECT_EQ(kind_.Name(), "test.steps");
}

TEST_F(TestStepsKindTest, StepsForRejectsOutOfRangeData) {
  for (Json bad : {Json{{"steps", 0}}, Json{{"steps", 21}}, Json{{"steps", "3"}},
                   Json{{"steps", 3}, {"step_ms", 60001}}, Json{{"steps", 3}, {"fail_at", 3}},
                   Json{{"steps", 3}, {"fail_at", -1}}, Json{{"steps", 3}, {"marker_file", 7}}}) {
    auto r = kind_.StepsFor(bad);
    ASSERT_FALSE(r.has_value()) << bad.dump();
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad.dump();
  }
}

TEST_F(TestStepsKindTest, StepAppendsMarkerLineWithStepAndAttempt) {
  Json data{{"steps", 3}, {"marker_file", Marker()}};
  auto r = Run(0, data);
  ASSERT_OK(r);
  EXPECT_EQ(r->kind, StepResult::Kind::kNext);
  ASSERT_OK(Run(2, data, 4));
  EXPECT_EQ(testing::ReadFile(Marker()), "op-test 0 0\nop-test 2 4\n");
}

TEST_F(TestStepsKindTest, FailAtIsTerminalAndTransientFailuresAreRetryable) {
  Json data{{"steps", 3}, {"fail_at", 1}, {"transient_failures", 2}};
  auto failed = Run(1, data, 5);
  ASSERT_FALSE(failed.has_value());
  EXPECT_FALSE(IsRetryable(failed.error().code));

  auto transient = Run(0, data, 1);
  ASSERT_FALSE(transient.has_value());
  EXPECT_EQ(transient.error().code, ErrorCode::kUnavailable);
  EXPECT_OK(Run(0, data, 2));
}

TEST_F(TestStepsKindTest, SleepsStepMsAndStopsEarlyWhenAsked) {
  Json data{{"steps", 1}, {"step_ms", 150}};
  auto t = std::chrono::steady_clock::now();
  ASSERT_OK(Run(0, data));
  EXPECT_GE(std::chrono::steady_clock::now() - t, 150ms);

  data["step_ms"] = 60000;
  std::stop_source stop;
  std::jthread stopper([&] {
    std::this_thread::sleep_for(50ms);
    stop.request_stop();
  });
  t = std::chrono::steady_clock::now();
  auto r = Run(0, data, 0, stop.get_token());
  EXPECT_LT(std::chrono::steady_clock::now() - t, 2s);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(IsRetryable(r.error().code));
}

}  // namespace
}  // namespace canopy::ops
