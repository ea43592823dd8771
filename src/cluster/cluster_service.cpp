#include "cluster/cluster_service.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/files.h"
#include "net/client.h"
#include "net/error_mapping.h"
#include "net/json_call.h"

namespace canopy::cluster {
namespace {

void SetError(core::CommandOutcome& o, const Error& e) {
  o.error_code = std::string(ErrorCodeName(e.code));
  o.error_message = e.message;
  o.error_reason = e.reason;
}

// The "error" of an ack: {code, message, reason?}.
Json ErrorJson(const std::string& code, const std::string& message, const std::string& reason) {
  Json e = {{"code", code}, {"message", message}};
  if (!reason.empty()) e["reason"] = reason;
  return e;
}

constexpr std::string_view kNodeTokenPrefix = "cnt_";
constexpr std::string_view kNodeKeyPrefix = "nk_";

std::string BearerOf(const net::Request& req) {
  std::string h = req.Header("authorization");
  if (h.size() <= 7 || (h.rfind("Bearer ", 0) != 0 && h.rfind("bearer ", 0) != 0)) return "";
  return h.substr(7);
}

// resources: {cpu_millis, memory_mib, memory_available_mib, load1}, all optional, non-negative.
Status ReadResources(const Json& body, core::NodeRecord& n) {
  if (!body.contains("resources") || body["resources"].is_null()) return OkStatus();
  const Json& r = body["resources"];
  if (!r.is_object()) return Error::InvalidArgument("field 'resources' must be an object");
  constexpr int64_t kMax = int64_t{1} << 40;
  CANOPY_ASSIGN_OR_RETURN(auto cpu, GetOptInt(r, "cpu_millis", 0, kMax));
  CANOPY_ASSIGN_OR_RETURN(auto mem, GetOptInt(r, "memory_mib", 0, kMax));
  CANOPY_ASSIGN_OR_RETURN(auto avail, GetOptInt(r, "memory_available_mib", 0, kMax));
  if (cpu) n.cpu_millis = *cpu;
  if (mem) n.memory_mib = *mem;
  if (avail) n.memory_available_mib = *avail;
  if (r.contains("load1") && !r["load1"].is_null()) {
    if (!r["load1"].is_number() || r["load1"].get<double>() < 0 || r["load1"].get<double>() > 1e6) {
      return Error::InvalidArgument("field 'load1' must be a non-negative number");
    }
    n.load1 = r["load1"].get<double>();
  }
  return OkStatus();
}

Result<std::string> ReadAddress(const Json& body, const net::Request& req) {
  CANOPY_ASSIGN_OR_RETURN(auto addr, GetOptString(body, "address", 256));
  std::string a = addr.value_or("");
  if (a.empty()) a = req.remote_addr;
  for (char c : a) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '.' || c == ':' || c == '-' || c == '[' || c == ']' || c == '%';
    if (!ok) return Error::InvalidArgument("field 'address' must be a host name or IP address");
  }
  return a;
}

bool ValidJobId(const std::string& id) {
  if (id.empty() || id.size() > 64 || id[0] == '.') return false;
  for (char c : id) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// deploy_job args -> the spec stored and sent to the node.
Result<Json> JobSpecFromArgs(const Json& args) {
  CANOPY_ASSIGN_OR_RETURN(std::string job_id, GetString(args, "job_id", 64));
  if (!ValidJobId(job_id))
    return Error::InvalidArgument("field 'job_id' must be 1-64 of [A-Za-z0-9._-]");
  if (!args.contains("command") || !args["command"].is_array() || args["command"].empty() ||
      args["command"].size() > 256) {
    return Error::InvalidArgument("field 'command' must be a non-empty array of strings");
  }
  for (const auto& a : args["command"]) {
    if (!a.is_string() || a.get<std::string>().size() > 4096) {
      return Error::InvalidArgument("field 'command' must be a non-empty array of strings");
    }
  }
  if (args["command"][0].get<std::string>().empty()) {
    return Error::InvalidArgument("field 'command' must name a program");
  }
  Json env = Json::object();
  if (args.contains("env") && !args["env"].is_null()) {
    if (!args["env"].is_object())
      return Error::InvalidArgument("field 'env' must be an object of strings");
    for (const auto& [k, v] : args["env"].items()) {
      if (!v.is_string() || k.empty() || k.find('=') != std::string::npos) {
        return Error::InvalidArgument("field 'env' must be an object of strings");
      }
    }
    env = args["env"];
  }
  Json ports = Json::array();
  if (args.contains("ports") && !args["ports"].is_null()) {
    if (!args["ports"].is_array() || args["ports"].size() > 64) {
      return Error::InvalidArgument("field 'ports' must be an array");
    }
    for (const auto& p : args["ports"]) {
      if (!p.is_object()) return Error::InvalidArgument("every port must be an object");
      CANOPY_ASSIGN_OR_RETURN(int64_t port, GetInt(p, "port", 1, 65535));
      CANOPY_ASSIGN_OR_RETURN(auto proto, GetOptString(p, "protocol", 8));
      std::string pr = proto.value_or("tcp");
      if (pr.empty()) pr = "tcp";
      if (pr != "tcp" && pr != "udp")
        return Error::InvalidArgument("port 'protocol' must be tcp or udp");
      ports.push_back({{"port", port}, {"protocol", pr}});
    }
  }
  constexpr int64_t kMax = int64_t{1} << 40;
  CANOPY_ASSIGN_OR_RETURN(int64_t cpu, GetInt(args, "cpu_millis", 0, kMax));
  CANOPY_ASSIGN_OR_RETURN(int64_t mem, GetInt(args, "memory_mib", 0, kMax));
  CANOPY_ASSIGN_OR_RETURN(auto restart, GetOptString(args, "restart", 16));
  std::string rs = restart.value_or("");
  if (rs.empty()) rs = "on-failure";
  if (rs != "always" && rs != "on-failure" && rs != "never") {
    return Error::InvalidArgument("field 'restart' must be always, on-failure or never");
  }
  return Json{{"id", job_id},      {"command", args["command"]}, {"env", env},
              {"cpu_millis", cpu}, {"memory_mib", mem},          {"restart", rs},
              {"ports", ports}};
}

}  // namespace

ClusterService::ClusterService(ClusterOptions opts, ClockPtr clock, IdGeneratorPtr ids)
    : opts_(std::move(opts)), clock_(std::move(clock)), ids_(std::move(ids)) {
  while (!opts_.root_url.empty() && opts_.root_url.back() == '/') opts_.root_url.pop_back();
}

ClusterService::~ClusterService() {
  Stop();
  if (server_) server_->Stop();
}

uint16_t ClusterService::port() const { return server_ ? server_->port() : 0; }

std::string ClusterService::cluster_id() const {
  std::lock_guard<std::mutex> l(mu_);
  return cluster_id_;
}

std::chrono::seconds ClusterService::LinkInterval() const {
  if (opts_.link_interval.count() > 0) return opts_.link_interval;
  std::lock_guard<std::mutex> l(mu_);
  return std::chrono::seconds(std::max<int64_t>(1, root_link_interval_));
}

Status ClusterService::Start() {
  if (opts_.data_dir.empty()) return Error::InvalidArgument("the cluster needs --data-dir");
  std::error_code ec;
  std::filesystem::create_directories(opts_.data_dir, ec);
  if (ec) return Error::Internal("cannot create the data dir");
  ::chmod(opts_.data_dir.c_str(), 0700);
  CANOPY_ASSIGN_OR_RETURN(store_, store::OpenClusterStore(opts_.data_dir + "/cluster.db"));
  if (opts_.token.empty() && !opts_.token_file.empty()) {
    opts_.token = ReadTrimmedFile(opts_.token_file);
  }
  CANOPY_ASSIGN_OR_RETURN(auto hp, net::ParseHostPort(opts_.listen));
  CANOPY_ASSIGN_OR_RETURN(tls_, net::TierIdentity::Open(opts_.data_dir, "canopy-root", false));
  if (secure()) {
    CANOPY_TRY(EnsureNodeCaKey());
    auto cert = ReadFileString(opts_.data_dir + "/node-ca.crt");
    if (cert && tls_->has_ca()) {
      auto ca = net::pki::Authority::Load(*cert, node_ca_key_);
      if (ca && net::pki::VerifyChain(ca->cert_pem(), tls_->ca_pem())) node_ca_ = std::move(*ca);
    }
  }
  if (!secure() && !net::IsLoopbackHost(hp.first)) {
    // Plain HTTP stays on loopback: node tokens and job commands cross this listener.
    return Error::InvalidArgument(fmt::format(
        "the cluster listens on {} in plain HTTP: only loopback may; give it the root's https "
        "URL (with --ca-fingerprint) so that it speaks TLS",
        hp.first));
  }
  net::ServerOptions so;
  so.host = hp.first;
  so.port = hp.second;
  so.worker_threads = 4;
  if (secure()) {
    // TLS from the start; without a certificate yet every handshake fails until pairing gives one.
    auto pending = std::make_shared<net::TlsServerConfig>();
    auto ready = node_ca_ ? tls_->Server(node_ca_->cert_pem(), true) : nullptr;
    so.tls = ready ? ready : pending;
  }
  CANOPY_ASSIGN_OR_RETURN(server_,
                          net::HttpServer::Start(so, MakeRouter(), net::ErrorResponse, nullptr));
  const char* scheme = secure() ? "https" : "http";
  if (opts_.advertise_url.empty()) {
    std::string host = hp.first.find(':') != std::string::npos ? "[" + hp.first + "]" : hp.first;
    opts_.advertise_url = fmt::format("{}://{}:{}", scheme, host, server_->port());
  } else if (secure() && opts_.advertise_url.starts_with("http://")) {
    opts_.advertise_url = "https://" + opts_.advertise_url.substr(7);
  }
  SPDLOG_INFO("Cluster node API listening url={}", opts_.advertise_url);
  {
    // The bound address (useful with port 0): supervisors and tests read it instead of guessing.
    std::string host = hp.first.find(':') != std::string::npos ? "[" + hp.first + "]" : hp.first;
    (void)WriteFileAtomic(opts_.data_dir + "/cluster.url",
                          fmt::format("{}://{}:{}\n", scheme, host, server_->port()));
  }
  if (LoadIdentity()) {
    SPDLOG_INFO("Resuming cluster identity cluster={}", cluster_id_);
    return OkStatus();
  }
  if (opts_.token.empty()) {
    return Error::Unauthenticated("no cluster identity and no pairing token: pass --token");
  }
  auto st = Pair();
  if (!st && (st.error().code == ErrorCode::kUnavailable ||
              st.error().code == ErrorCode::kDeadlineExceeded)) {
    SPDLOG_WARN("Root not reachable yet; pairing later error={}", st.error().ToString());
    return OkStatus();
  }
  return st;
}

Status ClusterService::EnsureNodeCaKey() {
  std::lock_guard<std::mutex> l(mu_);
  if (!node_ca_key_.Reveal().empty()) return OkStatus();
  if (auto k = ReadFileString(opts_.data_dir + "/node-ca.key"); k) {
    node_ca_key_ = SecretString(std::move(*k));
    return OkStatus();
  }
  CANOPY_ASSIGN_OR_RETURN(node_ca_key_, net::pki::NewKey());
  return WriteFileAtomic(opts_.data_dir + "/node-ca.key", node_ca_key_.Reveal(), 0600);
}

Result<std::string> ClusterService::NodeCaCsr() const {
  SecretString key;
  {
    std::lock_guard<std::mutex> l(mu_);
    key = node_ca_key_;
  }
  return net::pki::NewCsr(key, "cluster-ca", {});
}

std::optional<net::pki::Authority> ClusterService::NodeCa() const {
  std::lock_guard<std::mutex> l(mu_);
  return node_ca_;
}

void ClusterService::ApplyServerTls() {
  auto ca = NodeCa();
  if (!server_ || !ca) return;
  auto cfg = tls_->Server(ca->cert_pem(), true);
  if (!cfg) return;
  if (auto st = server_->UpdateTls(cfg); !st) {
    SPDLOG_ERROR("Cannot use the new certificate: {}", st.error().message);
  }
}

// Takes what the root signed (pairing or link answer): the cluster's certificate and node CA.
Status ClusterService::AcceptCertificates(const Json& answer) {
  if (answer.contains("ca") && answer["ca"].is_string()) {
    CANOPY_TRY(tls_->AcceptCa(answer["ca"].get<std::string>()));
  }
  bool changed = false;
  if (answer.contains("certificate") && answer["certificate"].is_string()) {
    CANOPY_TRY(tls_->AcceptCertificate(answer["certificate"].get<std::string>()));
    changed = true;
  }
  if (answer.contains("node_ca_certificate") && answer["node_ca_certificate"].is_string()) {
    std::string pem = answer["node_ca_certificate"].get<std::string>();
    CANOPY_TRY(net::pki::VerifyChain(pem, tls_->ca_pem()));
    SecretString key;
    {
      std::lock_guard<std::mutex> l(mu_);
      key = node_ca_key_;
    }
    CANOPY_ASSIGN_OR_RETURN(auto ca, net::pki::Authority::Load(pem, key));
    CANOPY_TRY(WriteFileAtomic(opts_.data_dir + "/node-ca.crt", pem, 0644));
    std::lock_guard<std::mutex> l(mu_);
    node_ca_ = std::move(ca);
    changed = true;
  }
  if (changed) ApplyServerTls();
  return OkStatus();
}

Result<std::string> ClusterService::IssueNodeCertificate(const std::string& node_id,
                                                         const std::string& csr) {
  auto ca = NodeCa();
  if (!ca) return Error::FailedPrecondition("this cluster has no node CA yet");
  CANOPY_ASSIGN_OR_RETURN(
      std::string leaf,
      ca->Issue(csr, "node:" + node_id, {}, net::pki::Usage::kClient, std::chrono::hours(24 * 30)));
  return leaf + ca->cert_pem();
}

Status ClusterService::Pair() {
  net::JsonCall call;
  call.url = opts_.root_url + "/api/v1/clusters/pair";
  call.body = {{"token", opts_.token}, {"url", opts_.advertise_url}, {"version", opts_.version}};
  if (secure()) {
    CANOPY_TRY(tls_->EnsureCa(opts_.root_url, opts_.ca_fingerprint, opts_.ca_file));
    CANOPY_TRY(EnsureNodeCaKey());
    CANOPY_ASSIGN_OR_RETURN(call.body["csr"], tls_->CsrForUrl("cluster", opts_.advertise_url));
    CANOPY_ASSIGN_OR_RETURN(call.body["node_ca_csr"], NodeCaCsr());
    call.tls = tls_->Client();
  }
  call.timeout = std::chrono::milliseconds(15000);
  call.peer = "root at " + opts_.root_url;
  CANOPY_ASSIGN_OR_RETURN(Json j, net::PostJson(call));
  if (secure()) {
    if (!j.contains("certificate")) {
      return Error::FailedPrecondition("the root signed no certificate for this cluster");
    }
    CANOPY_TRY(AcceptCertificates(j));
  }
  auto id = GetString(j, "cluster_id", 128);
  auto key = GetString(j, "cluster_key", 256);
  if (!id || !key) return Error::Internal("root sent a malformed pairing answer");
  auto iv = GetOptInt(j, "link_interval_seconds", 1, 3600);
  {
    std::lock_guard<std::mutex> l(mu_);
    cluster_id_ = *id;
    cluster_key_ = SecretString(*key);
    if (iv && *iv) root_link_interval_ = **iv;
  }
  SPDLOG_INFO("Paired with root cluster={} link_interval_s={}", *id, LinkInterval().count());
  if (!opts_.token_file.empty()) {
    // Used up at the root; nothing on this machine keeps it.
    std::error_code ec;
    std::filesystem::remove(opts_.token_file, ec);
  }
  return SaveIdentity();
}

bool ClusterService::LoadIdentity() {
  auto j = ReadJsonObjectFile(opts_.data_dir + "/identity.json");
  if (!j) return false;
  auto id = GetString(*j, "cluster_id", 128);
  auto key = GetString(*j, "cluster_key", 256);
  if (!id || !key) return false;
  auto iv = GetOptInt(*j, "link_interval_seconds", 1, 3600);
  std::lock_guard<std::mutex> l(mu_);
  cluster_id_ = *id;
  cluster_key_ = SecretString(*key);
  if (iv && *iv) root_link_interval_ = **iv;
  return true;
}

Status ClusterService::SaveIdentity() {
  Json j;
  {
    std::lock_guard<std::mutex> l(mu_);
    j = {{"cluster_id", cluster_id_},
         {"cluster_key", cluster_key_.Reveal()},
         {"root_url", opts_.root_url},
         {"link_interval_seconds", root_link_interval_}};
  }
  return WriteFileAtomic(opts_.data_dir + "/identity.json", DumpJson(j));
}

Result<std::pair<std::string, TimePoint>> ClusterService::CreateNodeToken(
    std::chrono::seconds ttl) {
  std::string token = std::string(kNodeTokenPrefix) + RandomToken(32);
  core::NodeToken t;
  t.id = ids_->NewId("ntk");
  t.token_hash = Sha256Hex(token);
  t.created_at = clock_->Now();
  t.expires_at = t.created_at + ttl;
  CANOPY_TRY(store_->CreateNodeToken(t));
  SPDLOG_INFO("Created node token token_id={}", t.id);
  return std::make_pair(token, t.expires_at);
}

bool ClusterService::Online(const core::NodeRecord& n, TimePoint now) const {
  return now - n.last_heartbeat <= opts_.heartbeat_interval * opts_.missed_heartbeats_for_offline;
}

const core::NodeRecord* ClusterService::PickNode(const std::vector<core::NodeRecord>& nodes,
                                                 const std::vector<store::JobPlacement>& jobs,
                                                 const std::set<std::string>& excluded,
                                                 int64_t cpu_millis, int64_t memory_mib,
                                                 TimePoint now) const {
  const core::NodeRecord* best = nullptr;
  int64_t best_free_mem = 0;
  size_t best_jobs = 0;
  for (const auto& n : nodes) {
    if (!Online(n, now) || excluded.count(n.id) != 0) continue;
    int64_t used_cpu = 0, used_mem = 0;
    size_t count = 0;
    for (const auto& j : jobs) {
      if (j.node_id != n.id) continue;
      used_cpu += j.spec.value("cpu_millis", int64_t{0});
      used_mem += j.spec.value("memory_mib", int64_t{0});
      ++count;
    }
    int64_t free_cpu = n.cpu_millis - used_cpu;
    int64_t free_mem = n.memory_mib - used_mem;
    if (free_cpu < cpu_millis || free_mem < memory_mib) continue;
    // Most free memory, then fewest jobs, then id (nodes are not ordered by id).
    bool better = !best || free_mem > best_free_mem ||
                  (free_mem == best_free_mem &&
                   (count < best_jobs || (count == best_jobs && n.id < best->id)));
    if (better) {
      best = &n;
      best_free_mem = free_mem;
      best_jobs = count;
    }
  }
  return best;
}

Result<Json> ClusterService::DeployJob(const Json& args) {
  CANOPY_ASSIGN_OR_RETURN(Json spec, JobSpecFromArgs(args));
  CANOPY_ASSIGN_OR_RETURN(std::string service_id, GetString(args, "service_id", 128));
  std::string job_id = spec["id"].get<std::string>();
  auto existing = store_->GetJob(job_id);
  if (existing || existing.error().code != ErrorCode::kNotFound) {
    if (!existing) return existing.error();
    // Already placed: the same placement (idempotent per job_id).
    auto node = store_->GetNode(existing->node_id);
    return Json{{"job_id", job_id},
                {"node_id", existing->node_id},
                {"address", node ? Json(node->address) : Json(nullptr)}};
  }
  int64_t cpu = spec["cpu_millis"].get<int64_t>();
  int64_t mem = spec["memory_mib"].get<int64_t>();
  CANOPY_ASSIGN_OR_RETURN(auto nodes, store_->ListNodes());
  CANOPY_ASSIGN_OR_RETURN(auto jobs, store_->ListJobs(""));
  CANOPY_ASSIGN_OR_RETURN(auto draining, store_->ListDrainingNodes());
  TimePoint now = clock_->Now();
  const core::NodeRecord* best =
      PickNode(nodes, jobs, std::set<std::string>(draining.begin(), draining.end()), cpu, mem, now);
  if (!best) {
    return Error{ErrorCode::kResourceExhausted,
                 fmt::format("no online node has {} cpu_millis and {} MiB free", cpu, mem),
                 std::string(core::kReasonNoWorkerCapacity)};
  }
  store::JobPlacement p;
  p.job_id = job_id;
  p.service_id = service_id;
  p.node_id = best->id;
  p.spec = spec;
  p.created_at = p.updated_at = now;
  CANOPY_TRY(store_->CreateJob(p));
  SPDLOG_INFO("Job placed job={} service={} node={}", job_id, service_id, best->id);
  return Json{{"job_id", job_id}, {"node_id", best->id}, {"address", best->address}};
}

Result<Json> ClusterService::UndeployJob(const Json& args) {
  CANOPY_ASSIGN_OR_RETURN(std::string job_id, GetString(args, "job_id", 64));
  auto st = store_->DeleteJob(job_id);
  if (!st && st.error().code != ErrorCode::kNotFound) return st.error();
  if (st) SPDLOG_INFO("Job removed job={}", job_id);
  return Json{{"job_id", job_id}, {"removed", static_cast<bool>(st)}};
}

Result<Json> ClusterService::DrainNode(const Json& args) {
  CANOPY_ASSIGN_OR_RETURN(std::string node_id, GetString(args, "node_id", 128));
  Json out;
  bool known = true;
  // All or nothing: the flag, every move and every removal in one transaction.
  CANOPY_TRY(store_->InTransaction([&]() -> Status {
    out = {{"node_id", node_id}, {"moved", Json::array()}, {"returned", Json::array()}};
    if (auto st = store_->SetNodeDraining(node_id, true); !st) {
      if (st.error().code != ErrorCode::kNotFound) return st.error();
      known = false;  // already gone
      return OkStatus();
    }
    CANOPY_ASSIGN_OR_RETURN(auto nodes, store_->ListNodes());
    CANOPY_ASSIGN_OR_RETURN(auto jobs, store_->ListJobs(""));
    CANOPY_ASSIGN_OR_RETURN(auto draining, store_->ListDrainingNodes());
    std::set<std::string> excluded(draining.begin(), draining.end());
    excluded.insert(node_id);
    TimePoint now = clock_->Now();
    // Oldest job first, each with DeployJob's rule; a moved job's reservation counts on its new
    // node.
    for (auto& j : jobs) {
      if (j.node_id != node_id) continue;
      int64_t cpu = j.spec.value("cpu_millis", int64_t{0});
      int64_t mem = j.spec.value("memory_mib", int64_t{0});
      const core::NodeRecord* to = PickNode(nodes, jobs, excluded, cpu, mem, now);
      if (to) {
        CANOPY_TRY(store_->MoveJob(j.job_id, node_id, to->id, now));
        j.node_id = to->id;
        out["moved"].push_back({{"job_id", j.job_id},
                                {"service_id", j.service_id},
                                {"node_id", to->id},
                                {"address", to->address}});
      } else {
        CANOPY_TRY(store_->DeleteJob(j.job_id));
        j.node_id.clear();
        out["returned"].push_back({{"job_id", j.job_id}, {"service_id", j.service_id}});
      }
    }
    return OkStatus();
  }));
  if (!known) {
    SPDLOG_INFO("Drain of an unknown node node={}", node_id);
    return out;
  }
  for (const auto& m : out["moved"]) {
    SPDLOG_INFO("Job moved job={} service={} from={} node={}", m["job_id"].get<std::string>(),
                m["service_id"].get<std::string>(), node_id, m["node_id"].get<std::string>());
  }
  for (const auto& r : out["returned"]) {
    SPDLOG_INFO("Job returned to the root job={} service={} from={}",
                r["job_id"].get<std::string>(), r["service_id"].get<std::string>(), node_id);
  }
  SPDLOG_INFO("Node draining node={} moved={} returned={}", node_id, out["moved"].size(),
              out["returned"].size());
  return out;
}

Result<Json> ClusterService::UndrainNode(const Json& args) {
  CANOPY_ASSIGN_OR_RETURN(std::string node_id, GetString(args, "node_id", 128));
  CANOPY_ASSIGN_OR_RETURN(auto draining, store_->ListDrainingNodes());
  bool was = std::find(draining.begin(), draining.end(), node_id) != draining.end();
  if (was) {
    auto st = store_->SetNodeDraining(node_id, false);
    if (!st && st.error().code != ErrorCode::kNotFound) return st.error();
    SPDLOG_INFO("Node no longer draining node={}", node_id);
  }
  return Json{{"node_id", node_id}, {"was_draining", was}};
}

Result<Json> ClusterService::BuildReport() {
  CANOPY_ASSIGN_OR_RETURN(auto nodes, store_->ListNodes());
  CANOPY_ASSIGN_OR_RETURN(auto jobs, store_->ListJobs(""));
  CANOPY_ASSIGN_OR_RETURN(auto drain_list, store_->ListDrainingNodes());
  std::set<std::string> draining(drain_list.begin(), drain_list.end());
  TimePoint now = clock_->Now();
  Json arr = Json::array();
  int64_t cpu = 0, mem = 0, avail = 0, online = 0;
  double load = 0;
  std::map<std::string, std::string> addresses;
  for (const auto& n : nodes) {
    addresses[n.id] = n.address;
    bool up = Online(n, now);
    bool drains = draining.count(n.id) != 0;
    if (up && !drains) {  // a draining node offers no capacity
      cpu += n.cpu_millis;
      mem += n.memory_mib;
      avail += n.memory_available_mib;
      load += n.load1;
      ++online;
    }
    arr.push_back({{"id", n.id},
                   {"address", n.address},
                   {"hostname", n.hostname},
                   {"system", core::NodeSystemToJson(n.system)},
                   {"state", up ? "online" : "offline"},
                   {"draining", drains},
                   {"resources",
                    {{"cpu_millis", n.cpu_millis},
                     {"memory_mib", n.memory_mib},
                     {"memory_available_mib", n.memory_available_mib},
                     {"load1", n.load1}}},
                   {"last_seen", FormatRfc3339(n.last_heartbeat)}});
  }
  Json job_arr = Json::array();
  for (const auto& j : jobs) {
    std::string state = j.status.is_object() ? j.status.value("state", "") : "";
    if (state.empty()) state = "pending";
    auto addr = addresses.find(j.node_id);
    job_arr.push_back({{"job_id", j.job_id},
                       {"service_id", j.service_id},
                       {"node_id", j.node_id},
                       {"address", addr != addresses.end() ? Json(addr->second) : Json(nullptr)},
                       {"state", state}});
  }
  return Json{{"url", opts_.advertise_url},
              {"jobs", job_arr},
              {"version", opts_.version},
              {"link_interval_seconds", LinkInterval().count()},
              {"nodes", arr},
              {"resources",
               {{"cpu_millis", cpu},
                {"memory_mib", mem},
                {"memory_available_mib", avail},
                {"load1", load},
                {"nodes_online", online}}}};
}

Json ClusterService::ExecuteCommand(const Json& cmd) {
  std::string id = cmd.value("id", "");
  std::string type = cmd.value("type", "");
  Json args = cmd.contains("args") && cmd["args"].is_object() ? cmd["args"] : Json::object();
  // Already executed: same outcome again (at-least-once delivery, at-most-once effect).
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = results_.find(id);
    if (it != results_.end()) return it->second;
  }
  auto stored = store_->GetOutcome(id);
  if (stored && !(stored->ok && stored->result.value("has_secret", false))) {
    Json ack = {{"id", id}, {"ok", stored->ok}, {"result", stored->result}};
    if (!stored->ok)
      ack["error"] = ErrorJson(stored->error_code, stored->error_message, stored->error_reason);
    return ack;
  }
  SPDLOG_INFO("Running root command command={} type={}", id, type);
  core::CommandOutcome o;
  o.id = id;
  o.type = type;
  o.created_at = clock_->Now();
  Json full = Json::object();
  // The effect and the outcome commit together: after a crash a re-delivered id finds both or
  // neither (and then runs again). A failed command's own writes are rolled back by its code.
  Status tx = store_->InTransaction([&]() -> Status {
    full = Json::object();
    o.ok = true;
    o.result = Json::object();
    const auto known = core::ParseCommandType(type);
    using core::CommandType;
    if (known == CommandType::kPing) {
      full = {{"pong", true}, {"cluster_id", cluster_id()}};
      o.result = full;
    } else if (known == CommandType::kCreateNodeToken) {
      auto ttl_arg = GetOptInt(args, "ttl_seconds", 60, 7 * 24 * 3600);
      auto ttl = ttl_arg && *ttl_arg ? std::chrono::seconds(**ttl_arg) : opts_.node_token_ttl;
      auto tok = CreateNodeToken(ttl);
      if (tok) {
        full = {{"token", tok->first}, {"expires_at", FormatRfc3339(tok->second)}};
        // The token is not stored: after a restart a re-delivery creates a fresh one.
        o.result = {{"expires_at", FormatRfc3339(tok->second)}, {"has_secret", true}};
      } else {
        o.ok = false;
        SetError(o, tok.error());
      }
    } else if (known) {
      Result<Json> r = *known == CommandType::kDeployJob     ? DeployJob(args)
                       : *known == CommandType::kUndeployJob ? UndeployJob(args)
                       : *known == CommandType::kDrainNode   ? DrainNode(args)
                                                             : UndrainNode(args);
      if (r) {
        full = *r;
        o.result = full;
      } else {
        o.ok = false;
        SetError(o, r.error());
      }
    } else {
      o.ok = false;
      o.error_code = "invalid_argument";
      o.error_message = fmt::format("unknown command type '{}'", type.substr(0, 64));
    }
    return store_->PutOutcome(o);
  });
  if (!tx) {
    // Nothing of it was kept: answer a failure (not stored; a re-delivery after a restart runs it).
    SPDLOG_WARN("Cannot store command outcome command={} error={}", id, tx.error().ToString());
    o.ok = false;
    o.error_code = std::string(ErrorCodeName(ErrorCode::kInternal));
    o.error_message = "internal error";
  }
  if (!opts_.test_kill_after_command.empty() && type == opts_.test_kill_after_command) {
    bool first = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      first = !test_killed_;
      test_killed_ = true;
    }
    if (first) {
      // Crash tests: like kill -9 after the outcome is stored and before the root hears of it.
      SPDLOG_WARN("Test kill after command command={} type={}", id, type);
      spdlog::default_logger()->flush();
      ::_exit(137);
    }
  }
  Json ack = {{"id", id}, {"ok", o.ok}, {"result", o.ok ? full : Json::object()}};
  if (!o.ok) ack["error"] = ErrorJson(o.error_code, o.error_message, o.error_reason);
  std::lock_guard<std::mutex> l(mu_);
  results_[id] = ack;
  return ack;
}

Status ClusterService::LinkOnce() {
  CANOPY_ASSIGN_OR_RETURN(Json body, BuildReport());
  CANOPY_ASSIGN_OR_RETURN(auto outcomes, store_->ListUnacknowledged());
  Json acks = Json::array();
  for (const auto& o : outcomes) acks.push_back(ExecuteCommand({{"id", o.id}, {"type", o.type}}));
  body["acks"] = acks;
  auto interval = LinkInterval();
  std::string id, key;
  {
    std::lock_guard<std::mutex> l(mu_);
    id = cluster_id_;
    key = cluster_key_.Reveal();
  }
  net::JsonCall call;
  bool renewing = false;
  if (secure()) {
    auto now = std::chrono::system_clock::now();
    auto ca = NodeCa();
    bool node_ca_due =
        !ca || net::pki::RenewalDue(
                   net::pki::ReadCert(ca->cert_pem()).value_or(net::pki::CertInfo{}), now);
    if (tls_->RenewalDue(now) || node_ca_due) {
      CANOPY_ASSIGN_OR_RETURN(body["csr"], tls_->CsrForUrl("cluster", opts_.advertise_url));
      if (node_ca_due) {
        CANOPY_ASSIGN_OR_RETURN(body["node_ca_csr"], NodeCaCsr());
      }
      renewing = true;
    }
    call.tls = tls_->Client();
  }
  call.url = fmt::format("{}/api/v1/clusters/{}/link?wait={}", opts_.root_url, id,
                         renewing ? 0 : interval.count());
  call.bearer = SecretString(key);
  call.body = std::move(body);
  call.timeout = std::chrono::milliseconds((interval.count() + 10) * 1000);
  call.peer = "root at " + opts_.root_url;
  CANOPY_ASSIGN_OR_RETURN(Json j, net::PostJson(call));
  if (renewing) {
    if (auto st = AcceptCertificates(j); !st) {
      SPDLOG_ERROR("Renewed certificate refused: {}", st.error().message);
    } else {
      SPDLOG_INFO("Cluster certificate renewed cluster={}", id);
    }
  }
  std::vector<std::string> confirmed;
  if (j.contains("acked") && j["acked"].is_array()) {
    for (const auto& a : j["acked"]) {
      if (a.is_string()) confirmed.push_back(a.get<std::string>());
    }
  }
  if (!confirmed.empty()) {
    CANOPY_TRY(store_->MarkAcknowledged(confirmed));
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& c : confirmed) results_.erase(c);
  }
  if (j.contains("commands") && j["commands"].is_array()) {
    for (const auto& cmd : j["commands"]) {
      if (!cmd.is_object() || !cmd.contains("id") || !cmd["id"].is_string()) continue;
      ExecuteCommand(cmd);  // its ack goes out with the next link call (right away)
    }
  }
  return OkStatus();
}

void ClusterService::SleepFor(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait_for(l, d, [this] { return stop_; });
}

void ClusterService::Run() {
  auto backoff = std::chrono::milliseconds(250);
  bool was_down = false;
  while (true) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
    }
    Status st = OkStatus();
    if (cluster_id().empty()) {
      st = Pair();
    } else {
      st = LinkOnce();
    }
    if (st) {
      if (was_down) SPDLOG_INFO("Link to root restored cluster={}", cluster_id());
      was_down = false;
      backoff = std::chrono::milliseconds(250);
      continue;
    }
    if (!was_down) SPDLOG_WARN("Link to root failed; retrying error={}", st.error().ToString());
    was_down = true;
    auto cap = std::chrono::duration_cast<std::chrono::milliseconds>(LinkInterval());
    SleepFor(std::min(backoff, cap));
    backoff = std::min(backoff * 2, cap);
  }
}

void ClusterService::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
}

std::shared_ptr<net::Router> ClusterService::MakeRouter() {
  auto router = std::make_shared<net::Router>();
  auto wrap = [](auto fn) {
    return [fn](const net::Request& req) -> net::Response {
      Result<net::Response> r = fn(req);
      if (!r) {
        if (r.error().code == ErrorCode::kInternal) {
          SPDLOG_ERROR("Request failed route={} error={}", req.route, r.error().message);
          return net::ErrorResponse(Error::Internal("internal error"));
        }
        return net::ErrorResponse(r.error());
      }
      return std::move(*r);
    };
  };
  router->Add("GET", "/healthz", [this](const net::Request&) {
    return net::Response::FromJson(200, {{"status", "ok"}, {"cluster_id", cluster_id()}});
  });
  // The root CA, for nodes to pin by its fingerprint (their tokens come with it).
  router->Add("GET", "/ca.crt", [this](const net::Request&) {
    std::string pem = tls_ ? tls_->ca_pem() : "";
    if (pem.empty()) return net::ErrorResponse(Error::NotFound("this cluster has no CA"));
    return net::Response::Text(200, pem, "application/x-pem-file");
  });
  router->Add("POST", "/cluster/v1/nodes/register",
              wrap([this](const net::Request& req) -> Result<net::Response> {
                CANOPY_ASSIGN_OR_RETURN(Json body, ParseJsonObject(req.body));
                CANOPY_ASSIGN_OR_RETURN(auto token, GetOptString(body, "token", 256));
                CANOPY_ASSIGN_OR_RETURN(auto node_id, GetOptString(body, "node_id", 128));
                CANOPY_ASSIGN_OR_RETURN(auto hostname, GetOptString(body, "hostname", 255));
                CANOPY_ASSIGN_OR_RETURN(std::string address, ReadAddress(body, req));
                CANOPY_ASSIGN_OR_RETURN(auto csr, GetOptString(body, "csr", 16384));
                if (req.tls && (!csr || csr->empty())) {
                  return Error::InvalidArgument("field 'csr' is required over TLS");
                }
                if (csr && !csr->empty()) CANOPY_TRY(net::pki::ReadCsr(*csr));
                TimePoint now = clock_->Now();
                core::NodeRecord n;
                std::string key;
                if (node_id) {
                  // Re-registration after a restart: the node proves itself with its key.
                  std::string presented = BearerOf(req);
                  if (presented.empty()) return Error::Unauthenticated("missing node key");
                  auto existing = store_->GetNode(*node_id);
                  if (!existing) {
                    if (existing.error().code == ErrorCode::kNotFound)
                      return Error::NotFound("node not registered");
                    return existing.error();
                  }
                  if (!ConstantTimeEquals(Sha256Hex(presented), existing->key_hash)) {
                    return Error::Unauthenticated("wrong node key");
                  }
                  n = std::move(*existing);
                } else {
                  if (!token || token->empty())
                    return Error::InvalidArgument("field 'token' is required");
                  CANOPY_TRY(store_->ConsumeNodeToken(Sha256Hex(*token), now));
                  key = std::string(kNodeKeyPrefix) + RandomToken(32);
                  n.id = ids_->NewId("nod");
                  n.key_hash = Sha256Hex(key);
                  n.registered_at = now;
                }
                n.hostname = hostname.value_or(n.hostname);
                n.address = address;
                CANOPY_TRY(ReadResources(body, n));
                if (body.contains("system") && !body["system"].is_null()) {
                  CANOPY_ASSIGN_OR_RETURN(n.system, core::NodeSystemFromJson(body["system"]));
                }
                n.last_heartbeat = now;
                if (key.empty()) {
                  CANOPY_TRY(store_->UpdateNode(n));
                  SPDLOG_INFO("Node re-registered node={} address={}", n.id, n.address);
                  // A node that starts again (e.g. a stopped worker restarted) offers its capacity
                  // again.
                  CANOPY_ASSIGN_OR_RETURN(auto draining, store_->ListDrainingNodes());
                  if (std::find(draining.begin(), draining.end(), n.id) != draining.end()) {
                    CANOPY_TRY(store_->SetNodeDraining(n.id, false));
                    SPDLOG_INFO("Node no longer draining node={}", n.id);
                  }
                } else {
                  CANOPY_TRY(store_->CreateNode(n));
                  SPDLOG_INFO("Node registered node={} address={} hostname={}", n.id, n.address,
                              n.hostname);
                }
                Json out = {{"node_id", n.id},
                            {"heartbeat_interval_seconds", opts_.heartbeat_interval.count()}};
                if (!key.empty()) out["node_key"] = key;
                if (req.tls && csr) {
                  CANOPY_ASSIGN_OR_RETURN(std::string chain, IssueNodeCertificate(n.id, *csr));
                  out["certificate"] = chain;
                }
                return net::Response::FromJson(key.empty() ? 200 : 201, out);
              }));
  router->Add("POST", "/cluster/v1/nodes/{id}/heartbeat",
              wrap([this](const net::Request& req) -> Result<net::Response> {
                std::string presented = BearerOf(req);
                if (presented.empty()) return Error::Unauthenticated("missing node key");
                auto n = store_->GetNode(req.Param("id"));
                if (!n) {
                  if (n.error().code == ErrorCode::kNotFound)
                    return Error::NotFound("node not registered");
                  return n.error();
                }
                if (!ConstantTimeEquals(Sha256Hex(presented), n->key_hash))
                  return Error::Unauthenticated("wrong node key");
                if (req.tls && req.peer_cn != "node:" + n->id) {
                  // Over TLS a node proves itself with its certificate too, not its key alone.
                  return Error::Unauthenticated(
                      "a node's heartbeat needs its client certificate from this cluster");
                }
                Json body = Json::object();
                if (!req.body.empty()) {
                  CANOPY_ASSIGN_OR_RETURN(body, ParseJsonObject(req.body));
                }
                std::string renewed;
                if (req.tls && body.contains("csr") && body["csr"].is_string()) {
                  CANOPY_ASSIGN_OR_RETURN(
                      renewed, IssueNodeCertificate(n->id, body["csr"].get<std::string>()));
                }
                CANOPY_ASSIGN_OR_RETURN(std::string address, ReadAddress(body, req));
                if (address != n->address)
                  SPDLOG_INFO("Node moved node={} address={}", n->id, address);
                n->address = address;
                CANOPY_TRY(ReadResources(body, *n));
                TimePoint now = clock_->Now();
                n->last_heartbeat = now;
                CANOPY_TRY(store_->UpdateNode(*n));
                // Job statuses reported by the node: stored on the jobs placed there (others are
                // ignored).
                if (body.contains("jobs") && !body["jobs"].is_null()) {
                  if (!body["jobs"].is_array() || body["jobs"].size() > 1000) {
                    return Error::InvalidArgument("field 'jobs' must be an array");
                  }
                  for (const auto& js : body["jobs"]) {
                    if (!js.is_object() || !js.contains("id") || !js["id"].is_string()) continue;
                    auto st = store_->UpdateJobStatus(js["id"].get<std::string>(), n->id, js, now);
                    if (!st && st.error().code != ErrorCode::kNotFound) return st.error();
                  }
                }
                // The full desired job list of this node (empty = run nothing).
                CANOPY_ASSIGN_OR_RETURN(auto placed, store_->ListJobs(n->id));
                Json desired = Json::array();
                for (const auto& j : placed) desired.push_back(j.spec);
                Json out = {{"status", "ok"},
                            {"heartbeat_interval_seconds", opts_.heartbeat_interval.count()},
                            {"jobs", desired}};
                if (!renewed.empty()) out["certificate"] = renewed;
                return net::Response::FromJson(200, out);
              }));
  return router;
}

}  // namespace canopy::cluster
