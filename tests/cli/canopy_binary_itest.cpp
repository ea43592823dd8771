// The `canopy` binary end to end against the fake root over HTTP: argument parsing, exit status,
// stdout holding only JSON with -o json, and exactly one stderr line on failure.
// Needs the `canopy` target built (build/bin/canopy).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/fake_root.h"
#include "support/test_util.h"

namespace canopy::cli {
namespace {

using fake::FakeRoot;

struct RunResult {
  int rc = -1;
  std::string out;
  std::string err;
};

class CanopyBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(binary_))
        << binary_ << " is missing: build the `canopy` target first";
    ASSERT_OK(root_.StartServer());
  }

  // Runs canopy with a clean environment (HOME and XDG_CONFIG_HOME inside the temp dir), stdin
  // from a file (not a terminal), stdout and stderr captured separately.
  RunResult Run(std::vector<std::string> args, std::vector<std::string> env = {},
                const std::string& stdin_data = "") {
    std::string in_path = (dir_.path() / "stdin").string();
    {
      std::ofstream f(in_path, std::ios::trunc);
      f << stdin_data;
    }
    std::string out_path = (dir_.path() / "stdout").string();
    std::string err_path = (dir_.path() / "stderr").string();
    env.push_back("HOME=" + dir_.str());
    env.push_back("XDG_CONFIG_HOME=" + (dir_.path() / "xdg").string());
    env.push_back("PATH=/usr/bin:/bin");
    args.insert(args.begin(), binary_);
    pid_t pid = fork();
    if (pid == 0) {
      int in = open(in_path.c_str(), O_RDONLY);
      int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(in, 0);
      dup2(out, 1);
      dup2(err, 2);
      std::vector<char*> argv;
      for (auto& a : args) {
        argv.push_back(a.data());
      }
      argv.push_back(nullptr);
      std::vector<char*> envp;
      for (auto& e : env) {
        envp.push_back(e.data());
      }
      envp.push_back(nullptr);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    RunResult r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = testing::ReadFile(out_path);
    r.err = testing::ReadFile(err_path);
    return r;
  }

  void LogIn() {
    RunResult r = Run({"login", "--root", root_.url(), "--username", FakeRoot::kUser, "--password",
                       FakeRoot::kPassword});
    ASSERT_EQ(r.rc, 0) << r.err;
  }

  static void ExpectOneErrorLine(const RunResult& r, const std::string& expected) {
    EXPECT_NE(r.rc, 0);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, expected + "\n");
  }

  std::string binary_ = canopy::testing::BinDir() + "/canopy";
  testing::TempDir dir_;
  FakeRoot root_;
};

TEST_F(CanopyBinaryTest, LoginWritesPrivateConfig) {
  LogIn();
  std::filesystem::path cfg = dir_.path() / "xdg" / "canopy" / "config.json";
  struct stat st {};
  ASSERT_EQ(stat(cfg.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat(cfg.parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(CanopyBinaryTest, JsonOutputIsOnlyJsonWherever_oIsGiven) {
  LogIn();
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"provider", "list", "-o", "json"},
           {"-o", "json", "provider", "list"},
           {"provider", "-o", "json", "list"},
           {"provider", "list", "--output=json", "--root", root_.url()}}) {
    RunResult r = Run(args);
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.err, "");
    auto j = ParseJson(r.out);
    ASSERT_OK(j);
    ASSERT_TRUE(j->is_array());
    EXPECT_EQ((*j)[1]["id"], "prv-2222");
  }
}

TEST_F(CanopyBinaryTest, TableOutputByDefault) {
  LogIn();
  RunResult r = Run({"credential", "list"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out,
            "ID      NAME    PROVIDER   ADAPTER   CREATED\n"
            "crd-1   local   local      prv-1     2026-11-28T13:00:00Z\n");
}

TEST_F(CanopyBinaryTest, ApiErrorIsOneLineWithNonZeroExit) {
  LogIn();
  ExpectOneErrorLine(Run({"user", "delete", "usr-9", "-o", "json"}),
                     "error: user usr-9 not found (not_found, HTTP 404)");
}

TEST_F(CanopyBinaryTest, NotLoggedInMessage) {
  ExpectOneErrorLine(
      Run({"user", "list", "--root", root_.url()}),
      "error: not logged in; run canopy login --root " + root_.url() + " --username U");
}

TEST_F(CanopyBinaryTest, RootFromEnvironment) {
  ExpectOneErrorLine(
      Run({"credential", "list"}, {"CANOPY_ROOT=" + root_.url()}),
      "error: not logged in; run canopy login --root " + root_.url() + " --username U");
}

TEST_F(CanopyBinaryTest, PasswordFromEnvironmentAndNoTerminal) {
  RunResult ok = Run({"login", "--root", root_.url(), "--username", FakeRoot::kUser},
                     {std::string("CANOPY_PASSWORD=") + FakeRoot::kPassword});
  EXPECT_EQ(ok.rc, 0) << ok.err;
  RunResult no = Run({"login", "--root", root_.url(), "--username", FakeRoot::kUser});
  ExpectOneErrorLine(
      no, "error: no password given: use --password, set CANOPY_PASSWORD, or run in a terminal");
}

TEST_F(CanopyBinaryTest, UsageErrorsAreOneLine) {
  LogIn();
  RunResult both =
      Run({"credential", "add", "x", "--provider", "local", "--secret", "{}", "--secret-stdin"});
  EXPECT_EQ(both.rc, 2);
  EXPECT_EQ(both.out, "");
  EXPECT_EQ(std::count(both.err.begin(), both.err.end(), '\n'), 1) << both.err;
  EXPECT_EQ(both.err.rfind("error: ", 0), 0u);

  RunResult missing = Run({"user", "create", "--role", "app"});
  EXPECT_EQ(missing.rc, 2);
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1) << missing.err;

  RunResult bad_format = Run({"user", "list", "-o", "yaml"});
  EXPECT_NE(bad_format.rc, 0);
  EXPECT_EQ(std::count(bad_format.err.begin(), bad_format.err.end(), '\n'), 1) << bad_format.err;
}

TEST_F(CanopyBinaryTest, UserCreateWithRepeatedRoles) {
  LogIn();
  RunResult r = Run({"user", "create", "carol", "--role", "infra", "--role", "app", "--password",
                     "pw-carol", "-o", "json"});
  ASSERT_EQ(r.rc, 0) << r.err;
  auto j = ParseJson(r.out);
  ASSERT_OK(j);
  EXPECT_EQ((*j)["roles"], Json::array({"infra", "app"}));
}

TEST_F(CanopyBinaryTest, SecretFromStdin) {
  LogIn();
  RunResult r = Run({"credential", "add", "gcp-main", "--provider", "gcp", "--secret-stdin"}, {},
                    R"({"private_key":"pk-stdin-42"})");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.find("pk-stdin-42"), std::string::npos);
  EXPECT_NE(r.out.find("crd-1"), std::string::npos);
  auto body = ParseJson(root_.last().body);
  ASSERT_OK(body);
  EXPECT_EQ((*body)["secret"]["private_key"], "pk-stdin-42");
}

// The acceptance command's shape against the fake root (its operation takes 7 polls, ~3 s).
TEST_F(CanopyBinaryTest, ClusterCreateWaitPrintsTheActiveClusterAndProgressOnStderr) {
  LogIn();
  RunResult r = Run({"cluster", "create", "web", "--provider", "local", "--credential", "local",
                     "--workers", "2", "--wait"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("State:           ACTIVE\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("web-w2"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("cluster.create"), std::string::npos) << r.out;
  // stderr is a file here: one line per step, no carriage returns.
  EXPECT_EQ(r.err.rfind("cluster.create: pending (0s)\n", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("cluster.create: step 5/5 workers ("), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("cluster.create: succeeded ("), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos);
  bool posted = false;
  for (const auto& req : root_.requests()) {
    if (req.method == "POST" && req.path == "/api/v1/clusters") {
      auto b = ParseJson(req.body);
      ASSERT_OK(b);
      EXPECT_EQ((*b)["workers"]["count"], 2);
      EXPECT_EQ((*b)["instance_type"], "small-a");
      posted = true;
    }
  }
  EXPECT_TRUE(posted);
}

TEST_F(CanopyBinaryTest, WorkerCommandsParseAndFailInOneLine) {
  LogIn();
  RunResult r = Run({"worker", "stop", "demo-w2", "--cluster", "demo", "-o", "json"});
  ExpectOneErrorLine(r, "error: worker wrk_2 is STOPPED; cannot stop it (conflict, HTTP 409)");
  RunResult list = Run({"worker", "list", "--cluster", "cls_1", "-o", "json"});
  ASSERT_EQ(list.rc, 0) << list.err;
  auto j = ParseJson(list.out);
  ASSERT_OK(j);
  EXPECT_EQ(j->size(), 2u);
  RunResult missing = Run({"worker", "add"});
  EXPECT_EQ(missing.rc, 2);
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1) << missing.err;
}

TEST_F(CanopyBinaryTest, ServiceCreateTakesTheCommandAfterDoubleDash) {
  LogIn();
  RunResult r =
      Run({"service", "create", "shop",        "--port", "8080", "--env",     "A=1",    "--port",
           "53/udp",  "--env",  "B=x=y",       "--cpu",  "250",  "--restart", "never",  "--",
           "python3", "-m",     "http.server", "-o",     "json", "--bind",    "0.0.0.0"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.err, "");
  // "-o json" after "--" belongs to the command: the output is a table.
  EXPECT_NE(r.out.find("Command:      python3 -m http.server -o json --bind 0.0.0.0\n"),
            std::string::npos)
      << r.out;
  auto body = ParseJson(root_.last().body);
  ASSERT_OK(body);
  EXPECT_EQ(root_.last().path, "/api/v1/services");
  EXPECT_EQ(*body,
            (Json{{"name", "shop"},
                  {"command", {"python3", "-m", "http.server", "-o", "json", "--bind", "0.0.0.0"}},
                  {"ports", Json::array({Json{{"port", 8080}, {"protocol", "tcp"}},
                                         Json{{"port", 53}, {"protocol", "udp"}}})},
                  {"cpu_millis", 250},
                  {"memory_mib", 128},
                  {"replicas", 1},
                  {"env", {{"A", "1"}, {"B", "x=y"}}},
                  {"restart", "never"}}));

  std::string sla = (dir_.path() / "sla.json").string();
  {
    std::ofstream f(sla);
    f << R"({"sla_version":"v2.0","applications":[{"microservices":[)"
      << R"({"microservice_name":"a","cmd":["true"]},{"microservice_name":"b"}]}]})";
  }
  RunResult imported = Run({"service", "create", "--sla", sla, "-o", "json"});
  ASSERT_EQ(imported.rc, 0) << imported.err;
  auto j = ParseJson(imported.out);
  ASSERT_OK(j);
  ASSERT_EQ((*j)["services"].size(), 2u);
  EXPECT_EQ((*j)["services"][1]["name"], "b");
}

TEST_F(CanopyBinaryTest, ServiceCommandsParseAndFailInOneLine) {
  LogIn();
  RunResult deploy = Run(
      {"service", "deploy", "web", "--replicas", "1", "--wait", "--timeout", "10", "-o", "json"});
  ASSERT_EQ(deploy.rc, 0) << deploy.err;
  auto j = ParseJson(deploy.out);
  ASSERT_OK(j);
  EXPECT_EQ((*j)["state"], "running");
  EXPECT_NE(deploy.err.find("service web: running, 1/1 running ("), std::string::npos)
      << deploy.err;
  EXPECT_EQ(deploy.err.find('\r'), std::string::npos);

  ExpectOneErrorLine(Run({"service", "show", "nope"}), "error: service 'nope' not found");
  ExpectOneErrorLine(Run({"service", "delete", "api", "-o", "json"}),
                     "error: service svc-2 is deployed; undeploy it first (conflict, HTTP 409)");
  ExpectOneErrorLine(Run({"service", "create", "x"}),
                     "error: give the command to run after --: canopy service create NAME "
                     "[options] -- CMD [ARGS...]");
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"service", "create", "x", "--restart", "sometimes", "--", "true"},
           {"service", "scale", "web"},
           {"service", "deploy"},
           {"service"}}) {
    RunResult bad = Run(args);
    EXPECT_EQ(bad.rc, 2);
    EXPECT_EQ(bad.out, "");
    EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
    EXPECT_EQ(bad.err.rfind("error: ", 0), 0u) << bad.err;
  }
}

TEST_F(CanopyBinaryTest, HelpExitsZero) {
  RunResult r = Run({"--help"});
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("credential"), std::string::npos);
}

}  // namespace
}  // namespace canopy::cli
