#include "core/types.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

namespace canopy::core {
namespace {

using S = WorkerState;

// The contract's table (product-contract.md, "States"), every action x every state.
TEST(WorkerActionThrough, MatchesTheContractTableExactly) {
  const std::map<std::string, std::pair<std::set<S>, S>> table = {
      {"stop", {{S::kActive}, S::kTerminating}},
      {"restart", {{S::kStopped}, S::kBooting}},
      {"terminate", {{S::kActive, S::kStopped, S::kFailed}, S::kTerminating}},
      {"recreate", {{S::kTerminated, S::kFailed}, S::kBooting}},
      {"delete",
       {{S::kActive, S::kFailed, S::kTerminating, S::kStopped, S::kTerminated}, S::kTerminating}},
  };
  const S all[] = {S::kBooting, S::kActive, S::kFailed, S::kTerminating, S::kStopped, S::kTerminated};
  for (const auto& [action, rule] : table) {
    for (S from : all) {
      SCOPED_TRACE(action + " from " + std::string(WorkerStateName(from)));
      auto through = WorkerActionThrough(action, from);
      if (rule.first.count(from) != 0) {
        ASSERT_TRUE(through.has_value());
        EXPECT_EQ(*through, rule.second);
      } else {
        EXPECT_FALSE(through.has_value());
      }
    }
  }
  EXPECT_FALSE(WorkerActionThrough("reboot", S::kActive).has_value());
}

TEST(WorkerState, NamesRoundTripAndOnlyTerminatedIsUnbilled) {
  for (S s : {S::kBooting, S::kActive, S::kFailed, S::kTerminating, S::kStopped, S::kTerminated}) {
    EXPECT_EQ(ParseWorkerState(WorkerStateName(s)), s);
    EXPECT_EQ(IsBilled(s), s != S::kTerminated);
  }
  EXPECT_FALSE(ParseWorkerState("active").has_value());
}

}  // namespace
}  // namespace canopy::core
