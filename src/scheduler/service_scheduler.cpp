#include "scheduler/service_scheduler.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/clusters.h"
#include "api/services.h"

namespace canopy::scheduler {
namespace {

constexpr const char* kDeployJob = "deploy_job";
constexpr const char* kUndeployJob = "undeploy_job";

const Json* FindJob(const Json& jobs, const std::string& job_id) {
  for (const auto& j : jobs) {
    if (j.value("job_id", "") == job_id) return &j;
  }
  return nullptr;
}

// The state a cluster reports for a job; its "pending" (placed, the node has not reported yet)
// is "starting" here, where "pending" means "no cluster".
std::string ReportedState(const Json& job, const std::string& fallback) {
  std::string s = job.value("state", fallback);
  return s == "pending" ? "starting" : s;
}

Json DeployArgs(const core::Service& s, const core::ServiceInstance& i) {
  Json ports = Json::array();
  for (const auto& p : s.spec.value("ports", Json::array())) {
    ports.push_back({{"port", p.value("port", 0)}, {"protocol", p.value("protocol", "tcp")}});
  }
  return {{"job_id", i.job_id},
          {"service_id", s.id},
          {"command", s.spec.value("command", Json::array())},
          {"env", s.spec.value("env", Json::object())},
          {"ports", ports},
          {"cpu_millis", s.spec.value("cpu_millis", int64_t{0})},
          {"memory_mib", s.spec.value("memory_mib", int64_t{0})},
          {"restart", s.spec.value("restart", "on-failure")}};
}

// A job id of the form the scheduler gives its instances: "svc-<…>-r<N>" (N decimal digits).
bool IsSchedulerJobId(const std::string& job_id) {
  if (job_id.rfind("svc-", 0) != 0) return false;
  size_t r = job_id.rfind("-r");
  if (r == std::string::npos || r < 5 || r + 2 >= job_id.size()) return false;
  return std::all_of(job_id.begin() + static_cast<std::ptrdiff_t>(r) + 2, job_id.end(),
                     [](char ch) { return ch >= '0' && ch <= '9'; });
}

void ToPending(core::ServiceInstance& i, std::string reason) {
  i.cluster_id.clear();
  i.node_id.clear();
  i.address.clear();
  i.command_id.clear();
  i.state = "pending";
  i.reason = std::move(reason);
}

}  // namespace

ServiceScheduler::ServiceScheduler(const api::ApiDeps& deps, SchedulerOptions opts,
                                   std::unique_ptr<ClusterPicker> picker,
                                   std::function<void()> on_change)
    : deps_(deps), opts_(opts), picker_(std::move(picker)), on_change_(std::move(on_change)) {
  if (!picker_) picker_ = std::make_unique<MostFreeMemoryPicker>();
}

ServiceScheduler::~ServiceScheduler() { Stop(); }

void ServiceScheduler::Start() {
  thread_ = std::thread([this] {
    while (!stop_) {
      auto st = RunOnce();
      if (!st) SPDLOG_WARN("Scheduler pass failed error={}", st.error().ToString());
      deps_.service_board->WaitForWake(opts_.interval);
    }
  });
}

void ServiceScheduler::Stop() {
  stop_ = true;
  deps_.service_board->Wake();
  if (thread_.joinable()) thread_.join();
}

Status ServiceScheduler::RunOnce() {
  auto& repo = deps_.store->services();
  CANOPY_ASSIGN_OR_RETURN(auto services, repo.List());
  CANOPY_ASSIGN_OR_RETURN(auto instances, repo.ListInstances(""));
  CANOPY_ASSIGN_OR_RETURN(auto clusters, deps_.store->clusters().List());
  auto reports = deps_.service_board->Reports();
  const TimePoint now = deps_.clock->Now();
  std::map<std::string, const core::Service*> svc;
  for (const auto& s : services) svc[s.id] = &s;
  std::map<std::string, const core::Cluster*> cl;
  for (const auto& c : clusters) cl[c.id] = &c;
  bool changed = false;
  auto put = [&](core::ServiceInstance& i) -> Status {
    i.updated_at = now;
    changed = true;
    return repo.PutInstance(i);
  };
  auto drop = [&](const core::ServiceInstance& i) -> Status {
    changed = true;
    baseline_.erase(i.job_id);
    missing_.erase(i.job_id);
    next_try_.erase(i.job_id);
    auto st = repo.DeleteInstance(i.job_id);
    if (!st && st.error().code != ErrorCode::kNotFound) return st;
    SPDLOG_INFO("Instance removed job={}", i.job_id);
    return OkStatus();
  };
  // Which cluster reports which job (the first one that does).
  auto reported_in = [&](const std::string& job_id) -> std::pair<std::string, const Json*> {
    for (const auto& [cid, r] : reports) {
      // The board keeps the last report of a deleted cluster: never adopt into a gone cluster.
      if (cl.find(cid) == cl.end()) continue;
      if (const Json* j = FindJob(r.jobs, job_id)) return {cid, j};
    }
    return {"", nullptr};
  };

  std::map<std::string, std::set<int64_t>> present;  // service -> replicas with a row
  std::map<std::string, std::string> placed_in;      // job -> cluster (rows after this pass)
  std::vector<core::ServiceInstance> pending;
  for (auto& i : instances) {
    auto sit = svc.find(i.service_id);
    const core::Service* s = sit == svc.end() ? nullptr : sit->second;
    bool wanted = s != nullptr && s->deployed && i.replica < s->replicas;
    std::optional<core::ClusterCommand> cmd;
    if (!i.command_id.empty()) {
      auto r = api::GetClusterCommand(deps_, i.command_id);
      if (r) cmd = std::move(*r);
    }
    bool cmd_pending = cmd && cmd->state == core::ClusterCommandState::kPending;
    bool cluster_gone = !i.cluster_id.empty() && cl.find(i.cluster_id) == cl.end();

    if (!wanted || i.state == "removing") {
      if (i.state == "removing") {
        if (cmd_pending && !cluster_gone) {
          if (wanted) present[i.service_id].insert(i.replica);  // re-created once removed
          placed_in[i.job_id] = i.cluster_id;
          continue;
        }
        CANOPY_TRY(drop(i));
        continue;
      }
      if (i.cluster_id.empty() || cluster_gone) {
        CANOPY_TRY(drop(i));
        continue;
      }
      auto c = api::EnqueueClusterCommand(deps_, i.cluster_id, kUndeployJob, {{"job_id", i.job_id}});
      if (!c) {
        SPDLOG_WARN("Cannot send undeploy_job job={} error={}", i.job_id, c.error().ToString());
        continue;
      }
      i.state = "removing";
      i.reason.clear();
      i.command_id = c->id;
      CANOPY_TRY(put(i));
      placed_in[i.job_id] = i.cluster_id;
      SPDLOG_INFO("Instance undeploying job={} cluster={}", i.job_id, i.cluster_id);
      continue;
    }
    present[i.service_id].insert(i.replica);

    if (cluster_gone) {
      ToPending(i, fmt::format("rescheduling: cluster {} is gone", i.cluster_id));
      CANOPY_TRY(put(i));
    }
    if (i.cluster_id.empty()) {
      auto [cid, job] = reported_in(i.job_id);
      if (job != nullptr) {  // adopt: a cluster runs it already
        i.cluster_id = cid;
        i.node_id = job->value("node_id", "");
        i.address = job->value("address", "");
        i.state = ReportedState(*job, "starting");
        i.reason.clear();
        baseline_[i.job_id] = reports[cid].seq;
        CANOPY_TRY(put(i));
        placed_in[i.job_id] = cid;
        SPDLOG_INFO("Instance adopted job={} cluster={} node={}", i.job_id, cid, i.node_id);
        continue;
      }
      pending.push_back(i);
      continue;
    }
    placed_in[i.job_id] = i.cluster_id;
    if (i.state == "scheduled") {
      if (cmd_pending) continue;
      if (cmd && cmd->state == core::ClusterCommandState::kSucceeded) {
        i.node_id = cmd->result.value("node_id", "");
        i.address = cmd->result.value("address", Json("")).is_string() ? cmd->result.value("address", "") : "";
        i.state = "starting";
        i.reason.clear();
        i.command_id.clear();
        baseline_[i.job_id] = reports.count(i.cluster_id) ? reports[i.cluster_id].seq : 0;
        missing_.erase(i.job_id);
        CANOPY_TRY(put(i));
        SPDLOG_INFO("Instance placed job={} cluster={} node={}", i.job_id, i.cluster_id, i.node_id);
        continue;
      }
      std::string code = cmd ? cmd->error_code : "";
      std::string msg = cmd ? cmd->error_message : "the deploy command was lost";
      std::string cluster = i.cluster_id;
      ToPending(i, code == "resource_exhausted" ? msg : "deploy failed in cluster " + cluster + ": " + msg);
      next_try_[i.job_id] = now + opts_.pending_retry;
      placed_in.erase(i.job_id);
      CANOPY_TRY(put(i));
      SPDLOG_INFO("Instance back to pending job={} cluster={} reason={}", i.job_id, cluster, i.reason);
      pending.push_back(i);
      continue;
    }
    // Deployed: follow the cluster's reports.
    auto rep = reports.find(i.cluster_id);
    if (rep == reports.end()) continue;
    if (const Json* job = FindJob(rep->second.jobs, i.job_id)) {
      missing_.erase(i.job_id);
      std::string node = job->value("node_id", i.node_id);
      std::string addr = job->value("address", i.address);
      std::string state = ReportedState(*job, i.state);
      if (node != i.node_id || addr != i.address || state != i.state) {
        if (node != i.node_id) SPDLOG_INFO("Instance moved job={} node={}", i.job_id, node);
        i.node_id = node;
        i.address = addr;
        i.state = state;
        CANOPY_TRY(put(i));
      }
      continue;
    }
    auto& m = missing_[i.job_id];
    if (rep->second.seq > m.last_seq && rep->second.seq > baseline_[i.job_id]) {
      m.last_seq = rep->second.seq;
      ++m.count;
    }
    if (m.count >= opts_.missing_reports_for_lost) {
      std::string cluster = i.cluster_id;
      missing_.erase(i.job_id);
      ToPending(i, fmt::format("rescheduling: cluster {} no longer runs it", cluster));
      placed_in.erase(i.job_id);
      CANOPY_TRY(put(i));
      SPDLOG_INFO("Instance lost job={} cluster={}", i.job_id, cluster);
      pending.push_back(i);
    }
  }

  // Missing replicas of deployed services.
  for (const auto& s : services) {
    if (!s.deployed) continue;
    for (int64_t r = 0; r < s.replicas; ++r) {
      if (present[s.id].count(r)) continue;
      core::ServiceInstance i;
      i.job_id = fmt::format("{}-r{}", s.id, r);
      i.service_id = s.id;
      i.replica = r;
      i.created_at = now;
      CANOPY_TRY(put(i));
      pending.push_back(i);
    }
  }

  // Place pending instances.
  if (!pending.empty()) {
    std::vector<InstanceLoad> loads;
    CANOPY_ASSIGN_OR_RETURN(auto rows, repo.ListInstances(""));
    for (const auto& r : rows) {
      if (r.cluster_id.empty() || r.state == "removing") continue;
      auto sit = svc.find(r.service_id);
      if (sit == svc.end()) continue;
      loads.push_back({r.cluster_id, r.node_id, sit->second->spec.value("cpu_millis", int64_t{0}),
                       sit->second->spec.value("memory_mib", int64_t{0})});
    }
    for (auto& i : pending) {
      auto nt = next_try_.find(i.job_id);
      if (nt != next_try_.end() && nt->second > now) continue;
      const core::Service* s = svc[i.service_id];
      Demand d;
      d.cpu_millis = s->spec.value("cpu_millis", int64_t{0});
      d.memory_mib = s->spec.value("memory_mib", int64_t{0});
      if (s->spec.contains("cluster_id") && s->spec["cluster_id"].is_string()) {
        d.cluster_id = s->spec["cluster_id"].get<std::string>();
      }
      auto chosen = picker_->Pick(d, Candidates(clusters, loads));
      next_try_[i.job_id] = now + opts_.pending_retry;
      if (!chosen) {
        std::string reason;
        auto cit = d.cluster_id ? cl.find(*d.cluster_id) : cl.end();
        if (d.cluster_id && cit == cl.end()) {
          reason = fmt::format("cluster {} not found", *d.cluster_id);
        } else if (d.cluster_id && cit->second->state != core::ClusterState::kActive) {
          reason = fmt::format("cluster {} is {}", *d.cluster_id, core::ClusterStateName(cit->second->state));
        } else {
          reason = fmt::format("no_worker_capacity: no {}node has {} cpu_millis and {} MiB free",
                               d.cluster_id ? "" : "ACTIVE cluster's ", d.cpu_millis, d.memory_mib);
        }
        if (i.reason != reason || i.state != "pending") {
          i.state = "pending";
          i.reason = reason;
          CANOPY_TRY(put(i));
          SPDLOG_INFO("Instance pending job={} reason={}", i.job_id, reason);
        }
        continue;
      }
      // The row first (a crash after it finds "command lost" and retries; a crash after the
      // command finds the job in the cluster's report and adopts it).
      i.cluster_id = *chosen;
      i.state = "scheduled";
      i.reason.clear();
      i.command_id.clear();
      CANOPY_TRY(put(i));
      auto c = api::EnqueueClusterCommand(deps_, *chosen, kDeployJob, DeployArgs(*s, i));
      if (!c) {
        ToPending(i, "cannot reach cluster " + *chosen + ": " + c.error().message);
        CANOPY_TRY(put(i));
        continue;
      }
      i.command_id = c->id;
      CANOPY_TRY(put(i));
      placed_in[i.job_id] = *chosen;
      loads.push_back({*chosen, "", d.cpu_millis, d.memory_mib});
      SPDLOG_INFO("Instance scheduled job={} cluster={} command={}", i.job_id, *chosen, c->id);
    }
  }

  // Orphans: jobs a cluster runs that no row places there.
  for (const auto& [cid, r] : reports) {
    auto cit = cl.find(cid);
    if (cit == cl.end() || cit->second->state == core::ClusterState::kDeleting) continue;
    for (const auto& j : r.jobs) {
      std::string job_id = j.value("job_id", "");
      // Only the scheduler's own jobs ("<service id>-r<N>"); jobs deployed by other means
      // (commands sent by hand or by tests) are left alone.
      if (!IsSchedulerJobId(job_id)) continue;
      auto p = placed_in.find(job_id);
      if (p != placed_in.end() && p->second == cid) continue;
      // A pending row will adopt it next pass; only undeploy what nobody wants.
      bool pending_row = std::any_of(pending.begin(), pending.end(), [&](const core::ServiceInstance& x) {
        return x.job_id == job_id && x.cluster_id.empty();
      });
      if (pending_row) continue;
      std::string key = cid + "/" + job_id;
      auto sent = orphan_sent_.find(key);
      if (sent != orphan_sent_.end() && now - sent->second < opts_.orphan_retry) continue;
      orphan_sent_[key] = now;
      SPDLOG_INFO("Undeploying orphan job job={} cluster={}", job_id, cid);
      (void)api::EnqueueClusterCommand(deps_, cid, kUndeployJob, {{"job_id", job_id}});
    }
  }
  if (changed && on_change_) on_change_();
  return OkStatus();
}

}  // namespace canopy::scheduler
