// Issue 14 acceptance, trust between tiers (TLS on loopback with `canopyd root --tls`): a
// forged CA fingerprint makes pairing fail with a clear error and leaves the token usable; the
// cluster then pairs with the right fingerprint and links over mutual TLS; its key alone, or its
// key with a certificate the root did not issue, is refused.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "net/client.h"
#include "net/pki.h"
#include "support/daemons.h"
#include "support/test_util.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

struct Link {
  int status = 0;
  std::string error;  // transport error, when there was no answer
  std::string body;
};

// One link call of cluster `id` with `key`, as a client with `tls`.
Link CallLink(const std::string& root_url, const std::string& id, const std::string& key,
              net::TlsClientConfigPtr tls) {
  net::ClientRequest req;
  req.method = "POST";
  req.url = root_url + "/api/v1/clusters/" + id + "/link?wait=0";
  req.headers["Authorization"] = "Bearer " + key;
  req.headers["Content-Type"] = "application/json";
  req.body = "{}";
  auto r = net::HttpClient(std::move(tls)).Do(req);
  if (!r) return {0, r.error().message, ""};
  return {r->status, "", r->body};
}

TEST(TlsTiers, ForgedFingerprintFailsPairingThenTheClusterLinksOnlyWithItsOwnCertificate) {
  TempDir tmp;
  RootDaemon root(tmp.str() + "/root", {"--tls"});
  root.Start();
  ASSERT_TRUE(root.url().starts_with("https://")) << root.url();
  std::string admin = root.AdminToken();
  auto tok = root.Call("POST", "/api/v1/cluster-tokens", R"({"name":"edge-1"})", admin);
  ASSERT_EQ(tok.status, 201) << tok.body;
  const std::string token = tok.json["token"];
  const std::string cluster_id = tok.json["cluster_id"];
  const std::string fingerprint = tok.json.value("ca_fingerprint", "");
  ASSERT_EQ(fingerprint, *net::pki::Fingerprint(ReadFile(root.data_dir() + "/ca.crt")));

  // A forged fingerprint: the cluster refuses the root before sending its token.
  const std::string forged = "sha256:" + std::string(64, '0');
  {
    std::string log = tmp.str() + "/forged.log";
    Process p({CanopydPath(), "cluster", "--root", root.url(), "--data-dir", tmp.str() + "/forged",
               "--listen", "127.0.0.1:0", "--token", token, "--ca-fingerprint", forged},
              {}, log);
    EXPECT_NE(p.Wait(), 0);
    std::string out = ReadFile(log);
    EXPECT_NE(out.find("refusing to trust"), std::string::npos) << out;
    EXPECT_NE(out.find(fingerprint), std::string::npos) << out;
    EXPECT_NE(out.find(forged), std::string::npos) << out;
    EXPECT_EQ(out.find(token), std::string::npos) << "the token was logged";
  }
  // No fingerprint at all: a clear error too.
  {
    std::string log = tmp.str() + "/none.log";
    Process p({CanopydPath(), "cluster", "--root", root.url(), "--data-dir", tmp.str() + "/none",
               "--listen", "127.0.0.1:0", "--token", token},
              {}, log);
    EXPECT_NE(p.Wait(), 0);
    EXPECT_NE(ReadFile(log).find("--ca-fingerprint"), std::string::npos) << ReadFile(log);
  }

  // The right fingerprint, the same token (unused so far): paired, over TLS.
  const std::string dir = tmp.str() + "/cluster";
  ClusterDaemon cluster(root.url(), dir, {"--ca-fingerprint", fingerprint, "--link-interval", "1"});
  cluster.Start(token);
  ASSERT_TRUE(cluster.url().starts_with("https://")) << cluster.url();
  ASSERT_TRUE(WaitFor(
      [&] {
        return root.Call("GET", "/api/v1/clusters/" + cluster_id, "", admin)
                   .json.value("state", "") == "ACTIVE";
      },
      20s))
      << ReadFile(cluster.log_path());
  auto cert = net::pki::ReadCert(ReadFile(dir + "/tls.crt"));
  ASSERT_TRUE(cert.has_value());
  EXPECT_EQ(cert->cn, "cluster:" + cluster_id);
  EXPECT_EQ(cert->issuer_cn, "Canopy root CA");
  auto identity = ParseJsonObject(ReadFile(dir + "/identity.json"));
  ASSERT_TRUE(identity.has_value());
  const std::string key = (*identity)["cluster_key"];
  const std::string ca = ReadFile(dir + "/ca.crt");

  // Its key alone (e.g. copied off its disk) is refused.
  auto trust_only = std::make_shared<net::TlsClientConfig>();
  trust_only->ca_pem = ca;
  trust_only->verify_host = false;
  trust_only->expect_cn = "canopy-root";
  Link bare = CallLink(root.url(), cluster_id, key, trust_only);
  EXPECT_EQ(bare.status, 401) << bare.body << bare.error;
  EXPECT_NE(bare.body.find("client certificate"), std::string::npos) << bare.body;

  // With a certificate of the right name from another CA: the handshake fails.
  auto other_ca = net::pki::Authority::Create("Not the root", std::chrono::hours(24));
  ASSERT_TRUE(other_ca.has_value());
  auto k = net::pki::NewKey();
  auto forged_cert = other_ca->Issue(*net::pki::NewCsr(*k, "x", {}), "cluster:" + cluster_id, {},
                                     net::pki::Usage::kClient, std::chrono::hours(1));
  ASSERT_TRUE(forged_cert.has_value());
  auto impostor = std::make_shared<net::TlsClientConfig>(*trust_only);
  impostor->chain_pem = *forged_cert;
  impostor->key_pem = *k;
  Link refused = CallLink(root.url(), cluster_id, key, impostor);
  EXPECT_EQ(refused.status, 0) << refused.body;
  EXPECT_NE(refused.error, "");

  // The cluster's own certificate and key: answered.
  auto own = std::make_shared<net::TlsClientConfig>(*trust_only);
  own->chain_pem = ReadFile(dir + "/tls.crt");
  own->key_pem = SecretString(ReadFile(dir + "/tls.key"));
  Link ok = CallLink(root.url(), cluster_id, key, own);
  EXPECT_EQ(ok.status, 200) << ok.body << ok.error;
}

}  // namespace
}  // namespace canopy::testing
