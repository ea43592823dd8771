#include "control/services.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/ids.h"

namespace canopy::control {
namespace {

Error NotFoundAs(Error e, const char* message) {
  if (e.code == ErrorCode::kNotFound) return Error::NotFound(message);
  return e;
}

}  // namespace

Services::Services(store::Store& store, ClockPtr clock, IdGeneratorPtr ids, ServiceBoard& board,
                   const auth::SecretBox* secrets)
    : store_(store),
      clock_(std::move(clock)),
      ids_(std::move(ids)),
      board_(board),
      secrets_(secrets) {}

Result<std::map<std::string, std::string>> Services::NodeWorkers() {
  std::map<std::string, std::string> out;
  CANOPY_ASSIGN_OR_RETURN(auto workers, store_.workers().List());
  for (const auto& w : workers) {
    if (!w.node_id.empty()) out[w.node_id] = w.id;
  }
  return out;
}

Result<ServiceView> Services::View(core::Service s) {
  ServiceView v;
  CANOPY_ASSIGN_OR_RETURN(v.instances, store_.services().ListInstances(s.id));
  CANOPY_ASSIGN_OR_RETURN(v.node_workers, NodeWorkers());
  v.service = std::move(s);
  return v;
}

Status Services::CheckCluster(const Json& spec) {
  if (!spec["cluster_id"].is_string()) return OkStatus();
  auto c = store_.clusters().Get(spec["cluster_id"].get<std::string>());
  if (!c && c.error().code == ErrorCode::kNotFound) {
    return Error::InvalidArgument(fmt::format("field 'cluster_id': cluster '{}' not found",
                                              spec["cluster_id"].get<std::string>()));
  }
  return c ? OkStatus() : Status(std::move(c).error());
}

Result<core::Service> Services::NewService(const ServiceRequest& r, const std::string& user_id) {
  core::Service s;
  s.id = ids_->NewId("svc");
  s.name = r.name;
  s.spec = r.spec;
  if (s.spec.contains("secret_env")) {
    if (secrets_ == nullptr) return Error::NotSupported("this root cannot seal secret values");
    Json keys = Json::array();
    for (const auto& [k, v] : s.spec["secret_env"].items()) keys.push_back(k);
    CANOPY_ASSIGN_OR_RETURN(std::string sealed,
                            secrets_->Seal(SecretString(DumpJson(s.spec["secret_env"])), s.id));
    s.spec.erase("secret_env");
    s.spec["secret_env_sealed"] = Base64Encode(sealed);
    s.spec["secret_env_keys"] = keys;
  }
  s.replicas = r.replicas;
  s.created_by = user_id;
  s.created_at = s.updated_at = clock_->Now();
  return s;
}

Result<ServiceView> Services::Create(const ServiceRequest& r, const std::string& user_id) {
  CANOPY_TRY(CheckCluster(r.spec));
  CANOPY_ASSIGN_OR_RETURN(core::Service s, NewService(r, user_id));
  CANOPY_TRY(store_.services().Create(s));
  SPDLOG_INFO("Created service service={} name={} by={}", s.id, s.name, user_id);
  return View(std::move(s));
}

Result<std::vector<ServiceView>> Services::Import(const std::vector<ServiceRequest>& requests,
                                                  const std::string& user_id) {
  std::vector<core::Service> made;
  for (const auto& r : requests) {
    CANOPY_TRY(CheckCluster(r.spec));
    CANOPY_ASSIGN_OR_RETURN(core::Service s, NewService(r, user_id));
    made.push_back(std::move(s));
  }
  CANOPY_TRY(store_.Transaction([&](store::Store& tx) -> Status {
    for (const auto& s : made) CANOPY_TRY(tx.services().Create(s));
    return OkStatus();
  }));
  std::vector<ServiceView> out;
  for (auto& s : made) {
    SPDLOG_INFO("Imported service service={} name={} by={}", s.id, s.name, user_id);
    CANOPY_ASSIGN_OR_RETURN(ServiceView v, View(std::move(s)));
    out.push_back(std::move(v));
  }
  return out;
}

Result<std::vector<ServiceView>> Services::List() {
  CANOPY_ASSIGN_OR_RETURN(auto all, store_.services().List());
  CANOPY_ASSIGN_OR_RETURN(auto instances, store_.services().ListInstances(""));
  CANOPY_ASSIGN_OR_RETURN(auto nw, NodeWorkers());
  std::map<std::string, std::vector<core::ServiceInstance>> by;
  for (auto& i : instances) by[i.service_id].push_back(std::move(i));
  std::vector<ServiceView> out;
  for (auto& s : all) {
    std::string id = s.id;
    out.push_back(ServiceView{std::move(s), std::move(by[id]), nw});
  }
  return out;
}

Result<ServiceView> Services::Get(const std::string& id) {
  auto s = store_.services().Get(id);
  if (!s) return NotFoundAs(std::move(s).error(), "service not found");
  return View(std::move(*s));
}

// Applies `f` to the service row with compare-and-swap (retried on a concurrent write) and
// rings the scheduler.
Result<ServiceView> Services::Change(const std::string& id,
                                     const std::function<void(core::Service&)>& f,
                                     const char* what) {
  for (int attempt = 0;; ++attempt) {
    auto got = store_.services().Get(id);
    if (!got) return NotFoundAs(std::move(got).error(), "service not found");
    core::Service s = std::move(*got);
    f(s);
    s.updated_at = clock_->Now();
    auto st = store_.services().Update(s);
    if (!st && st.error().code == ErrorCode::kConflict && attempt < 5) continue;
    CANOPY_TRY(st);
    ++s.version;
    SPDLOG_INFO("Service {} service={} replicas={} deployed={}", what, s.id, s.replicas,
                s.deployed);
    board_.Wake();
    return View(std::move(s));
  }
}

Result<ServiceView> Services::Deploy(const std::string& id, std::optional<int64_t> replicas) {
  return Change(
      id,
      [&](core::Service& s) {
        s.deployed = true;
        if (replicas) s.replicas = *replicas;
      },
      "deploy");
}

Result<ServiceView> Services::Undeploy(const std::string& id) {
  return Change(
      id, [](core::Service& s) { s.deployed = false; }, "undeploy");
}

Result<ServiceView> Services::Scale(const std::string& id, int64_t replicas) {
  return Change(
      id, [&](core::Service& s) { s.replicas = replicas; }, "scale");
}

Status Services::Delete(const std::string& id, const std::string& user_id) {
  auto s = store_.services().Get(id);
  if (!s) return NotFoundAs(std::move(s).error(), "service not found");
  if (s->deployed) return Error::Conflict("service is deployed; undeploy it first");
  auto st = store_.services().Delete(s->id);
  if (!st) {
    if (st.error().code == ErrorCode::kFailedPrecondition) {
      return Error::Conflict("service still has instances being removed; try again shortly");
    }
    return NotFoundAs(std::move(st).error(), "service not found");
  }
  SPDLOG_INFO("Deleted service service={} by={}", s->id, user_id);
  board_.Wake();
  return OkStatus();
}

}  // namespace canopy::control
