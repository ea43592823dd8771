#include "support/daemons.h"

#include <fmt/format.h>
#include <signal.h>

#include <filesystem>
#include <thread>

namespace canopy::testing {

std::string CanopydPath() { return canopy::testing::BinDir() + "/canopyd"; }

ApiReply CallApi(const std::string& base, const std::string& method, const std::string& path,
                 const std::string& body, const std::string& token,
                 const std::vector<std::pair<std::string, std::string>>& headers) {
  net::ClientRequest req;
  req.method = method;
  req.url = base + path;
  req.body = body;
  if (!body.empty()) req.headers["Content-Type"] = "application/json";
  if (!token.empty()) req.headers["Authorization"] = "Bearer " + token;
  for (const auto& [k, v] : headers) req.headers[k] = v;
  req.timeout = std::chrono::milliseconds(20000);
  // https daemons (adapters, tiers with TLS): tests that are about trust use their own
  // clients; here any certificate will do.
  static const auto any_cert = [] {
    auto c = std::make_shared<net::TlsClientConfig>();
    c->unverified = true;
    return c;
  }();
  net::HttpClient http(any_cert);
  auto r = http.Do(req);
  ApiReply out;
  if (!r) return out;
  out.status = r->status;
  out.body = r->body;
  for (const auto& [k, v] : r->headers) out.headers[k] = v;
  auto j = ParseJson(r->body);
  if (j) out.json = *j;
  return out;
}

namespace {

// Sends `sig` to the daemon (if running), reaps it and forgets it.
void EndProcess(std::unique_ptr<Process>& proc, int sig) {
  if (!proc) return;
  proc->Kill(sig);
  proc->Wait();
  proc.reset();
}

// "https" when the URL file says so, else "http".
std::string SchemeIn(const std::string& url_file) {
  return ReadFile(url_file).starts_with("https://") ? "https" : "http";
}

// Waits until `url`/healthz answers 200 or the process exits; fails the test with its log.
void ExpectHealthy(Process& proc, const std::string& url, const std::string& log,
                   const char* what) {
  bool up =
      WaitFor([&] { return CallApi(url, "GET", "/healthz").status == 200 || !proc.Running(); },
              std::chrono::seconds(20));
  ASSERT_TRUE(up && proc.Running()) << what << " did not start; log:\n" << ReadFile(log);
}

// Starts `argv` (its listen flag on port 0 the first time), waits for the URL file the daemon
// writes once bound and for /healthz; returns the bound port (0 with a test failure).
uint16_t StartAndFindPort(std::unique_ptr<Process>& proc, std::vector<std::string> argv,
                          std::vector<std::string> env, const std::string& url_file,
                          const std::string& log, const char* what) {
  std::error_code ec;
  std::filesystem::remove(url_file, ec);  // a previous run's
  proc = std::make_unique<Process>(std::move(argv), std::move(env), log);
  uint16_t port = WaitForUrlFilePort(
      url_file, [&] { return proc->Running(); }, std::chrono::seconds(20));
  EXPECT_NE(port, 0) << what << " did not report its port in " << url_file << "; log:\n"
                     << ReadFile(log);
  if (port == 0) return 0;
  ExpectHealthy(*proc, fmt::format("{}://127.0.0.1:{}", SchemeIn(url_file), port), log, what);
  return port;
}

}  // namespace

RootDaemon::RootDaemon(std::string data_dir, std::vector<std::string> extra_flags)
    : data_dir_(std::move(data_dir)), flags_(std::move(extra_flags)) {}

RootDaemon::~RootDaemon() {
  if (proc_) KillHard();
}

void RootDaemon::Start() {
  std::vector<std::string> argv = {CanopydPath(), "root",
                                   "--listen",    fmt::format("{}:{}", listen_host_, port_),
                                   "--data-dir",  data_dir_};
  argv.insert(argv.end(), flags_.begin(), flags_.end());
  uint16_t port =
      StartAndFindPort(proc_, argv, {std::string("CANOPY_ADMIN_PASSWORD=") + kAdminPassword},
                       data_dir_ + "/root.url", log_path(), "root");
  if (port == 0) return;
  port_ = port;
  url_ = fmt::format("{}://127.0.0.1:{}", SchemeIn(data_dir_ + "/root.url"), port_);
  // A tier listener on port 0 keeps its port across restarts too (installed clusters dial it).
  tier_url_.clear();
  std::string tier = ReadFile(data_dir_ + "/tier.url");
  while (!tier.empty() && tier.back() == '\n') tier.pop_back();
  if (tier.empty()) return;
  tier_url_ = tier;
  for (size_t i = 0; i + 1 < flags_.size(); ++i) {
    if (flags_[i] != "--cluster-listen") continue;
    std::string& v = flags_[i + 1];
    if (v.size() >= 2 && v.compare(v.size() - 2, 2, ":0") == 0) {
      v = v.substr(0, v.size() - 1) + tier.substr(tier.rfind(':') + 1);
    }
  }
}

void RootDaemon::Stop() { EndProcess(proc_, SIGTERM); }

net::TlsClientConfigPtr RootDaemon::TlsAsRoot(const std::string& expect_cn) const {
  auto c = std::make_shared<net::TlsClientConfig>();
  c->ca_pem = ReadFile(data_dir_ + "/ca.crt");
  c->chain_pem = ReadFile(data_dir_ + "/tls.crt");
  c->key_pem = SecretString(ReadFile(data_dir_ + "/tls.key"));
  c->expect_cn = expect_cn;
  return c;
}

void RootDaemon::KillHard() { EndProcess(proc_, SIGKILL); }

std::string RootDaemon::Login(const std::string& user, const std::string& password) const {
  auto r =
      Call("POST", "/api/v1/auth/login", DumpJson({{"username", user}, {"password", password}}));
  EXPECT_EQ(r.status, 200) << r.body;
  if (r.status != 200 || !r.json.contains("access_token")) return "";
  return r.json["access_token"].get<std::string>();
}

std::string RootDaemon::CreateUser(const std::string& admin_token, const std::string& name,
                                   const std::vector<std::string>& roles,
                                   const std::string& password) const {
  auto r =
      Call("POST", "/api/v1/users",
           DumpJson({{"username", name}, {"password", password}, {"roles", roles}}), admin_token);
  EXPECT_EQ(r.status, 201) << r.body;
  return r.status == 201 ? r.json["id"].get<std::string>() : "";
}

AdapterDaemon::AdapterDaemon(std::string type, std::string root_url, std::string data_dir,
                             std::vector<std::string> extra_flags)
    : type_(std::move(type)),
      root_url_(std::move(root_url)),
      data_dir_(std::move(data_dir)),
      flags_(std::move(extra_flags)) {}

AdapterDaemon::~AdapterDaemon() {
  if (proc_) KillHard();
}

void AdapterDaemon::Start(const std::string& token) {
  std::vector<std::string> argv = {
      CanopydPath(), "provider", "--type",   type_,
      "--root",      root_url_,  "--listen", fmt::format("127.0.0.1:{}", port_),
      "--data-dir",  data_dir_};
  if (!token.empty()) {
    argv.push_back("--token");
    argv.push_back(token);
  }
  argv.insert(argv.end(), flags_.begin(), flags_.end());
  port_ = StartAndFindPort(proc_, argv, {}, data_dir_ + "/provider.url", log_path(), "adapter");
  url_ = fmt::format("{}://127.0.0.1:{}", SchemeIn(data_dir_ + "/provider.url"), port_);
}

void AdapterDaemon::KillHard() { EndProcess(proc_, SIGKILL); }

ClusterDaemon::ClusterDaemon(std::string root_url, std::string data_dir,
                             std::vector<std::string> extra_flags)
    : root_url_(std::move(root_url)),
      data_dir_(std::move(data_dir)),
      flags_(std::move(extra_flags)) {}

ClusterDaemon::~ClusterDaemon() {
  if (proc_) KillHard();
}

void ClusterDaemon::Start(const std::string& token) {
  std::vector<std::string> argv = {CanopydPath(), "cluster",  "--root",
                                   root_url_,     "--listen", fmt::format("127.0.0.1:{}", port_),
                                   "--data-dir",  data_dir_};
  if (!token.empty()) {
    argv.push_back("--token");
    argv.push_back(token);
  }
  argv.insert(argv.end(), flags_.begin(), flags_.end());
  port_ = StartAndFindPort(proc_, argv, {}, data_dir_ + "/cluster.url", log_path(), "cluster");
  url_ = fmt::format("{}://127.0.0.1:{}", SchemeIn(data_dir_ + "/cluster.url"), port_);
}

void ClusterDaemon::Stop() { EndProcess(proc_, SIGTERM); }

void ClusterDaemon::KillHard() { EndProcess(proc_, SIGKILL); }

NodeDaemon::NodeDaemon(std::string cluster_url, std::string data_dir,
                       std::vector<std::string> extra_flags)
    : cluster_url_(std::move(cluster_url)),
      data_dir_(std::move(data_dir)),
      flags_(std::move(extra_flags)) {}

NodeDaemon::~NodeDaemon() {
  if (proc_) KillHard();
}

void NodeDaemon::Start(const std::string& token) {
  std::vector<std::string> argv = {CanopydPath(), "node",       "--cluster",
                                   cluster_url_,  "--data-dir", data_dir_};
  if (!token.empty()) {
    argv.push_back("--token");
    argv.push_back(token);
  }
  argv.insert(argv.end(), flags_.begin(), flags_.end());
  proc_ = std::make_unique<Process>(argv, std::vector<std::string>{}, log_path());
}

void NodeDaemon::Stop() { EndProcess(proc_, SIGTERM); }

void NodeDaemon::KillHard() { EndProcess(proc_, SIGKILL); }

std::string NodeDaemon::NodeId() const {
  auto j = ParseJsonObject(ReadFile(data_dir_ + "/identity.json"));
  if (!j || !j->contains("node_id") || !(*j)["node_id"].is_string()) return "";
  return (*j)["node_id"].get<std::string>();
}

}  // namespace canopy::testing
