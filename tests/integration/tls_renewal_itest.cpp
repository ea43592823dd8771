// Certificates rotate before they expire without downtime (issue 14, part 1): with a root that
// issues 20-second certificates, a cluster and an adapter each get a new one (same name, new
// serial) over their link / heartbeat, and keep working with it: the cluster links on, the root
// still reaches the adapter (adding a credential calls it).
#include <gtest/gtest.h>

#include <chrono>

#include "net/pki.h"
#include "support/daemons.h"
#include "support/test_util.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

std::string FingerprintOf(const std::string& path) {
  return net::pki::Fingerprint(ReadFile(path)).value_or("");
}

TEST(TlsRenewal, ClusterAndAdapterCertificatesRenewWhileTheyKeepWorking) {
  TempDir tmp;
  RootDaemon root(tmp.str() + "/root",
                  {"--tls", "--test-tier-cert-seconds", "20", "--heartbeat-interval", "1"});
  root.Start();
  std::string admin = root.AdminToken();
  std::string fingerprint = *net::pki::Fingerprint(ReadFile(root.data_dir() + "/ca.crt"));

  auto ptok = root.Call("POST", "/api/v1/provider-tokens", "{}", admin);
  ASSERT_EQ(ptok.status, 201) << ptok.body;
  AdapterDaemon adapter("fake", root.url(), tmp.str() + "/adapter",
                        {"--ca-fingerprint", fingerprint});
  adapter.Start(ptok.json["token"].get<std::string>());
  auto tok = root.Call("POST", "/api/v1/cluster-tokens", R"({"name":"renew"})", admin);
  ASSERT_EQ(tok.status, 201) << tok.body;
  std::string cluster_id = tok.json["cluster_id"];
  ClusterDaemon cluster(root.url(), tmp.str() + "/cluster",
                        {"--ca-fingerprint", fingerprint, "--link-interval", "1"});
  cluster.Start(tok.json["token"].get<std::string>());
  ASSERT_TRUE(WaitFor(
      [&] {
        return root.Call("GET", "/api/v1/clusters/" + cluster_id, "", admin)
                   .json.value("state", "") == "ACTIVE";
      },
      20s))
      << ReadFile(cluster.log_path());

  const std::string cluster_cert = tmp.str() + "/cluster/tls.crt";
  const std::string adapter_cert = tmp.str() + "/adapter/tls.crt";
  std::string c0 = FingerprintOf(cluster_cert), a0 = FingerprintOf(adapter_cert);
  ASSERT_FALSE(c0.empty());
  ASSERT_FALSE(a0.empty());
  // A third of 25 s (20 s + 5 s backdated) left: renewed about 12 s after issue.
  ASSERT_TRUE(WaitFor(
      [&] { return FingerprintOf(cluster_cert) != c0 && FingerprintOf(adapter_cert) != a0; }, 30s))
      << ReadFile(cluster.log_path()) << ReadFile(adapter.log_path());
  auto renewed = net::pki::ReadCert(ReadFile(cluster_cert));
  ASSERT_TRUE(renewed.has_value());
  EXPECT_EQ(renewed->cn, "cluster:" + cluster_id);
  EXPECT_TRUE(net::pki::VerifyChain(ReadFile(cluster_cert), ReadFile(root.data_dir() + "/ca.crt"))
                  .has_value());

  // Still working with the new certificates: the cluster links (its last_seen moves on) and
  // the root calls the adapter (a credential is validated by it).
  std::string seen =
      root.Call("GET", "/api/v1/clusters/" + cluster_id, "", admin).json.value("last_seen", "");
  EXPECT_TRUE(WaitFor(
      [&] {
        auto c = root.Call("GET", "/api/v1/clusters/" + cluster_id, "", admin).json;
        return c.value("state", "") == "ACTIVE" && c.value("last_seen", "") != seen;
      },
      10s));
  auto cred = root.Call("POST", "/api/v1/credentials",
                        R"({"name":"f","provider":"fake","secret":{"api_key":"k"}})", admin);
  EXPECT_EQ(cred.status, 201) << cred.body << ReadFile(adapter.log_path());
  EXPECT_NE(ReadFile(cluster.log_path()).find("certificate renewed"), std::string::npos);
}

}  // namespace
}  // namespace canopy::testing
