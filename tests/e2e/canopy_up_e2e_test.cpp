// `canopy up` as a user runs it (root only): root + local adapter start, the CLI is logged in,
// the adapter is live and credential "local" exists; Ctrl-C stops both daemons; a second
// `canopy up` on the same data dir re-uses the adapter's identity and does not add a second
// credential.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "common/json.h"
#include "support/daemons.h"
#include "support/local_env.h"
#include "support/test_util.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

class CanopyUp : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!LocalTestNet::Available()) GTEST_SKIP() << "canopy up runs the local provider: needs root";
  }
  void TearDown() override {
    if (up_) {
      up_->Kill(SIGKILL);
      up_->Wait();
    }
    // The daemons are killed by `canopy up`; make sure nothing survives a failed test.
    for (const char* what : {"root", "provider"}) {
      std::string pattern = std::string("canopyd ") + what + " .*" + dir_.str();
      (void)system(("pkill -9 -f '" + pattern + "' 2>/dev/null").c_str());
    }
  }

  std::string Canopy() const { return std::string(CANOPY_TEST_BIN_DIR) + "/canopy"; }
  std::vector<std::string> Env() const {
    return {"XDG_CONFIG_HOME=" + (dir_.path() / "xdg").string(),
            "CANOPY_ADMIN_PASSWORD=" + std::string(kAdminPassword)};
  }
  std::string Log() const { return (dir_.path() / ("up" + std::to_string(starts_) + ".log")).string(); }

  void StartUp() {
    ++starts_;
    up_ = std::make_unique<Process>(
        std::vector<std::string>{Canopy(), "up", "--data-dir", (dir_.path() / "data").string(),
                                 "--listen", "127.0.0.1:" + std::to_string(port_)},
        Env(), Log());
    ASSERT_TRUE(WaitFor([&] { return ReadFile(Log()).find("Press Ctrl-C") != std::string::npos ||
                                     !up_->Running(); },
                        60s))
        << ReadFile(Log());
    ASSERT_TRUE(up_->Running()) << ReadFile(Log());
  }

  // Runs the CLI with the same config; returns its parsed -o json output.
  Json Cli(const std::vector<std::string>& args) {
    std::string out = (dir_.path() / "cli.out").string();
    std::vector<std::string> argv = {Canopy()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("-o");
    argv.push_back("json");
    std::remove(out.c_str());
    Process p(argv, Env(), out);
    EXPECT_EQ(p.Wait(), 0) << ReadFile(out);
    auto j = ParseJson(ReadFile(out));
    return j.has_value() ? *j : Json();
  }

  TempDir dir_;
  uint16_t port_ = FreePort();
  int starts_ = 0;
  std::unique_ptr<Process> up_;
};

TEST_F(CanopyUp, StartsRootAndLocalAdapterAndStopsThemOnCtrlC) {
  StartUp();
  if (HasFatalFailure()) return;
  Json providers = Cli({"provider", "list"});
  if (!providers.is_array()) ADD_FAILURE() << ReadFile(Log());
  ASSERT_TRUE(providers.is_array()) << providers.dump();
  ASSERT_EQ(providers.size(), 1u);
  EXPECT_EQ(providers[0]["type"], "local");
  EXPECT_EQ(providers[0]["status"], "live");
  std::string adapter_id = providers[0]["id"];
  Json creds = Cli({"credential", "list"});
  ASSERT_EQ(creds.size(), 1u) << creds.dump();
  EXPECT_EQ(creds[0]["name"], "local");

  up_->Kill(SIGINT);
  EXPECT_EQ(up_->Wait(), 0) << ReadFile(Log());
  up_.reset();
  EXPECT_NE(CallApi("http://127.0.0.1:" + std::to_string(port_), "GET", "/healthz").status, 200);

  // Again on the same data dir: same adapter identity, still one credential.
  StartUp();
  providers = Cli({"provider", "list"});
  ASSERT_EQ(providers.size(), 1u) << providers.dump();
  EXPECT_EQ(providers[0]["id"], adapter_id);
  ASSERT_TRUE(WaitFor([&] { return Cli({"provider", "list"})[0]["status"] == "live"; }, 10s));
  EXPECT_EQ(Cli({"credential", "list"}).size(), 1u);
  up_->Kill(SIGTERM);
  EXPECT_EQ(up_->Wait(), 0) << ReadFile(Log());
  up_.reset();
}

TEST(CanopyUpArgs, BadListenIsAOneLineError) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "needs root";
  TempDir dir;
  std::string log = (dir.path() / "out").string();
  Process p({std::string(CANOPY_TEST_BIN_DIR) + "/canopy", "up", "--data-dir", dir.str(), "--listen",
             "nonsense"},
            {"XDG_CONFIG_HOME=" + dir.str()}, log);
  EXPECT_EQ(p.Wait(), 1);
  EXPECT_NE(ReadFile(log).find("--listen must be HOST:PORT"), std::string::npos) << ReadFile(log);
}

}  // namespace
}  // namespace canopy::testing
