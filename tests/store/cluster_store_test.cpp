#include "store/cluster_store.h"

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace canopy::store {
namespace {

using canopy::testing::TempDir;

const TimePoint kT0 = FromUnixMillis(1'800'000'000'000);
TimePoint At(int64_t ms) { return kT0 + std::chrono::milliseconds(ms); }

TEST(ClusterStore, NodeTokensAreSingleUseAndExpire) {
  TempDir dir;
  auto s = OpenClusterStore(dir.str() + "/c/cluster.db");
  ASSERT_OK(s);
  ASSERT_OK((*s)->CreateNodeToken({"ntk-1", "h1", At(100), At(0), std::nullopt}));
  ASSERT_OK((*s)->CreateNodeToken({"ntk-2", "h2", At(100), At(0), std::nullopt}));
  EXPECT_OK((*s)->ConsumeNodeToken("h1", At(1)));
  EXPECT_EQ((*s)->ConsumeNodeToken("h1", At(2)).error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ((*s)->ConsumeNodeToken("h2", At(100)).error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ((*s)->ConsumeNodeToken("nope", At(1)).error().code, ErrorCode::kUnauthenticated);
}

TEST(ClusterStore, NodesRoundTripAndSurviveReopen) {
  TempDir dir;
  std::string path = dir.str() + "/cluster.db";
  {
    auto s = OpenClusterStore(path);
    ASSERT_OK(s);
    core::NodeRecord n;
    n.id = "nod-1";
    n.hostname = "h";
    n.address = "10.0.0.2";
    n.key_hash = "kh";
    n.cpu_millis = 2000;
    n.memory_mib = 4096;
    n.memory_available_mib = 1000;
    n.load1 = 0.25;
    n.registered_at = At(0);
    n.last_heartbeat = At(1);
    ASSERT_OK((*s)->CreateNode(n));
    EXPECT_EQ((*s)->CreateNode(n).error().code, ErrorCode::kAlreadyExists);
    n.address = "10.0.0.3";
    n.last_heartbeat = At(5);
    ASSERT_OK((*s)->UpdateNode(n));
    n.id = "nod-x";
    EXPECT_EQ((*s)->UpdateNode(n).error().code, ErrorCode::kNotFound);
  }
  auto s = OpenClusterStore(path);
  ASSERT_OK(s);
  auto nodes = (*s)->ListNodes();
  ASSERT_OK(nodes);
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ((*nodes)[0].address, "10.0.0.3");
  EXPECT_EQ((*nodes)[0].last_heartbeat, At(5));
  EXPECT_DOUBLE_EQ((*nodes)[0].load1, 0.25);
  EXPECT_EQ((*nodes)[0].key_hash, "kh");
  EXPECT_EQ((*s)->GetNode("nope").error().code, ErrorCode::kNotFound);
}

TEST(ClusterStore, OutcomesKeepTheFirstResultUntilAcknowledged) {
  TempDir dir;
  auto s = OpenClusterStore(dir.str() + "/cluster.db");
  ASSERT_OK(s);
  core::CommandOutcome o;
  o.id = "cmd-1";
  o.type = "ping";
  o.result = Json{{"pong", true}};
  o.created_at = At(0);
  ASSERT_OK((*s)->PutOutcome(o));
  o.result = Json{{"pong", false}};
  ASSERT_OK((*s)->PutOutcome(o));
  EXPECT_EQ((*s)->GetOutcome("cmd-1")->result, (Json{{"pong", true}}));
  EXPECT_EQ((*s)->ListUnacknowledged()->size(), 1u);
  ASSERT_OK((*s)->MarkAcknowledged({"cmd-1"}));
  EXPECT_TRUE((*s)->ListUnacknowledged()->empty());
  EXPECT_EQ((*s)->GetOutcome("cmd-2").error().code, ErrorCode::kNotFound);
}

TEST(ClusterStore, JobPlacementsRoundTripAndSurviveReopen) {
  TempDir dir;
  std::string path = dir.str() + "/cluster.db";
  {
    auto s = OpenClusterStore(path);
    ASSERT_OK(s);
    JobPlacement j;
    j.job_id = "job-1";
    j.service_id = "svc-1";
    j.node_id = "nod-1";
    j.spec = Json{{"id", "job-1"}, {"cpu_millis", 100}};
    j.created_at = j.updated_at = At(0);
    ASSERT_OK((*s)->CreateJob(j));
    EXPECT_EQ((*s)->CreateJob(j).error().code, ErrorCode::kAlreadyExists);
    j.job_id = "job-2";
    j.node_id = "nod-2";
    j.created_at = j.updated_at = At(1);
    ASSERT_OK((*s)->CreateJob(j));
    ASSERT_OK((*s)->UpdateJobStatus("job-1", "nod-1", Json{{"state", "running"}}, At(5)));
    EXPECT_EQ((*s)->UpdateJobStatus("job-1", "nod-2", Json::object(), At(5)).error().code,
              ErrorCode::kNotFound);
    EXPECT_EQ((*s)->UpdateJobStatus("job-x", "nod-1", Json::object(), At(5)).error().code,
              ErrorCode::kNotFound);
  }
  auto s = OpenClusterStore(path);
  ASSERT_OK(s);
  auto all = (*s)->ListJobs("");
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].job_id, "job-1");
  EXPECT_EQ((*all)[0].status, (Json{{"state", "running"}}));
  EXPECT_EQ((*all)[0].updated_at, At(5));
  EXPECT_EQ((*all)[0].spec["cpu_millis"], 100);
  auto on2 = (*s)->ListJobs("nod-2");
  ASSERT_OK(on2);
  ASSERT_EQ(on2->size(), 1u);
  EXPECT_EQ((*on2)[0].job_id, "job-2");
  EXPECT_EQ((*s)->GetJob("job-2")->service_id, "svc-1");
  ASSERT_OK((*s)->DeleteJob("job-2"));
  EXPECT_EQ((*s)->DeleteJob("job-2").error().code, ErrorCode::kNotFound);
  EXPECT_EQ((*s)->GetJob("job-2").error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace canopy::store
