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

// stdout of `sh -c cmd` ("" on failure).
std::string RunCommandOut(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  char buf[256];
  while (fgets(buf, sizeof buf, f) != nullptr) out += buf;
  pclose(f);
  return out;
}

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
    // Instances the local provider made under this data dir (a failed cluster test).
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator(dir_.path() / "data" / "local" / "instances", ec)) {
      std::string ns = "canopy-" + e.path().filename().string();
      (void)system(("for p in $(ip netns pids " + ns +
                    " 2>/dev/null); do kill -9 $p; done; ip netns del " + ns + " 2>/dev/null")
                       .c_str());
    }
    // Their addresses on canopy0's host-wide registry (in /run) go too; a demo's stay.
    providers::local::LocalOptions local;
    local.state_dir = (dir_.path() / "data" / "local").string();
    providers::local::LocalProvider::ReleaseAddresses(local);
  }

  std::string Canopy() const { return canopy::testing::BinDir() + "/canopy"; }
  std::vector<std::string> Env() const {
    return {"XDG_CONFIG_HOME=" + (dir_.path() / "xdg").string(),
            "CANOPY_ADMIN_PASSWORD=" + std::string(kAdminPassword)};
  }
  std::string Log() const {
    return (dir_.path() / ("up" + std::to_string(starts_) + ".log")).string();
  }

  void StartUp(const std::string& host = "127.0.0.1") {
    ++starts_;
    up_ = std::make_unique<Process>(
        std::vector<std::string>{Canopy(), "up", "--data-dir", (dir_.path() / "data").string(),
                                 "--listen", host + ":" + std::to_string(port_)},
        Env(), Log());
    ASSERT_TRUE(WaitFor(
        [&] {
          return ReadFile(Log()).find("Press Ctrl-C") != std::string::npos || !up_->Running();
        },
        60s))
        << ReadFile(Log());
    ASSERT_TRUE(up_->Running()) << ReadFile(Log());
  }

  // Runs the CLI with the same config; returns its parsed -o json output.
  Json Cli(const std::vector<std::string>& args) {
    std::string out = (dir_.path() / "cli.out").string();
    // -o json first: everything after a `--` is the service's own command.
    std::vector<std::string> argv = {Canopy(), "-o", "json"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::remove(out.c_str());
    Process p(argv, Env(), out);
    EXPECT_EQ(p.Wait(), 0) << ReadFile(out);
    // stdout and stderr share the file: skip --wait's progress lines (stderr) before the JSON.
    std::string text = ReadFile(out);
    size_t start = 0;
    while (start < text.size() && text[start] != '{' && text[start] != '[') {
      size_t nl = text.find('\n', start);
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
    auto j = ParseJson(text.substr(std::min(start, text.size())));
    EXPECT_TRUE(j.has_value()) << text;
    return j.has_value() ? *j : Json();
  }

  TempDir dir_;
  // `canopy up` serves the API and the tiers on one user-chosen port (it prints it), so the test
  // picks one; the suites holding canopy0 run one at a time (RESOURCE_LOCK in
  // tests/CMakeLists.txt).
  uint16_t port_ = PickUnusedPort();
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

// The issue's acceptance, as a user types it: `canopy up`, then
// `canopy cluster create demo --provider local --credential local --workers 2 --wait`. Without
// --image, the cluster and its workers get the first offered image: the blank debian-12-minbase.
TEST_F(CanopyUp, ClusterCreateDemoWithTwoWorkersFromTheCli) {
  ASSERT_TRUE(ExpectBlankImageBuilt());
  StartUp("0.0.0.0");
  if (HasFatalFailure()) return;
  Json cluster = Cli({"cluster", "create", "demo", "--provider", "local", "--credential", "local",
                      "--workers", "2", "--wait"});
  ASSERT_TRUE(cluster.is_object()) << ReadFile(Log());
  EXPECT_EQ(cluster["state"], "ACTIVE") << cluster.dump();
  EXPECT_EQ(cluster["image"], kBlankTestImage) << cluster.dump();
  ASSERT_TRUE(cluster["workers"].is_array()) << cluster.dump();
  ASSERT_EQ(cluster["workers"].size(), 2u) << cluster.dump();
  for (const auto& w : cluster["workers"]) {
    EXPECT_EQ(w["state"], "ACTIVE") << w.dump();
    EXPECT_EQ(w["image"], kBlankTestImage) << w.dump();
    std::string ns = "canopy-" + w.value("provider_id", "");
    auto pids = RunCommandOut("ip netns pids " + ns);
    EXPECT_FALSE(pids.empty()) << "no node agent runs in " << ns;
  }
  // The cluster saw both nodes register.
  EXPECT_EQ(cluster["node_count"], 2) << cluster.dump();
  Json workers = Cli({"worker", "list", "--cluster", "demo"});
  ASSERT_EQ(workers.size(), 2u) << workers.dump();

  // Everything goes again, through the CLI.
  for (const auto& w : workers) Cli({"worker", "delete", w["name"], "--cluster", "demo", "--wait"});
  Cli({"cluster", "delete", "demo", "--wait"});
  EXPECT_EQ(Cli({"cluster", "list"}).size(), 0u);
  up_->Kill(SIGTERM);
  EXPECT_EQ(up_->Wait(), 0) << ReadFile(Log());
  up_.reset();
}

// The README's path, as a new user takes it on a fresh machine (as root): `scripts/demo.sh` with
// its defaults (the API on loopback only), then the README's
// `canopy cluster create demo --provider local --credential local --workers 2 --wait`, then a
// service deployed on the cluster answers from this host at its instance's address. The workers
// run the blank debian-12-minbase (no python3): the service is the README's perl hello server.
TEST_F(CanopyUp, ReadmeDemoScriptThenClusterCreateThenAServiceAnswersFromTheHost) {
  ASSERT_TRUE(ExpectBlankImageBuilt());
  ++starts_;
  const std::string listen = "127.0.0.1:" + std::to_string(port_);
  std::vector<std::string> env = Env();
  env.push_back("CANOPY_BIN=" + canopy::testing::BinDir());  // the script's last command only
  env.push_back("DATA_DIR=" + (dir_.path() / "data").string());
  env.push_back("LISTEN=" + listen);
  up_ = std::make_unique<Process>(
      std::vector<std::string>{"/bin/bash", canopy::testing::SourceDir() + "/scripts/demo.sh"}, env,
      Log());
  ASSERT_TRUE(WaitFor(
      [&] { return ReadFile(Log()).find("Press Ctrl-C") != std::string::npos || !up_->Running(); },
      60s))
      << ReadFile(Log());
  ASSERT_TRUE(up_->Running()) << ReadFile(Log());
  const auto ready = std::chrono::steady_clock::now();

  // The user API stays private: the bridge listener serves the lower tiers only.
  const std::string tier = "https://198.18.0.1:" + std::to_string(port_);  // TLS off loopback
  EXPECT_EQ(CallApi(tier, "GET", "/healthz").status, 200) << ReadFile(Log());
  EXPECT_EQ(
      CallApi(tier, "POST", "/api/v1/auth/login", R"({"username":"admin","password":"x"})").status,
      404);

  Json cluster = Cli({"cluster", "create", "demo", "--provider", "local", "--credential", "local",
                      "--workers", "2", "--wait"});
  ASSERT_TRUE(cluster.is_object()) << ReadFile(Log());
  ASSERT_EQ(cluster["state"], "ACTIVE") << cluster.dump() << ReadFile(Log());
  ASSERT_EQ(cluster["workers"].size(), 2u) << cluster.dump();
  for (const auto& w : cluster["workers"]) EXPECT_EQ(w["image"], kBlankTestImage) << w.dump();

  const int port = 18080;
  std::vector<std::string> create = {
      "service",  "create", "web",      "--port", std::to_string(port),
      "--memory", "64",     "--deploy", "--wait", "--"};
  for (const auto& a : HelloServiceArgv(port)) create.push_back(a);
  Json svc = Cli(create);
  ASSERT_TRUE(svc.is_object()) << svc.dump();
  ASSERT_EQ(svc["instances"].size(), 1u) << svc.dump();
  std::string addr = svc["instances"][0].value("address", "");
  ASSERT_FALSE(addr.empty()) << svc.dump();
  ApiReply hello;
  EXPECT_TRUE(WaitFor(
      [&] {
        hello = CallApi("http://" + addr + ":" + std::to_string(port), "GET", "/");
        return hello.status == 200;
      },
      30s))
      << "the service does not answer at " << addr << ":" << port;
  EXPECT_EQ(hello.body, "hello from " + addr + "\n");
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - ready);
  std::printf(
      "README path: cluster with 2 workers and a reachable service %.2f s after `canopy up` was "
      "ready\n",
      static_cast<double>(took.count()) / 1000.0);

  Cli({"service", "undeploy", "web", "--wait"});
  Cli({"service", "delete", "web"});
  for (const auto& w : Cli({"worker", "list", "--cluster", "demo"})) {
    Cli({"worker", "delete", w["name"], "--cluster", "demo", "--wait"});
  }
  Cli({"cluster", "delete", "demo", "--wait"});
  EXPECT_EQ(Cli({"cluster", "list"}).size(), 0u);
  up_->Kill(SIGTERM);
  EXPECT_EQ(up_->Wait(), 0) << ReadFile(Log());
  up_.reset();
}

TEST(CanopyUpArgs, BadListenIsAOneLineError) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "needs root";
  TempDir dir;
  std::string log = (dir.path() / "out").string();
  Process p({canopy::testing::BinDir() + "/canopy", "up", "--data-dir", dir.str(), "--listen",
             "nonsense"},
            {"XDG_CONFIG_HOME=" + dir.str()}, log);
  EXPECT_EQ(p.Wait(), 1);
  EXPECT_NE(ReadFile(log).find("--listen must be HOST:PORT"), std::string::npos) << ReadFile(log);
}

}  // namespace
}  // namespace canopy::testing
