#include "support/cloud_env.h"

#include <gtest/gtest.h>

#include "common/ids.h"
#include "net/client.h"
#include "support/local_env.h"

namespace canopy::testing {

using namespace std::chrono_literals;

CloudEnv::CloudEnv(std::string type, std::vector<std::string> adapter_flags)
    : type_(std::move(type)), adapter_flags_(std::move(adapter_flags)) {}

CloudEnv::~CloudEnv() { StopDaemons(); }

void CloudEnv::StopDaemons() {
  root_.reset();
  adapter_.reset();
}

void CloudEnv::StartDaemons(const Json& adapter_config,
                            const std::vector<std::string>& root_flags) {
  std::vector<std::string> flags{"--heartbeat-interval", "1", "--op-lease-ms", "3000",
                                 "--sweep-interval",     "0"};
  flags.insert(flags.end(), root_flags.begin(), root_flags.end());
  root_ = std::make_unique<RootDaemon>((dir_.path() / "root").string(), flags);
  root_->Start();
  admin_ = root_->AdminToken();
  auto tok = root_->Call("POST", "/api/v1/provider-tokens", "{}", admin_);
  EXPECT_EQ(tok.status, 201) << tok.body;
  std::vector<std::string> aflags{"--config", DumpJson(adapter_config)};
  aflags.insert(aflags.end(), adapter_flags_.begin(), adapter_flags_.end());
  adapter_ = std::make_unique<AdapterDaemon>(type_, root_->url(),
                                             (dir_.path() / "adapter").string(), aflags);
  adapter_->Start(tok.json["token"].get<std::string>());
}

ApiReply CloudEnv::Call(const std::string& method, const std::string& path,
                        const std::string& body) {
  return root_->Call(method, path, body, admin_);
}

ApiReply CloudEnv::AddCredential(const Json& secret) {
  ApiReply r;
  WaitFor(
      [&] {
        r = Call(
            "POST", "/api/v1/credentials",
            DumpJson(Json{
                {"name", type_ + "-" + RandomHex(3)}, {"provider", type_}, {"secret", secret}}));
        return r.status != 409;  // the adapter's registration may not be through yet
      },
      30s);
  return r;
}

Json CloudEnv::WaitOperation(const std::string& id, std::chrono::seconds timeout,
                             bool restart_adapter) {
  Json op;
  WaitFor(
      [&] {
        if (restart_adapter && !adapter_->Running()) {
          adapter_died_ = true;
          adapter_->Start("");
        }
        op = Call("GET", "/api/v1/operations/" + id).json;
        std::string st = op.value("state", "");
        return st == "succeeded" || st == "failed";
      },
      timeout);
  return op;
}

Json CloudEnv::WorkerAction(const std::string& cluster, const std::string& wid,
                            const std::string& action) {
  const std::string path = "/api/v1/clusters/" + cluster + "/workers/" + wid;
  auto r = action == "delete" ? Call("DELETE", path) : Call("POST", path + "/" + action);
  EXPECT_EQ(r.status, 202) << action << ": " << r.body;
  if (r.status != 202) return Json();
  return WaitOperation(r.json["operation_id"].get<std::string>(), 180s);
}

Json CloudEnv::Worker(const std::string& cluster, const std::string& wid) {
  return Call("GET", "/api/v1/clusters/" + cluster + "/workers/" + wid).json;
}

std::string CloudEnv::DeployHello(const std::string& cluster, int port) {
  Json svc{{"name", "hello"},
           {"command", HelloServiceArgv(port)},
           {"ports", {{{"port", port}, {"protocol", "tcp"}}}},
           {"cpu_millis", 100},
           {"memory_mib", 64},
           {"replicas", 1}};
  auto made = Call("POST", "/api/v1/services", DumpJson(svc));
  EXPECT_EQ(made.status, 201) << made.body;
  if (made.status != 201) return "";
  const std::string sid = made.json["id"];
  auto dep =
      Call("POST", "/api/v1/services/" + sid + "/deploy", DumpJson(Json{{"cluster_id", cluster}}));
  EXPECT_EQ(dep.status, 202) << dep.body;
  return sid;
}

std::string CloudEnv::WaitServing(const std::string& sid, int port, const std::string& context) {
  Json s;
  std::string address;
  bool ok = WaitFor(
      [&] {
        s = Call("GET", "/api/v1/services/" + sid).json;
        auto inst = s.value("instances", Json::array());
        if (inst.size() != 1 || inst[0].value("state", "") != "running" ||
            !inst[0]["address"].is_string())
          return false;
        address = inst[0]["address"];
        return HelloAnswers(address, port);
      },
      60s);
  EXPECT_TRUE(ok) << s.dump() << "\n" << context;
  return ok ? address : "";
}

void CloudEnv::UndeployAndDelete(const std::string& sid, const std::string& address, int port) {
  auto undeploy = Call("POST", "/api/v1/services/" + sid + "/undeploy", "{}");
  EXPECT_EQ(undeploy.status, 202) << undeploy.body;
  EXPECT_TRUE(WaitFor(
      [&] {
        return Call("GET", "/api/v1/services/" + sid).json.value("state", "") == "undeployed";
      },
      30s));
  EXPECT_TRUE(WaitFor([&] { return !HelloAnswers(address, port); }, 10s)) << "still answers";
  auto removed = Call("DELETE", "/api/v1/services/" + sid);
  EXPECT_LT(removed.status, 300) << removed.body;
}

bool HelloAnswers(const std::string& address, int port) {
  net::HttpClient http;
  auto r = http.Do(net::ClientRequest{"GET",
                                      "http://" + address + ":" + std::to_string(port) + "/",
                                      {},
                                      "",
                                      std::chrono::seconds(2),
                                      std::chrono::seconds(1)});
  return r && r->status == 200 && r->body.find("hello from " + address) != std::string::npos;
}

}  // namespace canopy::testing
