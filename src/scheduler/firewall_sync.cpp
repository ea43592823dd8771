#include "scheduler/firewall_sync.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "providers/wire.h"
#include "store/row_mutations.h"

namespace canopy::scheduler {
namespace {

bool HasInstance(const core::Worker& w) {
  return !w.handle.is_null() && w.state != core::WorkerState::kTerminated &&
         w.state != core::WorkerState::kStopped;
}

std::string FirewallCanopyId(const std::string& cluster_id, const std::string& service_id) {
  return cluster_id + "-svc-" + service_id;
}

}  // namespace

std::map<std::string, std::set<std::string>> DesiredServiceFirewalls(
    const std::string& cluster_id, const std::vector<core::Worker>& workers,
    const std::vector<core::ServiceInstance>& instances,
    const std::vector<core::Service>& services) {
  std::set<std::string> with_ports;
  for (const auto& s : services) {
    if (s.spec.contains("ports") && s.spec["ports"].is_array() && !s.spec["ports"].empty()) {
      with_ports.insert(s.id);
    }
  }
  std::map<std::string, std::set<std::string>> out;
  for (const auto& w : workers) {
    if (w.cluster_id != cluster_id) continue;
    auto& set = out[w.id];
    if (w.node_id.empty()) continue;
    for (const auto& i : instances) {
      if (i.cluster_id != cluster_id || i.node_id != w.node_id) continue;
      if (!core::IsOnNode(i.state)) continue;
      if (with_ports.count(i.service_id)) set.insert(i.service_id);
    }
  }
  return out;
}

FirewallPlan PlanFirewalls(const FirewallPlanInput& in) {
  FirewallPlan plan;
  std::set<std::string> needed;
  for (const auto& [w, set] : in.desired) needed.insert(set.begin(), set.end());
  for (const auto& sid : needed) {
    if (!in.known.count(sid)) plan.create.push_back(sid);
  }
  std::set<std::string> managed;
  for (const auto& [sid, fw] : in.known) managed.insert(fw);
  std::set<std::string> still_attached;
  for (const auto& [wid, have] : in.attached) {
    std::set<std::string> want;
    auto d = in.desired.find(wid);
    if (d != in.desired.end()) {
      for (const auto& sid : d->second) {
        auto fw = in.known.find(sid);
        if (fw != in.known.end()) want.insert(fw->second);
      }
    }
    std::set<std::string> after = have;
    for (const auto& fw : want) {
      if (!have.count(fw)) {
        plan.attach.emplace_back(wid, fw);
        after.insert(fw);
      }
    }
    for (const auto& fw : have) {
      if (managed.count(fw) && !want.count(fw)) {
        plan.detach.emplace_back(wid, fw);
        after.erase(fw);
      }
    }
    still_attached.insert(after.begin(), after.end());
  }
  for (const auto& [sid, fw] : in.known) {
    if (!needed.count(sid) && !still_attached.count(fw)) plan.remove.push_back(sid);
  }
  return plan;
}

FirewallSync::FirewallSync(store::Store& store, ClockPtr clock, control::CloudAccess& clouds,
                           FirewallSyncOptions opts)
    : store_(store), clock_(std::move(clock)), clouds_(clouds), opts_(opts) {}

FirewallSync::~FirewallSync() { Stop(); }

void FirewallSync::Start() {
  thread_ = std::thread([this] {
    while (true) {
      auto r = RunOnce();
      if (!r) SPDLOG_WARN("Firewall sync pass failed error={}", r.error().ToString());
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait_for(l, opts_.interval, [this] { return triggered_ || stop_; });
      triggered_ = false;
      if (stop_) return;
    }
  });
}

void FirewallSync::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void FirewallSync::Trigger() {
  {
    std::lock_guard<std::mutex> l(mu_);
    triggered_ = true;
  }
  cv_.notify_all();
}

Result<int> FirewallSync::RunOnce() {
  CANOPY_ASSIGN_OR_RETURN(auto clusters, store_.clusters().List());
  CANOPY_ASSIGN_OR_RETURN(auto workers, store_.workers().List());
  CANOPY_ASSIGN_OR_RETURN(auto instances, store_.services().ListInstances(""));
  CANOPY_ASSIGN_OR_RETURN(auto services, store_.services().List());
  int calls = 0;
  for (const auto& c : clusters) {
    // Until the cluster's identity step ran, nothing may change its firewalls.
    if (c.kind != core::ClusterKind::kCloud || c.state == core::ClusterState::kDeleting ||
        !c.credential_id || c.cloud.identity == core::IdentityState::kUnknown) {
      continue;
    }
    auto r = SyncCluster(c, workers, instances, services);
    if (!r) {
      SPDLOG_WARN("Firewall sync of cluster failed cluster={} error={}", c.id,
                  r.error().ToString());
      continue;
    }
    calls += *r;
  }
  return calls;
}

Result<int> FirewallSync::SyncCluster(const core::Cluster& cluster,
                                      const std::vector<core::Worker>& workers,
                                      const std::vector<core::ServiceInstance>& instances,
                                      const std::vector<core::Service>& services) {
  FirewallPlanInput in;
  in.desired = DesiredServiceFirewalls(cluster.id, workers, instances, services);
  in.known = cluster.cloud.service_firewalls;
  bool needed = false;
  for (const auto& [w, set] : in.desired) needed = needed || !set.empty();
  if (!needed && in.known.empty()) return 0;

  CANOPY_ASSIGN_OR_RETURN(control::OpenedProvider opened, clouds_.Open(*cluster.credential_id));
  providers::Provider& p = *opened.provider;
  providers::CallContext full = opened.Context(cluster.region.value_or(""));
  CANOPY_ASSIGN_OR_RETURN(providers::CallContext limited, clouds_.IdentityContext(cluster, full));
  std::map<std::string, const core::Service*> svc;
  for (const auto& s : services) svc[s.id] = &s;
  auto save_known = [&](const std::string& sid, const std::string* fw) -> Status {
    auto r = store::MutateCluster(store_, *clock_, cluster.id, [&](core::Cluster& row) {
      if (fw != nullptr) {
        row.cloud.service_firewalls[sid] = *fw;
      } else {
        row.cloud.service_firewalls.erase(sid);
      }
      return OkStatus();
    });
    return r ? OkStatus() : Status(r.error());
  };

  // What each worker's instance carries: read back from the provider every `resync`.
  std::map<std::string, providers::ProviderHandle> handles;
  const TimePoint now = clock_->Now();
  for (const auto& w : workers) {
    if (w.cluster_id != cluster.id) continue;
    const std::string key = w.InstanceCanopyId();
    if (!HasInstance(w)) {
      read_at_.erase(key);  // read again when it is back
      continue;
    }
    CANOPY_ASSIGN_OR_RETURN(providers::ProviderHandle h, providers::wire::HandleFromJson(w.handle));
    auto read = read_at_.find(key);
    if (read == read_at_.end() || now - read->second >= opts_.resync) {
      auto inst = p.DescribeInstance(full, h);
      if (!inst) {
        if (inst.error().code == ErrorCode::kNotFound) continue;
        return inst.error();
      }
      attached_[key] = std::set<std::string>(inst->firewalls.begin(), inst->firewalls.end());
      read_at_[key] = now;
    }
    handles[w.id] = h;
    in.attached[w.id] = attached_[key];
  }
  std::map<std::string, std::string> key_of;  // worker id -> instance canopy id
  for (const auto& w : workers) key_of[w.id] = w.InstanceCanopyId();

  int calls = 0;
  FirewallPlan plan = PlanFirewalls(in);
  // 1. A firewall for every service that needs one (idempotent by canopy id), id saved at once.
  for (const auto& sid : plan.create) {
    const core::Service* s = svc[sid];
    providers::FirewallSpec spec;
    spec.canopy_id = FirewallCanopyId(cluster.id, sid);
    spec.name = "canopy-svc-" + s->name;
    spec.tags = {{providers::kClusterTag, cluster.id}};
    for (const auto& port : s->spec["ports"]) {
      providers::FirewallRule rule;
      rule.port = static_cast<uint16_t>(port.value("port", 0));
      rule.protocol = port.value("protocol", "tcp");
      for (const auto& cidr : port.value("source_cidrs", Json::array()))
        rule.source_cidrs.push_back(cidr);
      spec.rules.push_back(rule);
    }
    CANOPY_ASSIGN_OR_RETURN(providers::Firewall fw, p.CreateFirewall(limited, spec));
    ++calls;
    CANOPY_TRY(save_known(sid, &fw.id));
    in.known[sid] = fw.id;
    SPDLOG_INFO("Service firewall ready cluster={} service={} firewall={}", cluster.id, sid, fw.id);
  }
  if (!plan.create.empty()) plan = PlanFirewalls(in);

  // 2. Each worker's instance: attach what it needs, detach the managed ones it does not.
  for (const auto& [wid, fw] : plan.attach) {
    CANOPY_TRY(p.AttachFirewall(limited, handles[wid], fw));
    ++calls;
    attached_[key_of[wid]].insert(fw);
    SPDLOG_INFO("Firewall attached cluster={} worker={} firewall={}", cluster.id, wid, fw);
  }
  for (const auto& [wid, fw] : plan.detach) {
    auto st = p.DetachFirewall(limited, handles[wid], fw);
    if (!st && st.error().code != ErrorCode::kNotFound) return st.error();
    ++calls;
    attached_[key_of[wid]].erase(fw);
    SPDLOG_INFO("Firewall detached cluster={} worker={} firewall={}", cluster.id, wid, fw);
  }
  // 3. Firewalls of services with no instance left in this cluster, attached nowhere: deleted.
  for (const auto& sid : plan.remove) {
    const std::string fw = in.known[sid];
    CANOPY_TRY(p.DeleteFirewall(limited, fw));
    ++calls;
    CANOPY_TRY(save_known(sid, nullptr));
    SPDLOG_INFO("Service firewall deleted cluster={} service={} firewall={}", cluster.id, sid, fw);
  }
  return calls;
}

}  // namespace canopy::scheduler
