// Broker routes: create/delete cloud clusters, add workers, worker actions. Each handler checks
// the request (against the provider's live offers for creates, against the contract's transition
// table for actions), writes the desired state and its operation in one transaction and answers
// 202 with the operation id; src/broker runs the operations.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "api/clusters.h"
#include "api/detail/context.h"
#include "api/provider_access.h"

namespace canopy::api {

Json WorkerToJson(const core::Worker& w) {
  auto text = [](const std::string& s) { return s.empty() ? Json(nullptr) : Json(s); };
  return {{"id", w.id},
          {"cluster_id", w.cluster_id},
          {"name", w.name},
          {"state", core::WorkerStateName(w.state)},
          {"instance_type", w.instance_type},
          {"image", w.image},
          {"disk_gb", w.disk_gb},
          {"generation", w.generation},
          {"address", text(w.address)},
          {"provider_id", text(w.provider_id)},
          {"node_id", text(w.node_id)},
          {"last_error", text(w.last_error)},
          {"operation_id", text(w.operation_id)},
          {"created_at", detail::Iso(w.created_at)},
          {"updated_at", detail::Iso(w.updated_at)}};
}

Result<WorkerBatch> EnqueueWorkers(const ApiDeps& deps, store::Store& tx, const core::Cluster& c,
                                   int64_t count, const std::string& instance_type,
                                   const std::string& image, int64_t disk_gb,
                                   const std::string& parent) {
  CANOPY_ASSIGN_OR_RETURN(auto existing, tx.workers().ListByCluster(c.id));
  std::set<std::string> names;
  for (const auto& w : existing) names.insert(w.name);
  WorkerBatch batch;
  TimePoint now = deps.clock->Now();
  Json ids = Json::array();
  int64_t k = 1;
  for (int64_t i = 0; i < count; ++i) {
    core::Worker w;
    w.id = deps.ids->NewId("wrk");
    while (names.count(fmt::format("{}-w{}", c.name, k)) != 0) ++k;
    w.name = fmt::format("{}-w{}", c.name, k);
    names.insert(w.name);
    w.cluster_id = c.id;
    w.state = core::WorkerState::kBooting;
    w.instance_type = instance_type;
    w.image = image;
    w.disk_gb = disk_gb;
    w.created_at = w.updated_at = now;
    ids.push_back(w.id);
    batch.workers.push_back(std::move(w));
  }
  Json data{{"cluster_id", c.id}, {"worker_ids", ids}, {"action", "add"}};
  if (!parent.empty()) data["parent"] = parent;
  CANOPY_ASSIGN_OR_RETURN(batch.operation,
                          deps.engine->Enqueue(tx, kOpWorkersProvision, c.id, std::move(data)));
  for (auto& w : batch.workers) {
    w.operation_id = batch.operation.id;
    CANOPY_TRY(tx.workers().Create(w));
  }
  return batch;
}

namespace detail {
namespace {

constexpr int64_t kMaxWorkersPerCall = 100;

Result<core::Worker> LoadWorker(const ApiDeps& deps, const std::string& cluster_id,
                                const std::string& worker_id) {
  auto w = deps.store->workers().Get(worker_id);
  if (!w) return NotFoundOr(std::move(w).error(), "worker not found");
  if (w->cluster_id != cluster_id) return Error::NotFound("worker not found");
  return w;
}

struct MachineSpec {
  std::string instance_type;
  std::string image;
  int64_t disk_gb = 10;
};

// Checks region, instance type and image against what the provider offers this credential now.
Status CheckOffers(const ApiDeps& deps, const OpenedProvider& opened, const std::string& region,
                   const std::vector<MachineSpec>& specs) {
  auto offers = opened.provider->ListOffers(opened.Context(region));
  if (!offers) return ProviderCallError(opened.credential.provider, offers.error());
  (void)deps;
  if (!offers->regions.empty() &&
      std::find(offers->regions.begin(), offers->regions.end(), region) == offers->regions.end()) {
    return Error::InvalidArgument(fmt::format("region '{}' is not offered by provider '{}'", region,
                                              opened.credential.provider));
  }
  for (const auto& s : specs) {
    bool type_ok = std::any_of(offers->instance_types.begin(), offers->instance_types.end(),
                               [&](const auto& t) { return t.name == s.instance_type; });
    if (!type_ok) {
      return Error::InvalidArgument(fmt::format("instance type '{}' is not offered in region '{}'",
                                                s.instance_type, region));
    }
    bool image_ok = std::any_of(offers->images.begin(), offers->images.end(),
                                [&](const auto& i) { return i.id == s.image; });
    if (!image_ok) {
      return Error::InvalidArgument(
          fmt::format("image '{}' is not offered in region '{}'", s.image, region));
    }
  }
  return OkStatus();
}

Result<MachineSpec> ReadMachineSpec(const Json& body, const MachineSpec& defaults) {
  MachineSpec m = defaults;
  CANOPY_ASSIGN_OR_RETURN(auto type, GetOptString(body, "instance_type", 128));
  CANOPY_ASSIGN_OR_RETURN(auto image, GetOptString(body, "image", 256));
  CANOPY_ASSIGN_OR_RETURN(auto disk, GetOptInt(body, "disk_gb", 1, 65536));
  if (type) m.instance_type = *type;
  if (image) m.image = *image;
  if (disk) m.disk_gb = *disk;
  if (m.instance_type.empty()) return Error::InvalidArgument("field 'instance_type' is required");
  if (m.image.empty()) return Error::InvalidArgument("field 'image' is required");
  return m;
}

// Resolves a credential given by id (or, for convenience, by name).
Result<core::Credential> FindCredential(const ApiDeps& deps, const std::string& ref) {
  auto c = deps.store->credentials().Get(ref);
  if (c) return c;
  if (c.error().code != ErrorCode::kNotFound) return std::move(c).error();
  auto by_name = deps.store->credentials().GetByName(ref);
  if (!by_name) return NotFoundOr(std::move(by_name).error(), "credential not found");
  return by_name;
}

Result<net::Response> CreateCluster(const ApiDeps& deps, const net::Request& req,
                                    const Principal& p) {
  CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
  CANOPY_ASSIGN_OR_RETURN(std::string name, GetString(body, "name", 64));
  if (!IsValidName(name)) {
    return Error::InvalidArgument(
        "field 'name' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit");
  }
  CANOPY_ASSIGN_OR_RETURN(std::string cred_ref, GetString(body, "credential_id", 64));
  CANOPY_ASSIGN_OR_RETURN(std::string region, GetString(body, "region", 64));
  CANOPY_ASSIGN_OR_RETURN(auto provider, GetOptString(body, "provider", 32));
  CANOPY_ASSIGN_OR_RETURN(MachineSpec machine, ReadMachineSpec(body, MachineSpec{}));
  std::optional<MachineSpec> worker_spec;
  int64_t worker_count = 0;
  if (body.contains("workers") && !body["workers"].is_null()) {
    CANOPY_ASSIGN_OR_RETURN(Json w, GetObject(body, "workers"));
    CANOPY_ASSIGN_OR_RETURN(worker_count, GetInt(w, "count", 0, kMaxWorkersPerCall));
    CANOPY_ASSIGN_OR_RETURN(worker_spec, ReadMachineSpec(w, machine));
  }
  CANOPY_ASSIGN_OR_RETURN(core::Credential cred, FindCredential(deps, cred_ref));
  if (provider && *provider != cred.provider) {
    return Error::InvalidArgument(fmt::format("credential '{}' belongs to provider '{}', not '{}'",
                                              cred.name, cred.provider, *provider));
  }
  if (auto existing = deps.store->clusters().GetByName(name); existing) {
    return Error::AlreadyExists(fmt::format("cluster '{}' already exists", name));
  }
  CANOPY_ASSIGN_OR_RETURN(OpenedProvider opened, OpenProviderForCredential(deps, cred.id));
  std::vector<MachineSpec> specs{machine};
  if (worker_count > 0) specs.push_back(*worker_spec);
  CANOPY_TRY(CheckOffers(deps, opened, region, specs));

  core::Cluster c = NewClusterRow(deps, name, core::ClusterKind::kCloud,
                                  core::ClusterState::kProvisioning, p.user_id);
  c.credential_id = cred.id;
  c.provider = cred.provider;
  c.region = region;
  c.instance_type = machine.instance_type;
  c.image = machine.image;
  c.disk_gb = machine.disk_gb;
  // Credential and region stay in the operation, so the sweeper can still look for this
  // cluster's instances after its row is gone.
  Json data{{"cluster_id", c.id}, {"credential_id", cred.id}, {"region", region}};
  if (worker_count > 0) {
    data["workers"] = {{"count", worker_count},
                       {"instance_type", worker_spec->instance_type},
                       {"image", worker_spec->image},
                       {"disk_gb", worker_spec->disk_gb}};
  }
  core::Operation op;
  CANOPY_TRY(deps.store->Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(op, deps.engine->Enqueue(tx, kOpClusterCreate, c.id, data));
    c.cloud["operation_id"] = op.id;
    return tx.clusters().Create(c);
  }));
  deps.engine->Wake();
  SPDLOG_INFO("Creating cloud cluster cluster={} name={} provider={} region={} workers={} op={} by={}",
              c.id, c.name, cred.provider, region, worker_count, op.id, p.user_id);
  return JsonResponse(202, {{"cluster", ClusterToJson(c)}, {"operation_id", op.id}});
}

Result<net::Response> DeleteCluster(const ApiDeps& deps, const net::Request& req,
                                    const Principal& p) {
  CANOPY_ASSIGN_OR_RETURN(core::Cluster c, LoadCluster(deps, req.Param("id")));
  core::Operation op;
  CANOPY_TRY(deps.store->Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(c, tx.clusters().Get(c.id));
    if (c.state == core::ClusterState::kDeleting) {
      return Error::Conflict(fmt::format("cluster '{}' is already being deleted", c.name));
    }
    if (c.kind == core::ClusterKind::kCloud &&
        (c.state == core::ClusterState::kProvisioning || c.state == core::ClusterState::kInstalling ||
         c.state == core::ClusterState::kPairing)) {
      return Error::Conflict(fmt::format("cluster '{}' is {}; wait until its creation ends",
                                         c.name, core::ClusterStateName(c.state)));
    }
    CANOPY_ASSIGN_OR_RETURN(auto workers, tx.workers().ListByCluster(c.id));
    int64_t billed = 0;
    for (const auto& w : workers) billed += core::IsBilled(w.state) ? 1 : 0;
    if (billed > 0) {
      return Error::Conflict(fmt::format(
          "cluster '{}' has {} billed worker(s); terminate or delete them first", c.name, billed));
    }
    CANOPY_ASSIGN_OR_RETURN(op, deps.engine->Enqueue(tx, kOpClusterDelete, c.id,
                                                     Json{{"cluster_id", c.id}}));
    c.state = core::ClusterState::kDeleting;
    c.cloud["operation_id"] = op.id;
    c.updated_at = deps.clock->Now();
    CANOPY_TRY(tx.clusters().Update(c));
    ++c.version;
    return OkStatus();
  }));
  deps.engine->Wake();
  SPDLOG_INFO("Deleting cluster cluster={} op={} by={}", c.id, op.id, p.user_id);
  return JsonResponse(202, {{"cluster", ClusterToJson(c)}, {"operation_id", op.id}});
}

Result<net::Response> AddWorkers(const ApiDeps& deps, const net::Request& req, const Principal& p) {
  CANOPY_ASSIGN_OR_RETURN(core::Cluster c, LoadCluster(deps, req.Param("id")));
  CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
  CANOPY_ASSIGN_OR_RETURN(int64_t count, GetInt(body, "count", 1, kMaxWorkersPerCall));
  if (c.kind != core::ClusterKind::kCloud) {
    return Error::Conflict("workers are added to cloud clusters; edge nodes join with node tokens");
  }
  if (c.state != core::ClusterState::kActive) {
    return Error::Conflict(fmt::format("cluster '{}' is {}; workers are added to ACTIVE clusters",
                                       c.name, core::ClusterStateName(c.state)));
  }
  CANOPY_ASSIGN_OR_RETURN(MachineSpec m,
                          ReadMachineSpec(body, MachineSpec{c.instance_type.value_or(""),
                                                            c.image.value_or(""),
                                                            c.disk_gb.value_or(10)}));
  CANOPY_ASSIGN_OR_RETURN(OpenedProvider opened,
                          OpenProviderForCredential(deps, c.credential_id.value_or("")));
  CANOPY_TRY(CheckOffers(deps, opened, c.region.value_or(""), {m}));
  WorkerBatch batch;
  CANOPY_TRY(deps.store->Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(batch,
                            EnqueueWorkers(deps, tx, c, count, m.instance_type, m.image, m.disk_gb, ""));
    return OkStatus();
  }));
  deps.engine->Wake();
  SPDLOG_INFO("Adding workers cluster={} count={} op={} by={}", c.id, count, batch.operation.id,
              p.user_id);
  Json workers = Json::array();
  for (const auto& w : batch.workers) workers.push_back(WorkerToJson(w));
  return JsonResponse(202, {{"workers", workers}, {"operation_id", batch.operation.id}});
}

Result<net::Response> ListWorkers(const ApiDeps& deps, const net::Request& req, const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(core::Cluster c, LoadCluster(deps, req.Param("id")));
  CANOPY_ASSIGN_OR_RETURN(auto workers, deps.store->workers().ListByCluster(c.id));
  Json out = Json::array();
  for (const auto& w : workers) out.push_back(WorkerToJson(w));
  return JsonResponse(200, out);
}

Result<net::Response> GetWorker(const ApiDeps& deps, const net::Request& req, const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(core::Worker w, LoadWorker(deps, req.Param("id"), req.Param("wid")));
  return JsonResponse(200, WorkerToJson(w));
}

// One worker action: guard on the transition table, then the state and the operation together.
Result<net::Response> WorkerAction(const ApiDeps& deps, const net::Request& req, const Principal& p,
                                   const std::string& action) {
  CANOPY_ASSIGN_OR_RETURN(core::Cluster c, LoadCluster(deps, req.Param("id")));
  CANOPY_ASSIGN_OR_RETURN(core::Worker current, LoadWorker(deps, c.id, req.Param("wid")));
  if (action == "restart" || action == "recreate") {
    if (c.state == core::ClusterState::kDeleting) {
      return Error::Conflict(fmt::format("cluster '{}' is being deleted", c.name));
    }
  }
  core::Worker w;
  core::Operation op;
  CANOPY_TRY(deps.store->Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(w, tx.workers().Get(current.id));
    auto through = core::WorkerActionThrough(action, w.state);
    if (!through) {
      return Error::Conflict(fmt::format("cannot {} worker '{}': it is {}", action, w.name,
                                         core::WorkerStateName(w.state)));
    }
    Json data{{"cluster_id", c.id}, {"worker_ids", Json::array({w.id})}, {"worker_id", w.id},
              {"action", action}};
    if (action == "recreate") {
      // A new instance under a new canopy id; the old one (a FAILED worker keeps its VM) is
      // terminated by the operation before the new one is made.
      if (!w.handle.is_null()) data["old_handles"] = Json{{w.id, w.handle}};
      w.handle = nullptr;
      w.provider_id.clear();
      w.address.clear();
      w.node_id.clear();
      ++w.generation;
    }
    const char* kind = (action == "restart" || action == "recreate") ? kOpWorkersProvision
                                                                      : kOpWorkerShutdown;
    CANOPY_ASSIGN_OR_RETURN(op, deps.engine->Enqueue(tx, kind, w.id, std::move(data)));
    w.state = *through;
    w.last_error.clear();
    w.operation_id = op.id;
    w.updated_at = deps.clock->Now();
    CANOPY_TRY(tx.workers().Update(w));
    ++w.version;
    return OkStatus();
  }));
  deps.engine->Wake();
  SPDLOG_INFO("Worker action worker={} action={} op={} by={}", w.id, action, op.id, p.user_id);
  return JsonResponse(202, {{"worker", WorkerToJson(w)}, {"operation_id", op.id}});
}

Result<net::Response> StopWorker(const ApiDeps& d, const net::Request& r, const Principal& p) {
  return WorkerAction(d, r, p, "stop");
}
Result<net::Response> RestartWorker(const ApiDeps& d, const net::Request& r, const Principal& p) {
  return WorkerAction(d, r, p, "restart");
}
Result<net::Response> TerminateWorker(const ApiDeps& d, const net::Request& r, const Principal& p) {
  return WorkerAction(d, r, p, "terminate");
}
Result<net::Response> RecreateWorker(const ApiDeps& d, const net::Request& r, const Principal& p) {
  return WorkerAction(d, r, p, "recreate");
}
Result<net::Response> DeleteWorker(const ApiDeps& d, const net::Request& r, const Principal& p) {
  return WorkerAction(d, r, p, "delete");
}

}  // namespace

std::vector<RouteDef> BrokerRoutes() {
  return {
      {"POST", "/api/v1/clusters", Access::kInfra, CreateCluster},
      {"DELETE", "/api/v1/clusters/{id}", Access::kInfra, DeleteCluster},
      {"POST", "/api/v1/clusters/{id}/workers", Access::kInfra, AddWorkers},
      {"GET", "/api/v1/clusters/{id}/workers", Access::kInfraOrApp, ListWorkers},
      {"GET", "/api/v1/clusters/{id}/workers/{wid}", Access::kInfraOrApp, GetWorker},
      {"POST", "/api/v1/clusters/{id}/workers/{wid}/stop", Access::kApp, StopWorker},
      {"POST", "/api/v1/clusters/{id}/workers/{wid}/restart", Access::kApp, RestartWorker},
      {"POST", "/api/v1/clusters/{id}/workers/{wid}/terminate", Access::kApp, TerminateWorker},
      {"POST", "/api/v1/clusters/{id}/workers/{wid}/recreate", Access::kApp, RecreateWorker},
      {"DELETE", "/api/v1/clusters/{id}/workers/{wid}", Access::kInfra, DeleteWorker},
  };
}

}  // namespace detail
}  // namespace canopy::api
