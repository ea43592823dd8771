#include "support/moto.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <thread>

#include "net/client.h"
#include "providers/aws/aws_client.h"

namespace canopy::testing {

std::string FindPython() {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    std::string p = dir + "/python3";
    if (!dir.empty() && ::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

bool MotoServer::Available() {
  std::string py = FindPython();
  if (py.empty()) return false;
  return std::system((py + " -c 'import moto.server' >/dev/null 2>&1").c_str()) == 0;
}

Result<MotoServer*> MotoServer::Shared() {
  static std::mutex mu;
  static std::unique_ptr<MotoServer> server;
  static std::optional<Error> failed;
  std::lock_guard lock(mu);
  if (server) return server.get();
  if (failed) return *failed;
  if (!Available()) {
    failed = Error::FailedPrecondition(
        "moto is not installed (pip install 'moto[server]'; scripts/setup.sh does)");
    return *failed;
  }
  std::unique_ptr<MotoServer> s(new MotoServer());
  auto st = s->Start();
  if (st) st = s->Bootstrap();
  if (!st) {
    failed = st.error();
    return *failed;
  }
  server = std::move(s);
  std::atexit([] { server.reset(); });
  return server.get();
}

MotoServer::~MotoServer() { proc_.reset(); }

Status MotoServer::Start() {
  dir_ = std::make_unique<TempDir>();
  // moto cannot report a port it picked: take a fresh one until it binds (another process may
  // have taken the kernel's pick in between).
  net::HttpClient http;
  bool up = StartWithFreshPorts([&](uint16_t port) {
    url_ = "http://127.0.0.1:" + std::to_string(port);
    proc_ =
        std::make_unique<Process>(std::vector<std::string>{FindPython(), "-m", "moto.server", "-H",
                                                           "127.0.0.1", "-p", std::to_string(port)},
                                  std::vector<std::string>{"INITIAL_NO_AUTH_ACTION_COUNT=0",
                                                           "MOTO_ALLOW_NONEXISTENT_REGION=false"},
                                  dir_->str() + "/moto.log");
    // Werkzeug logs "Running on" once it holds the port; only then can an answer be ours.
    for (int i = 0; i < 300; ++i) {
      if (ReadFile(dir_->str() + "/moto.log").find("Running on") != std::string::npos) break;
      if (!proc_->Running()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    for (int i = 0; i < 300; ++i) {
      auto r = http.Do(net::ClientRequest{"GET",
                                          url_ + "/moto-api/data.json",
                                          {},
                                          "",
                                          std::chrono::seconds(2),
                                          std::chrono::seconds(1)});
      if (r && r->status == 200 && r->body.find('{') != std::string::npos) return true;
      if (!proc_->Running()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  });
  if (up) return OkStatus();
  return Error::Unavailable("moto_server did not start: " + ReadFile(dir_->str() + "/moto.log"));
}

Status MotoServer::Bootstrap() {
  net::HttpClient http;
  // Exactly three requests may go unauthenticated: CreateUser, PutUserPolicy, CreateAccessKey.
  auto reset = http.Do(net::ClientRequest{"POST",
                                          url_ + "/moto-api/reset-auth",
                                          {{"Content-Type", "text/plain"}},
                                          "3",
                                          std::chrono::seconds(5),
                                          std::chrono::seconds(2)});
  if (!reset || reset->status != 200) return Error::Unavailable("moto reset-auth failed");
  providers::aws::AwsEndpoints ep;
  ep.all = url_;
  providers::aws::AwsClient client(ep, providers::aws::RetryPolicy{1, std::chrono::milliseconds(10),
                                                                   std::chrono::milliseconds(10)});
  providers::aws::SigV4Credentials anon{"AKIAANONYMOUSBOOT000", SecretString("unused"), ""};
  const std::string user = "canopy-test-admin";
  CANOPY_TRY(client.Query(anon, "iam", "us-east-1", "CreateUser", {{"UserName", user}}));
  CANOPY_TRY(client.Query(
      anon, "iam", "us-east-1", "PutUserPolicy",
      {{"UserName", user},
       {"PolicyName", "admin"},
       {"PolicyDocument",
        R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]})"}}));
  CANOPY_ASSIGN_OR_RETURN(
      auto key, client.Query(anon, "iam", "us-east-1", "CreateAccessKey", {{"UserName", user}}));
  admin_ = Json{{"access_key_id",
                 providers::aws::XmlText(key, "CreateAccessKeyResult.AccessKey.AccessKeyId")},
                {"secret_access_key",
                 providers::aws::XmlText(key, "CreateAccessKeyResult.AccessKey.SecretAccessKey")}};
  return OkStatus();
}

}  // namespace canopy::testing
