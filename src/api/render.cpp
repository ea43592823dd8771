#include "api/render.h"

#include "common/clock.h"

namespace canopy::api {
namespace {

template <class T>
Json Opt(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}

Json Text(const std::string& s) { return s.empty() ? Json(nullptr) : Json(s); }

Json When(const std::optional<TimePoint>& t) { return t ? Json(FormatRfc3339(*t)) : Json(nullptr); }

Json NodeToJson(const core::ClusterNodeInfo& n) {
  return {{"id", n.id},
          {"address", n.address},
          {"state", core::NodeStateName(n.state)},
          {"resources",
           {{"cpu_millis", n.cpu_millis},
            {"memory_mib", n.memory_mib},
            {"memory_available_mib", n.memory_available_mib},
            {"load1", n.load1}}},
          {"draining", n.draining},
          {"system", core::NodeSystemToJson(n.system)},
          {"last_seen", When(n.last_seen)}};
}

}  // namespace

Json ClusterToJson(const core::Cluster& c) {
  Json nodes = Json::array();
  for (const auto& n : c.nodes) nodes.push_back(NodeToJson(n));
  return {{"id", c.id},
          {"name", c.name},
          {"kind", core::ClusterKindName(c.kind)},
          {"state", core::ClusterStateName(c.state)},
          {"credential_id", Opt(c.credential_id)},
          {"provider", Opt(c.provider)},
          {"region", Opt(c.region)},
          {"instance_type", Opt(c.instance_type)},
          {"image", Opt(c.image)},
          {"disk_gb", Opt(c.disk_gb)},
          {"url", c.cluster_url},
          {"software_version", c.software_version},
          {"link_interval_seconds", c.link_interval_seconds},
          {"last_seen", When(c.last_seen)},
          {"paired_at", When(c.paired_at)},
          {"node_count", c.nodes.size()},
          {"nodes", nodes},
          {"resources", c.resources},
          {"address", Text(c.cloud.address)},
          {"provider_id", Text(c.cloud.provider_id)},
          {"operation_id", Text(c.cloud.operation_id)},
          {"created_at", FormatRfc3339(c.created_at)},
          {"updated_at", FormatRfc3339(c.updated_at)}};
}

Json WorkerToJson(const core::Worker& w, const std::map<std::string, core::NodeSystem>& systems) {
  auto sys = w.node_id.empty() ? systems.end() : systems.find(w.node_id);
  return {{"id", w.id},
          {"cluster_id", w.cluster_id},
          {"name", w.name},
          {"state", core::WorkerStateName(w.state)},
          {"instance_type", w.instance_type},
          {"image", w.image},
          {"disk_gb", w.disk_gb},
          {"generation", w.generation},
          {"address", Text(w.address)},
          {"provider_id", Text(w.provider_id)},
          {"node_id", Text(w.node_id)},
          {"system", sys != systems.end() ? core::NodeSystemToJson(sys->second) : Json(nullptr)},
          {"last_error", Text(w.last_error)},
          {"operation_id", Text(w.operation_id)},
          {"created_at", FormatRfc3339(w.created_at)},
          {"updated_at", FormatRfc3339(w.updated_at)}};
}

Json ServiceToJson(const control::ServiceView& v) {
  const core::Service& s = v.service;
  Json arr = Json::array();
  for (const auto& i : v.instances) {
    auto w = v.node_workers.find(i.node_id);
    arr.push_back({{"job_id", i.job_id},
                   {"replica", i.replica},
                   {"cluster_id", Text(i.cluster_id)},
                   {"node_id", Text(i.node_id)},
                   {"worker_id", w != v.node_workers.end() ? Json(w->second) : Json(nullptr)},
                   {"address", Text(i.address)},
                   {"state", core::InstanceStateName(i.state)},
                   {"reason", Text(control::InstanceReasonText(i))},
                   {"reason_code", Text(i.reason_code)},
                   {"updated_at", FormatRfc3339(i.updated_at)}});
  }
  std::string reason;
  std::string state = control::ServiceState(s, v.instances, &reason);
  return {{"id", s.id},
          {"name", s.name},
          {"command", s.spec.value("command", Json::array())},
          {"env", s.spec.value("env", Json::object())},
          {"secret_env", s.spec.value("secret_env_keys", Json::array())},  // names only
          {"ports", s.spec.value("ports", Json::array())},
          {"cpu_millis", s.spec.value("cpu_millis", int64_t{0})},
          {"memory_mib", s.spec.value("memory_mib", int64_t{0})},
          {"restart", s.spec.value("restart", "on-failure")},
          {"cluster_id", s.spec.value("cluster_id", Json(nullptr))},
          {"replicas", s.replicas},
          {"deployed", s.deployed},
          {"state", state},
          {"reason", Text(reason)},
          {"instances", arr},
          {"created_by", s.created_by},
          {"created_at", FormatRfc3339(s.created_at)},
          {"updated_at", FormatRfc3339(s.updated_at)}};
}

}  // namespace canopy::api
