// cli/trust through `canopy login` and later commands, against the fake root in memory: which CA
// an https root is trusted with (--ca-file, --ca-fingerprint, CANOPY_CA_FILE, the stored CA, the
// system's roots, the question on a terminal), what is stored, and that nothing is stored on
// failure. The transports fail like net::HttpClient does when a certificate does not verify.
#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <fstream>
#include <map>
#include <sstream>

#include "cli/commands.h"
#include "cli/config.h"
#include "cli/fake_root.h"
#include "cli/trust.h"
#include "net/pki.h"
#include "support/test_util.h"

namespace canopy::cli {
namespace {

using fake::FakeRoot;

constexpr const char* kRoot = "https://root.test:8443";

struct TestCa {
  std::string pem;
  std::string fingerprint;
};

TestCa MakeCa(const std::string& cn) {
  auto ca = net::pki::Authority::Create(cn, std::chrono::hours(24));
  EXPECT_TRUE(ca.has_value());
  TestCa out{ca->cert_pem(), *net::pki::Fingerprint(ca->cert_pem())};
  return out;
}

const TestCa& RootCa() {
  static const TestCa ca = MakeCa("canopy-root-ca");
  return ca;
}
const TestCa& OtherCa() {
  static const TestCa ca = MakeCa("someone-else");
  return ca;
}

class LoginTrustTest : public ::testing::Test {
 protected:
  LoginTrustTest()
      : ctx_{out_,
             err_,
             in_,
             [this](const std::string& n) -> std::optional<std::string> {
               auto it = env_.find(n);
               if (it == env_.end()) {
                 return std::nullopt;
               }
               return it->second;
             },
             [this](std::string_view) -> Result<SecretString> {
               ++password_prompts_;
               return SecretString(FakeRoot::kPassword);
             },
             nullptr,
             std::make_shared<SystemClock>(),
             {}} {
    env_["XDG_CONFIG_HOME"] = dir_.str();
    ctx_.global.root = kRoot;
    // The root's certificate chains to `server_ca_`; the system trusts it only when
    // `system_trusts_` is set.
    ctx_.transport_for = [this](const std::string& ca_pem) -> Transport {
      transports_asked_.push_back(ca_pem);
      return [this, ca_pem](const net::ClientRequest& req) -> Result<net::ClientResponse> {
        bool https = req.url.starts_with("https://");
        if (https && !(ca_pem.empty() ? system_trusts_ : ca_pem == server_ca_.pem)) {
          return Error::Unavailable(
              "request to https://root.test:8443 failed: certificate verify failed (SSL "
              "routines)");
        }
        requests_with_.push_back(ca_pem);
        return inner_(req);
      };
    };
    ctx_.fetch_ca = [this](const std::string& root,
                           const std::string& fingerprint) -> Result<net::FetchedCa> {
      ++fetches_;
      EXPECT_EQ(root, kRoot);
      if (!fingerprint.empty() && fingerprint != server_ca_.fingerprint) {
        Error e = Error::FailedPrecondition("the CA certificate at " + root + " has fingerprint " +
                                            server_ca_.fingerprint + ", not the expected " +
                                            fingerprint + ": refusing to trust it");
        e.reason = "ca_fingerprint_mismatch";
        return e;
      }
      return net::FetchedCa{server_ca_.pem, server_ca_.fingerprint};
    };
  }

  std::filesystem::path ConfigFile() const { return dir_.path() / "canopy" / "config.json"; }
  Config Stored() const {
    auto c = LoadConfig(ConfigFile());
    EXPECT_TRUE(c.has_value());
    return c ? *c : Config{};
  }
  std::string WriteFile(const std::string& name, const std::string& text) {
    std::string path = (dir_.path() / name).string();
    std::ofstream(path) << text;
    return path;
  }
  LoginOptions Opts() {
    LoginOptions o;
    o.username = FakeRoot::kUser;
    return o;
  }
  void Clear() {
    out_.str("");
    err_.str("");
  }
  // The terminal answers `answer` and records the question.
  void Terminal(bool answer) {
    ctx_.confirm = [this, answer](std::string_view q) -> Result<bool> {
      questions_.emplace_back(q);
      return answer;
    };
  }
  std::string ErrorLine(int rc) {
    EXPECT_EQ(rc, kExitError);
    EXPECT_EQ(out_.str(), "");
    std::string e = err_.str();
    EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
    return e;
  }

  testing::TempDir dir_;
  FakeRoot root_;
  Transport inner_ = root_.InMemoryTransport();
  std::ostringstream out_;
  std::ostringstream err_;
  std::istringstream in_;
  std::map<std::string, std::string> env_;
  Context ctx_;
  TestCa server_ca_ = RootCa();
  bool system_trusts_ = false;
  std::vector<std::string> transports_asked_;
  std::vector<std::string> requests_with_;
  std::vector<std::string> questions_;
  int fetches_ = 0;
  int password_prompts_ = 0;
};

TEST_F(LoginTrustTest, CaFileIsStoredAndTrustedByLaterCommands) {
  LoginOptions o = Opts();
  o.ca_file = WriteFile("ca.pem", "some text before\n" + RootCa().pem);
  ASSERT_EQ(Login(ctx_, o), kExitOk) << err_.str();
  EXPECT_NE(out_.str().find("Trusting the root's CA " + RootCa().fingerprint), std::string::npos)
      << out_.str();
  EXPECT_EQ(fetches_, 0);
  Config c = Stored();
  EXPECT_EQ(c.root, kRoot);
  EXPECT_EQ(CaFingerprint(c.ca_pem), RootCa().fingerprint);
  EXPECT_EQ(c.ca_pem.find("some text"), std::string::npos);

  requests_with_.clear();
  Clear();
  ASSERT_EQ(UserList(ctx_), kExitOk) << err_.str();
  ASSERT_EQ(requests_with_.size(), 1u);
  EXPECT_EQ(requests_with_[0], c.ca_pem);
}

TEST_F(LoginTrustTest, PinnedFingerprintFetchesAndStoresTheCa) {
  LoginOptions o = Opts();
  // Any accepted spelling: upper case, colons.
  std::string hex = RootCa().fingerprint.substr(7);
  std::string colons;
  for (size_t i = 0; i < hex.size(); i += 2) {
    colons += (i ? ":" : "") + hex.substr(i, 2);
  }
  o.ca_fingerprint = "SHA256:" + colons;
  ctx_.global.output = OutputFormat::kJson;
  ASSERT_EQ(Login(ctx_, o), kExitOk) << err_.str();
  auto j = ParseJson(out_.str());
  ASSERT_OK(j);
  EXPECT_EQ((*j)["ca_fingerprint"], RootCa().fingerprint);
  EXPECT_EQ(fetches_, 1);
  EXPECT_EQ(Stored().ca_pem, RootCa().pem);
  EXPECT_EQ(Stored().username, FakeRoot::kUser);
}

TEST_F(LoginTrustTest, WrongPinIsRefusedAndNothingIsStored) {
  LoginOptions o = Opts();
  o.ca_fingerprint = OtherCa().fingerprint;
  std::string line = ErrorLine(Login(ctx_, o));
  EXPECT_NE(line.find("not the expected " + OtherCa().fingerprint), std::string::npos) << line;
  EXPECT_FALSE(std::filesystem::exists(ConfigFile()));
  EXPECT_EQ(password_prompts_, 0);
  EXPECT_TRUE(root_.requests().empty());
}

TEST_F(LoginTrustTest, MalformedPinIsAUsageError) {
  LoginOptions o = Opts();
  o.ca_fingerprint = "sha256:nothex";
  std::string line = ErrorLine(Login(ctx_, o));
  EXPECT_NE(line.find("--ca-fingerprint sha256:nothex is not a SHA-256 fingerprint"),
            std::string::npos)
      << line;
  EXPECT_EQ(fetches_, 0);
}

TEST_F(LoginTrustTest, CaFileAndPinTogetherAreRefused) {
  LoginOptions o = Opts();
  o.ca_file = WriteFile("ca.pem", RootCa().pem);
  o.ca_fingerprint = RootCa().fingerprint;
  std::string line = ErrorLine(Login(ctx_, o));
  EXPECT_NE(line.find("not both"), std::string::npos) << line;
}

TEST_F(LoginTrustTest, CaFileWithoutCertificateIsRefused) {
  LoginOptions o = Opts();
  o.ca_file = WriteFile("junk.pem", "not a certificate\n");
  std::string line = ErrorLine(Login(ctx_, o));
  EXPECT_NE(line.find("holds no PEM certificate"), std::string::npos) << line;
  o.ca_file = (dir_.path() / "missing.pem").string();
  Clear();
  line = ErrorLine(Login(ctx_, o));
  EXPECT_NE(line.find("cannot read the CA file " + *o.ca_file), std::string::npos) << line;
  EXPECT_FALSE(std::filesystem::exists(ConfigFile()));
}

TEST_F(LoginTrustTest, CaFileOfAnotherCaIsRefusedBeforeThePassword) {
  LoginOptions o = Opts();
  o.ca_file = WriteFile("other.pem", OtherCa().pem);
  std::string line = ErrorLine(Login(ctx_, o));
  EXPECT_NE(line.find("does not verify against the CA " + OtherCa().fingerprint), std::string::npos)
      << line;
  EXPECT_EQ(password_prompts_, 0);
  EXPECT_FALSE(std::filesystem::exists(ConfigFile()));
}

TEST_F(LoginTrustTest, SystemRootsFirstThenNoCaIsStored) {
  system_trusts_ = true;
  Terminal(true);
  ASSERT_EQ(Login(ctx_, Opts()), kExitOk) << err_.str();
  EXPECT_EQ(fetches_, 0);
  EXPECT_TRUE(questions_.empty());
  EXPECT_EQ(Stored().ca_pem, "");
  EXPECT_EQ(out_.str().find("Trusting"), std::string::npos);
}

TEST_F(LoginTrustTest, WithoutTerminalTheErrorNamesTheFingerprint) {
  std::string line = ErrorLine(Login(ctx_, Opts()));
  EXPECT_NE(line.find("CA fingerprint " + RootCa().fingerprint), std::string::npos) << line;
  EXPECT_NE(line.find("--ca-fingerprint " + RootCa().fingerprint), std::string::npos) << line;
  EXPECT_EQ(password_prompts_, 0);
  EXPECT_FALSE(std::filesystem::exists(ConfigFile()));
}

TEST_F(LoginTrustTest, OnATerminalYesTrustsTheCa) {
  Terminal(true);
  ASSERT_EQ(Login(ctx_, Opts()), kExitOk) << err_.str();
  ASSERT_EQ(questions_.size(), 1u);
  EXPECT_NE(questions_[0].find(RootCa().fingerprint), std::string::npos) << questions_[0];
  EXPECT_TRUE(questions_[0].ends_with("Trust this CA? [y/N] ")) << questions_[0];
  EXPECT_EQ(Stored().ca_pem, RootCa().pem);
}

TEST_F(LoginTrustTest, OnATerminalNoStoresNothing) {
  Terminal(false);
  std::string line = ErrorLine(Login(ctx_, Opts()));
  EXPECT_NE(line.find("was not trusted"), std::string::npos) << line;
  EXPECT_EQ(password_prompts_, 0);
  EXPECT_FALSE(std::filesystem::exists(ConfigFile()));
}

TEST_F(LoginTrustTest, ReLoginKeepsTheStoredCaAndRefusesAChangedOne) {
  LoginOptions o = Opts();
  o.ca_fingerprint = RootCa().fingerprint;
  ASSERT_EQ(Login(ctx_, o), kExitOk) << err_.str();
  Clear();
  // Again without flags: the stored CA, no question, no fetch.
  Terminal(true);
  fetches_ = 0;
  ASSERT_EQ(Login(ctx_, Opts()), kExitOk) << err_.str();
  EXPECT_EQ(fetches_, 0);
  EXPECT_TRUE(questions_.empty());
  EXPECT_EQ(Stored().ca_pem, RootCa().pem);

  // The root now presents another CA: refused even on a terminal, the stored CA stays.
  Clear();
  server_ca_ = OtherCa();
  std::string line = ErrorLine(Login(ctx_, Opts()));
  EXPECT_NE(line.find("no longer verifies against the CA stored at your last login (" +
                      RootCa().fingerprint + ")"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("--ca-fingerprint " + OtherCa().fingerprint), std::string::npos) << line;
  EXPECT_TRUE(questions_.empty());
  EXPECT_EQ(Stored().ca_pem, RootCa().pem);

  // Later commands say why and how to fix it, and replace nothing.
  Clear();
  line = ErrorLine(UserList(ctx_));
  EXPECT_NE(line.find("does not verify against the trusted CA " + RootCa().fingerprint),
            std::string::npos)
      << line;
  EXPECT_EQ(Stored().ca_pem, RootCa().pem);

  // A new login naming the new CA replaces it.
  Clear();
  o.ca_fingerprint = OtherCa().fingerprint;
  ASSERT_EQ(Login(ctx_, o), kExitOk) << err_.str();
  EXPECT_EQ(Stored().ca_pem, OtherCa().pem);
}

TEST_F(LoginTrustTest, CanopyCaFileOverridesTheStoredCa) {
  LoginOptions o = Opts();
  o.ca_fingerprint = RootCa().fingerprint;
  ASSERT_EQ(Login(ctx_, o), kExitOk) << err_.str();
  Clear();
  env_["CANOPY_CA_FILE"] = WriteFile("other.pem", OtherCa().pem);
  std::string line = ErrorLine(UserList(ctx_));
  EXPECT_NE(line.find(OtherCa().fingerprint), std::string::npos) << line;
  EXPECT_EQ(Stored().ca_pem, RootCa().pem);  // not stored by a command

  Clear();
  env_["CANOPY_CA_FILE"] = WriteFile("root.pem", RootCa().pem);
  requests_with_.clear();
  ASSERT_EQ(UserList(ctx_), kExitOk) << err_.str();
  ASSERT_EQ(requests_with_.size(), 1u);
  EXPECT_EQ(CaFingerprint(requests_with_[0]), RootCa().fingerprint);

  Clear();
  env_["CANOPY_CA_FILE"] = (dir_.path() / "missing.pem").string();
  line = ErrorLine(UserList(ctx_));
  EXPECT_NE(line.find("CANOPY_CA_FILE"), std::string::npos) << line;
}

TEST_F(LoginTrustTest, CanopyCaFileServesAsCaFileAtLogin) {
  env_["CANOPY_CA_FILE"] = WriteFile("root.pem", RootCa().pem);
  ASSERT_EQ(Login(ctx_, Opts()), kExitOk) << err_.str();
  EXPECT_EQ(fetches_, 0);
  EXPECT_EQ(CaFingerprint(Stored().ca_pem), RootCa().fingerprint);
}

TEST_F(LoginTrustTest, PlainHttpNeedsNoCa) {
  ctx_.global.root = "http://127.0.0.1:8080";
  ASSERT_EQ(Login(ctx_, Opts()), kExitOk) << err_.str();
  EXPECT_EQ(fetches_, 0);
  EXPECT_EQ(Stored().ca_pem, "");
  Clear();
  ASSERT_EQ(UserList(ctx_), kExitOk) << err_.str();
}

TEST_F(LoginTrustTest, PlainHttpLoginKeepsTheCaOfCanopyUp) {
  ctx_.global.root = "http://127.0.0.1:8080";
  Config up;
  up.root = "http://127.0.0.1:8080";
  up.username = FakeRoot::kUser;
  up.ca_pem = RootCa().pem;
  ASSERT_OK(SaveConfig(ConfigFile(), up));
  ASSERT_EQ(Login(ctx_, Opts()), kExitOk) << err_.str();
  EXPECT_EQ(Stored().ca_pem, RootCa().pem);
  EXPECT_EQ(fetches_, 0);
}

TEST_F(LoginTrustTest, OtherTransportFailuresAreNotTreatedAsUntrusted) {
  root_.set_unreachable(true);
  system_trusts_ = true;
  Terminal(true);
  std::string line = ErrorLine(Login(ctx_, Opts()));
  EXPECT_NE(line.find("cannot reach root at " + std::string(kRoot)), std::string::npos) << line;
  EXPECT_EQ(fetches_, 0);
  EXPECT_TRUE(questions_.empty());
}

TEST(ConfigCa, RoundTripsAndStaysOutOfTheFileWhenEmpty) {
  testing::TempDir dir;
  auto path = dir.path() / "c" / "config.json";
  Config c;
  c.root = kRoot;
  c.username = "u";
  ASSERT_OK(SaveConfig(path, c));
  std::ifstream f(path);
  std::stringstream text;
  text << f.rdbuf();
  EXPECT_EQ(text.str().find("ca_pem"), std::string::npos);
  c.ca_pem = RootCa().pem;
  ASSERT_OK(SaveConfig(path, c));
  auto back = LoadConfig(path);
  ASSERT_OK(back);
  EXPECT_EQ(back->ca_pem, RootCa().pem);
}

}  // namespace
}  // namespace canopy::cli
