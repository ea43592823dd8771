// TLS between a real HttpServer on 127.0.0.1 (port 0) and HttpClient: server verification by
// the client (CA, host, expected common name), mutual TLS, certificate rotation, FetchCa.
#include "net/tls.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "net/client.h"
#include "net/http.h"
#include "net/pki.h"
#include "net/raw_socket.h"
#include "support/test_util.h"

namespace canopy::net {
namespace {

using namespace std::chrono_literals;
using testing::RawSocket;

struct Leaf {
  SecretString key;
  std::string cert;
};

Response Renderer(const Error& e) {
  int status = e.code == ErrorCode::kNotFound ? 404 : 500;
  return Response::FromJson(status, Json{{"error", {{"message", e.message}}}});
}

bool Has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = pki::Authority::Create("canopy-root", 24h * 30);
    ASSERT_OK(ca);
    ca_.emplace(std::move(*ca));
    auto other = pki::Authority::Create("canopy-root", 24h * 30);  // same name, another key
    ASSERT_OK(other);
    other_ca_.emplace(std::move(*other));
    server_leaf_ = Issue(*ca_, "cluster:c1", pki::Usage::kServerClient, {"127.0.0.1", "localhost"});

    router_->Add("GET", "/who", [](const Request& req) {
      return Response::FromJson(200, Json{{"tls", req.tls}, {"peer_cn", req.peer_cn}});
    });
    router_->Add("GET", "/ca.crt", [this](const Request&) {
      return Response::Text(200, ca_served_, "application/x-pem-file");
    });
    ca_served_ = ca_->cert_pem();
  }

  void TearDown() override {
    for (auto& s : servers_) s->Stop();
  }

  static Leaf Issue(const pki::Authority& ca, const std::string& cn, pki::Usage usage,
                    const std::vector<std::string>& sans = {}) {
    Leaf out;
    auto key = pki::NewKey();
    EXPECT_TRUE(key.has_value());
    if (!key) return out;
    out.key = *key;
    auto csr = pki::NewCsr(out.key, cn, sans);
    EXPECT_TRUE(csr.has_value()) << csr.error().ToString();
    if (!csr) return out;
    auto cert = ca.Issue(*csr, cn, sans, usage, 24h);
    EXPECT_TRUE(cert.has_value()) << cert.error().ToString();
    if (cert) out.cert = *cert;
    return out;
  }

  static std::shared_ptr<TlsServerConfig> ServerCfg(const Leaf& leaf) {
    auto cfg = std::make_shared<TlsServerConfig>();
    cfg->chain_pem = leaf.cert;
    cfg->key_pem = leaf.key;
    return cfg;
  }

  // A client trusting the test CA (a new config object: a new connection).
  std::shared_ptr<TlsClientConfig> ClientCfg(const std::string& expect_cn = "") const {
    auto cfg = std::make_shared<TlsClientConfig>();
    cfg->ca_pem = ca_->cert_pem();
    cfg->expect_cn = expect_cn;
    return cfg;
  }

  std::shared_ptr<TlsClientConfig> MutualCfg(const Leaf& leaf,
                                             const std::string& extra_chain = "") {
    auto cfg = ClientCfg();
    cfg->chain_pem = leaf.cert + extra_chain;
    cfg->key_pem = leaf.key;
    return cfg;
  }

  HttpServer* Start(TlsServerConfigPtr tls) {
    ServerOptions opts;
    opts.host = "127.0.0.1";
    opts.port = 0;
    opts.io_threads = 1;
    opts.worker_threads = 2;
    opts.read_timeout = 5s;
    opts.tls = std::move(tls);
    auto s = HttpServer::Start(opts, router_, Renderer, nullptr);
    EXPECT_TRUE(s.has_value()) << s.error().ToString();
    if (!s) return nullptr;
    servers_.push_back(std::move(*s));
    return servers_.back().get();
  }

  static std::string Url(const HttpServer* s, const std::string& path = "/who",
                         const std::string& scheme = "https",
                         const std::string& host = "127.0.0.1") {
    return scheme + "://" + host + ":" + std::to_string(s->port()) + path;
  }

  static Result<ClientResponse> Get(TlsClientConfigPtr cfg, const std::string& url) {
    ClientRequest req;
    req.url = url;
    req.timeout = 10s;
    req.connect_timeout = 5s;
    return (cfg ? HttpClient(std::move(cfg)) : HttpClient()).Do(req);
  }

  // GET /who; the parsed answer.
  static Result<Json> Who(TlsClientConfigPtr cfg, const HttpServer* s) {
    CANOPY_ASSIGN_OR_RETURN(ClientResponse r, Get(std::move(cfg), Url(s)));
    if (r.status != 200) return Error::Internal("HTTP " + std::to_string(r.status));
    return ParseJson(r.body);
  }

  std::optional<pki::Authority> ca_;
  std::optional<pki::Authority> other_ca_;
  Leaf server_leaf_;
  std::string ca_served_;
  std::shared_ptr<Router> router_ = std::make_shared<Router>();
  std::vector<std::unique_ptr<HttpServer>> servers_;
};

#define EXPECT_TLS_FAILS(expr)                                                            \
  do {                                                                                    \
    auto&& tls_r_ = (expr);                                                               \
    ASSERT_FALSE(tls_r_.has_value());                                                     \
    EXPECT_EQ(tls_r_.error().code, ErrorCode::kUnavailable) << tls_r_.error().ToString(); \
  } while (0)

TEST(TlsHelpersTest, CommonNameMatches) {
  EXPECT_TRUE(CommonNameMatches("", "anything"));
  EXPECT_TRUE(CommonNameMatches("", ""));
  EXPECT_TRUE(CommonNameMatches("canopy-root", "canopy-root"));
  EXPECT_FALSE(CommonNameMatches("canopy-root", "canopy-root2"));
  EXPECT_FALSE(CommonNameMatches("canopy-root", "canopy"));
  EXPECT_TRUE(CommonNameMatches("cluster:*", "cluster:c1"));
  EXPECT_FALSE(CommonNameMatches("cluster:*", "cluster:"));  // something after the prefix
  EXPECT_FALSE(CommonNameMatches("cluster:*", "cluster-ca:c1"));
  EXPECT_FALSE(CommonNameMatches("cluster:*", "node:cluster:c1"));
  EXPECT_FALSE(CommonNameMatches("cluster:*", ""));
}

TEST(TlsHelpersTest, IsLoopbackHost) {
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("127.1.2.3"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.1"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
  EXPECT_FALSE(IsLoopbackHost("example.com"));
  EXPECT_FALSE(IsLoopbackHost("localhost.example.com"));
  EXPECT_FALSE(IsLoopbackHost(""));
}

TEST_F(TlsTest, HttpsGetWithTheCa) {
  HttpServer* s = Start(ServerCfg(server_leaf_));
  ASSERT_NE(s, nullptr);
  auto j = Who(ClientCfg(), s);
  ASSERT_OK(j);
  EXPECT_EQ((*j)["tls"], true);
  EXPECT_EQ((*j)["peer_cn"], "");  // no client certificate
  // By DNS name too (SAN "localhost").
  auto r = Get(ClientCfg(), Url(s, "/who", "https", "localhost"));
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(TlsTest, PlainListenerSaysNoTlsAndRefusesUpdateTls) {
  HttpServer* s = Start(nullptr);
  ASSERT_NE(s, nullptr);
  auto r = Get(nullptr, Url(s, "/who", "http"));
  ASSERT_OK(r);
  auto j = ParseJson(r->body);
  ASSERT_OK(j);
  EXPECT_EQ((*j)["tls"], false);
  auto u = s->UpdateTls(ServerCfg(server_leaf_));
  ASSERT_FALSE(u.has_value());
  EXPECT_EQ(u.error().code, ErrorCode::kFailedPrecondition);
}

TEST_F(TlsTest, ClientWithoutTheCaFails) {
  HttpServer* s = Start(ServerCfg(server_leaf_));
  ASSERT_NE(s, nullptr);
  // The system's roots.
  auto r = Get(std::make_shared<TlsClientConfig>(), Url(s));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_TRUE(Has(r.error().message, "certificate verify failed")) << r.error().message;
  // No TLS settings at all.
  auto r2 = Get(nullptr, Url(s));
  ASSERT_FALSE(r2.has_value());
  EXPECT_EQ(r2.error().code, ErrorCode::kUnavailable);
  EXPECT_TRUE(Has(r2.error().message, "certificate verify failed")) << r2.error().message;
  // Another CA (same name).
  auto cfg = std::make_shared<TlsClientConfig>();
  cfg->ca_pem = other_ca_->cert_pem();
  auto r3 = Get(cfg, Url(s));
  ASSERT_FALSE(r3.has_value());
  EXPECT_EQ(r3.error().code, ErrorCode::kUnavailable);
  EXPECT_TRUE(Has(r3.error().message, "certificate verify failed")) << r3.error().message;
}

TEST_F(TlsTest, ExpectedCommonName) {
  HttpServer* s = Start(ServerCfg(server_leaf_));
  ASSERT_NE(s, nullptr);
  EXPECT_OK(Who(ClientCfg("cluster:c1"), s));
  EXPECT_OK(Who(ClientCfg("cluster:*"), s));
  EXPECT_OK(Who(ClientCfg("cluster:c*"), s));
  auto wrong = Who(ClientCfg("cluster:c2"), s);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code, ErrorCode::kUnavailable);
  EXPECT_TRUE(Has(wrong.error().message, "certificate verify failed")) << wrong.error().message;
  EXPECT_TLS_FAILS(Who(ClientCfg("node:*"), s));
  EXPECT_TLS_FAILS(Who(ClientCfg("canopy-root"), s));
  EXPECT_TLS_FAILS(Who(ClientCfg("cluster:c1x*"), s));
}

TEST_F(TlsTest, HostnameMismatchFails) {
  Leaf elsewhere = Issue(*ca_, "cluster:c1", pki::Usage::kServer, {"10.9.9.9"});
  HttpServer* s = Start(ServerCfg(elsewhere));
  ASSERT_NE(s, nullptr);
  auto r = Get(ClientCfg(), Url(s));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_TRUE(Has(r.error().message, "certificate verify failed")) << r.error().message;
  EXPECT_TLS_FAILS(Get(ClientCfg(), Url(s, "/who", "https", "localhost")));
  // The common name is no host name either (no SAN at all).
  Leaf no_san = Issue(*ca_, "127.0.0.1", pki::Usage::kServer, {});
  HttpServer* s2 = Start(ServerCfg(no_san));
  ASSERT_NE(s2, nullptr);
  EXPECT_TLS_FAILS(Get(ClientCfg(), Url(s2)));

  // Without the host check (the CA and the name still count).
  auto lax = ClientCfg("cluster:c1");
  lax->verify_host = false;
  EXPECT_OK(Who(lax, s));
  auto lax_wrong_cn = ClientCfg("cluster:c2");
  lax_wrong_cn->verify_host = false;
  EXPECT_TLS_FAILS(Who(lax_wrong_cn, s));
}

TEST_F(TlsTest, ServerWithAClientOnlyCertificateIsRefused) {
  Leaf client_only = Issue(*ca_, "cluster:c1", pki::Usage::kClient, {"127.0.0.1"});
  HttpServer* s = Start(ServerCfg(client_only));
  ASSERT_NE(s, nullptr);
  EXPECT_TLS_FAILS(Who(ClientCfg(), s));
}

TEST_F(TlsTest, MutualTlsGivesHandlersThePeerName) {
  auto cfg = ServerCfg(server_leaf_);
  cfg->client_ca_pem = ca_->cert_pem();
  HttpServer* s = Start(cfg);
  ASSERT_NE(s, nullptr);

  Leaf node = Issue(*ca_, "node:n1", pki::Usage::kClient);
  auto j = Who(MutualCfg(node), s);
  ASSERT_OK(j);
  EXPECT_EQ((*j)["tls"], true);
  EXPECT_EQ((*j)["peer_cn"], "node:n1");

  Leaf cluster = Issue(*ca_, "cluster:c9", pki::Usage::kServerClient);
  auto j2 = Who(MutualCfg(cluster), s);
  ASSERT_OK(j2);
  EXPECT_EQ((*j2)["peer_cn"], "cluster:c9");

  // Not required: a client without a certificate gets through, anonymous.
  auto j3 = Who(ClientCfg(), s);
  ASSERT_OK(j3);
  EXPECT_EQ((*j3)["tls"], true);
  EXPECT_EQ((*j3)["peer_cn"], "");
}

TEST_F(TlsTest, ClientCertificateOfAnotherCaFailsTheHandshake) {
  auto cfg = ServerCfg(server_leaf_);
  cfg->client_ca_pem = ca_->cert_pem();
  HttpServer* s = Start(cfg);
  ASSERT_NE(s, nullptr);
  Leaf stranger = Issue(*other_ca_, "node:n1", pki::Usage::kClient);
  EXPECT_TLS_FAILS(Who(MutualCfg(stranger), s));
  // The server still serves others.
  EXPECT_OK(Who(MutualCfg(Issue(*ca_, "node:n2", pki::Usage::kClient)), s));
}

TEST_F(TlsTest, RequiredClientCertificateMissingFails) {
  auto cfg = ServerCfg(server_leaf_);
  cfg->client_ca_pem = ca_->cert_pem();
  cfg->require_client_cert = true;
  HttpServer* s = Start(cfg);
  ASSERT_NE(s, nullptr);
  EXPECT_TLS_FAILS(Who(ClientCfg(), s));
  auto j = Who(MutualCfg(Issue(*ca_, "node:n1", pki::Usage::kClient)), s);
  ASSERT_OK(j);
  EXPECT_EQ((*j)["peer_cn"], "node:n1");
}

TEST_F(TlsTest, ServerOnlyCertificateIsRefusedAsClient) {
  auto cfg = ServerCfg(server_leaf_);
  cfg->client_ca_pem = ca_->cert_pem();
  HttpServer* s = Start(cfg);
  ASSERT_NE(s, nullptr);
  Leaf server_only = Issue(*ca_, "adapter:a1", pki::Usage::kServer);
  EXPECT_TLS_FAILS(Who(MutualCfg(server_only), s));
  // A CA certificate is no client certificate either.
  Leaf sub = Issue(*ca_, "cluster-ca:c1", pki::Usage::kSubCa);
  EXPECT_TLS_FAILS(Who(MutualCfg(sub), s));
}

TEST_F(TlsTest, PlainHttpToATlsListenerGetsNoHttpAnswer) {
  HttpServer* s = Start(ServerCfg(server_leaf_));
  ASSERT_NE(s, nullptr);
  auto r = Get(nullptr, Url(s, "/who", "http"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().ToString();

  RawSocket sock = RawSocket::Connect(s->port());
  ASSERT_TRUE(sock.ok());
  ASSERT_TRUE(sock.Send("GET /who HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  bool eof = false;
  std::string got = sock.Recv(5s, &eof);
  EXPECT_TRUE(eof);
  EXPECT_FALSE(Has(got, "HTTP/1.1")) << got;
  EXPECT_FALSE(Has(got, "peer_cn")) << got;

  // And it still speaks TLS afterwards.
  EXPECT_OK(Who(ClientCfg(), s));
}

TEST_F(TlsTest, UpdateTlsRotatesForNewConnections) {
  Leaf a = Issue(*ca_, "cluster:a", pki::Usage::kServerClient, {"127.0.0.1"});
  Leaf b = Issue(*ca_, "cluster:b", pki::Usage::kServerClient, {"127.0.0.1"});
  HttpServer* s = Start(ServerCfg(a));
  ASSERT_NE(s, nullptr);
  auto keep = ClientCfg("cluster:a");  // keeps its keep-alive connection
  EXPECT_OK(Who(keep, s));
  EXPECT_OK(Who(ClientCfg("cluster:a"), s));
  EXPECT_TLS_FAILS(Who(ClientCfg("cluster:b"), s));

  ASSERT_OK(s->UpdateTls(ServerCfg(b)));
  EXPECT_OK(Who(ClientCfg("cluster:b"), s));
  EXPECT_TLS_FAILS(Who(ClientCfg("cluster:a"), s));

  // Bad settings are refused and change nothing.
  auto mismatched = ServerCfg(a);
  mismatched->key_pem = b.key;
  auto bad = s->UpdateTls(mismatched);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  auto null_cfg = s->UpdateTls(nullptr);
  ASSERT_FALSE(null_cfg.has_value());
  EXPECT_EQ(null_cfg.error().code, ErrorCode::kInvalidArgument);
  EXPECT_OK(Who(ClientCfg("cluster:b"), s));

  // Client certificates can be turned on the same way.
  auto mutual = ServerCfg(b);
  mutual->client_ca_pem = ca_->cert_pem();
  mutual->require_client_cert = true;
  ASSERT_OK(s->UpdateTls(mutual));
  EXPECT_TLS_FAILS(Who(ClientCfg("cluster:b"), s));
  auto j = Who(MutualCfg(Issue(*ca_, "node:n1", pki::Usage::kClient)), s);
  ASSERT_OK(j);
  EXPECT_EQ((*j)["peer_cn"], "node:n1");
}

TEST_F(TlsTest, OpenConnectionKeepsItsCertificateAcrossUpdateTls) {
  Leaf a = Issue(*ca_, "cluster:a", pki::Usage::kServerClient, {"127.0.0.1"});
  Leaf b = Issue(*ca_, "cluster:b", pki::Usage::kServerClient, {"127.0.0.1"});
  HttpServer* s = Start(ServerCfg(a));
  ASSERT_NE(s, nullptr);
  auto keep = ClientCfg("cluster:a");
  EXPECT_OK(Who(keep, s));
  ASSERT_OK(s->UpdateTls(ServerCfg(b)));
  // Same thread, same settings: the kept-alive connection (still "cluster:a") is reused.
  EXPECT_OK(Who(keep, s));
}

TEST_F(TlsTest, ListenerWithoutCertificateRefusesUntilUpdateTls) {
  HttpServer* s = Start(std::make_shared<TlsServerConfig>());
  ASSERT_NE(s, nullptr);
  EXPECT_TLS_FAILS(Who(ClientCfg(), s));
  auto unverified = std::make_shared<TlsClientConfig>();
  unverified->unverified = true;
  EXPECT_TLS_FAILS(Get(unverified, Url(s)));
  // Not plain HTTP either.
  auto plain = Get(nullptr, Url(s, "/who", "http"));
  EXPECT_FALSE(plain.has_value());

  ASSERT_OK(s->UpdateTls(ServerCfg(server_leaf_)));
  auto j = Who(ClientCfg("cluster:c1"), s);
  ASSERT_OK(j);
  EXPECT_EQ((*j)["tls"], true);
}

TEST_F(TlsTest, FetchCaAndPinnedFingerprint) {
  // The server's certificate is not trusted by anyone yet: FetchCa does not verify it.
  HttpServer* s = Start(ServerCfg(Issue(*other_ca_, "canopy-root", pki::Usage::kServer)));
  ASSERT_NE(s, nullptr);
  std::string base = "https://127.0.0.1:" + std::to_string(s->port());
  std::string fp = *pki::Fingerprint(ca_->cert_pem());

  auto got = FetchCa(base);
  ASSERT_OK(got);
  EXPECT_EQ(got->pem, ca_->cert_pem());
  EXPECT_EQ(got->fingerprint, fp);
  EXPECT_OK(FetchCa(base + "/"));

  auto pinned = FetchPinnedCa(base, fp);
  ASSERT_OK(pinned);
  EXPECT_EQ(pinned->pem, ca_->cert_pem());
  EXPECT_EQ(pinned->fingerprint, fp);
  // Other spellings of the same fingerprint.
  std::string upper = fp.substr(7);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_OK(FetchPinnedCa(base, upper));
  EXPECT_OK(FetchPinnedCa(base, "SHA256:" + upper));

  std::string other_fp = *pki::Fingerprint(other_ca_->cert_pem());
  auto mismatch = FetchPinnedCa(base, other_fp);
  ASSERT_FALSE(mismatch.has_value());
  EXPECT_EQ(mismatch.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(mismatch.error().reason, "ca_fingerprint_mismatch");
  EXPECT_TRUE(Has(mismatch.error().message, fp)) << mismatch.error().message;
  EXPECT_TRUE(Has(mismatch.error().message, other_fp)) << mismatch.error().message;

  auto malformed = FetchPinnedCa(base, "sha256:1234");
  ASSERT_FALSE(malformed.has_value());
  EXPECT_EQ(malformed.error().code, ErrorCode::kInvalidArgument);

  // Over plain HTTP as well.
  HttpServer* plain = Start(nullptr);
  ASSERT_NE(plain, nullptr);
  auto p = FetchPinnedCa("http://127.0.0.1:" + std::to_string(plain->port()), fp);
  ASSERT_OK(p);
  EXPECT_EQ(p->pem, ca_->cert_pem());
}

TEST_F(TlsTest, FetchCaOfSomethingElseFails) {
  HttpServer* s = Start(ServerCfg(server_leaf_));
  ASSERT_NE(s, nullptr);
  std::string base = "https://127.0.0.1:" + std::to_string(s->port());
  ca_served_ = "hello, not a certificate";
  auto r = FetchCa(base);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  auto pinned = FetchPinnedCa(base, *pki::Fingerprint(ca_->cert_pem()));
  ASSERT_FALSE(pinned.has_value());
  EXPECT_EQ(pinned.error().code, ErrorCode::kInvalidArgument);

  auto missing = FetchCa(base + "/nothing");  // GET /nothing/ca.crt: 404
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ErrorCode::kUnavailable);
  canopy::testing::ClosedPort closed;
  auto down = FetchCa(closed.url());
  ASSERT_FALSE(down.has_value());
  EXPECT_EQ(down.error().code, ErrorCode::kUnavailable);
}

TEST_F(TlsTest, PartialChainTrustsASubCaAsTheAnchor) {
  Leaf sub = Issue(*ca_, "cluster-ca:c1", pki::Usage::kSubCa);
  auto sub_ca = pki::Authority::Load(sub.cert, sub.key);
  ASSERT_OK(sub_ca);
  Leaf node = Issue(*sub_ca, "node:n1", pki::Usage::kClient);

  auto cfg = ServerCfg(server_leaf_);
  cfg->client_ca_pem = sub.cert;
  cfg->partial_chain = true;
  cfg->require_client_cert = true;
  HttpServer* s = Start(cfg);
  ASSERT_NE(s, nullptr);

  auto j = Who(MutualCfg(node, sub.cert), s);
  ASSERT_OK(j);
  EXPECT_EQ((*j)["peer_cn"], "node:n1");
  // The leaf alone also reaches the anchor (the sub-CA).
  auto j2 = Who(MutualCfg(node), s);
  ASSERT_OK(j2);
  EXPECT_EQ((*j2)["peer_cn"], "node:n1");

  // Issued by the root directly: not by this cluster's CA.
  Leaf direct = Issue(*ca_, "node:n2", pki::Usage::kClient);
  EXPECT_TLS_FAILS(Who(MutualCfg(direct), s));
  // Nor by another cluster's CA under the same root.
  Leaf sub2 = Issue(*ca_, "cluster-ca:c2", pki::Usage::kSubCa);
  auto sub2_ca = pki::Authority::Load(sub2.cert, sub2.key);
  ASSERT_OK(sub2_ca);
  Leaf node2 = Issue(*sub2_ca, "node:n3", pki::Usage::kClient);
  EXPECT_TLS_FAILS(Who(MutualCfg(node2, sub2.cert), s));
}

TEST_F(TlsTest, ChainsThroughASubCaVerifyToTheRoot) {
  Leaf sub = Issue(*ca_, "cluster-ca:c1", pki::Usage::kSubCa);
  auto sub_ca = pki::Authority::Load(sub.cert, sub.key);
  ASSERT_OK(sub_ca);
  // A server whose certificate the sub-CA issued sends the sub-CA along.
  Leaf server = Issue(*sub_ca, "node:n1", pki::Usage::kServerClient, {"127.0.0.1"});
  auto cfg = ServerCfg(server);
  cfg->chain_pem = server.cert + sub.cert;
  cfg->client_ca_pem = ca_->cert_pem();  // the root: full chains only
  cfg->require_client_cert = true;
  HttpServer* s = Start(cfg);
  ASSERT_NE(s, nullptr);
  Leaf client = Issue(*sub_ca, "node:n2", pki::Usage::kClient);
  auto mutual = MutualCfg(client, sub.cert);
  mutual->expect_cn = "node:n1";
  auto j = Who(mutual, s);
  ASSERT_OK(j);
  EXPECT_EQ((*j)["peer_cn"], "node:n2");
  // Without its intermediate the client certificate does not reach the root.
  EXPECT_TLS_FAILS(Who(MutualCfg(client), s));
}

TEST_F(TlsTest, WithoutPartialChainASubCaAnchorDoesNotVerify) {
  Leaf sub = Issue(*ca_, "cluster-ca:c1", pki::Usage::kSubCa);
  auto sub_ca = pki::Authority::Load(sub.cert, sub.key);
  ASSERT_OK(sub_ca);
  Leaf node = Issue(*sub_ca, "node:n1", pki::Usage::kClient);
  auto cfg = ServerCfg(server_leaf_);
  cfg->client_ca_pem = sub.cert;
  cfg->require_client_cert = true;
  HttpServer* s = Start(cfg);
  ASSERT_NE(s, nullptr);
  EXPECT_TLS_FAILS(Who(MutualCfg(node, sub.cert), s));
}

TEST_F(TlsTest, BadServerSettingsAreRefusedAtStart) {
  auto mismatched = ServerCfg(server_leaf_);
  mismatched->key_pem = *pki::NewKey();
  ServerOptions opts;
  opts.tls = mismatched;
  auto s = HttpServer::Start(opts, router_, Renderer, nullptr);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument);

  auto bad_ca = ServerCfg(server_leaf_);
  bad_ca->client_ca_pem = "not a certificate";
  opts.tls = bad_ca;
  auto s2 = HttpServer::Start(opts, router_, Renderer, nullptr);
  ASSERT_FALSE(s2.has_value());
  EXPECT_EQ(s2.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(TlsTest, BadClientSettingsAreInvalidArgument) {
  HttpServer* s = Start(ServerCfg(server_leaf_));
  ASSERT_NE(s, nullptr);
  auto bad_ca = std::make_shared<TlsClientConfig>();
  bad_ca->ca_pem = "not a certificate";
  auto r = Get(bad_ca, Url(s));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);

  auto bad_key = ClientCfg();
  bad_key->chain_pem = server_leaf_.cert;
  bad_key->key_pem = SecretString("not a key");
  auto r2 = Get(bad_key, Url(s));
  ASSERT_FALSE(r2.has_value());
  EXPECT_EQ(r2.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace canopy::net
