#include "scheduler/placement.h"

#include <gtest/gtest.h>

#include "scheduler/firewall_sync.h"

namespace canopy::scheduler {
namespace {

core::Cluster ClusterWith(const std::string& id, std::vector<core::ClusterNodeInfo> nodes,
                          core::ClusterState state = core::ClusterState::kActive) {
  core::Cluster c;
  c.id = id;
  c.state = state;
  c.nodes = std::move(nodes);
  return c;
}

core::ClusterNodeInfo Node(const std::string& id, int64_t cpu, int64_t mem,
                           const std::string& state = "online", bool draining = false) {
  core::ClusterNodeInfo n;
  n.id = id;
  n.state = *core::ParseNodeState(state);
  n.cpu_millis = cpu;
  n.memory_mib = mem;
  n.draining = draining;
  return n;
}

TEST(Placement, PicksTheClusterWithMostFreeMemoryThatHasAFittingNode) {
  auto cands = Candidates({ClusterWith("a", {Node("a1", 1000, 512), Node("a2", 1000, 512)}),
                           ClusterWith("b", {Node("b1", 2000, 900)})},
                          {});
  MostFreeMemoryPicker p;
  EXPECT_EQ(p.Pick({500, 256, std::nullopt}, cands), "a");   // 1024 free vs 900
  EXPECT_EQ(p.Pick({1500, 256, std::nullopt}, cands), "b");  // only b1 has 1500 cpu
  EXPECT_EQ(p.Pick({500, 600, std::nullopt}, cands), "b");   // no single a-node has 600 MiB
  EXPECT_EQ(p.Pick({500, 1000, std::nullopt}, cands), std::nullopt);
}

TEST(Placement, ConstraintLimitsTheCandidates) {
  auto cands = Candidates(
      {ClusterWith("a", {Node("a1", 1000, 4096)}), ClusterWith("b", {Node("b1", 1000, 512)})}, {});
  MostFreeMemoryPicker p;
  EXPECT_EQ(p.Pick({100, 64, std::string("b")}, cands), "b");
  EXPECT_EQ(p.Pick({100, 1024, std::string("b")}, cands), std::nullopt);
  EXPECT_EQ(p.Pick({100, 64, std::string("zzz")}, cands), std::nullopt);
}

TEST(Placement, OfflineDrainingNodesAndInactiveClustersOfferNothing) {
  auto cands = Candidates(
      {ClusterWith("a",
                   {Node("a1", 4000, 4096, "offline"), Node("a2", 4000, 4096, "online", true)}),
       ClusterWith("b", {Node("b1", 4000, 4096)}, core::ClusterState::kOffline)},
      {});
  MostFreeMemoryPicker p;
  EXPECT_EQ(p.Pick({1, 1, std::nullopt}, cands), std::nullopt);
}

TEST(Placement, InstancesAlreadyPlacedTakeTheirRoom) {
  auto clusters = std::vector<core::Cluster>{ClusterWith("a", {Node("a1", 1000, 512)})};
  MostFreeMemoryPicker p;
  // On the node.
  EXPECT_EQ(p.Pick({600, 64, std::nullopt}, Candidates(clusters, {{"a", "a1", 500, 64}})),
            std::nullopt);
  EXPECT_EQ(p.Pick({500, 64, std::nullopt}, Candidates(clusters, {{"a", "a1", 500, 64}})), "a");
  // Sent to the cluster, node not known yet: still counted.
  EXPECT_EQ(p.Pick({600, 64, std::nullopt}, Candidates(clusters, {{"a", "", 500, 64}})),
            std::nullopt);
  // Elsewhere: ignored.
  EXPECT_EQ(p.Pick({600, 64, std::nullopt}, Candidates(clusters, {{"b", "b1", 500, 64}})), "a");
}

core::Service Svc(const std::string& id, bool ports) {
  core::Service s;
  s.id = id;
  s.spec = {
      {"ports", ports ? Json::array({{{"port", 8080}, {"protocol", "tcp"}}}) : Json::array()}};
  return s;
}

core::ServiceInstance Inst(const std::string& job, const std::string& svc,
                           const std::string& cluster, const std::string& node,
                           const std::string& state) {
  core::ServiceInstance i;
  i.job_id = job;
  i.service_id = svc;
  i.cluster_id = cluster;
  i.node_id = node;
  i.state = *core::ParseInstanceState(state);
  return i;
}

TEST(FirewallDesire, OneFirewallPerServiceOnTheNodesItRunsOn) {
  core::Worker w1, w2, w3, other;
  w1.id = "w1";
  w1.cluster_id = "c";
  w1.node_id = "n1";
  w2.id = "w2";
  w2.cluster_id = "c";
  w2.node_id = "n2";
  w3.id = "w3";
  w3.cluster_id = "c";  // no node yet
  other.id = "x";
  other.cluster_id = "d";
  other.node_id = "n1";
  auto desired = DesiredServiceFirewalls(
      "c", {w1, w2, w3, other},
      {Inst("s1-r0", "s1", "c", "n1", "running"), Inst("s1-r1", "s1", "c", "n1", "starting"),
       Inst("s2-r0", "s2", "c", "n1", "running"),   // same port, other service, same node
       Inst("s2-r1", "s2", "c", "n2", "removing"),  // going away: closed
       Inst("s3-r0", "s3", "c", "n2", "running"),   // no ports: no firewall
       Inst("s1-r2", "s1", "c", "", "pending"), Inst("s1-r3", "s1", "d", "n1", "running")},
      {Svc("s1", true), Svc("s2", true), Svc("s3", false)});
  EXPECT_EQ(desired.size(), 3u);
  EXPECT_EQ(desired["w1"], (std::set<std::string>{"s1", "s2"}));
  EXPECT_TRUE(desired["w2"].empty());
  EXPECT_TRUE(desired["w3"].empty());
}

TEST(FirewallDesire, ThePortStaysOpenUntilTheLastReplicaOnTheNodeLeaves) {
  core::Worker w;
  w.id = "w1";
  w.cluster_id = "c";
  w.node_id = "n1";
  std::vector<core::Service> svcs{Svc("s1", true)};
  auto two = DesiredServiceFirewalls(
      "c", {w}, {Inst("a", "s1", "c", "n1", "running"), Inst("b", "s1", "c", "n1", "running")},
      svcs);
  auto one = DesiredServiceFirewalls(
      "c", {w}, {Inst("a", "s1", "c", "n1", "removing"), Inst("b", "s1", "c", "n1", "running")},
      svcs);
  auto none = DesiredServiceFirewalls(
      "c", {w}, {Inst("a", "s1", "c", "n1", "removing"), Inst("b", "s1", "c", "n1", "removing")},
      svcs);
  EXPECT_EQ(two["w1"].size(), 1u);
  EXPECT_EQ(one["w1"].size(), 1u);
  EXPECT_TRUE(none["w1"].empty());
}

}  // namespace
}  // namespace canopy::scheduler
