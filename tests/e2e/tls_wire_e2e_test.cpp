// Issue 14 acceptance, on the wire: a cloud cluster with a worker is made on the local provider
// while every TCP segment on the test bridge (cluster ↔ root, node ↔ cluster, SSH) and on
// loopback to the adapter (root ↔ adapter) is captured. None of them is plaintext HTTP, and each
// of those hops carried TLS. Root only (AF_PACKET, namespaces).
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <thread>

#include "support/broker_env.h"
#include "support/packet_capture.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

uint16_t PortOf(const std::string& url) {
  return static_cast<uint16_t>(std::stoi(url.substr(url.rfind(':') + 1)));
}

TEST(TlsOnTheWire, NoPlaintextHttpBetweenClusterRootNodeAndAdapter) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "needs root";
  BrokerEnv env;
  env.Start();
  ASSERT_FALSE(env.root().tier_url().empty());
  const uint16_t tier_port = PortOf(env.root().tier_url());
  const uint16_t adapter_port = PortOf(env.adapter().url());

  // Every interface: frames between two instances cross the bridge without reaching the bridge
  // device itself, but they do cross the instances' veths.
  PacketCapture everywhere("");
  Json created = env.CreateCluster("wire", 1);
  ASSERT_TRUE(created.contains("operation_id")) << created.dump();
  Json op = env.WaitOperation(created["operation_id"], 180s);
  ASSERT_EQ(op.value("state", ""), "succeeded") << op.dump();
  const std::string cluster = created["cluster"]["id"];
  // A few link calls and heartbeats more.
  std::this_thread::sleep_for(4s);
  Json c = env.Cluster(cluster);
  ASSERT_EQ(c.value("state", ""), "ACTIVE");
  const std::string cluster_url = c.value("url", "");
  ASSERT_TRUE(cluster_url.starts_with("https://")) << cluster_url;  // what nodes dial
  const uint16_t cluster_port = PortOf(cluster_url);

  // The test network's addresses (the instances, the bridge's gateway), and loopback to the
  // adapter.
  std::string subnet = env.net().subnet();
  std::string prefix = subnet.substr(0, subnet.rfind('.') + 1);
  std::vector<TcpSegment> on_bridge, on_lo;
  for (auto& s : everywhere.Stop()) {
    if (s.src.starts_with(prefix) || s.dst.starts_with(prefix)) {
      on_bridge.push_back(std::move(s));
    } else if (s.src == "127.0.0.1" && (s.sport == adapter_port || s.dport == adapter_port)) {
      on_lo.push_back(std::move(s));
    }
  }
  size_t tls_to_root = 0, tls_to_cluster = 0, tls_to_adapter = 0;
  for (const auto& s : on_bridge) {
    EXPECT_FALSE(LooksLikePlainHttp(s.payload))
        << "plaintext HTTP on the bridge " << s.src << ":" << s.sport << " -> " << s.dst << ":"
        << s.dport << ": " << s.payload.substr(0, 80);
    EXPECT_EQ(s.payload.find("Bearer "), std::string::npos) << s.src << " -> " << s.dst;
    if (s.dport == tier_port && LooksLikeTls(s.payload)) ++tls_to_root;
    if (s.dport == cluster_port && LooksLikeTls(s.payload)) ++tls_to_cluster;
  }
  for (const auto& s : on_lo) {
    EXPECT_FALSE(LooksLikePlainHttp(s.payload))
        << "plaintext HTTP to the adapter: " << s.payload.substr(0, 80);
    if (s.dport == adapter_port && LooksLikeTls(s.payload)) ++tls_to_adapter;
  }
  // Not vacuous: each hop carried TLS records.
  EXPECT_GT(tls_to_root, 0u) << on_bridge.size() << " segments on the bridge";
  std::set<std::string> flows;
  for (const auto& s : on_bridge)
    flows.insert(s.src + ":" + std::to_string(s.sport) + " -> " + s.dst + ":" +
                 std::to_string(s.dport));
  std::string seen;
  for (const auto& f : flows) seen += f + "\n";
  EXPECT_GT(tls_to_cluster, 0u) << cluster_url << ": " << on_bridge.size()
                                << " segments on the bridge:\n"
                                << seen;
  EXPECT_GT(tls_to_adapter, 0u) << on_lo.size() << " segments to the adapter";
}

}  // namespace
}  // namespace canopy::testing
