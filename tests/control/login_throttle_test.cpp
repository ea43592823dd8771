#include "control/login_throttle.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "support/test_util.h"

namespace canopy::control {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class LoginThrottleTest : public ::testing::Test {
 protected:
  LoginThrottleOptions Options() {
    LoginThrottleOptions o;
    o.user_burst = 3;
    o.user_refill = milliseconds(10'000);
    o.address_burst = 5;
    o.address_refill = milliseconds(2'000);
    return o;
  }
  std::shared_ptr<canopy::testing::FakeClock> clock_ =
      std::make_shared<canopy::testing::FakeClock>();
};

TEST_F(LoginThrottleTest, AUserIsThrottledAfterItsBurstAndRecoversOverTime) {
  LoginThrottle t(clock_, Options());
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(t.Admit("alice", "10.0.0.1"));
    t.Failed("alice", "10.0.0.1");
  }
  int64_t wait = 0;
  auto refused = t.Admit("alice", "10.0.0.2", &wait);  // another address: the user is throttled
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kResourceExhausted);
  EXPECT_EQ(refused.error().reason, "login_throttled");
  EXPECT_NE(refused.error().message.find("for this user"), std::string::npos);
  EXPECT_EQ(wait, 10);
  EXPECT_OK(t.Admit("bob", "10.0.0.1"));  // other users are not
  clock_->Advance(seconds(9));
  EXPECT_FALSE(t.Admit("alice", "10.0.0.1"));
  clock_->Advance(seconds(1));
  EXPECT_OK(t.Admit("alice", "10.0.0.1"));  // one more failure forgiven
  t.Failed("alice", "10.0.0.1");
  EXPECT_FALSE(t.Admit("alice", "10.0.0.1"));
}

TEST_F(LoginThrottleTest, AnAddressTryingManyUsernamesIsThrottled) {
  LoginThrottle t(clock_, Options());
  for (int i = 0; i < 5; ++i) {
    std::string user = "user" + std::to_string(i);
    ASSERT_OK(t.Admit(user, "203.0.113.9"));
    t.Failed(user, "203.0.113.9");
  }
  int64_t wait = 0;
  auto refused = t.Admit("someone-new", "203.0.113.9", &wait);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("from this address"), std::string::npos);
  EXPECT_EQ(wait, 2);
  EXPECT_OK(t.Admit("someone-new", "203.0.113.10"));
  clock_->Advance(seconds(2));
  EXPECT_OK(t.Admit("someone-new", "203.0.113.9"));
}

TEST_F(LoginThrottleTest, TheTableStaysBounded) {
  LoginThrottleOptions o = Options();
  o.max_tracked = 100;
  LoginThrottle t(clock_, o);
  for (int i = 0; i < 10'000; ++i) {
    t.Failed("user" + std::to_string(i),
             "10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250));
  }
  // The most recent failure is still remembered; no crash, no unbounded growth (checked by the
  // sanitizer build's leak and time budget rather than by peeking inside).
  t.Failed("user9999", "10.1.39.249");
  t.Failed("user9999", "10.1.39.249");
  EXPECT_FALSE(t.Admit("user9999", "10.9.9.9"));
}

}  // namespace
}  // namespace canopy::control
