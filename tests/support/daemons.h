// Helpers for integration tests that run the real canopyd binaries: a root on a temp data dir,
// provider adapters, clusters and nodes, and a small JSON client. Daemons listen on port 0 and
// report the bound port in a URL file in their data dir (root.url, provider.url, cluster.url). Not
// thread-safe; one per test.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/json.h"
#include "net/client.h"
#include "net/tls.h"
#include "support/test_util.h"

namespace canopy::testing {

inline constexpr const char* kAdminPassword = "admin-password-for-tests";

struct ApiReply {
  int status = 0;
  Json json;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

// Calls a Canopy HTTP API. A transport failure gives status 0.
ApiReply CallApi(const std::string& base, const std::string& method, const std::string& path,
                 const std::string& body = "", const std::string& token = "",
                 const std::vector<std::pair<std::string, std::string>>& headers = {});

// Polls `pred` every 50 ms until true or timeout. Returns whether it became true.
template <class Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

class RootDaemon {
 public:
  // `data_dir` is kept across Restart(); extra flags go after `canopyd root`.
  RootDaemon(std::string data_dir, std::vector<std::string> extra_flags = {});
  ~RootDaemon();
  // Starts and waits until /healthz answers (fails the test otherwise). The first start listens
  // on port 0 and reads the bound port from root.url; later starts keep it (and a
  // `--cluster-listen HOST:0` flag keeps the tier listener's port, from tier.url), so lower
  // tiers find the root again.
  void Start();
  // Address the root listens on (default 127.0.0.1). Call before Start(); url() stays on
  // 127.0.0.1.
  void SetListenHost(std::string host) { listen_host_ = std::move(host); }
  uint16_t port() const { return port_; }
  // The tier listener's URL (--cluster-listen), "" without one.
  const std::string& tier_url() const { return tier_url_; }
  void Stop();      // SIGTERM and wait
  void KillHard();  // SIGKILL and wait
  void Restart() {
    Stop();
    Start();
  }
  bool Running() { return proc_ && proc_->Running(); }

  const std::string& url() const { return url_; }
  const std::string& data_dir() const { return data_dir_; }
  std::string log_path() const {
    return std::filesystem::path(data_dir_).parent_path().string() + "/root.log";
  }
  ApiReply Call(const std::string& method, const std::string& path, const std::string& body = "",
                const std::string& token = "") const {
    return CallApi(url_, method, path, body, token);
  }
  // Logs in and returns the token ("" on failure, with a test failure recorded).
  std::string Login(const std::string& user, const std::string& password) const;
  std::string AdminToken() const { return Login("admin", kAdminPassword); }
  // TLS settings of a client that is this root (its CA, its certificate and key from the data
  // dir), expecting the server's certificate to be named `expect_cn` (e.g. "adapter:prv-…").
  net::TlsClientConfigPtr TlsAsRoot(const std::string& expect_cn) const;
  // Creates a user with the given roles; returns its id.
  std::string CreateUser(const std::string& admin_token, const std::string& name,
                         const std::vector<std::string>& roles, const std::string& password) const;

 private:
  std::string data_dir_;
  std::vector<std::string> flags_;
  uint16_t port_ = 0;
  std::string listen_host_ = "127.0.0.1";
  std::string url_, tier_url_;
  std::unique_ptr<Process> proc_;
};

class AdapterDaemon {
 public:
  // `extra_flags` go after the standard ones (e.g. {"--config", "{...}"}).
  AdapterDaemon(std::string type, std::string root_url, std::string data_dir,
                std::vector<std::string> extra_flags = {});
  ~AdapterDaemon();
  // Starts with `token` (may be "" when the data dir already holds an identity).
  void Start(const std::string& token);
  void KillHard();
  bool Running() { return proc_ && proc_->Running(); }
  std::string log_path() const { return data_dir_ + ".log"; }
  const std::string& url() const { return url_; }

 private:
  std::string type_, root_url_, data_dir_, url_;
  uint16_t port_ = 0;  // 0 until the first start binds one; kept across restarts
  std::vector<std::string> flags_;
  std::unique_ptr<Process> proc_;
};

// `canopyd cluster` on port 0 (the bound port read from cluster.url); `data_dir` is kept across
// restarts (identity + store).
class ClusterDaemon {
 public:
  ClusterDaemon(std::string root_url, std::string data_dir,
                std::vector<std::string> extra_flags = {});
  ~ClusterDaemon();
  // Starts with `token` ("" when the data dir holds an identity); waits until /healthz answers.
  // The port is kept across restarts so nodes find the cluster again.
  void Start(const std::string& token);
  void Stop();
  void KillHard();
  bool Running() { return proc_ && proc_->Running(); }
  std::string log_path() const { return data_dir_ + ".log"; }
  const std::string& url() const { return url_; }

 private:
  std::string root_url_, data_dir_, url_;
  uint16_t port_ = 0;
  std::vector<std::string> flags_;
  std::unique_ptr<Process> proc_;
};

// `canopyd node` registered with a cluster.
class NodeDaemon {
 public:
  NodeDaemon(std::string cluster_url, std::string data_dir,
             std::vector<std::string> extra_flags = {});
  ~NodeDaemon();
  // Starts with `token` ("" when the data dir holds an identity); does not wait.
  void Start(const std::string& token);
  void Stop();
  void KillHard();
  bool Running() { return proc_ && proc_->Running(); }
  std::string log_path() const { return data_dir_ + ".log"; }
  // The node id from identity.json ("" before registration).
  std::string NodeId() const;

 private:
  std::string cluster_url_, data_dir_;
  std::vector<std::string> flags_;
  std::unique_ptr<Process> proc_;
};

std::string CanopydPath();

}  // namespace canopy::testing
