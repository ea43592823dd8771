// cli/commands for clusters and workers against the fake root, in memory (no sockets): defaults
// from offers, name resolution, the request paths, and --wait with a fake clock and a sleep that
// only moves that clock (so nothing really sleeps).
#include <gtest/gtest.h>

#include <map>
#include <sstream>

#include "cli/commands.h"
#include "cli/fake_root.h"
#include "cli/wait.h"
#include "support/test_util.h"

namespace canopy::cli {
namespace {

using fake::FakeRoot;
using namespace std::chrono_literals;

constexpr const char* kRoot = "http://root.test:8080";

class ClusterCommandsTest : public ::testing::Test {
 protected:
  ClusterCommandsTest()
      : ctx_{out_,
             err_,
             in_,
             [this](const std::string& n) -> std::optional<std::string> {
               if (n == "XDG_CONFIG_HOME") {
                 return dir_.str();
               }
               return std::nullopt;
             },
             [](std::string_view) -> Result<SecretString> {
               return Error::FailedPrecondition("standard input is not a terminal");
             },
             root_.InMemoryTransport(),
             clock_,
             {}} {
    ctx_.global.root = kRoot;
    ctx_.sleep = [this](std::chrono::milliseconds d) {
      sleeps_.push_back(d);
      clock_->Advance(d);
    };
    LoginOptions o;
    o.username = FakeRoot::kUser;
    o.password = FakeRoot::kPassword;
    EXPECT_EQ(Login(ctx_, o), kExitOk) << err_.str();
    Clear();
  }

  void Clear() {
    out_.str("");
    err_.str("");
  }

  // Runs `cmd` with -o json; stdout must be exactly one JSON document (stderr may hold progress).
  Json RunJson(const std::function<int(Context&)>& cmd) {
    Clear();
    ctx_.global.output = OutputFormat::kJson;
    int rc = cmd(ctx_);
    ctx_.global.output = OutputFormat::kTable;
    EXPECT_EQ(rc, kExitOk) << err_.str();
    std::string s = out_.str();
    EXPECT_FALSE(s.empty());
    EXPECT_EQ(s.back(), '\n');
    auto j = ParseJson(s);
    EXPECT_TRUE(j.has_value()) << s;
    return j ? *j : Json();
  }

  // Expects failure: nothing on stdout, stderr ending in one "error: " line, which is returned
  // (without the newline). Lines before it may only be progress.
  std::string ExpectErrorLine(int rc) {
    EXPECT_EQ(rc, kExitError);
    EXPECT_EQ(out_.str(), "");
    std::string e = err_.str();
    EXPECT_FALSE(e.empty());
    if (!e.empty() && e.back() == '\n') {
      e.pop_back();
    }
    size_t nl = e.rfind('\n');
    std::string last = nl == std::string::npos ? e : e.substr(nl + 1);
    EXPECT_EQ(last.rfind("error: ", 0), 0u) << e;
    EXPECT_EQ(e.find("error: "), e.size() - last.size()) << "more than one error line: " << e;
    return last;
  }

  // The requests after the login.
  std::vector<fake::RecordedRequest> Requests() const {
    auto all = root_.requests();
    all.erase(all.begin());
    return all;
  }
  size_t Count(const std::string& method, const std::string& path) const {
    size_t n = 0;
    for (const auto& r : Requests()) {
      n += (r.method == method && r.path == path) ? 1 : 0;
    }
    return n;
  }
  fake::RecordedRequest Find(const std::string& method, const std::string& path) const {
    for (const auto& r : Requests()) {
      if (r.method == method && r.path == path) {
        return r;
      }
    }
    ADD_FAILURE() << "no " << method << " " << path;
    return {};
  }
  Json BodyOf(const std::string& method, const std::string& path) const {
    auto j = ParseJson(Find(method, path).body);
    EXPECT_TRUE(j.has_value());
    return j ? *j : Json();
  }

  static ClusterCreateOptions Create(std::string name) {
    ClusterCreateOptions o;
    o.name = std::move(name);
    o.credential = "local";
    return o;
  }

  testing::TempDir dir_;
  FakeRoot root_;
  std::ostringstream out_;
  std::ostringstream err_;
  std::istringstream in_;
  std::shared_ptr<testing::FakeClock> clock_ = std::make_shared<testing::FakeClock>();
  std::vector<std::chrono::milliseconds> sleeps_;
  Context ctx_;
};

// ---- cluster create --------------------------------------------------------------------------

TEST_F(ClusterCommandsTest, CreatePicksDefaultsFromOffers) {
  ClusterCreateOptions o = Create("web");
  o.provider = "local";
  ASSERT_EQ(ClusterCreate(ctx_, o), kExitOk) << err_.str();
  EXPECT_EQ(err_.str(), "");

  auto offers = Find("GET", "/api/v1/offers");
  EXPECT_EQ(offers.query["credential_id"], "crd-1");
  EXPECT_EQ(offers.query["provider"], "local");
  EXPECT_EQ(offers.query.count("region"), 0u);

  Json body = BodyOf("POST", "/api/v1/clusters");
  EXPECT_EQ(body, (Json{{"name", "web"},
                        {"credential_id", "crd-1"},
                        {"region", "local"},
                        {"instance_type", "small-a"},  // 1 vcpu, 1024 MiB, 0.02, first by name
                        {"image", "img-debian"},
                        {"disk_gb", 10}}));
  // Without --wait: the 202 body, with the operation id, and no polling.
  std::string out = out_.str();
  EXPECT_NE(out.find("ID:              cls_new\n"), std::string::npos) << out;
  EXPECT_NE(out.find("State:           PROVISIONING\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Operation:       op_create\n"), std::string::npos) << out;
  EXPECT_EQ(root_.polls(FakeRoot::kOpCreate), 0u);
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(ClusterCommandsTest, CreateExplicitFlagsWinAndNeedNoOffers) {
  ClusterCreateOptions o = Create("web");
  o.region = "eu-1";
  o.instance_type = "huge";
  o.image = "img-custom";
  o.disk_gb = 40;
  o.workers = 2;
  o.worker_instance_type = "big";
  ASSERT_EQ(ClusterCreate(ctx_, o), kExitOk) << err_.str();
  EXPECT_EQ(Count("GET", "/api/v1/offers"), 0u);
  Json body = BodyOf("POST", "/api/v1/clusters");
  EXPECT_EQ(body["region"], "eu-1");
  EXPECT_EQ(body["instance_type"], "huge");
  EXPECT_EQ(body["image"], "img-custom");
  EXPECT_EQ(body["disk_gb"], 40);
  EXPECT_EQ(
      body["workers"],
      (Json{{"count", 2}, {"instance_type", "big"}, {"image", "img-custom"}, {"disk_gb", 40}}));
}

TEST_F(ClusterCommandsTest, CreateMixesFlagsAndOffersAndWorkersDefaultToTheCluster) {
  ClusterCreateOptions o = Create("web");
  o.region = "local-2";
  o.workers = 3;
  ASSERT_EQ(ClusterCreate(ctx_, o), kExitOk) << err_.str();
  EXPECT_EQ(Find("GET", "/api/v1/offers").query["region"], "local-2");
  Json body = BodyOf("POST", "/api/v1/clusters");
  EXPECT_EQ(body["region"], "local-2");
  EXPECT_EQ(body["instance_type"], "small-a");
  EXPECT_EQ(
      body["workers"],
      (Json{{"count", 3}, {"instance_type", "small-a"}, {"image", "img-debian"}, {"disk_gb", 10}}));
}

TEST_F(ClusterCommandsTest, CreateTakesTheCredentialById) {
  ClusterCreateOptions o = Create("web");
  o.credential = "crd-1";
  ASSERT_EQ(ClusterCreate(ctx_, o), kExitOk) << err_.str();
  EXPECT_EQ(BodyOf("POST", "/api/v1/clusters")["credential_id"], "crd-1");
}

TEST_F(ClusterCommandsTest, CreateRejectsAProviderOtherThanTheCredentials) {
  ClusterCreateOptions o = Create("web");
  o.provider = "aws";
  o.region = "r";
  o.instance_type = "t";
  o.image = "i";
  std::string line = ExpectErrorLine(ClusterCreate(ctx_, o));
  EXPECT_EQ(line, "error: credential 'local' is for provider 'local', not 'aws'");
  EXPECT_EQ(Count("POST", "/api/v1/clusters"), 0u);
  EXPECT_EQ(err_.str(), line + "\n");
}

TEST_F(ClusterCommandsTest, CreateWithUnknownCredentialFails) {
  ClusterCreateOptions o = Create("web");
  o.credential = "nope";
  EXPECT_EQ(ExpectErrorLine(ClusterCreate(ctx_, o)), "error: credential 'nope' not found");
  EXPECT_EQ(Count("POST", "/api/v1/clusters"), 0u);
}

TEST_F(ClusterCommandsTest, CreateChecksItsNumbersBeforeAnyRequest) {
  ClusterCreateOptions bad_disk = Create("web");
  bad_disk.disk_gb = 0;
  ClusterCreateOptions bad_workers = Create("web");
  bad_workers.workers = -1;
  ClusterCreateOptions type_without_workers = Create("web");
  type_without_workers.worker_instance_type = "big";
  ClusterCreateOptions bad_timeout = Create("web");
  bad_timeout.wait = {true, 0};
  for (const auto* o : {&bad_disk, &bad_workers, &type_without_workers, &bad_timeout}) {
    Clear();
    ExpectErrorLine(ClusterCreate(ctx_, *o));
  }
  EXPECT_TRUE(Requests().empty());
}

TEST_F(ClusterCommandsTest, CreatePassesTheServersConflictThrough) {
  std::string line = ExpectErrorLine(ClusterCreate(ctx_, Create("demo")));
  EXPECT_EQ(line, "error: a cluster named demo already exists (already_exists, HTTP 409)");
}

TEST_F(ClusterCommandsTest, CreateJsonWithoutWaitIsThe202Body) {
  Json j = RunJson([](Context& c) { return ClusterCreate(c, Create("web")); });
  EXPECT_EQ(j["operation_id"], "op_create");
  EXPECT_EQ(j["cluster"]["id"], "cls_new");
  EXPECT_EQ(err_.str(), "");
}

// ---- --wait ----------------------------------------------------------------------------------

TEST_F(ClusterCommandsTest, CreateWaitFollowsTheOperationAndPrintsTheClusterAgain) {
  ClusterCreateOptions o = Create("web");
  o.workers = 2;
  o.wait.wait = true;
  ASSERT_EQ(ClusterCreate(ctx_, o), kExitOk) << err_.str();
  // One line per state or step change, with the time since the wait began; never on stdout.
  EXPECT_EQ(err_.str(),
            "cluster.create: pending (0s)\n"
            "cluster.create: step 1/5 instance (0s)\n"
            "cluster.create: step 2/5 firewalls (1s)\n"
            "cluster.create: step 3/5 install (1s)\n"
            "cluster.create: step 4/5 pair (2s)\n"
            "cluster.create: step 5/5 workers (2s)\n"
            "cluster.create: succeeded (3s)\n");
  EXPECT_EQ(root_.polls(FakeRoot::kOpCreate), 7u);
  ASSERT_EQ(sleeps_.size(), 6u);
  for (auto d : sleeps_) {
    EXPECT_EQ(d, 500ms);
  }
  EXPECT_EQ(Find("GET", "/api/v1/operations/op_create").method, "GET");
  std::string out = out_.str();
  EXPECT_EQ(out.find("cluster.create"), std::string::npos);
  EXPECT_NE(out.find("State:           ACTIVE\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Workers:         2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("\n\nID       NAME     STATE    INSTANCE TYPE"), std::string::npos) << out;
  EXPECT_NE(out.find("\nwrk_n2   web-w2   ACTIVE   small-a"), std::string::npos) << out;
  EXPECT_EQ(Requests().back().path, "/api/v1/clusters/cls_new/workers");
}

TEST_F(ClusterCommandsTest, CreateWaitJsonPrintsOnlyTheFinalClusterOnStdout) {
  ClusterCreateOptions o = Create("web");
  o.workers = 2;
  o.wait.wait = true;
  Json j = RunJson([&o](Context& c) { return ClusterCreate(c, o); });
  EXPECT_EQ(j["id"], "cls_new");
  EXPECT_EQ(j["state"], "ACTIVE");
  ASSERT_EQ(j["workers"].size(), 2u);
  EXPECT_EQ(j["workers"][0]["name"], "web-w1");
  EXPECT_NE(err_.str().find("cluster.create: succeeded"), std::string::npos);
}

TEST_F(ClusterCommandsTest, WaitOnATerminalRewritesTheCurrentStepsLineOnly) {
  ctx_.err_is_terminal = true;
  ClusterCreateOptions o = Create("web");
  o.wait.wait = true;
  ASSERT_EQ(ClusterCreate(ctx_, o), kExitOk) << err_.str();
  std::string e = err_.str();
  // 7 polls rewrite the line; each of the 5 steps passed then stays as a line of its own.
  EXPECT_EQ(std::count(e.begin(), e.end(), '\r'), 12) << e;
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 6) << e;
  EXPECT_EQ(e.back(), '\n');
  EXPECT_EQ(e.rfind("\rcluster.create: succeeded (3s)"), e.find_last_of('\r')) << e;
  EXPECT_NE(e.find("\rcluster.create: step 4/5 pair (2s)"
                   "\rcluster.create: step 4/5 pair done in 1.0s\n"
                   "\rcluster.create: step 5/5 workers (2s)"
                   "\rcluster.create: step 5/5 workers done in 1.0s\n"
                   "\rcluster.create: succeeded (3s)\n"),
            std::string::npos)
      << e;
  EXPECT_EQ(out_.str().find('\r'), std::string::npos);
}

TEST_F(ClusterCommandsTest, WaitReportsTheFailedStepAndItsMessage) {
  root_.ScriptOperation(FakeRoot::kOpCreate,
                        FakeRoot::OperationStates(FakeRoot::kOpCreate, "cluster.create", "cls_new",
                                                  {"instance", "firewalls", "install", "pair"}, 2,
                                                  "ssh to 198.18.0.20 timed out"));
  ClusterCreateOptions o = Create("web");
  o.wait.wait = true;
  std::string line = ExpectErrorLine(ClusterCreate(ctx_, o));
  EXPECT_EQ(line,
            "error: operation op_create failed at step install: ssh to 198.18.0.20 timed out");
  EXPECT_NE(err_.str().find("cluster.create: failed at step 3/4 install (1s)\n"), std::string::npos)
      << err_.str();
  // Nothing is fetched after the failure.
  EXPECT_EQ(Requests().back().path, "/api/v1/operations/op_create");
}

TEST_F(ClusterCommandsTest, WaitGivesUpAfterTheTimeout) {
  auto states = FakeRoot::OperationStates(FakeRoot::kOpCreate, "cluster.create", "cls_new",
                                          {"instance", "install"});
  root_.ScriptOperation(FakeRoot::kOpCreate, {states[1]});  // running at "instance" forever
  ClusterCreateOptions o = Create("web");
  o.wait = {true, 3};
  ctx_.global.output = OutputFormat::kJson;
  std::string line = ExpectErrorLine(ClusterCreate(ctx_, o));
  EXPECT_EQ(line,
            "error: gave up waiting for operation op_create after 3s (running at step instance); "
            "it goes on: see canopy operation show op_create");
  EXPECT_EQ(root_.polls(FakeRoot::kOpCreate), 7u);  // at 0, 0.5, ... 3 s
  std::chrono::milliseconds slept{0};
  for (auto d : sleeps_) {
    slept += d;
  }
  EXPECT_EQ(slept, 3000ms);
  EXPECT_EQ(err_.str(), "cluster.create: step 1/2 instance (0s)\n" + line + "\n");
}

TEST_F(ClusterCommandsTest, WaitRidesOutABrieflyUnreachableRoot) {
  int failures = 2;
  std::string op_id;
  WaitSettings settings;
  auto fetch = [&](const std::string& id) -> Result<Json> {
    op_id = id;
    if (failures-- > 0) {
      return Error::Unavailable("cannot reach root");
    }
    return Json{{"id", id}, {"kind", "x"}, {"state", "succeeded"}};
  };
  auto op = WaitForOperation("op_9", fetch, *clock_, ctx_.sleep, err_, false, settings);
  ASSERT_OK(op);
  EXPECT_EQ((*op)["state"], "succeeded");
  EXPECT_EQ(sleeps_.size(), 2u);
  EXPECT_EQ(err_.str(), "x: succeeded (1s)\n");

  failures = 100;
  settings.max_unavailable_polls = 3;
  auto gone = WaitForOperation("op_9", fetch, *clock_, ctx_.sleep, err_, false, settings);
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error().message, "cannot reach root");
}

TEST(ProgressTextTest, DescribesEachState) {
  Json op{{"kind", "worker.shutdown"},
          {"state", "running"},
          {"step", "instance"},
          {"step_index", 1},
          {"steps", Json::array({Json{{"name", "drain"}}, Json{{"name", "instance"}}})},
          {"last_error", {{"code", "provider_error"}, {"message", "rate\nlimited"}}}};
  EXPECT_EQ(ProgressText(op, 65s),
            "worker.shutdown: step 2/2 instance (65s) - retrying after: rate?limited");
  op.erase("last_error");
  op["state"] = "pending";
  EXPECT_EQ(ProgressText(op, 0s), "worker.shutdown: pending (0s)");
  op["state"] = "failed";
  EXPECT_EQ(ProgressText(op, 2s), "worker.shutdown: failed at step 2/2 instance (2s)");
  EXPECT_EQ(ProgressText(Json{{"state", "running"}}, 1s), "operation: running (1s)");
}

// ---- cluster list / show / delete ------------------------------------------------------------

TEST_F(ClusterCommandsTest, ListPrintsClusters) {
  ASSERT_EQ(ClusterList(ctx_), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(),
            "ID      NAME    KIND    STATE    PROVIDER   REGION   WORKERS   CREATED\n"
            "cls_1   demo    cloud   ACTIVE   local      local    2         2026-11-28T13:00:00Z\n"
            "cls_2   empty   cloud   ACTIVE   local      local    0         2026-11-28T13:00:00Z\n"
            "cls_3   cls_1   cloud   ACTIVE   local      local    0         "
            "2026-11-28T13:00:00Z\n");
  Json j = RunJson([](Context& c) { return ClusterList(c); });
  ASSERT_TRUE(j.is_array());
  EXPECT_EQ(j.size(), 3u);
}

TEST_F(ClusterCommandsTest, ShowResolvesIdsFirstThenNames) {
  Json by_name = RunJson([](Context& c) { return ClusterShow(c, "demo"); });
  EXPECT_EQ(by_name["id"], "cls_1");
  ASSERT_EQ(by_name["workers"].size(), 2u);
  Json by_id = RunJson([](Context& c) { return ClusterShow(c, "cls_1"); });
  EXPECT_EQ(by_id["name"], "demo");  // not cls_3, whose name is "cls_1"
  Json other = RunJson([](Context& c) { return ClusterShow(c, "cls_3"); });
  EXPECT_EQ(other["name"], "cls_1");
  EXPECT_EQ(other["workers"], Json::array());
  Clear();
  EXPECT_EQ(ExpectErrorLine(ClusterShow(ctx_, "nope")), "error: cluster 'nope' not found");
}

TEST_F(ClusterCommandsTest, ShowPrintsKeyValuesAndWorkers) {
  ASSERT_EQ(ClusterShow(ctx_, "demo"), kExitOk) << err_.str();
  std::string out = out_.str();
  EXPECT_EQ(out.rfind("ID:              cls_1\nName:            demo\nKind:            cloud\n", 0),
            0u)
      << out;
  EXPECT_NE(out.find("\n\n"
                     "ID      NAME      STATE     INSTANCE TYPE   IMAGE        ADDRESS   OS        "
                     "                       ERROR\n"
                     "wrk_1   demo-w1   ACTIVE    small-a         img-debian   -         Debian "
                     "GNU/Linux 11 (bullseye)   -\n"
                     "wrk_2   demo-w2   STOPPED   small-a         img-debian   -         -         "
                     "                       -\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(Requests().back().path, "/api/v1/clusters/cls_1/workers");
}

TEST_F(ClusterCommandsTest, DeleteWithBilledWorkersPassesTheConflictThrough) {
  std::string line = ExpectErrorLine(ClusterDelete(ctx_, "demo", {}));
  EXPECT_EQ(line,
            "error: cluster cls_1 has 2 billed workers; terminate them first "
            "(failed_precondition, HTTP 409)");
  EXPECT_EQ(Find("DELETE", "/api/v1/clusters/cls_1").method, "DELETE");
}

TEST_F(ClusterCommandsTest, DeleteWithoutWaitPrintsTheOperation) {
  ASSERT_EQ(ClusterDelete(ctx_, "empty", {}), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(),
            "ID:          cls_2\n"
            "Name:        empty\n"
            "State:       DELETING\n"
            "Operation:   op_delete\n");
  EXPECT_EQ(root_.polls(FakeRoot::kOpDelete), 0u);
}

TEST_F(ClusterCommandsTest, DeleteWaitPrintsADeletedLine) {
  ASSERT_EQ(ClusterDelete(ctx_, "cls_2", {true, 60}), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "Deleted cluster empty (cls_2)\n");
  EXPECT_NE(err_.str().find("cluster.delete: step 4/4 rows"), std::string::npos) << err_.str();
}

TEST_F(ClusterCommandsTest, DeleteWaitJsonPrintsTheFinalOperation) {
  Json j = RunJson([](Context& c) { return ClusterDelete(c, "empty", {true, 60}); });
  EXPECT_EQ(j["id"], "op_delete");
  EXPECT_EQ(j["state"], "succeeded");
}

// ---- workers ---------------------------------------------------------------------------------

TEST_F(ClusterCommandsTest, WorkerAddSendsOnlyTheGivenFields) {
  WorkerAddOptions o;
  o.cluster = "demo";
  o.count = 2;
  o.instance_type = "big";
  ASSERT_EQ(WorkerAdd(ctx_, o), kExitOk) << err_.str();
  EXPECT_EQ(BodyOf("POST", "/api/v1/clusters/cls_1/workers"),
            (Json{{"count", 2}, {"instance_type", "big"}}));
  EXPECT_EQ(out_.str(),
            "ID       NAME      STATE     INSTANCE TYPE   IMAGE        ADDRESS   OS   ERROR\n"
            "wrk_a3   added-3   BOOTING   big             img-debian   -         -    -\n"
            "wrk_a4   added-4   BOOTING   big             img-debian   -         -    -\n"
            "\n"
            "Operation:   op_workers\n");

  Clear();
  WorkerAddOptions all;
  all.cluster = "cls_2";
  all.image = "img-ubuntu";
  all.disk_gb = 30;
  ASSERT_EQ(WorkerAdd(ctx_, all), kExitOk) << err_.str();
  EXPECT_EQ(BodyOf("POST", "/api/v1/clusters/cls_2/workers"),
            (Json{{"count", 1}, {"image", "img-ubuntu"}, {"disk_gb", 30}}));
}

TEST_F(ClusterCommandsTest, WorkerAddWaitPrintsTheNewWorkersAgain) {
  WorkerAddOptions o;
  o.cluster = "demo";
  o.count = 2;
  o.wait.wait = true;
  Json j = RunJson([&o](Context& c) { return WorkerAdd(c, o); });
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["id"], "wrk_a3");
  EXPECT_EQ(j[0]["state"], "ACTIVE");
  EXPECT_EQ(j[1]["id"], "wrk_a4");
  EXPECT_NE(err_.str().find("workers.provision: succeeded"), std::string::npos);
}

TEST_F(ClusterCommandsTest, WorkerAddRejectsAZeroCount) {
  WorkerAddOptions o;
  o.cluster = "demo";
  o.count = 0;
  EXPECT_EQ(ExpectErrorLine(WorkerAdd(ctx_, o)), "error: --count must be at least 1");
  EXPECT_TRUE(Requests().empty());
}

TEST_F(ClusterCommandsTest, WorkerListByClusterName) {
  ASSERT_EQ(WorkerList(ctx_, "demo"), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(),
            "ID      NAME      STATE     INSTANCE TYPE   IMAGE        ADDRESS   OS                 "
            "              ERROR\n"
            "wrk_1   demo-w1   ACTIVE    small-a         img-debian   -         Debian GNU/Linux "
            "11 (bullseye)   -\n"
            "wrk_2   demo-w2   STOPPED   small-a         img-debian   -         -                  "
            "              -\n");
  Json j = RunJson([](Context& c) { return WorkerList(c, "cls_2"); });
  EXPECT_EQ(j, Json::array());
  Clear();
  EXPECT_EQ(ExpectErrorLine(WorkerList(ctx_, "gone")), "error: cluster 'gone' not found");
}

TEST_F(ClusterCommandsTest, WorkerActionsUseTheirPaths) {
  struct Case {
    WorkerAction action;
    std::string worker;
    std::string method;
    std::string path;
  };
  std::vector<Case> cases = {
      {WorkerAction::kStop, "demo-w1", "POST", "/api/v1/clusters/cls_1/workers/wrk_1/stop"},
      {WorkerAction::kRestart, "wrk_1", "POST", "/api/v1/clusters/cls_1/workers/wrk_1/restart"},
      {WorkerAction::kRecreate, "demo-w2", "POST", "/api/v1/clusters/cls_1/workers/wrk_2/recreate"},
      {WorkerAction::kTerminate, "wrk_2", "POST", "/api/v1/clusters/cls_1/workers/wrk_2/terminate"},
      {WorkerAction::kDelete, "demo-w1", "DELETE", "/api/v1/clusters/cls_1/workers/wrk_1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.path);
    Clear();
    WorkerActionOptions o;
    o.cluster = "demo";
    o.worker = c.worker;
    o.action = c.action;
    ASSERT_EQ(WorkerAct(ctx_, o), kExitOk) << err_.str();
    EXPECT_EQ(root_.last().method, c.method);
    EXPECT_EQ(root_.last().path, c.path);
    EXPECT_NE(out_.str().find("Operation:       op_worker\n"), std::string::npos) << out_.str();
  }
}

TEST_F(ClusterCommandsTest, WorkerActionConflictPassesTheServerMessageThrough) {
  WorkerActionOptions o;
  o.cluster = "demo";
  o.worker = "demo-w2";
  o.action = WorkerAction::kStop;
  EXPECT_EQ(ExpectErrorLine(WorkerAct(ctx_, o)),
            "error: worker wrk_2 is STOPPED; cannot stop it (conflict, HTTP 409)");
}

TEST_F(ClusterCommandsTest, WorkerActionOnUnknownWorker) {
  WorkerActionOptions o;
  o.cluster = "demo";
  o.worker = "nope";
  EXPECT_EQ(ExpectErrorLine(WorkerAct(ctx_, o)),
            "error: worker 'nope' not found in cluster 'demo'");
  EXPECT_EQ(Count("POST", "/api/v1/clusters/cls_1/workers/nope/stop"), 0u);
}

TEST_F(ClusterCommandsTest, WorkerActionWaitPrintsTheWorkerAgain) {
  WorkerActionOptions o;
  o.cluster = "demo";
  o.worker = "demo-w1";
  o.action = WorkerAction::kStop;
  o.wait.wait = true;
  ASSERT_EQ(WorkerAct(ctx_, o), kExitOk) << err_.str();
  EXPECT_NE(out_.str().find("State:           STOPPED\n"), std::string::npos) << out_.str();
  EXPECT_EQ(err_.str(),
            "worker.shutdown: pending (0s)\n"
            "worker.shutdown: step 1/1 instance (0s)\n"
            "worker.shutdown: succeeded (1s)\n");
  Json j = RunJson([&o](Context& c) {
    WorkerActionOptions restart = o;
    restart.action = WorkerAction::kRestart;
    return WorkerAct(c, restart);
  });
  EXPECT_EQ(j["id"], "wrk_1");
  EXPECT_EQ(j["state"], "ACTIVE");
}

TEST_F(ClusterCommandsTest, WorkerDeleteWaitPrintsADeletedLine) {
  WorkerActionOptions o;
  o.cluster = "cls_1";
  o.worker = "wrk_1";
  o.action = WorkerAction::kDelete;
  o.wait.wait = true;
  ASSERT_EQ(WorkerAct(ctx_, o), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "Deleted worker demo-w1 (wrk_1)\n");
}

TEST_F(ClusterCommandsTest, EveryNewCommandPrintsOneJsonDocumentWithJsonOutput) {
  std::vector<std::function<int(Context&)>> cmds = {
      [](Context& c) { return ClusterCreate(c, Create("web")); },
      [](Context& c) { return ClusterList(c); },
      [](Context& c) { return ClusterShow(c, "demo"); },
      [](Context& c) { return ClusterDelete(c, "empty", {}); },
      [](Context& c) {
        return WorkerAdd(c, {"demo", 1, std::nullopt, std::nullopt, std::nullopt, {}});
      },
      [](Context& c) { return WorkerList(c, "demo"); },
      [](Context& c) {
        return WorkerAct(c, {"demo", "demo-w1", WorkerAction::kStop, {}});
      },
  };
  for (size_t i = 0; i < cmds.size(); ++i) {
    SCOPED_TRACE(i);
    Json j = RunJson(cmds[i]);
    EXPECT_TRUE(j.is_object() || j.is_array());
    EXPECT_EQ(err_.str(), "");
  }
}

TEST_F(ClusterCommandsTest, WorkerShowGivesTheSystemItsNodeReported) {
  ASSERT_EQ(WorkerShow(ctx_, "demo", "demo-w1"), kExitOk) << err_.str();
  std::string out = out_.str();
  EXPECT_NE(out.find("OS:              Debian GNU/Linux 11 (bullseye)\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("Kernel:          5.10.0-28-amd64\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Architecture:    x86_64\n"), std::string::npos) << out;
  EXPECT_NE(out.find("CPUs:            2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Memory MiB:      3942\n"), std::string::npos) << out;
  out_.str("");
  ASSERT_EQ(WorkerShow(ctx_, "demo", "demo-w2"), kExitOk) << err_.str();
  EXPECT_NE(out_.str().find("OS:              -\n"), std::string::npos) << out_.str();
  EXPECT_EQ(WorkerShow(ctx_, "demo", "no-such-worker"), kExitError);
}

}  // namespace
}  // namespace canopy::cli
