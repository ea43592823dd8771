#include "scheduler/service_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace canopy::scheduler {
namespace {

using core::InstanceState;
using Kind = SchedulerAction::Kind;

const Json* FindJob(const Json& jobs, const std::string& job_id) {
  for (const auto& j : jobs) {
    if (j.value("job_id", "") == job_id) return &j;
  }
  return nullptr;
}

// The state a cluster reports for a job (its "pending" is "starting" here), or `fallback` when
// the report names none.
InstanceState ReportedState(const Json& job, InstanceState fallback) {
  if (!job.contains("state") || !job["state"].is_string()) return fallback;
  return core::InstanceStateFromReport(job["state"].get<std::string>());
}

void ToPending(core::ServiceInstance& i, std::string code, std::string reason) {
  i.cluster_id.clear();
  i.node_id.clear();
  i.address.clear();
  i.command_id.clear();
  i.state = InstanceState::kPending;
  i.reason_code = std::move(code);
  i.reason = std::move(reason);
}

std::string ReasonText(const core::ServiceInstance& i) {
  return i.reason_code.empty() ? i.reason : i.reason_code + ": " + i.reason;
}

SchedulerAction Act(Kind kind, const core::ServiceInstance& i) {
  SchedulerAction a;
  a.kind = kind;
  a.instance = i;
  return a;
}

}  // namespace

Json DeployArgs(const core::Service& s, const core::ServiceInstance& i) {
  Json ports = Json::array();
  for (const auto& p : s.spec.value("ports", Json::array())) {
    ports.push_back({{"port", p.value("port", 0)}, {"protocol", p.value("protocol", "tcp")}});
  }
  Json args = {{"job_id", i.job_id},
               {"service_id", s.id},
               {"command", s.spec.value("command", Json::array())},
               {"env", s.spec.value("env", Json::object())},
               {"ports", ports},
               {"cpu_millis", s.spec.value("cpu_millis", int64_t{0})},
               {"memory_mib", s.spec.value("memory_mib", int64_t{0})},
               {"restart", s.spec.value("restart", "on-failure")}};
  // Still sealed in the stored command; opened only when the command goes out on the cluster's
  // (mutual TLS) link: ClusterTier.
  if (s.spec.contains("secret_env_sealed")) args["secret_env_sealed"] = s.spec["secret_env_sealed"];
  return args;
}

bool IsSchedulerJobId(const std::string& job_id) {
  if (job_id.rfind("svc-", 0) != 0) return false;
  size_t r = job_id.rfind("-r");
  if (r == std::string::npos || r < 5 || r + 2 >= job_id.size()) return false;
  return std::all_of(job_id.begin() + static_cast<std::ptrdiff_t>(r) + 2, job_id.end(),
                     [](char ch) { return ch >= '0' && ch <= '9'; });
}

std::vector<SchedulerAction> PlanPass(const PlanInput& in, const PlanOptions& opts,
                                      const ClusterPicker& picker, SchedulerMemory& mem) {
  std::vector<SchedulerAction> out;
  const TimePoint now = in.now;
  std::map<std::string, const core::Service*> svc;
  for (const auto& s : in.services) svc[s.id] = &s;
  std::map<std::string, const core::Cluster*> cl;
  for (const auto& c : in.clusters) cl[c.id] = &c;
  // The rows as they will be after this pass (for the capacity already taken).
  std::map<std::string, core::ServiceInstance> rows;
  for (const auto& i : in.instances) rows[i.job_id] = i;

  auto put = [&](core::ServiceInstance& i, std::string log = "") {
    i.updated_at = now;
    rows[i.job_id] = i;
    out.push_back(Act(Kind::kPut, i));
    out.back().log = std::move(log);
  };
  auto drop = [&](const core::ServiceInstance& i) {
    mem.baseline.erase(i.job_id);
    mem.missing.erase(i.job_id);
    mem.next_try.erase(i.job_id);
    rows.erase(i.job_id);
    out.push_back(Act(Kind::kDrop, i));
  };
  // Which cluster reports which job (the first one that does).
  auto reported_in = [&](const std::string& job_id) -> std::pair<std::string, const Json*> {
    for (const auto& [cid, r] : in.reports) {
      // The board keeps the last report of a deleted cluster: never adopt into a gone cluster.
      if (cl.find(cid) == cl.end()) continue;
      if (const Json* j = FindJob(r.jobs, job_id)) return {cid, j};
    }
    return {"", nullptr};
  };
  auto seq_of = [&](const std::string& cluster) -> uint64_t {
    auto r = in.reports.find(cluster);
    return r == in.reports.end() ? 0 : r->second.seq;
  };

  std::map<std::string, std::set<int64_t>> present;  // service -> replicas with a row
  std::map<std::string, std::string> placed_in;      // job -> cluster (rows after this pass)
  std::vector<core::ServiceInstance> pending;
  for (core::ServiceInstance i : in.instances) {
    auto sit = svc.find(i.service_id);
    const core::Service* s = sit == svc.end() ? nullptr : sit->second;
    bool wanted = s != nullptr && s->deployed && i.replica < s->replicas;
    const core::ClusterCommand* cmd = nullptr;
    if (!i.command_id.empty()) {
      auto c = in.commands.find(i.command_id);
      if (c != in.commands.end()) cmd = &c->second;
    }
    bool cmd_pending = cmd != nullptr && cmd->state == core::ClusterCommandState::kPending;
    bool cluster_gone = !i.cluster_id.empty() && cl.find(i.cluster_id) == cl.end();

    if (!wanted || i.state == InstanceState::kRemoving) {
      if (i.state == InstanceState::kRemoving) {
        if (cmd_pending && !cluster_gone) {
          if (wanted) present[i.service_id].insert(i.replica);  // re-created once removed
          placed_in[i.job_id] = i.cluster_id;
          continue;
        }
        drop(i);
        continue;
      }
      if (i.cluster_id.empty() || cluster_gone) {
        drop(i);
        continue;
      }
      i.state = InstanceState::kRemoving;
      i.reason_code.clear();
      i.reason.clear();
      i.updated_at = now;
      rows[i.job_id] = i;
      out.push_back(Act(Kind::kUndeploy, i));
      placed_in[i.job_id] = i.cluster_id;
      continue;
    }
    present[i.service_id].insert(i.replica);

    if (cluster_gone) {
      ToPending(i, "", fmt::format("rescheduling: cluster {} is gone", i.cluster_id));
      put(i);
    }
    if (i.cluster_id.empty()) {
      auto [cid, job] = reported_in(i.job_id);
      if (job != nullptr) {  // adopt: a cluster runs it already
        i.cluster_id = cid;
        i.node_id = job->value("node_id", "");
        i.address = job->value("address", "");
        i.state = ReportedState(*job, InstanceState::kStarting);
        i.reason_code.clear();
        i.reason.clear();
        mem.baseline[i.job_id] = seq_of(cid);
        put(i, fmt::format("Instance adopted job={} cluster={} node={}", i.job_id, cid, i.node_id));
        placed_in[i.job_id] = cid;
        continue;
      }
      pending.push_back(i);
      continue;
    }
    placed_in[i.job_id] = i.cluster_id;
    if (i.state == InstanceState::kScheduled) {
      if (cmd_pending) continue;
      if (cmd != nullptr && cmd->state == core::ClusterCommandState::kSucceeded) {
        i.node_id = cmd->result.value("node_id", "");
        i.address = cmd->result.value("address", Json("")).is_string()
                        ? cmd->result.value("address", "")
                        : "";
        i.state = InstanceState::kStarting;
        i.reason_code.clear();
        i.reason.clear();
        i.command_id.clear();
        mem.baseline[i.job_id] = seq_of(i.cluster_id);
        mem.missing.erase(i.job_id);
        put(i, fmt::format("Instance placed job={} cluster={} node={}", i.job_id, i.cluster_id,
                           i.node_id));
        continue;
      }
      std::string cluster = i.cluster_id;
      if (cmd != nullptr && cmd->error_reason == core::kReasonNoWorkerCapacity) {
        ToPending(i, cmd->error_reason, cmd->error_message);
      } else {
        std::string msg = cmd != nullptr ? cmd->error_message : "the deploy command was lost";
        ToPending(i, "", "deploy failed in cluster " + cluster + ": " + msg);
      }
      mem.next_try[i.job_id] = now + opts.pending_retry;
      placed_in.erase(i.job_id);
      put(i, fmt::format("Instance back to pending job={} cluster={} reason={}", i.job_id, cluster,
                         ReasonText(i)));
      pending.push_back(i);
      continue;
    }
    // Deployed: follow the cluster's reports.
    auto rep = in.reports.find(i.cluster_id);
    if (rep == in.reports.end()) continue;
    if (const Json* job = FindJob(rep->second.jobs, i.job_id)) {
      mem.missing.erase(i.job_id);
      std::string node = job->value("node_id", i.node_id);
      std::string addr = job->value("address", i.address);
      InstanceState state = ReportedState(*job, i.state);
      if (node != i.node_id || addr != i.address || state != i.state) {
        std::string log =
            node != i.node_id ? fmt::format("Instance moved job={} node={}", i.job_id, node) : "";
        i.node_id = node;
        i.address = addr;
        i.state = state;
        put(i, std::move(log));
      }
      continue;
    }
    auto& m = mem.missing[i.job_id];
    if (rep->second.seq > m.last_seq && rep->second.seq > mem.baseline[i.job_id]) {
      m.last_seq = rep->second.seq;
      ++m.count;
    }
    if (m.count >= opts.missing_reports_for_lost) {
      std::string cluster = i.cluster_id;
      mem.missing.erase(i.job_id);
      ToPending(i, "", fmt::format("rescheduling: cluster {} no longer runs it", cluster));
      placed_in.erase(i.job_id);
      put(i, fmt::format("Instance lost job={} cluster={}", i.job_id, cluster));
      pending.push_back(i);
    }
  }

  // Missing replicas of deployed services.
  for (const auto& s : in.services) {
    if (!s.deployed) continue;
    for (int64_t r = 0; r < s.replicas; ++r) {
      if (present[s.id].count(r)) continue;
      core::ServiceInstance i;
      i.job_id = fmt::format("{}-r{}", s.id, r);
      i.service_id = s.id;
      i.replica = r;
      i.created_at = now;
      put(i);
      pending.push_back(i);
    }
  }

  // Place pending instances.
  if (!pending.empty()) {
    std::vector<InstanceLoad> loads;
    for (const auto& [job, r] : rows) {
      if (r.cluster_id.empty() || r.state == InstanceState::kRemoving) continue;
      auto sit = svc.find(r.service_id);
      if (sit == svc.end()) continue;
      loads.push_back({r.cluster_id, r.node_id, sit->second->spec.value("cpu_millis", int64_t{0}),
                       sit->second->spec.value("memory_mib", int64_t{0})});
    }
    for (auto& i : pending) {
      auto nt = mem.next_try.find(i.job_id);
      if (nt != mem.next_try.end() && nt->second > now) continue;
      const core::Service* s = svc[i.service_id];
      Demand d;
      d.cpu_millis = s->spec.value("cpu_millis", int64_t{0});
      d.memory_mib = s->spec.value("memory_mib", int64_t{0});
      if (s->spec.contains("cluster_id") && s->spec["cluster_id"].is_string()) {
        d.cluster_id = s->spec["cluster_id"].get<std::string>();
      }
      auto chosen = picker.Pick(d, Candidates(in.clusters, loads));
      mem.next_try[i.job_id] = now + opts.pending_retry;
      if (!chosen) {
        std::string code, reason;
        auto cit = d.cluster_id ? cl.find(*d.cluster_id) : cl.end();
        if (d.cluster_id && cit == cl.end()) {
          reason = fmt::format("cluster {} not found", *d.cluster_id);
        } else if (d.cluster_id && cit->second->state != core::ClusterState::kActive) {
          reason = fmt::format("cluster {} is {}", *d.cluster_id,
                               core::ClusterStateName(cit->second->state));
        } else {
          code = std::string(core::kReasonNoWorkerCapacity);
          reason = fmt::format("no {}node has {} cpu_millis and {} MiB free",
                               d.cluster_id ? "" : "ACTIVE cluster's ", d.cpu_millis, d.memory_mib);
        }
        if (i.reason != reason || i.reason_code != code || i.state != InstanceState::kPending) {
          i.state = InstanceState::kPending;
          i.reason_code = code;
          i.reason = reason;
          put(i, fmt::format("Instance pending job={} reason_code={} reason={}", i.job_id, code,
                             reason));
        }
        continue;
      }
      // The row first (a crash after it finds "command lost" and retries; a crash after the
      // command finds the job in the cluster's report and adopts it).
      i.cluster_id = *chosen;
      i.state = InstanceState::kScheduled;
      i.reason_code.clear();
      i.reason.clear();
      i.command_id.clear();
      i.updated_at = now;
      rows[i.job_id] = i;
      SchedulerAction a = Act(Kind::kDeploy, i);
      a.args = DeployArgs(*s, i);
      out.push_back(std::move(a));
      placed_in[i.job_id] = *chosen;
      loads.push_back({*chosen, "", d.cpu_millis, d.memory_mib});
    }
  }

  // Orphans: jobs a cluster runs that no row places there.
  for (const auto& [cid, r] : in.reports) {
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
      bool pending_row =
          std::any_of(pending.begin(), pending.end(), [&](const core::ServiceInstance& x) {
            return x.job_id == job_id && x.cluster_id.empty();
          });
      if (pending_row) continue;
      std::string key = cid + "/" + job_id;
      auto sent = mem.orphan_sent.find(key);
      if (sent != mem.orphan_sent.end() && now - sent->second < opts.orphan_retry) continue;
      mem.orphan_sent[key] = now;
      SchedulerAction a;
      a.kind = Kind::kUndeployOrphan;
      a.cluster_id = cid;
      a.job_id = job_id;
      out.push_back(std::move(a));
    }
  }
  return out;
}

}  // namespace canopy::scheduler
