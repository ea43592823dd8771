// cli/commands for services against the fake root, in memory (no sockets): --port / --env and the
// command line, name resolution, each command's request, the SLA import, and --wait with a fake
// clock and a sleep that only moves that clock (so nothing really sleeps).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "cli/commands.h"
#include "cli/fake_root.h"
#include "cli/service_spec.h"
#include "cli/wait.h"
#include "support/test_util.h"

namespace canopy::cli {
namespace {

using fake::FakeRoot;
using namespace std::chrono_literals;

constexpr const char* kRoot = "http://root.test:8080";
constexpr const char* kNoCapacity = "no_worker_capacity: no node has 500m CPU and 256 MiB free";

class ServiceCommandsTest : public ::testing::Test {
 protected:
  ServiceCommandsTest()
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
  size_t Posts() const {
    size_t n = 0;
    for (const auto& r : Requests()) {
      n += (r.method != "GET") ? 1 : 0;
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

  static ServiceCreateOptions Create(std::string name, std::vector<std::string> command) {
    ServiceCreateOptions o;
    o.name = std::move(name);
    o.command = std::move(command);
    return o;
  }

  std::string WriteFile(const std::string& name, const std::string& text) {
    std::string path = (dir_.path() / name).string();
    std::ofstream f(path, std::ios::trunc);
    f << text;
    return path;
  }

  std::chrono::milliseconds Slept() const {
    std::chrono::milliseconds total{0};
    for (auto d : sleeps_) {
      total += d;
    }
    return total;
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

// An Oakestra SLA with one application of two microservices.
constexpr const char* kSla = R"({
  "sla_version": "v2.0",
  "customerID": "Admin",
  "applications": [{
    "applicationID": "",
    "application_name": "clientsrv",
    "application_namespace": "test",
    "application_desc": "Simple demo with curl client and Nginx server",
    "microservices": [
      {"microserviceID": "", "microservice_name": "curl", "microservice_namespace": "test",
       "virtualization": "container", "cmd": ["sh", "-c", "curl 10.30.55.55 ; sleep 5"],
       "memory": 100, "vcpus": 1, "vgpus": 0, "vtpus": 0, "bandwidth_in": 0,
       "bandwidth_out": 0, "storage": 0, "code": "docker.io/curlimages/curl:7.82.0",
       "state": "", "port": "", "added_files": []},
      {"microserviceID": "", "microservice_name": "nginx", "microservice_namespace": "test",
       "virtualization": "container", "cmd": [], "memory": 100, "vcpus": 1, "vgpus": 0,
       "vtpus": 0, "bandwidth_in": 0, "bandwidth_out": 0, "storage": 0,
       "code": "docker.io/library/nginx:latest", "state": "", "port": "80:80/tcp",
       "addresses": {"rr_ip": "10.30.55.55"}, "added_files": []}
    ]
  }]
})";

// ---- parsing ---------------------------------------------------------------------------------

TEST(ServiceSpecTest, PortSpecsTakeAPortAndAnOptionalProtocol) {
  struct Case {
    std::string spec;
    Json want;
  };
  for (const Case& c : std::vector<Case>{
           {"8080", Json{{"port", 8080}, {"protocol", "tcp"}}},
           {"8080/tcp", Json{{"port", 8080}, {"protocol", "tcp"}}},
           {"53/udp", Json{{"port", 53}, {"protocol", "udp"}}},
           {"443/TCP", Json{{"port", 443}, {"protocol", "tcp"}}},
           {"1", Json{{"port", 1}, {"protocol", "tcp"}}},
           {"65535/udp", Json{{"port", 65535}, {"protocol", "udp"}}},
       }) {
    SCOPED_TRACE(c.spec);
    auto p = ParsePortSpec(c.spec);
    ASSERT_OK(p);
    EXPECT_EQ(*p, c.want);
  }
  for (const char* bad : {"", "0", "65536", "123456", "-1", "+80", "8o", "80/", "/tcp", "80/sctp",
                          "80/tcp/udp", "80 ", "0x50"}) {
    SCOPED_TRACE(bad);
    auto p = ParsePortSpec(bad);
    ASSERT_FALSE(p.has_value());
    EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(ParsePortSpec("80/sctp").error().message,
            "invalid --port '80/sctp': use PORT, PORT/tcp or PORT/udp with PORT from 1 to 65535");
}

TEST(ServiceSpecTest, EnvAssignmentsSplitAtTheFirstEquals) {
  using KV = std::pair<std::string, std::string>;
  EXPECT_EQ(*ParseEnvAssignment("A=1"), (KV{"A", "1"}));
  EXPECT_EQ(*ParseEnvAssignment("EMPTY="), (KV{"EMPTY", ""}));
  EXPECT_EQ(*ParseEnvAssignment("URL=http://x/?a=b"), (KV{"URL", "http://x/?a=b"}));
  EXPECT_EQ(*ParseEnvAssignment("_x9=a b"), (KV{"_x9", "a b"}));
  for (const char* bad : {"", "A", "=1", "1A=2", "A-B=1", "A B=1", "Ä=1"}) {
    SCOPED_TRACE(bad);
    auto kv = ParseEnvAssignment(bad);
    ASSERT_FALSE(kv.has_value());
    EXPECT_EQ(kv.error().code, ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(ParseEnvAssignment("A-B=1").error().message,
            "invalid --env 'A-B': use KEY=VALUE with KEY made of letters, digits and _");
}

TEST(ServiceSpecTest, ShellJoinQuotesOnlyWhatNeedsIt) {
  EXPECT_EQ(ShellJoin(Json{"python3", "-m", "http.server", "8080"}), "python3 -m http.server 8080");
  EXPECT_EQ(ShellJoin(Json{"sh", "-c", "echo 'hi' there"}), R"(sh -c 'echo '\''hi'\'' there')");
  EXPECT_EQ(ShellJoin(Json{"env", "", "a=b", "$HOME"}), "env '' a=b '$HOME'");
  EXPECT_EQ(ShellJoin(Json()), "-");
}

TEST(ServiceSpecTest, PortsAndEnvText) {
  Json ports = Json::array(
      {Json{{"port", 80}, {"protocol", "tcp"}, {"source_cidrs", {"10.0.0.0/8", "192.168.0.0/16"}}},
       Json{{"port", 53}, {"protocol", "udp"}}});
  EXPECT_EQ(PortsText(ports, false), "80/tcp,53/udp");
  EXPECT_EQ(PortsText(ports, true), "80/tcp from 10.0.0.0/8 192.168.0.0/16, 53/udp");
  EXPECT_EQ(PortsText(Json::array(), true), "-");
  EXPECT_EQ(EnvText(Json{{"B", "x y"}, {"A", "1"}}), "A=1, B=x y");
  EXPECT_EQ(EnvText(Json::object()), "-");
}

// ---- create ----------------------------------------------------------------------------------

TEST_F(ServiceCommandsTest, CreateSendsTheWholeSpec) {
  ServiceCreateOptions o = Create("shop", {"python3", "app.py", "--port", "8080", "-o", "json"});
  o.ports = {"8080", "53/udp", "9090/tcp"};
  o.env = {"MODE=prod", "URL=http://db/?a=b", "EMPTY="};
  o.cpu_millis = 250;
  o.memory_mib = 64;
  o.replicas = 3;
  o.cluster = "cls_1";
  o.restart = "on-failure";
  ASSERT_EQ(ServiceCreate(ctx_, o), kExitOk) << err_.str();
  EXPECT_EQ(err_.str(), "");
  EXPECT_EQ(BodyOf("POST", "/api/v1/services"),
            (Json{{"name", "shop"},
                  {"command", {"python3", "app.py", "--port", "8080", "-o", "json"}},
                  {"ports", Json::array({Json{{"port", 8080}, {"protocol", "tcp"}},
                                         Json{{"port", 53}, {"protocol", "udp"}},
                                         Json{{"port", 9090}, {"protocol", "tcp"}}})},
                  {"cpu_millis", 250},
                  {"memory_mib", 64},
                  {"replicas", 3},
                  {"cluster_id", "cls_1"},
                  {"env", {{"MODE", "prod"}, {"URL", "http://db/?a=b"}, {"EMPTY", ""}}},
                  {"restart", "on-failure"}}));
  // Created, not deployed: nothing else is asked.
  EXPECT_EQ(Requests().size(), 1u);
  EXPECT_EQ(out_.str(),
            "ID:           svc-new\n"
            "Name:         shop\n"
            "State:        undeployed\n"
            "Reason:       -\n"
            "Deployed:     false\n"
            "Replicas:     0/3 running\n"
            "Command:      python3 app.py --port 8080 -o json\n"
            "Ports:        8080/tcp, 53/udp, 9090/tcp\n"
            "CPU millis:   250\n"
            "Memory MiB:   64\n"
            "Cluster:      cls_1\n"
            "Restart:      on-failure\n"
            "Env:          EMPTY=, MODE=prod, URL=http://db/?a=b\n"
            "Created:      2026-11-28T13:00:00Z\n"
            "Updated:      2026-11-28T13:00:00Z\n");
}

TEST_F(ServiceCommandsTest, CreateSendsDefaultsAndOnlyTheOptionalFieldsGiven) {
  ASSERT_EQ(ServiceCreate(ctx_, Create("shop", {"sleep", "60"})), kExitOk) << err_.str();
  EXPECT_EQ(BodyOf("POST", "/api/v1/services"), (Json{{"name", "shop"},
                                                      {"command", {"sleep", "60"}},
                                                      {"ports", Json::array()},
                                                      {"cpu_millis", kServiceCpuMillis},
                                                      {"memory_mib", kServiceMemoryMib},
                                                      {"replicas", 1}}));
}

TEST_F(ServiceCommandsTest, CreateChecksItsArgumentsBeforeAnyRequest) {
  struct Case {
    std::function<void(ServiceCreateOptions&)> change;
    std::string error;
  };
  std::vector<Case> cases = {
      {[](auto& o) { o.name.clear(); },
       "error: the service needs a NAME: canopy service create NAME [options] -- CMD [ARGS...]"},
      {[](auto& o) { o.command.clear(); },
       "error: give the command to run after --: canopy service create NAME [options] -- CMD "
       "[ARGS...]"},
      {[](auto& o) {
         o.ports = {"80", "99999"};
       },
       "error: invalid --port '99999': use PORT, PORT/tcp or PORT/udp with PORT from 1 to 65535"},
      {[](auto& o) {
         o.ports = {"80", "80/tcp"};
       },
       "error: --port 80/tcp is given twice"},
      {[](auto& o) {
         o.env = {"A=1", "no-equals"};
       },
       "error: invalid --env 'no-equals': use KEY=VALUE with KEY made of letters, digits and _"},
      {[](auto& o) {
         o.env = {"A=1", "A=2"};
       },
       "error: --env A is given twice"},
      {[](auto& o) { o.cpu_millis = 0; }, "error: --cpu must be a positive number of millicores"},
      {[](auto& o) { o.memory_mib = -1; }, "error: --memory must be a positive number of MiB"},
      {[](auto& o) { o.replicas = 0; }, "error: --replicas must be at least 1"},
      {[](auto& o) { o.restart = "sometimes"; },
       "error: invalid --restart 'sometimes': use always, on-failure or never"},
      {[](auto& o) { o.cluster = ""; }, "error: --cluster needs a cluster id"},
      {[](auto& o) { o.wait.wait = true; }, "error: --wait needs --deploy"},
      {[](auto& o) {
         o.deploy = true;
         o.wait = {true, 0};
       },
       "error: --timeout must be a positive number of seconds"},
      {[](auto& o) { o.sla_file = "/nonexistent/sla.json"; },
       "error: --sla takes the services from the file: give no NAME, command, --port, --env, "
       "--cpu, --memory, --replicas, --cluster or --restart with it"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.error);
    Clear();
    ServiceCreateOptions o = Create("shop", {"sleep", "60"});
    c.change(o);
    EXPECT_EQ(ExpectErrorLine(ServiceCreate(ctx_, o)), c.error);
  }
  EXPECT_TRUE(Requests().empty());
}

TEST_F(ServiceCommandsTest, CreatePassesTheServersConflictThrough) {
  EXPECT_EQ(ExpectErrorLine(ServiceCreate(ctx_, Create("web", {"true"}))),
            "error: a service named web already exists (already_exists, HTTP 409)");
}

TEST_F(ServiceCommandsTest, CreateJsonIsTheApisService) {
  Json j = RunJson([](Context& c) { return ServiceCreate(c, Create("shop", {"true"})); });
  EXPECT_EQ(j["id"], "svc-new");
  EXPECT_EQ(j["command"], Json::array({"true"}));
  EXPECT_EQ(j["deployed"], false);
  EXPECT_EQ(err_.str(), "");
}

TEST_F(ServiceCommandsTest, CreateDeployWithoutWaitPrintsTheDeployAnswer) {
  ServiceCreateOptions o = Create("shop", {"sleep", "60"});
  o.replicas = 2;
  o.deploy = true;
  ASSERT_EQ(ServiceCreate(ctx_, o), kExitOk) << err_.str();
  ASSERT_EQ(Requests().size(), 2u);
  EXPECT_EQ(Requests()[1].method, "POST");
  EXPECT_EQ(Requests()[1].path, "/api/v1/services/svc-new/deploy");
  EXPECT_EQ(BodyOf("POST", "/api/v1/services/svc-new/deploy"), Json::object());
  std::string out = out_.str();
  EXPECT_NE(out.find("State:        pending\n"), std::string::npos) << out;
  EXPECT_NE(out.find("\n\nJOB          REPLICA   CLUSTER   NODE   ADDRESS   STATE     REASON\n"
                     "svc-new-r1   1         -         -      -         pending   -\n"
                     "svc-new-r2   2         -         -      -         pending   -\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(root_.service_polls("svc-new"), 0u);
}

TEST_F(ServiceCommandsTest, CreateDeployWaitFollowsTheServiceUntilItRuns) {
  ServiceCreateOptions o = Create("shop", {"sleep", "60"});
  o.replicas = 2;
  o.deploy = true;
  o.wait.wait = true;
  ASSERT_EQ(ServiceCreate(ctx_, o), kExitOk) << err_.str();
  EXPECT_EQ(err_.str(),
            "service shop: pending, 0/2 running, 2 pending (0s)\n"
            "service shop: deploying, 0/2 running, 2 starting (0s)\n"
            "service shop: running, 2/2 running (1s)\n");
  EXPECT_EQ(root_.service_polls("svc-new"), 3u);
  EXPECT_EQ(sleeps_, (std::vector<std::chrono::milliseconds>{500ms, 500ms}));
  std::string out = out_.str();
  EXPECT_EQ(out.find("service shop"), std::string::npos);
  EXPECT_NE(out.find("State:        running\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Replicas:     2/2 running\n"), std::string::npos) << out;
  EXPECT_NE(out.find("svc-new-r2   2         cls_1     node-2   198.18.0.12   running   -\n"),
            std::string::npos)
      << out;
}

TEST_F(ServiceCommandsTest, CreateDeployWaitJsonPrintsOnlyTheFinalService) {
  ServiceCreateOptions o = Create("shop", {"sleep", "60"});
  o.deploy = true;
  o.wait.wait = true;
  Json j = RunJson([&o](Context& c) { return ServiceCreate(c, o); });
  EXPECT_EQ(j["id"], "svc-new");
  EXPECT_EQ(j["state"], "running");
  ASSERT_EQ(j["instances"].size(), 1u);
  EXPECT_EQ(j["instances"][0]["state"], "running");
  EXPECT_NE(err_.str().find("service shop: running, 1/1 running"), std::string::npos);
}

TEST_F(ServiceCommandsTest, CreateSaysTheServiceExistsWhenItsDeployFails) {
  Transport inner = root_.InMemoryTransport();
  ctx_.transport = [inner](const net::ClientRequest& req) -> Result<net::ClientResponse> {
    if (req.url.ends_with("/deploy")) {
      return net::ClientResponse{
          503, {}, R"({"error":{"code":"unavailable","message":"scheduler is restarting"}})"};
    }
    return inner(req);
  };
  ServiceCreateOptions o = Create("shop", {"true"});
  o.deploy = true;
  EXPECT_EQ(ExpectErrorLine(ServiceCreate(ctx_, o)),
            "error: created service shop (svc-new) but could not deploy it: scheduler is "
            "restarting (unavailable, HTTP 503)");
}

// ---- create --sla ----------------------------------------------------------------------------

TEST_F(ServiceCommandsTest, SlaImportPostsTheFileAsItIs) {
  ServiceCreateOptions o;
  o.sla_file = WriteFile("sla.json", kSla);
  ASSERT_EQ(ServiceCreate(ctx_, o), kExitOk) << err_.str();
  ASSERT_EQ(Requests().size(), 1u);
  EXPECT_EQ(BodyOf("POST", "/api/v1/services/import"), *ParseJson(kSla));
  EXPECT_EQ(out_.str(),
            "ID         NAME    STATE        REPLICAS   PORTS\n"
            "svc-imp1   curl    undeployed   0/1        8080/tcp\n"
            "svc-imp2   nginx   undeployed   0/1        8080/tcp\n");

  Json j = RunJson([&o](Context& c) { return ServiceCreate(c, o); });
  ASSERT_EQ(j["services"].size(), 2u);
  EXPECT_EQ(j["services"][0]["command"], Json::array({"sh", "-c", "curl 10.30.55.55 ; sleep 5"}));
}

TEST_F(ServiceCommandsTest, SlaImportDeployWaitDeploysEachAndWaitsForAll) {
  ServiceCreateOptions o;
  o.sla_file = WriteFile("sla.json", kSla);
  o.deploy = true;
  o.wait.wait = true;
  Json j = RunJson([&o](Context& c) { return ServiceCreate(c, o); });
  EXPECT_EQ(Count("POST", "/api/v1/services/svc-imp1/deploy"), 1u);
  EXPECT_EQ(Count("POST", "/api/v1/services/svc-imp2/deploy"), 1u);
  ASSERT_EQ(j["services"].size(), 2u);
  EXPECT_EQ(j["services"][0]["state"], "running");
  EXPECT_EQ(j["services"][1]["state"], "running");
  EXPECT_EQ(err_.str(),
            "service curl: pending, 0/1 running, 1 pending (0s)\n"
            "service curl: deploying, 0/1 running, 1 starting (0s)\n"
            "service curl: running, 1/1 running (1s)\n"
            "service nginx: pending, 0/1 running, 1 pending (0s)\n"
            "service nginx: deploying, 0/1 running, 1 starting (0s)\n"
            "service nginx: running, 1/1 running (1s)\n");
  EXPECT_EQ(Slept(), 2000ms);
}

TEST_F(ServiceCommandsTest, SlaImportWaitSharesOneTimeoutAmongTheServices) {
  root_.ScriptService("svc-imp2", {FakeRoot::WithInstances(
                                      FakeRoot::Service("svc-imp2", "nginx", 1, true, "pending"),
                                      {"pending"}, "pending", kNoCapacity)});
  ServiceCreateOptions o;
  o.sla_file = WriteFile("sla.json", kSla);
  o.deploy = true;
  o.wait = {true, 2};
  // curl runs after 1 s, which leaves nginx 1 s.
  EXPECT_EQ(ExpectErrorLine(ServiceCreate(ctx_, o)),
            "error: gave up waiting for service nginx to run after 1s (pending, 0/1 running, 1 "
            "pending: no_worker_capacity: no node has 500m CPU and 256 MiB free); the root keeps "
            "at it: see canopy service show nginx");
  EXPECT_EQ(Slept(), 2000ms);
}

TEST_F(ServiceCommandsTest, SlaFileErrors) {
  ServiceCreateOptions o;
  o.sla_file = (dir_.path() / "missing.json").string();
  EXPECT_EQ(ExpectErrorLine(ServiceCreate(ctx_, o)),
            "error: cannot read SLA file " + *o.sla_file + ": No such file or directory");
  Clear();
  o.sla_file = WriteFile("bad.json", "{\"applications\": [");
  EXPECT_EQ(ExpectErrorLine(ServiceCreate(ctx_, o)),
            "error: SLA file " + *o.sla_file + " is not valid JSON");
  Clear();
  o.sla_file = WriteFile("list.json", "[]");
  EXPECT_EQ(ExpectErrorLine(ServiceCreate(ctx_, o)),
            "error: SLA file " + *o.sla_file + " must be a JSON object");
  EXPECT_TRUE(Requests().empty());
  Clear();
  o.sla_file = WriteFile("empty.json", R"({"sla_version": "v2.0"})");
  EXPECT_EQ(ExpectErrorLine(ServiceCreate(ctx_, o)),
            "error: the SLA has no applications (invalid_argument, HTTP 400)");
}

// ---- list / show -----------------------------------------------------------------------------

TEST_F(ServiceCommandsTest, ListPrintsIdNameStateReplicasAndPorts) {
  ASSERT_EQ(ServiceList(ctx_), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(),
            "ID      NAME    STATE        REPLICAS   PORTS\n"
            "svc-1   web     undeployed   0/2        8080/tcp\n"
            "svc-2   api     running      2/2        80/tcp,53/udp\n"
            "svc-3   svc-1   undeployed   0/1        8080/tcp\n");
  Json j = RunJson([](Context& c) { return ServiceList(c); });
  ASSERT_TRUE(j.is_array());
  EXPECT_EQ(j.size(), 3u);
  EXPECT_EQ(j[1]["instances"].size(), 2u);
}

TEST_F(ServiceCommandsTest, ShowResolvesIdsFirstThenNames) {
  Json by_name = RunJson([](Context& c) { return ServiceShow(c, "web"); });
  EXPECT_EQ(by_name["id"], "svc-1");
  Json by_id = RunJson([](Context& c) { return ServiceShow(c, "svc-1"); });
  EXPECT_EQ(by_id["name"], "web");  // not svc-3, whose name is "svc-1"
  Json other = RunJson([](Context& c) { return ServiceShow(c, "svc-3"); });
  EXPECT_EQ(other["name"], "svc-1");
  EXPECT_EQ(Count("GET", "/api/v1/services/svc-1"), 2u);
  EXPECT_EQ(Count("GET", "/api/v1/services/svc-3"), 1u);
  Clear();
  EXPECT_EQ(ExpectErrorLine(ServiceShow(ctx_, "nope")), "error: service 'nope' not found");
  EXPECT_EQ(Requests().back().path, "/api/v1/services");
}

TEST_F(ServiceCommandsTest, ShowPrintsDetailsAndTheInstances) {
  ASSERT_EQ(ServiceShow(ctx_, "api"), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(),
            "ID:           svc-2\n"
            "Name:         api\n"
            "State:        running\n"
            "Reason:       -\n"
            "Deployed:     true\n"
            "Replicas:     2/2 running\n"
            "Command:      python3 -m http.server 8080\n"
            "Ports:        80/tcp from 10.0.0.0/8, 53/udp\n"
            "CPU millis:   500\n"
            "Memory MiB:   256\n"
            "Cluster:      cls_1\n"
            "Restart:      always\n"
            "Env:          MODE=prod\n"
            "Created:      2026-11-28T13:00:00Z\n"
            "Updated:      2026-11-28T13:00:00Z\n"
            "\n"
            "JOB        REPLICA   CLUSTER   NODE     ADDRESS       STATE     REASON\n"
            "svc-2-r1   1         cls_1     node-1   198.18.0.11   running   -\n"
            "svc-2-r2   2         cls_1     node-2   198.18.0.12   running   -\n");
}

TEST_F(ServiceCommandsTest, ShowTellsWhyInstancesArePending) {
  root_.ScriptService(
      "svc-1", {FakeRoot::WithInstances(FakeRoot::Service("svc-1", "web", 2, true, "pending"),
                                        {"running", "pending"}, "degraded", kNoCapacity)});
  ASSERT_EQ(ServiceShow(ctx_, "web"), kExitOk) << err_.str();
  std::string out = out_.str();
  EXPECT_NE(out.find("State:        degraded\n"
                     "Reason:       no_worker_capacity: no node has 500m CPU and 256 MiB free\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("svc-1-r2   2         -         -        -             pending   "
                     "no_worker_capacity: no node has 500m CPU and 256 MiB free\n"),
            std::string::npos)
      << out;
}

// ---- deploy ----------------------------------------------------------------------------------

TEST_F(ServiceCommandsTest, DeployPostsToTheResolvedService) {
  ServiceDeployOptions o;
  o.service = "web";
  ASSERT_EQ(ServiceDeploy(ctx_, o), kExitOk) << err_.str();
  EXPECT_EQ(BodyOf("POST", "/api/v1/services/svc-1/deploy"), Json::object());
  EXPECT_NE(out_.str().find("Replicas:     0/2 running\n"), std::string::npos) << out_.str();
  EXPECT_EQ(root_.service_polls("svc-1"), 0u);

  Clear();
  ServiceDeployOptions three;
  three.service = "svc-3";
  three.replicas = 3;
  Json j = RunJson([&three](Context& c) { return ServiceDeploy(c, three); });
  EXPECT_EQ(BodyOf("POST", "/api/v1/services/svc-3/deploy"), (Json{{"replicas", 3}}));
  EXPECT_EQ(j["replicas"], 3);
  EXPECT_EQ(j["instances"].size(), 3u);

  Clear();
  ServiceDeployOptions zero;
  zero.service = "web";
  zero.replicas = 0;
  EXPECT_EQ(ExpectErrorLine(ServiceDeploy(ctx_, zero)), "error: --replicas must be at least 1");
}

TEST_F(ServiceCommandsTest, DeployWaitPrintsTheRunningService) {
  ServiceDeployOptions o;
  o.service = "web";
  o.wait.wait = true;
  ASSERT_EQ(ServiceDeploy(ctx_, o), kExitOk) << err_.str();
  EXPECT_EQ(err_.str(),
            "service web: pending, 0/2 running, 2 pending (0s)\n"
            "service web: deploying, 0/2 running, 2 starting (0s)\n"
            "service web: running, 2/2 running (1s)\n");
  EXPECT_NE(out_.str().find("State:        running\n"), std::string::npos) << out_.str();
  EXPECT_EQ(Requests().back().path, "/api/v1/services/svc-1");
}

TEST_F(ServiceCommandsTest, DeployWaitGivesUpNamingTheStateAndReason) {
  Json pending = FakeRoot::WithInstances(FakeRoot::Service("svc-1", "web", 2, true, "pending"),
                                         {"pending", "pending"}, "pending", kNoCapacity);
  root_.ScriptService("svc-1", {pending});
  ServiceDeployOptions o;
  o.service = "web";
  o.wait = {true, 3};
  ctx_.global.output = OutputFormat::kJson;
  std::string line = ExpectErrorLine(ServiceDeploy(ctx_, o));
  EXPECT_EQ(line,
            "error: gave up waiting for service web to run after 3s (pending, 0/2 running, 2 "
            "pending: no_worker_capacity: no node has 500m CPU and 256 MiB free); the root keeps "
            "at it: see canopy service show web");
  EXPECT_EQ(root_.service_polls("svc-1"), 7u);  // at 0, 0.5, ... 3 s
  EXPECT_EQ(Slept(), 3000ms);
  // One progress line (it never changed), then the error.
  EXPECT_EQ(err_.str(),
            "service web: pending, 0/2 running, 2 pending (0s) - no_worker_capacity: no node has "
            "500m CPU and 256 MiB free\n" +
                line + "\n");
}

TEST_F(ServiceCommandsTest, DeployWaitTimesOutAfter120SecondsByDefault) {
  root_.ScriptService(
      "svc-1", {FakeRoot::WithInstances(FakeRoot::Service("svc-1", "web", 2, true, "degraded"),
                                        {"running", "pending"}, "degraded", kNoCapacity)});
  ServiceDeployOptions o;
  o.service = "svc-1";
  o.wait.wait = true;
  EXPECT_EQ(o.wait.timeout_seconds, 120);
  std::string line = ExpectErrorLine(ServiceDeploy(ctx_, o));
  EXPECT_EQ(line.rfind("error: gave up waiting for service web to run after 120s (degraded, 1/2 "
                       "running, 1 pending: no_worker_capacity:",
                       0),
            0u)
      << line;
  EXPECT_EQ(Slept(), 120s);
  EXPECT_EQ(root_.service_polls("svc-1"), 241u);
}

TEST_F(ServiceCommandsTest, DeployWaitIsNotDoneWhileInstancesAreMissingOrNotRunning) {
  Json svc = FakeRoot::Service("svc-1", "web", 2, true, "deploying");
  root_.ScriptService(
      "svc-1", {
                   FakeRoot::WithInstances(svc, {}, "pending"),
                   FakeRoot::WithInstances(svc, {"running"}, "deploying"),
                   FakeRoot::WithInstances(svc, {"running", "restarting"}, "degraded"),
                   FakeRoot::WithInstances(svc, {"running", "running", "removing"}, "running"),
                   FakeRoot::WithInstances(svc, {"running", "running"}, "running"),
               });
  ServiceDeployOptions o;
  o.service = "web";
  o.wait.wait = true;
  ASSERT_EQ(ServiceDeploy(ctx_, o), kExitOk) << err_.str();
  EXPECT_EQ(err_.str(),
            "service web: pending, 0/2 running (0s)\n"
            "service web: deploying, 1/2 running (0s)\n"
            "service web: degraded, 1/2 running, 1 restarting (1s)\n"
            "service web: running, 2/2 running, 1 removing (1s)\n"
            "service web: running, 2/2 running (2s)\n");
}

TEST_F(ServiceCommandsTest, DeployWaitOnATerminalRewritesOneLine) {
  ctx_.err_is_terminal = true;
  ServiceDeployOptions o;
  o.service = "web";
  o.wait.wait = true;
  ASSERT_EQ(ServiceDeploy(ctx_, o), kExitOk) << err_.str();
  std::string e = err_.str();
  EXPECT_EQ(std::count(e.begin(), e.end(), '\r'), 3) << e;
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
  // The shorter last text blanks out the rest of the longer one before it.
  EXPECT_NE(e.find("\rservice web: running, 2/2 running (1s)" + std::string(14, ' ') + "\n"),
            std::string::npos)
      << e;
  EXPECT_EQ(out_.str().find('\r'), std::string::npos);
}

TEST_F(ServiceCommandsTest, DeployOfAnUnknownServiceFailsWithoutPosting) {
  ServiceDeployOptions o;
  o.service = "nope";
  o.wait.wait = true;
  EXPECT_EQ(ExpectErrorLine(ServiceDeploy(ctx_, o)), "error: service 'nope' not found");
  EXPECT_EQ(Posts(), 0u);
}

TEST(ServiceWaitTest, RidesOutABrieflyUnreachableRootButNotAMissingService) {
  testing::FakeClock clock;
  std::vector<std::chrono::milliseconds> sleeps;
  SleepFn sleep = [&](std::chrono::milliseconds d) {
    sleeps.push_back(d);
    clock.Advance(d);
  };
  std::ostringstream err;
  int failures = 2;
  Json done = FakeRoot::WithInstances(FakeRoot::Service("svc-1", "web", 1, true, "running"),
                                      {"running"}, "running");
  auto fetch = [&](const std::string&) -> Result<Json> {
    if (failures-- > 0) {
      return Error::Unavailable("cannot reach root");
    }
    return done;
  };
  auto svc = WaitForService("svc-1", ServiceGoal::kRunning, fetch, clock, sleep, err, false);
  ASSERT_OK(svc);
  EXPECT_EQ((*svc)["state"], "running");
  EXPECT_EQ(sleeps.size(), 2u);
  EXPECT_EQ(err.str(), "service web: running, 1/1 running (1s)\n");

  auto gone = [](const std::string&) -> Result<Json> {
    return Error::NotFound("service svc-1 not found (not_found, HTTP 404)");
  };
  sleeps.clear();
  auto missing = WaitForService("svc-1", ServiceGoal::kStopped, gone, clock, sleep, err, false);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().message, "service svc-1 not found (not_found, HTTP 404)");
  EXPECT_TRUE(sleeps.empty());
}

TEST(ServiceWaitTest, ReachedAndProgressText) {
  Json svc = FakeRoot::Service("svc-9", "db", 2, true, "pending");
  Json two = FakeRoot::WithInstances(svc, {"running", "running"}, "running");
  EXPECT_TRUE(ServiceReached(two, ServiceGoal::kRunning));
  EXPECT_FALSE(ServiceReached(two, ServiceGoal::kStopped));
  EXPECT_FALSE(ServiceReached(FakeRoot::WithInstances(svc, {"running"}, "deploying"),
                              ServiceGoal::kRunning));
  EXPECT_TRUE(
      ServiceReached(FakeRoot::WithInstances(svc, {}, "undeployed"), ServiceGoal::kStopped));
  EXPECT_FALSE(ServiceReached(Json::object(), ServiceGoal::kRunning));

  Json mixed = FakeRoot::WithInstances(svc, {"failed", "exited", "pending", "weird"}, "degraded",
                                       "no_worker_capacity: none\nleft");
  EXPECT_EQ(ServiceProgressText(mixed, ServiceGoal::kRunning, 5s),
            "service db: degraded, 0/2 running, 1 pending, 1 exited, 1 failed, 1 weird (5s) - "
            "no_worker_capacity: none?left");
  EXPECT_EQ(ServiceProgressText(mixed, ServiceGoal::kStopped, 5s),
            "service db: degraded, 1 pending, 1 exited, 1 failed, 1 weird (5s) - "
            "no_worker_capacity: none?left");
  // Without a reason of its own, the service shows that of its first instance not running.
  Json crashed = FakeRoot::WithInstances(svc, {"running", "failed"}, "degraded");
  crashed["instances"][1]["reason"] = "exit status 3";
  EXPECT_EQ(ServiceProgressText(crashed, ServiceGoal::kRunning, 0s),
            "service db: degraded, 1/2 running, 1 failed (0s) - exit status 3");
}

// ---- undeploy / scale / delete ---------------------------------------------------------------

TEST_F(ServiceCommandsTest, UndeployWaitFollowsUntilNoInstanceIsLeft) {
  ASSERT_EQ(ServiceUndeploy(ctx_, "api", {true, 120}), kExitOk) << err_.str();
  EXPECT_EQ(BodyOf("POST", "/api/v1/services/svc-2/undeploy"), Json::object());
  EXPECT_EQ(err_.str(),
            "service api: undeployed, 2 removing (0s)\n"
            "service api: undeployed, no instances (0s)\n");
  std::string out = out_.str();
  EXPECT_NE(out.find("Deployed:     false\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("JOB"), std::string::npos) << out;  // no instances table
}

TEST_F(ServiceCommandsTest, UndeployWithoutWaitPrintsTheRemovingInstances) {
  Json j = RunJson([](Context& c) { return ServiceUndeploy(c, "svc-2", {}); });
  EXPECT_EQ(j["deployed"], false);
  ASSERT_EQ(j["instances"].size(), 2u);
  EXPECT_EQ(j["instances"][0]["state"], "removing");
  EXPECT_EQ(err_.str(), "");
  EXPECT_EQ(root_.service_polls("svc-2"), 0u);
}

TEST_F(ServiceCommandsTest, UndeployWaitGivesUp) {
  Json removing = FakeRoot::WithInstances(FakeRoot::Service("svc-2", "api", 2, false, "x"),
                                          {"removing", "running"}, "undeployed");
  root_.ScriptService("svc-2", {removing});
  std::string line = ExpectErrorLine(ServiceUndeploy(ctx_, "api", {true, 2}));
  EXPECT_EQ(line,
            "error: gave up waiting for service api to stop after 2s (undeployed, 1 running, 1 "
            "removing); the root keeps at it: see canopy service show api");
  EXPECT_EQ(root_.service_polls("svc-2"), 5u);
}

TEST_F(ServiceCommandsTest, ScaleSendsTheReplicas) {
  ServiceScaleOptions o;
  o.service = "api";
  o.replicas = 3;
  ASSERT_EQ(ServiceScale(ctx_, o), kExitOk) << err_.str();
  EXPECT_EQ(BodyOf("POST", "/api/v1/services/svc-2/scale"), (Json{{"replicas", 3}}));
  std::string out = out_.str();
  EXPECT_NE(out.find("Replicas:     2/3 running\n"), std::string::npos) << out;
  EXPECT_NE(out.find("svc-2-r3   3         -         -        -             pending   -\n"),
            std::string::npos)
      << out;

  Clear();
  o.replicas = 1;
  o.wait.wait = true;
  Json j = RunJson([&o](Context& c) { return ServiceScale(c, o); });
  EXPECT_EQ(j["replicas"], 1);
  EXPECT_EQ(j["instances"].size(), 1u);
  EXPECT_EQ(err_.str(), "service api: deploying, 1/1 running (0s)\n");
}

TEST_F(ServiceCommandsTest, ScaleWaitOfAnUndeployedServiceHasNothingToWaitFor) {
  ServiceScaleOptions o;
  o.service = "web";
  o.replicas = 5;
  o.wait.wait = true;
  Json j = RunJson([&o](Context& c) { return ServiceScale(c, o); });
  EXPECT_EQ(j["replicas"], 5);
  EXPECT_EQ(root_.service_polls("svc-1"), 0u);
  EXPECT_EQ(err_.str(), "");
}

TEST_F(ServiceCommandsTest, ScaleRejectsNegativeReplicasAndUnknownServices) {
  ServiceScaleOptions o;
  o.service = "web";
  o.replicas = -1;
  EXPECT_EQ(ExpectErrorLine(ServiceScale(ctx_, o)),
            "error: the number of replicas must not be negative");
  Clear();
  o.service = "gone";
  o.replicas = 2;
  EXPECT_EQ(ExpectErrorLine(ServiceScale(ctx_, o)), "error: service 'gone' not found");
  EXPECT_EQ(Posts(), 0u);
}

TEST_F(ServiceCommandsTest, DeleteRemovesAnUndeployedService) {
  ASSERT_EQ(ServiceDelete(ctx_, "web"), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "Deleted service web (svc-1)\n");
  EXPECT_EQ(Count("DELETE", "/api/v1/services/svc-1"), 1u);
  Clear();
  // svc-1 is gone, so "svc-1" is now the name of svc-3.
  Json j = RunJson([](Context& c) { return ServiceDelete(c, "svc-1"); });
  EXPECT_EQ(j, Json::object());
  EXPECT_EQ(Count("DELETE", "/api/v1/services/svc-3"), 1u);
}

TEST_F(ServiceCommandsTest, DeleteOfADeployedServicePassesTheConflictThrough) {
  EXPECT_EQ(ExpectErrorLine(ServiceDelete(ctx_, "api")),
            "error: service svc-2 is deployed; undeploy it first (conflict, HTTP 409)");
  Clear();
  EXPECT_EQ(ExpectErrorLine(ServiceDelete(ctx_, "nope")), "error: service 'nope' not found");
  EXPECT_EQ(Count("DELETE", "/api/v1/services/nope"), 0u);
}

TEST_F(ServiceCommandsTest, UnknownServiceIsOneErrorLineForEveryCommand) {
  std::vector<std::function<int(Context&)>> cmds = {
      [](Context& c) { return ServiceShow(c, "ghost"); },
      [](Context& c) {
        return ServiceDeploy(c, {"ghost", std::nullopt, {}});
      },
      [](Context& c) {
        return ServiceUndeploy(c, "ghost", {true, 5});
      },
      [](Context& c) {
        return ServiceScale(c, {"ghost", 2, {}});
      },
      [](Context& c) { return ServiceDelete(c, "ghost"); },
  };
  for (size_t i = 0; i < cmds.size(); ++i) {
    SCOPED_TRACE(i);
    for (OutputFormat f : {OutputFormat::kTable, OutputFormat::kJson}) {
      Clear();
      ctx_.global.output = f;
      EXPECT_EQ(ExpectErrorLine(cmds[i](ctx_)), "error: service 'ghost' not found");
      EXPECT_EQ(err_.str(), "error: service 'ghost' not found\n");
    }
    ctx_.global.output = OutputFormat::kTable;
  }
  EXPECT_EQ(Posts(), 0u);
}

TEST_F(ServiceCommandsTest, EveryCommandPrintsOneJsonDocumentWithJsonOutput) {
  std::vector<std::function<int(Context&)>> cmds = {
      [](Context& c) { return ServiceCreate(c, Create("shop", {"true"})); },
      [](Context& c) { return ServiceList(c); },
      [](Context& c) { return ServiceShow(c, "api"); },
      [](Context& c) {
        return ServiceDeploy(c, {"web", std::nullopt, {}});
      },
      [](Context& c) { return ServiceUndeploy(c, "web", {}); },
      [](Context& c) {
        return ServiceScale(c, {"api", 1, {}});
      },
      [](Context& c) { return ServiceDelete(c, "shop"); },
  };
  for (size_t i = 0; i < cmds.size(); ++i) {
    SCOPED_TRACE(i);
    Json j = RunJson(cmds[i]);
    EXPECT_TRUE(j.is_object() || j.is_array());
    EXPECT_EQ(err_.str(), "");
  }
}

TEST_F(ServiceCommandsTest, NotLoggedInOrUnreachableRootIsOneLine) {
  root_.set_unreachable(true);
  EXPECT_EQ(ExpectErrorLine(ServiceList(ctx_)),
            "error: cannot reach root at http://root.test:8080: Connection refused");
  root_.set_unreachable(false);
  Clear();
  root_.RevokeTokens();
  EXPECT_EQ(ExpectErrorLine(ServiceShow(ctx_, "web")),
            "error: invalid or expired token (unauthenticated, HTTP 401); log in again with "
            "canopy login --root http://root.test:8080 --username admin");
}

}  // namespace
}  // namespace canopy::cli
