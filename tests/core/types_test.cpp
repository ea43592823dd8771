#include "core/types.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "support/test_util.h"

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
  const S all[] = {S::kBooting,     S::kActive,  S::kFailed,
                   S::kTerminating, S::kStopped, S::kTerminated};
  for (const auto& [action, rule] : table) {
    for (S from : all) {
      SCOPED_TRACE(action + " from " + std::string(WorkerStateName(from)));
      auto a = ParseWorkerAction(action);
      ASSERT_TRUE(a.has_value());
      EXPECT_EQ(WorkerActionName(*a), action);
      auto through = WorkerActionThrough(*a, from);
      if (rule.first.count(from) != 0) {
        ASSERT_TRUE(through.has_value());
        EXPECT_EQ(*through, rule.second);
      } else {
        EXPECT_FALSE(through.has_value());
      }
    }
  }
  EXPECT_FALSE(ParseWorkerAction("reboot").has_value());
}

TEST(Vocabulary, CommandTypesInstanceAndNodeStatesRoundTrip) {
  for (CommandType t :
       {CommandType::kPing, CommandType::kCreateNodeToken, CommandType::kDeployJob,
        CommandType::kUndeployJob, CommandType::kDrainNode, CommandType::kUndrainNode}) {
    EXPECT_EQ(ParseCommandType(CommandTypeName(t)), t);
  }
  EXPECT_EQ(CommandTypeName(CommandType::kCreateNodeToken), "create_node_token");
  EXPECT_FALSE(ParseCommandType("frobnicate").has_value());
  for (InstanceState s :
       {InstanceState::kPending, InstanceState::kScheduled, InstanceState::kStarting,
        InstanceState::kRunning, InstanceState::kRestarting, InstanceState::kExited,
        InstanceState::kFailed, InstanceState::kRemoving}) {
    EXPECT_EQ(ParseInstanceState(InstanceStateName(s)), s);
  }
  // A cluster's "pending" (placed, not started by its node yet) is starting at the root.
  EXPECT_EQ(InstanceStateFromReport("pending"), InstanceState::kStarting);
  EXPECT_EQ(InstanceStateFromReport("running"), InstanceState::kRunning);
  EXPECT_EQ(InstanceStateFromReport("exited"), InstanceState::kExited);
  EXPECT_EQ(InstanceStateFromReport("who-knows"), InstanceState::kStarting);
  EXPECT_TRUE(IsOnNode(InstanceState::kRunning));
  EXPECT_FALSE(IsOnNode(InstanceState::kScheduled));
  EXPECT_EQ(ParseNodeState("online"), NodeState::kOnline);
  EXPECT_FALSE(ParseNodeState("busy").has_value());
}

TEST(ClusterCloud, JsonKeepsTheKeysOfEarlierVersionsAndRoundTrips) {
  // A row written before the typed struct (src/broker/README.md keys).
  Json old = Json::parse(R"({"operation_id":"op-1","key_pair":"canopy-crd-1",
    "firewalls":{"ssh":"fw-s","api":"fw-a"},"identity_id":null,
    "handle":{"version":1,"data":{"instance_id":"i-1"}},"provider_id":"i-1","address":"198.18.0.5",
    "ssh":{"user":"root","port":22,"host_key":"SHA256:x","address":"198.18.0.5"},
    "service_firewalls":{"svc-1":"fw-9"},"something_new":1})");
  ClusterCloud c = ClusterCloudFromJson(old);
  EXPECT_EQ(c.operation_id, "op-1");
  EXPECT_EQ(c.ssh_firewall, "fw-s");
  EXPECT_EQ(c.api_firewall, "fw-a");
  EXPECT_EQ(c.identity, IdentityState::kNone);
  EXPECT_TRUE(c.HasInstance());
  ASSERT_TRUE(c.ssh.has_value());
  EXPECT_EQ(c.ssh->host_key, "SHA256:x");
  EXPECT_EQ(c.service_firewalls.at("svc-1"), "fw-9");
  old.erase("something_new");
  EXPECT_EQ(ClusterCloudToJson(c), old);
  // Not run yet vs. made.
  EXPECT_EQ(ClusterCloudFromJson(Json::object()).identity, IdentityState::kUnknown);
  ClusterCloud made;
  made.identity = IdentityState::kMade;
  made.identity_id = "id-1";
  made.identity_sealed = "c2VhbGVk";
  ClusterCloud back = ClusterCloudFromJson(ClusterCloudToJson(made));
  EXPECT_EQ(back.identity, IdentityState::kMade);
  EXPECT_EQ(back.identity_sealed, "c2VhbGVk");
  EXPECT_TRUE(ClusterCloudToJson(ClusterCloud{}).empty());
}

TEST(WorkerState, NamesRoundTripAndOnlyTerminatedIsUnbilled) {
  for (S s : {S::kBooting, S::kActive, S::kFailed, S::kTerminating, S::kStopped, S::kTerminated}) {
    EXPECT_EQ(ParseWorkerState(WorkerStateName(s)), s);
    EXPECT_EQ(IsBilled(s), s != S::kTerminated);
  }
  EXPECT_FALSE(ParseWorkerState("active").has_value());
}

TEST(NodeSystem, RoundTripsAndRefusesWrongTypes) {
  core::NodeSystem s{"Debian GNU/Linux 12 (bookworm)", "6.1.0-18-amd64", "x86_64", 2, 1987};
  auto back = core::NodeSystemFromJson(core::NodeSystemToJson(s));
  ASSERT_OK(back);
  EXPECT_EQ(back->os, s.os);
  EXPECT_EQ(back->kernel, s.kernel);
  EXPECT_EQ(back->arch, s.arch);
  EXPECT_EQ(back->cpus, 2);
  EXPECT_EQ(back->memory_mib, 1987);
  auto partial = core::NodeSystemFromJson(Json{{"os", "x"}});
  ASSERT_OK(partial);
  EXPECT_EQ(partial->kernel, "");
  for (const Json& bad : {Json("str"), Json{{"os", 1}}, Json{{"cpus", -1}},
                          Json{{"os", std::string(300, 'a')}}, Json{{"memory_mib", "1"}}}) {
    auto r = core::NodeSystemFromJson(bad);
    ASSERT_FALSE(r) << bad.dump();
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace canopy::core
