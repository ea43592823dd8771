// CloudEnv: what the cloud providers' e2e tests (tests/e2e/aws_e2e_test.cpp, gcp_e2e_test.cpp)
// share: a root and one provider adapter of a type, the admin's API calls, credentials,
// operations and worker actions, and a perl hello service (HelloServiceArgv) deployed and checked
// from the host. Each test's environment adds its cloud (moto, the AWS or GCP simulator).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/json.h"
#include "support/daemons.h"
#include "support/test_util.h"

namespace canopy::testing {

class CloudEnv {
 public:
  CloudEnv(std::string type, std::vector<std::string> adapter_flags);
  virtual ~CloudEnv();
  CloudEnv(const CloudEnv&) = delete;
  CloudEnv& operator=(const CloudEnv&) = delete;

  ApiReply Call(const std::string& method, const std::string& path, const std::string& body = "");
  /// POST /api/v1/credentials for the adapter's type, retried while the adapter is not live yet.
  ApiReply AddCredential(const Json& secret);
  /// Polls the operation until it ends (or `timeout`); with `restart_adapter`, an adapter that
  /// died meanwhile (a --test-kill-after-call) is started again.
  Json WaitOperation(const std::string& id, std::chrono::seconds timeout,
                     bool restart_adapter = false);
  /// POST .../workers/{wid}/{action} (DELETE for "delete") and waits for its operation.
  Json WorkerAction(const std::string& cluster, const std::string& wid, const std::string& action);
  Json Worker(const std::string& cluster, const std::string& wid);

  /// A hello service (HelloServiceArgv) on `port`, one replica, deployed to `cluster`; its id.
  std::string DeployHello(const std::string& cluster, int port);
  /// Waits until the service's one instance runs and answers from the host; its address.
  /// ("" after a timeout, with a test failure naming `context`.)
  std::string WaitServing(const std::string& sid, int port, const std::string& context);
  /// Undeploys the service, checks its port closes, deletes it.
  void UndeployAndDelete(const std::string& sid, const std::string& address, int port);

  RootDaemon& root() { return *root_; }
  AdapterDaemon& adapter() { return *adapter_; }
  bool adapter_died() const { return adapter_died_; }

 protected:
  /// Starts the root (with `root_flags` after the standard ones) and the adapter with --config.
  void StartDaemons(const Json& adapter_config, const std::vector<std::string>& root_flags);
  /// Stops adapter and root (derived environments stop them before their cloud).
  void StopDaemons();

 private:
  TempDir dir_;
  std::string type_;
  std::vector<std::string> adapter_flags_;
  std::unique_ptr<RootDaemon> root_;
  std::unique_ptr<AdapterDaemon> adapter_;
  std::string admin_;
  bool adapter_died_ = false;
};

/// Whether http://address:port/ answers 200 with "hello from <address>" (HelloServiceArgv).
bool HelloAnswers(const std::string& address, int port);

}  // namespace canopy::testing
