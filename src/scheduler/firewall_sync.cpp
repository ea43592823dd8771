#include "scheduler/firewall_sync.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/clusters.h"
#include "api/provider_access.h"
#include "common/ids.h"
#include "providers/wire.h"

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
    const std::vector<core::ServiceInstance>& instances, const std::vector<core::Service>& services) {
  std::set<std::string> with_ports;
  for (const auto& s : services) {
    if (s.spec.contains("ports") && s.spec["ports"].is_array() && !s.spec["ports"].empty()) with_ports.insert(s.id);
  }
  std::map<std::string, std::set<std::string>> out;
  for (const auto& w : workers) {
    if (w.cluster_id != cluster_id) continue;
    auto& set = out[w.id];
    if (w.node_id.empty()) continue;
    for (const auto& i : instances) {
      if (i.cluster_id != cluster_id || i.node_id != w.node_id) continue;
      if (i.state == "pending" || i.state == "removing" || i.state == "scheduled") continue;
      if (with_ports.count(i.service_id)) set.insert(i.service_id);
    }
  }
  return out;
}

FirewallSync::FirewallSync(const api::ApiDeps& deps, FirewallSyncOptions opts) : deps_(deps), opts_(opts) {}

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
  CANOPY_ASSIGN_OR_RETURN(auto clusters, deps_.store->clusters().List());
  CANOPY_ASSIGN_OR_RETURN(auto workers, deps_.store->workers().List());
  CANOPY_ASSIGN_OR_RETURN(auto instances, deps_.store->services().ListInstances(""));
  CANOPY_ASSIGN_OR_RETURN(auto services, deps_.store->services().List());
  int calls = 0;
  for (const auto& c : clusters) {
    if (c.kind != core::ClusterKind::kCloud || c.state == core::ClusterState::kDeleting ||
        !c.credential_id || !c.cloud.contains("identity_id")) {
      continue;
    }
    auto r = SyncCluster(c, workers, instances, services);
    if (!r) {
      SPDLOG_WARN("Firewall sync of cluster failed cluster={} error={}", c.id, r.error().ToString());
      continue;
    }
    calls += *r;
  }
  return calls;
}

Result<int> FirewallSync::SyncCluster(const core::Cluster& cluster, const std::vector<core::Worker>& workers,
                                      const std::vector<core::ServiceInstance>& instances,
                                      const std::vector<core::Service>& services) {
  auto desired = DesiredServiceFirewalls(cluster.id, workers, instances, services);
  Json known = cluster.cloud.value("service_firewalls", Json::object());
  std::set<std::string> needed;
  for (const auto& [w, set] : desired) needed.insert(set.begin(), set.end());
  if (needed.empty() && known.empty()) return 0;

  CANOPY_ASSIGN_OR_RETURN(api::OpenedProvider opened, api::OpenProviderForCredential(deps_, *cluster.credential_id));
  providers::Provider& p = *opened.provider;
  providers::CallContext full = opened.Context(cluster.region.value_or(""));
  providers::CallContext limited = full;
  if (cluster.cloud.contains("identity_sealed") && cluster.cloud["identity_sealed"].is_string()) {
    std::string sealed;
    if (!Base64Decode(cluster.cloud["identity_sealed"].get<std::string>(), &sealed)) {
      return Error::Internal("stored cluster identity is corrupt");
    }
    CANOPY_ASSIGN_OR_RETURN(SecretString plain, deps_.secrets->Open(sealed, cluster.id + "/identity"));
    CANOPY_ASSIGN_OR_RETURN(Json cred, ParseJsonObject(plain.Reveal()));
    limited.credential = providers::CredentialSecret(std::move(cred));
  }
  int calls = 0;
  std::map<std::string, const core::Service*> svc;
  for (const auto& s : services) svc[s.id] = &s;

  // 1. A firewall for every service that needs one (idempotent by canopy id), id saved at once.
  for (const auto& sid : needed) {
    if (known.contains(sid)) continue;
    const core::Service* s = svc[sid];
    providers::FirewallSpec spec;
    spec.canopy_id = FirewallCanopyId(cluster.id, sid);
    spec.name = "canopy-svc-" + s->name;
    spec.tags = {{providers::kClusterTag, cluster.id}};
    for (const auto& port : s->spec["ports"]) {
      providers::FirewallRule rule;
      rule.port = static_cast<uint16_t>(port.value("port", 0));
      rule.protocol = port.value("protocol", "tcp");
      for (const auto& cidr : port.value("source_cidrs", Json::array())) rule.source_cidrs.push_back(cidr);
      spec.rules.push_back(rule);
    }
    CANOPY_ASSIGN_OR_RETURN(providers::Firewall fw, p.CreateFirewall(limited, spec));
    ++calls;
    CANOPY_TRY(api::MutateCluster(*deps_.store, *deps_.clock, cluster.id, [&](core::Cluster& row) {
      Json sf = row.cloud.value("service_firewalls", Json::object());
      sf[sid] = fw.id;
      row.cloud["service_firewalls"] = sf;
      return OkStatus();
    }));
    known[sid] = fw.id;
    SPDLOG_INFO("Service firewall ready cluster={} service={} firewall={}", cluster.id, sid, fw.id);
  }
  std::set<std::string> managed;
  for (const auto& [sid, fw] : known.items()) {
    if (fw.is_string()) managed.insert(fw.get<std::string>());
  }

  // 2. Each worker's instance: attach what it needs, detach the managed ones it does not.
  const TimePoint now = deps_.clock->Now();
  std::set<std::string> still_attached;
  for (const auto& w : workers) {
    if (w.cluster_id != cluster.id) continue;
    if (!HasInstance(w)) {
      read_at_.erase(w.InstanceCanopyId());  // read again when it is back
      continue;
    }
    CANOPY_ASSIGN_OR_RETURN(providers::ProviderHandle h, providers::wire::HandleFromJson(w.handle));
    const std::string key = w.InstanceCanopyId();
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
    auto& have = attached_[key];
    std::set<std::string> want;
    for (const auto& sid : desired[w.id]) want.insert(known[sid].get<std::string>());
    for (const auto& fw : want) {
      if (have.count(fw)) continue;
      CANOPY_TRY(p.AttachFirewall(limited, h, fw));
      ++calls;
      have.insert(fw);
      SPDLOG_INFO("Firewall attached cluster={} worker={} firewall={}", cluster.id, w.id, fw);
    }
    for (const auto& fw : std::set<std::string>(have)) {
      if (!managed.count(fw) || want.count(fw)) continue;
      auto st = p.DetachFirewall(limited, h, fw);
      if (!st && st.error().code != ErrorCode::kNotFound) return st.error();
      ++calls;
      have.erase(fw);
      SPDLOG_INFO("Firewall detached cluster={} worker={} firewall={}", cluster.id, w.id, fw);
    }
    still_attached.insert(have.begin(), have.end());
  }

  // 3. Firewalls of services with no instance left in this cluster, attached nowhere: deleted.
  const Json snapshot = known;
  for (const auto& [sid, fw] : snapshot.items()) {
    if (needed.count(sid) || !fw.is_string() || still_attached.count(fw.get<std::string>())) continue;
    CANOPY_TRY(p.DeleteFirewall(limited, fw.get<std::string>()));
    ++calls;
    CANOPY_TRY(api::MutateCluster(*deps_.store, *deps_.clock, cluster.id, [&](core::Cluster& row) {
      Json sf = row.cloud.value("service_firewalls", Json::object());
      sf.erase(sid);
      row.cloud["service_firewalls"] = sf;
      return OkStatus();
    }));
    SPDLOG_INFO("Service firewall deleted cluster={} service={} firewall={}", cluster.id, sid, fw.get<std::string>());
  }
  return calls;
}

}  // namespace canopy::scheduler
