// `canopy login` against a real TLS listener: the fake root served by net::HttpServer over TLS on
// 127.0.0.1 with a certificate from its own CA (SAN 127.0.0.1), serving that CA at /ca.crt, and
// reached through the production transports (HttpTransportFactory, HttpCaFetcher).
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "cli/config.h"
#include "cli/fake_root.h"
#include "cli/trust.h"
#include "net/pki.h"
#include "net/tls.h"
#include "support/test_util.h"

namespace canopy::cli {
namespace {

using fake::FakeRoot;
using std::chrono::hours;

struct Pki {
  std::string ca_pem;
  std::string ca_fingerprint;
  net::TlsServerConfigPtr server;
};

Pki MakePki(const std::string& ca_cn) {
  auto ca = net::pki::Authority::Create(ca_cn, hours(24));
  EXPECT_TRUE(ca.has_value());
  auto key = net::pki::NewKey();
  EXPECT_TRUE(key.has_value());
  auto csr = net::pki::NewCsr(*key, "canopy-root", {"127.0.0.1"});
  EXPECT_TRUE(csr.has_value());
  auto cert =
      ca->Issue(*csr, "canopy-root", {"127.0.0.1"}, net::pki::Usage::kServerClient, hours(24));
  EXPECT_TRUE(cert.has_value());
  auto tls = std::make_shared<net::TlsServerConfig>();
  tls->chain_pem = *cert;
  tls->key_pem = *key;
  return Pki{ca->cert_pem(), *net::pki::Fingerprint(ca->cert_pem()), tls};
}

class LoginTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = MakePki("canopy-test-root-ca");
    root_.ServeCa(pki_.ca_pem);
    ASSERT_OK(root_.StartServer(pki_.server));
    ASSERT_TRUE(root_.url().starts_with("https://127.0.0.1:")) << root_.url();
  }

  Context MakeContext() {
    Context c{out_,
              err_,
              in_,
              [this](const std::string& n) -> std::optional<std::string> {
                if (n == "XDG_CONFIG_HOME") {
                  return dir_.str();
                }
                if (n == "CANOPY_CA_FILE" && ca_file_env_) {
                  return *ca_file_env_;
                }
                return std::nullopt;
              },
              [](std::string_view) -> Result<SecretString> {
                return Error::FailedPrecondition("standard input is not a terminal");
              },
              HttpTransport(),
              std::make_shared<SystemClock>(),
              {}};
    c.transport_for = HttpTransportFactory();
    c.fetch_ca = HttpCaFetcher();
    c.global.root = root_.url();
    return c;
  }

  LoginOptions Opts() {
    LoginOptions o;
    o.username = FakeRoot::kUser;
    o.password = FakeRoot::kPassword;
    return o;
  }
  std::filesystem::path ConfigFile() const { return dir_.path() / "canopy" / "config.json"; }
  std::string WriteFile(const std::string& name, const std::string& text) {
    std::string path = (dir_.path() / name).string();
    std::ofstream(path) << text;
    return path;
  }
  void Clear() {
    out_.str("");
    err_.str("");
  }
  // The API calls that reached the fake root (login and later commands).
  size_t ApiCalls() const { return root_.requests().size(); }

  testing::TempDir dir_;
  Pki pki_;
  FakeRoot root_;
  std::ostringstream out_;
  std::ostringstream err_;
  std::istringstream in_;
  std::optional<std::string> ca_file_env_;
};

TEST_F(LoginTlsTest, PinnedFingerprintIsStoredAndLaterCallsVerify) {
  Context ctx = MakeContext();
  LoginOptions o = Opts();
  o.ca_fingerprint = pki_.ca_fingerprint;
  ASSERT_EQ(Login(ctx, o), kExitOk) << err_.str();
  EXPECT_NE(out_.str().find("Trusting the root's CA " + pki_.ca_fingerprint), std::string::npos)
      << out_.str();
  auto cfg = LoadConfig(ConfigFile());
  ASSERT_OK(cfg);
  EXPECT_EQ(cfg->root, root_.url());
  EXPECT_EQ(CaFingerprint(cfg->ca_pem), pki_.ca_fingerprint);

  // A later command in a fresh process-like context trusts the stored CA only.
  Clear();
  Context later = MakeContext();
  later.fetch_ca = nullptr;
  later.global.output = OutputFormat::kJson;
  ASSERT_EQ(ProviderList(later), kExitOk) << err_.str();
  auto j = ParseJson(out_.str());
  ASSERT_OK(j);
  ASSERT_TRUE(j->is_array());
  EXPECT_EQ(root_.last().path, "/api/v1/providers");
  EXPECT_EQ(root_.last().headers["authorization"], std::string("Bearer ") + FakeRoot::kToken);
}

TEST_F(LoginTlsTest, WrongFingerprintFailsAndStoresNothing) {
  Context ctx = MakeContext();
  LoginOptions o = Opts();
  Pki other = MakePki("someone-else");
  o.ca_fingerprint = other.ca_fingerprint;
  EXPECT_EQ(Login(ctx, o), kExitError);
  EXPECT_EQ(out_.str(), "");
  std::string e = err_.str();
  EXPECT_NE(e.find("has fingerprint " + pki_.ca_fingerprint), std::string::npos) << e;
  EXPECT_NE(e.find("not the expected " + other.ca_fingerprint), std::string::npos) << e;
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
  EXPECT_FALSE(std::filesystem::exists(ConfigFile()));
  EXPECT_EQ(ApiCalls(), 0u);
}

TEST_F(LoginTlsTest, WithoutTerminalOrPinTheErrorNamesTheFingerprint) {
  Context ctx = MakeContext();
  EXPECT_EQ(Login(ctx, Opts()), kExitError);
  std::string e = err_.str();
  EXPECT_EQ(e.rfind("error: the root at " + root_.url() + " presents a certificate from a CA", 0),
            0u)
      << e;
  EXPECT_NE(e.find("--ca-fingerprint " + pki_.ca_fingerprint), std::string::npos) << e;
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
  EXPECT_FALSE(std::filesystem::exists(ConfigFile()));
  EXPECT_EQ(ApiCalls(), 0u);  // the password never left
}

TEST_F(LoginTlsTest, OnATerminalTheAcceptedCaIsStored) {
  Context ctx = MakeContext();
  std::string asked;
  ctx.confirm = [&asked](std::string_view q) -> Result<bool> {
    asked = std::string(q);
    return true;
  };
  ASSERT_EQ(Login(ctx, Opts()), kExitOk) << err_.str();
  EXPECT_NE(asked.find("CA fingerprint: " + pki_.ca_fingerprint), std::string::npos) << asked;
  auto cfg = LoadConfig(ConfigFile());
  ASSERT_OK(cfg);
  EXPECT_EQ(CaFingerprint(cfg->ca_pem), pki_.ca_fingerprint);
}

TEST_F(LoginTlsTest, CaFileWorksAndAnotherCaIsRefused) {
  Context ctx = MakeContext();
  LoginOptions o = Opts();
  o.ca_file = WriteFile("other.pem", MakePki("someone-else").ca_pem);
  EXPECT_EQ(Login(ctx, o), kExitError);
  EXPECT_NE(err_.str().find("does not verify against the CA"), std::string::npos) << err_.str();
  EXPECT_FALSE(std::filesystem::exists(ConfigFile()));

  Clear();
  o.ca_file = WriteFile("ca.pem", pki_.ca_pem);
  ASSERT_EQ(Login(ctx, o), kExitOk) << err_.str();
  auto cfg = LoadConfig(ConfigFile());
  ASSERT_OK(cfg);
  EXPECT_EQ(cfg->ca_pem, pki_.ca_pem);
  Clear();
  ASSERT_EQ(UserList(ctx), kExitOk) << err_.str();
}

TEST_F(LoginTlsTest, CanopyCaFileIsTrustedByCommands) {
  // A login stored without a CA (as from another machine's config) fails on the certificate...
  Config c;
  c.root = root_.url();
  c.username = FakeRoot::kUser;
  c.token = SecretString(FakeRoot::kToken);
  ASSERT_OK(SaveConfig(ConfigFile(), c));
  Context ctx = MakeContext();
  EXPECT_EQ(UserList(ctx), kExitError);
  EXPECT_NE(err_.str().find("certificate verify failed"), std::string::npos) << err_.str();
  EXPECT_NE(err_.str().find("--ca-fingerprint"), std::string::npos) << err_.str();
  // ...and works with CANOPY_CA_FILE.
  Clear();
  ca_file_env_ = WriteFile("ca.pem", pki_.ca_pem);
  Context with_env = MakeContext();
  ASSERT_EQ(UserList(with_env), kExitOk) << err_.str();
}

}  // namespace
}  // namespace canopy::cli
