// SQLite ServiceRepo (tables `services` and `service_instances`, migration 0004).
#include <fmt/format.h>

#include <mutex>

#include "common/json.h"
#include "common/log.h"
#include "store/sqlite/detail/cluster_repos.h"
#include "store/sqlite/detail/connection.h"

namespace canopy::store::sqlite::detail {
namespace {

using Lock = std::lock_guard<std::recursive_mutex>;

constexpr const char* kServiceColumns =
    "id, name, spec, replicas, deployed, created_by, created_at, updated_at, version";
constexpr const char* kInstanceColumns =
    "job_id, service_id, replica, cluster_id, node_id, address, state, reason, command_id, "
    "created_at, updated_at, reason_code";

Result<core::Service> ReadService(const Statement& s) {
  core::Service v;
  v.id = s.Text(0);
  v.name = s.Text(1);
  auto spec = ParseJson(s.Text(2));
  if (!spec) {
    SPDLOG_ERROR("Stored row is corrupt table=services id={} detail=malformed spec", v.id);
    return Error::Internal("stored data is corrupt");
  }
  v.spec = std::move(spec).value();
  v.replicas = s.Int(3);
  v.deployed = s.Int(4) != 0;
  v.created_by = s.Text(5);
  v.created_at = FromUnixMillis(s.Int(6));
  v.updated_at = FromUnixMillis(s.Int(7));
  v.version = s.Int(8);
  return v;
}

Result<core::ServiceInstance> ReadInstance(const Statement& s) {
  core::ServiceInstance i;
  i.job_id = s.Text(0);
  i.service_id = s.Text(1);
  i.replica = s.Int(2);
  i.cluster_id = s.Text(3);
  i.node_id = s.Text(4);
  i.address = s.Text(5);
  auto state = core::ParseInstanceState(s.Text(6));
  if (!state) {
    SPDLOG_ERROR("Stored row is corrupt table=service_instances id={} detail=unknown state",
                 i.job_id);
    return Error::Internal("stored data is corrupt");
  }
  i.state = *state;
  i.reason = s.Text(7);
  i.command_id = s.Text(8);
  i.created_at = FromUnixMillis(s.Int(9));
  i.updated_at = FromUnixMillis(s.Int(10));
  i.reason_code = s.Text(11);
  return i;
}

class SqliteServiceRepo final : public ServiceRepo {
 public:
  explicit SqliteServiceRepo(Connection& c) : c_(c) {}

  Status Create(const core::Service& v) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare(fmt::format("INSERT INTO services ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               kServiceColumns)));
    s.Bind(v.id)
        .Bind(v.name)
        .Bind(DumpJson(v.spec))
        .Bind(v.replicas)
        .Bind(int64_t{v.deployed ? 1 : 0});
    s.Bind(v.created_by)
        .Bind(UnixMillis(v.created_at))
        .Bind(UnixMillis(v.updated_at))
        .Bind(v.version);
    auto st = s.Run();
    if (!st && st.error().code == ErrorCode::kAlreadyExists) {
      return Error::AlreadyExists(fmt::format("service '{}' already exists", v.name));
    }
    return st;
  }

  Result<core::Service> Get(const std::string& id) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare(fmt::format("SELECT {} FROM services WHERE id = ?", kServiceColumns)));
    s.Bind(id);
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return Error::NotFound("service not found");
    return ReadService(s);
  }

  Result<std::vector<core::Service>> List() override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_.Prepare(fmt::format("SELECT {} FROM services ORDER BY created_at, id",
                                            kServiceColumns)));
    std::vector<core::Service> out;
    while (true) {
      CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return out;
      CANOPY_ASSIGN_OR_RETURN(core::Service v, ReadService(s));
      out.push_back(std::move(v));
    }
  }

  Status Update(const core::Service& v) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare("UPDATE services SET spec = ?, replicas = ?, deployed = ?, updated_at = ?, "
                   "version = ? WHERE id = ? AND version = ?"));
    s.Bind(DumpJson(v.spec)).Bind(v.replicas).Bind(int64_t{v.deployed ? 1 : 0});
    s.Bind(UnixMillis(v.updated_at)).Bind(v.version + 1).Bind(v.id).Bind(v.version);
    CANOPY_TRY(s.Run());
    if (c_.Changes() == 0) {
      CANOPY_TRY(Get(v.id));
      return Error::Conflict("service was modified concurrently");
    }
    return OkStatus();
  }

  Status Delete(const std::string& id) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(auto instances, ListInstances(id));
    if (!instances.empty()) return Error::FailedPrecondition("service still has instances");
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare("DELETE FROM services WHERE id = ?"));
    s.Bind(id);
    CANOPY_TRY(s.Run());
    if (c_.Changes() == 0) return Error::NotFound("service not found");
    return OkStatus();
  }

  Status PutInstance(const core::ServiceInstance& i) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_.Prepare(fmt::format("INSERT OR REPLACE INTO service_instances ({}) VALUES "
                                            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                            kInstanceColumns)));
    s.Bind(i.job_id).Bind(i.service_id).Bind(i.replica).Bind(i.cluster_id).Bind(i.node_id);
    s.Bind(i.address).Bind(core::InstanceStateName(i.state)).Bind(i.reason).Bind(i.command_id);
    s.Bind(UnixMillis(i.created_at)).Bind(UnixMillis(i.updated_at)).Bind(i.reason_code);
    auto st = s.Run();
    if (!st && st.error().code == ErrorCode::kFailedPrecondition) {
      return Error::NotFound("service not found");
    }
    return st;
  }

  Result<std::vector<core::ServiceInstance>> ListInstances(const std::string& service_id) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_.Prepare(fmt::format(
                         "SELECT {} FROM service_instances {} ORDER BY service_id, replica, job_id",
                         kInstanceColumns, service_id.empty() ? "" : "WHERE service_id = ?")));
    if (!service_id.empty()) s.Bind(service_id);
    std::vector<core::ServiceInstance> out;
    while (true) {
      CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return out;
      CANOPY_ASSIGN_OR_RETURN(core::ServiceInstance i, ReadInstance(s));
      out.push_back(std::move(i));
    }
  }

  Status DeleteInstance(const std::string& job_id) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s,
                            c_.Prepare("DELETE FROM service_instances WHERE job_id = ?"));
    s.Bind(job_id);
    CANOPY_TRY(s.Run());
    if (c_.Changes() == 0) return Error::NotFound("instance not found");
    return OkStatus();
  }

 private:
  Connection& c_;
};

}  // namespace

std::unique_ptr<ServiceRepo> MakeServiceRepo(Connection& c) {
  return std::make_unique<SqliteServiceRepo>(c);
}

}  // namespace canopy::store::sqlite::detail
