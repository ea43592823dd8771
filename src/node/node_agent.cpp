#include "node/node_agent.h"

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
#include "common/json.h"
#include "net/client.h"
#include "net/error_mapping.h"
#include "net/json_call.h"
#include "node/resources.h"

namespace canopy::node {
namespace {

std::string Hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "";
  return buf;
}

}  // namespace

NodeAgent::NodeAgent(NodeOptions opts) : opts_(std::move(opts)) {
  while (!opts_.cluster_url.empty() && opts_.cluster_url.back() == '/')
    opts_.cluster_url.pop_back();
}

std::string NodeAgent::node_id() const {
  std::lock_guard<std::mutex> l(mu_);
  return node_id_;
}

NodeResources NodeAgent::Resources() const {
  return WithCapacity(ReadResources(), opts_.cpu_millis, opts_.memory_mib);
}

Status NodeAgent::Start() {
  if (opts_.data_dir.empty()) return Error::InvalidArgument("the node needs --data-dir");
  if (opts_.cpu_millis < 0 || opts_.memory_mib < 0) {
    return Error::InvalidArgument("--cpu-millis and --memory-mib must be positive");
  }
  std::error_code ec;
  std::filesystem::create_directories(opts_.data_dir, ec);
  if (ec) return Error::Internal("cannot create the data dir");
  // Search but no listing for others: jobs (another user) reach their working directory under
  // it by path; the identity file (0600) and the job logs (0640) stay the agent's.
  ::chmod(opts_.data_dir.c_str(), 0711);
  if (!jobs_) {
    JobRunnerOptions jo;
    jo.data_dir = opts_.data_dir;
    jo.stop_grace = opts_.job_stop_grace;
    jo.cgroup_root = opts_.cgroup_root;
    jo.job_user = opts_.job_user;
    jobs_ = std::make_unique<JobRunner>(jo);
  }
  if (!tls_) {
    CANOPY_ASSIGN_OR_RETURN(tls_, net::TierIdentity::Open(opts_.data_dir, "cluster:*"));
  }
  if (opts_.token.empty() && !opts_.token_file.empty()) {
    opts_.token = ReadTrimmedFile(opts_.token_file);
  }
  bool have_identity = LoadIdentity();
  if (!have_identity && opts_.token.empty()) {
    return Error::Unauthenticated("no node identity and no registration token: pass --token");
  }
  auto st = Register(have_identity);
  if (!st && have_identity && st.error().code == ErrorCode::kNotFound && !opts_.token.empty()) {
    SPDLOG_WARN("Cluster no longer knows this node; registering with the token");
    st = Register(false);
  }
  if (!st && (st.error().code == ErrorCode::kUnavailable ||
              st.error().code == ErrorCode::kDeadlineExceeded)) {
    SPDLOG_WARN("Cluster not reachable yet; retrying error={}", st.error().ToString());
    return OkStatus();
  }
  return st;
}

Status NodeAgent::Register(bool with_key) {
  NodeResources res = Resources();
  Json body = {{"hostname", Hostname()},
               {"resources", res.ToJson()},
               {"system", core::NodeSystemToJson(ReadSystem())}};
  if (!opts_.advertise_address.empty()) body["address"] = opts_.advertise_address;
  net::JsonCall call;
  call.url = opts_.cluster_url + "/cluster/v1/nodes/register";
  call.peer = "cluster at " + opts_.cluster_url;
  if (secure()) {
    CANOPY_TRY(tls_->EnsureCa(opts_.cluster_url, opts_.ca_fingerprint, opts_.ca_file));
    CANOPY_ASSIGN_OR_RETURN(body["csr"], tls_->Csr("node"));
    call.tls = tls_->Client();
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    if (with_key) {
      body["node_id"] = node_id_;
      call.bearer = node_key_;
    } else {
      body["token"] = opts_.token;
    }
  }
  call.body = std::move(body);
  CANOPY_ASSIGN_OR_RETURN(Json j, net::PostJson(call));
  auto id = GetString(j, "node_id", 128);
  if (!id) return Error::Internal("cluster sent a malformed registration answer");
  if (secure()) {
    if (!j.contains("certificate") || !j["certificate"].is_string()) {
      return Error::FailedPrecondition("the cluster signed no certificate for this node");
    }
    CANOPY_TRY(tls_->AcceptCertificate(j["certificate"].get<std::string>()));
  }
  auto key = GetOptString(j, "node_key", 256);
  auto hb = GetOptInt(j, "heartbeat_interval_seconds", 1, 3600);
  {
    std::lock_guard<std::mutex> l(mu_);
    node_id_ = *id;
    if (key && *key) node_key_ = SecretString(**key);
    if (hb && *hb) heartbeat_ = std::chrono::seconds(**hb);
    registered_ = true;
  }
  SPDLOG_INFO("Registered with cluster node={} heartbeat_s={} cpu_millis={} memory_mib={}", *id,
              heartbeat_.count(), res.cpu_millis, res.memory_mib);
  if (!with_key && !opts_.token_file.empty()) {
    std::error_code ec;  // used up at the cluster; nothing on this machine keeps it
    std::filesystem::remove(opts_.token_file, ec);
  }
  return SaveIdentity();
}

bool NodeAgent::LoadIdentity() {
  auto j = ReadJsonObjectFile(opts_.data_dir + "/identity.json");
  if (!j) return false;
  auto id = GetString(*j, "node_id", 128);
  auto key = GetString(*j, "node_key", 256);
  if (!id || !key) return false;
  std::lock_guard<std::mutex> l(mu_);
  node_id_ = *id;
  node_key_ = SecretString(*key);
  return true;
}

Status NodeAgent::SaveIdentity() {
  Json j;
  {
    std::lock_guard<std::mutex> l(mu_);
    j = {{"node_id", node_id_},
         {"node_key", node_key_.Reveal()},
         {"cluster_url", opts_.cluster_url}};
  }
  return WriteFileAtomic(opts_.data_dir + "/identity.json", DumpJson(j));
}

std::vector<JobStatus> NodeAgent::JobStatuses() const {
  if (!jobs_) return {};
  return jobs_->Statuses();
}

Status NodeAgent::Heartbeat() {
  Json body = {{"resources", Resources().ToJson()}};
  Json statuses = Json::array();
  for (const auto& s : JobStatuses()) statuses.push_back(s.ToJson());
  body["jobs"] = std::move(statuses);
  if (!opts_.advertise_address.empty()) body["address"] = opts_.advertise_address;
  net::JsonCall call;
  bool renewing = false;
  if (secure()) {
    if (tls_->has_certificate() && tls_->RenewalDue(std::chrono::system_clock::now())) {
      CANOPY_ASSIGN_OR_RETURN(body["csr"], tls_->Csr("node"));
      renewing = true;
    }
    call.tls = tls_->Client();
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    call.url = fmt::format("{}/cluster/v1/nodes/{}/heartbeat", opts_.cluster_url, node_id_);
    call.bearer = node_key_;
  }
  call.body = std::move(body);
  call.timeout = std::chrono::milliseconds(5000);
  call.peer = "cluster at " + opts_.cluster_url;
  CANOPY_ASSIGN_OR_RETURN(Json reply, net::PostJson(call));
  if (renewing && reply.contains("certificate") && reply["certificate"].is_string()) {
    if (auto st = tls_->AcceptCertificate(reply["certificate"].get<std::string>()); !st) {
      SPDLOG_ERROR("Renewed certificate refused: {}", st.error().message);
    } else {
      SPDLOG_INFO("Node certificate renewed");
    }
  }
  // `jobs` present: the full desired list for this node. Absent: leave the jobs alone.
  if (jobs_ && reply.is_object() && reply.contains("jobs") && reply["jobs"].is_array()) {
    std::vector<JobSpec> desired;
    for (const auto& j : reply["jobs"]) {
      auto spec = JobSpec::FromJson(j);
      if (!spec) {
        SPDLOG_WARN("Ignoring a malformed job from the cluster error={}", spec.error().ToString());
        continue;
      }
      desired.push_back(std::move(*spec));
    }
    if (auto st = jobs_->Reconcile(desired); !st) {
      SPDLOG_WARN("Some jobs could not be started error={}", st.error().ToString());
    }
  }
  return OkStatus();
}

void NodeAgent::SleepFor(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait_for(l, d, [this] { return stop_; });
}

void NodeAgent::Run() {
  bool was_down = false;
  while (true) {
    std::chrono::seconds hb;
    bool registered;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
      hb = heartbeat_;
      registered = registered_;
    }
    Status st = registered ? Heartbeat() : Register(!node_id().empty());
    if (!st && registered && st.error().code == ErrorCode::kNotFound && !opts_.token.empty()) {
      st = Register(false);
    }
    if (st) {
      if (was_down) SPDLOG_INFO("Cluster reachable again node={}", node_id());
      was_down = false;
    } else if (!was_down) {
      SPDLOG_WARN("Heartbeat failed error={}", st.error().ToString());
      was_down = true;
    }
    SleepFor(st ? std::chrono::duration_cast<std::chrono::milliseconds>(hb)
                : std::min<std::chrono::milliseconds>(hb, std::chrono::milliseconds(1000)));
  }
}

void NodeAgent::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
}

}  // namespace canopy::node
