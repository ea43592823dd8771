// JobRunner with real short-lived processes (/bin/sh -c ...).
#include "node/job_runner.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <thread>

#include "common/files.h"
#include "support/daemons.h"
#include "support/test_util.h"

namespace canopy::node {
namespace {

using namespace std::chrono_literals;
using canopy::testing::ReadFile;
using canopy::testing::TempDir;
using canopy::testing::WaitFor;

JobSpec Sh(const std::string& id, const std::string& script, const std::string& restart = "never") {
  JobSpec s;
  s.id = id;
  s.command = {"/bin/sh", "-c", script};
  s.restart = restart;
  return s;
}

JobRunnerOptions Opts(const TempDir& dir) {
  JobRunnerOptions o;
  o.data_dir = dir.str();
  o.backoff_initial = 50ms;
  o.backoff_max = 200ms;
  o.stop_grace = 1000ms;
  o.cgroup_root = "";
  o.job_user = "";  // these tests are about supervision; JobUser.* run jobs as the job user
  return o;
}

std::optional<JobStatus> Find(const JobRunner& r, const std::string& id) {
  for (auto& s : r.Statuses()) {
    if (s.id == id) return s;
  }
  return std::nullopt;
}

// Running and not a zombie (an orphan may wait for a slow reaper).
bool Alive(int pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

TEST(JobSpec, JsonRoundTripAndValidation) {
  auto s = JobSpec::FromJson({{"id", "j1"},
                              {"command", {"sleep", "1"}},
                              {"env", {{"A", "b"}}},
                              {"cpu_millis", 500},
                              {"memory_mib", 64},
                              {"restart", "always"}});
  ASSERT_OK(s);
  EXPECT_EQ(s->command.size(), 2u);
  EXPECT_EQ(s->env.at("A"), "b");
  auto back = JobSpec::FromJson(s->ToJson());
  ASSERT_OK(back);
  EXPECT_EQ(*back, *s);
  EXPECT_FALSE(JobSpec::FromJson({{"id", "../x"}, {"command", {"a"}}}));
  EXPECT_FALSE(JobSpec::FromJson({{"id", "x"}, {"command", Json::array()}}));
  EXPECT_FALSE(JobSpec::FromJson({{"id", "x"}, {"command", {"a"}}, {"restart", "sometimes"}}));
  auto d = JobSpec::FromJson({{"id", "x"}, {"command", {"a"}}});
  ASSERT_OK(d);
  EXPECT_EQ(d->restart, "on-failure");
}

TEST(JobRunner, StartsAndRunsAndCapturesOutput) {
  TempDir dir;
  JobRunner r(Opts(dir));
  JobSpec s = Sh("web", "echo out; echo err >&2; echo $GREETING; exec sleep 30");
  s.env["GREETING"] = "hello-env";
  ASSERT_OK(r.Start(s));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = Find(r, "web");
        return st && st->state == "running" && st->pid > 0;
      },
      5s));
  EXPECT_TRUE(Alive(Find(r, "web")->pid));
  ASSERT_TRUE(WaitFor(
      [&] { return ReadFile(dir.str() + "/jobs/web.log").find("hello-env") != std::string::npos; },
      5s));
  std::string log = ReadFile(dir.str() + "/jobs/web.log");
  EXPECT_NE(log.find("out"), std::string::npos);
  EXPECT_NE(log.find("err"), std::string::npos);
  // Same spec again: no-op.
  int pid = Find(r, "web")->pid;
  ASSERT_OK(r.Start(s));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(Find(r, "web")->pid, pid);
}

TEST(JobRunner, PathLookupAndMissingCommand) {
  TempDir dir;
  JobRunner r(Opts(dir));
  JobSpec ok;
  ok.id = "p";
  ok.command = {"sh", "-c", "exit 0"};
  ok.restart = "never";
  ASSERT_OK(r.Start(ok));
  JobSpec bad = Sh("missing", "");
  bad.command = {"definitely-not-a-command-xyz"};
  ASSERT_OK(r.Start(bad));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = Find(r, "p");
        return st && st->state == "exited";
      },
      5s));
  EXPECT_EQ(Find(r, "p")->exit_code, 0);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = Find(r, "missing");
        return st && st->state == "failed";
      },
      5s));
  EXPECT_NE(Find(r, "missing")->last_error.find("not found"), std::string::npos);
  EXPECT_FALSE(r.Start(Sh("bad id!", "true")));
}

TEST(JobRunner, RestartPolicies) {
  TempDir dir;
  JobRunner r(Opts(dir));
  ASSERT_OK(r.Start(Sh("never-fail", "exit 3", "never")));
  ASSERT_OK(r.Start(Sh("onfail-ok", "exit 0", "on-failure")));
  ASSERT_OK(r.Start(Sh("onfail-fail", "exit 2", "on-failure")));
  ASSERT_OK(r.Start(Sh("always-ok", "exit 0", "always")));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = Find(r, "never-fail");
        return st && st->state == "failed";
      },
      5s));
  EXPECT_EQ(Find(r, "never-fail")->exit_code, 3);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = Find(r, "onfail-ok");
        return st && st->state == "exited";
      },
      5s));
  ASSERT_TRUE(WaitFor([&] { return Find(r, "onfail-fail")->restarts >= 3; }, 10s));
  ASSERT_TRUE(WaitFor([&] { return Find(r, "always-ok")->restarts >= 3; }, 10s));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(Find(r, "never-fail")->restarts, 0);
  EXPECT_EQ(Find(r, "onfail-ok")->restarts, 0);
  EXPECT_EQ(Find(r, "onfail-fail")->exit_code, 2);
}

TEST(JobRunner, StopKillsTheWholeProcessGroup) {
  TempDir dir;
  JobRunner r(Opts(dir));
  // The shell starts a background child and ignores SIGTERM: needs SIGKILL after the grace.
  ASSERT_OK(r.Start(Sh(
      "grp", "trap '' TERM; sleep 100 & echo $! > " + dir.str() + "/child.pid; wait", "always")));
  ASSERT_TRUE(WaitFor([&] { return !ReadFile(dir.str() + "/child.pid").empty(); }, 5s));
  int child = std::stoi(ReadFile(dir.str() + "/child.pid"));
  int leader = Find(r, "grp")->pid;
  EXPECT_TRUE(Alive(child));
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_OK(r.Stop("grp"));
  ASSERT_TRUE(WaitFor([&] { return !Find(r, "grp").has_value(); }, 5s));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 900ms);  // waited the grace period
  // The leader was reaped (no zombie: kill fails) and the group member is gone too.
  EXPECT_FALSE(Alive(leader));
  EXPECT_TRUE(WaitFor([&] { return !Alive(child); }, 3s));
  EXPECT_EQ(r.Stop("grp").error().code, ErrorCode::kNotFound);
}

TEST(JobRunner, ReconcileAddsReplacesAndRemoves) {
  TempDir dir;
  JobRunner r(Opts(dir));
  ASSERT_OK(r.Reconcile({Sh("a", "exec sleep 30"), Sh("b", "exec sleep 30")}));
  ASSERT_TRUE(WaitFor(
      [&] { return r.Statuses().size() == 2 && Find(r, "a")->pid > 0 && Find(r, "b")->pid > 0; },
      5s));
  int a_pid = Find(r, "a")->pid;
  int b_pid = Find(r, "b")->pid;
  ASSERT_OK(r.Reconcile({Sh("b", "exec sleep 31"), Sh("c", "exec sleep 30")}));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto b = Find(r, "b");
        auto c = Find(r, "c");
        return !Find(r, "a") && b && b->pid > 0 && b->pid != b_pid && c && c->pid > 0;
      },
      5s));
  EXPECT_FALSE(Alive(a_pid));
  EXPECT_FALSE(Alive(b_pid));
  ASSERT_OK(r.Reconcile({}));
  ASSERT_TRUE(WaitFor([&] { return r.Statuses().empty(); }, 5s));
}

TEST(JobRunner, DestructorStopsJobs) {
  TempDir dir;
  int pid = 0;
  {
    JobRunner r(Opts(dir));
    ASSERT_OK(r.Start(Sh("x", "exec sleep 30")));
    ASSERT_TRUE(WaitFor(
        [&] {
          auto s = Find(r, "x");
          return s && s->pid > 0;
        },
        5s));
    pid = Find(r, "x")->pid;
  }
  EXPECT_FALSE(Alive(pid));
}

TEST(JobRunner, CgroupLimitsWhenAvailable) {
  TempDir dir;
  auto o = Opts(dir);
  o.cgroup_root = "/sys/fs/cgroup";
  JobRunner r(o);
  if (!r.cgroups_enabled()) GTEST_SKIP() << "cgroups v2 not usable: " << r.cgroup_status();
  JobSpec s = Sh("lim", "exec sleep 30");
  s.cpu_millis = 250;
  s.memory_mib = 64;
  ASSERT_OK(r.Start(s));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = Find(r, "lim");
        return st && st->pid > 0;
      },
      5s));
  std::string cg = r.JobCgroup("lim");
  EXPECT_EQ(ReadFile(cg + "/memory.max"), std::to_string(64 * 1024 * 1024) + "\n");
  EXPECT_EQ(ReadFile(cg + "/cpu.max"), "25000 100000\n");
  EXPECT_NE(ReadFile(cg + "/cgroup.procs").find(std::to_string(Find(r, "lim")->pid)),
            std::string::npos);
}

// Jobs are not root: the job user, a clean environment, the node's files out of reach.
TEST(JobUser, JobsRunUnprivilegedWithACleanEnvironmentAndCannotReadTheNodesFiles) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (to drop to the job user)";
  TempDir dir;
  ::chmod(dir.str().c_str(), 0711);  // as the node agent leaves its data dir
  ASSERT_OK(WriteFileAtomic(dir.str() + "/identity.json", R"({"node_key":"secret-key"})"));
  ::setenv("CANOPY_NODE_TOKEN", "cnt_should_not_leak", 1);
  JobRunnerOptions o = Opts(dir);
  o.job_user = "canopy-job";
  JobRunner r(o);
  EXPECT_NE(r.user_status().find("canopy-job"), std::string::npos) << r.user_status();
  JobSpec s = Sh("probe",
                 "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); echo home=$HOME; "
                 "echo token=${CANOPY_NODE_TOKEN:-none}; echo job=$CANOPY_JOB_ID; "
                 "cat " +
                     dir.str() +
                     "/identity.json >/dev/null 2>&1 && echo identity=read || "
                     "echo identity=denied; grep CapAmb /proc/self/status; "
                     "touch ./written && echo cwd=writable; exec sleep 30");
  s.env["GREETING"] = "hi";
  ASSERT_OK(r.Start(s));
  std::string log;
  ASSERT_TRUE(WaitFor(
      [&] {
        log = ReadFile(dir.str() + "/jobs/probe.log");
        return log.find("cwd=") != std::string::npos;
      },
      5s))
      << log;
  ::unsetenv("CANOPY_NODE_TOKEN");
  EXPECT_EQ(log.find("uid=0 "), std::string::npos) << log;
  EXPECT_EQ(log.find("gid=0 "), std::string::npos) << log;
  EXPECT_NE(log.find("token=none"), std::string::npos) << log;
  EXPECT_NE(log.find("job=probe"), std::string::npos) << log;
  EXPECT_NE(log.find("identity=denied"), std::string::npos) << log;
  EXPECT_NE(log.find("home=" + dir.str() + "/work/probe"), std::string::npos) << log;
  EXPECT_NE(log.find("cwd=writable"), std::string::npos) << log;
  // Only CAP_NET_BIND_SERVICE (bit 10) is left, as an ambient capability.
  EXPECT_NE(log.find("CapAmb:\t0000000000000400"), std::string::npos) << log;
  struct stat st {};
  ASSERT_EQ(::stat((dir.str() + "/work/probe/written").c_str(), &st), 0);
  EXPECT_NE(st.st_uid, 0u);
  // The process itself: not root.
  int pid = Find(r, "probe")->pid;
  ASSERT_EQ(::stat(("/proc/" + std::to_string(pid)).c_str(), &st), 0);
  EXPECT_NE(st.st_uid, 0u);
}

}  // namespace
}  // namespace canopy::node
