// SQLite WorkerRepo (table `workers`, migration 0003).
#include <fmt/format.h>

#include <mutex>

#include "common/json.h"
#include "common/log.h"
#include "store/sqlite/detail/cluster_repos.h"
#include "store/sqlite/detail/connection.h"

namespace canopy::store::sqlite::detail {
namespace {

using Lock = std::lock_guard<std::recursive_mutex>;

constexpr const char* kColumns =
    "id, cluster_id, name, state, instance_type, image, disk_gb, generation, handle, "
    "provider_id, address, node_id, last_error, operation_id, created_at, updated_at, version";

Error Corrupt(const std::string& id, std::string_view what) {
  SPDLOG_ERROR("Stored row is corrupt table=workers id={} detail={}", id, what);
  return Error::Internal("stored data is corrupt");
}

Result<core::Worker> ReadWorker(const Statement& s) {
  core::Worker w;
  w.id = s.Text(0);
  w.cluster_id = s.Text(1);
  w.name = s.Text(2);
  auto state = core::ParseWorkerState(s.Text(3));
  if (!state) return Corrupt(w.id, "unknown state");
  w.state = *state;
  w.instance_type = s.Text(4);
  w.image = s.Text(5);
  w.disk_gb = s.Int(6);
  w.generation = s.Int(7);
  auto handle = ParseJson(s.Text(8));
  if (!handle) return Corrupt(w.id, "malformed handle");
  w.handle = std::move(handle).value();
  w.provider_id = s.Text(9);
  w.address = s.Text(10);
  w.node_id = s.Text(11);
  w.last_error = s.Text(12);
  w.operation_id = s.Text(13);
  w.created_at = FromUnixMillis(s.Int(14));
  w.updated_at = FromUnixMillis(s.Int(15));
  w.version = s.Int(16);
  return w;
}

class SqliteWorkerRepo final : public WorkerRepo {
 public:
  explicit SqliteWorkerRepo(Connection& c) : c_(c) {}

  Status Create(const core::Worker& w) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_.Prepare(fmt::format("INSERT INTO workers ({}) VALUES (?, ?, ?, ?, ?, ?, "
                                            "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                            kColumns)));
    s.Bind(w.id).Bind(w.cluster_id).Bind(w.name);
    BindMutable(s, w);
    s.Bind(UnixMillis(w.created_at)).Bind(UnixMillis(w.updated_at)).Bind(w.version);
    auto st = s.Run();
    if (!st && st.error().code == ErrorCode::kFailedPrecondition) {
      return Error::NotFound("cluster not found");
    }
    if (!st && st.error().code == ErrorCode::kAlreadyExists) {
      return Error::AlreadyExists("worker already exists");
    }
    return st;
  }

  Result<core::Worker> Get(const std::string& id) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_.Prepare(fmt::format("SELECT {} FROM workers WHERE id = ?", kColumns)));
    s.Bind(id);
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return Error::NotFound("worker not found");
    return ReadWorker(s);
  }

  Result<std::vector<core::Worker>> ListByCluster(const std::string& cluster_id) override {
    return ListWhere("WHERE cluster_id = ?", &cluster_id);
  }

  Result<std::vector<core::Worker>> List() override { return ListWhere("", nullptr); }

  Status Update(const core::Worker& w) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare("UPDATE workers SET state = ?, instance_type = ?, image = ?, disk_gb = ?, "
                   "generation = ?, handle = ?, provider_id = ?, address = ?, node_id = ?, "
                   "last_error = ?, operation_id = ?, updated_at = ?, version = ? "
                   "WHERE id = ? AND version = ?"));
    BindMutable(s, w);
    s.Bind(UnixMillis(w.updated_at)).Bind(w.version + 1).Bind(w.id).Bind(w.version);
    CANOPY_TRY(s.Run());
    if (c_.Changes() == 0) {
      CANOPY_TRY(Get(w.id));
      return Error::Conflict("worker was modified concurrently");
    }
    return OkStatus();
  }

  Status Delete(const std::string& id) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare("DELETE FROM workers WHERE id = ?"));
    s.Bind(id);
    CANOPY_TRY(s.Run());
    if (c_.Changes() == 0) return Error::NotFound("worker not found");
    return OkStatus();
  }

 private:
  // state .. operation_id in column order (11 values).
  static void BindMutable(Statement& s, const core::Worker& w) {
    s.Bind(core::WorkerStateName(w.state)).Bind(w.instance_type).Bind(w.image).Bind(w.disk_gb);
    s.Bind(w.generation).Bind(DumpJson(w.handle)).Bind(w.provider_id).Bind(w.address);
    s.Bind(w.node_id).Bind(w.last_error).Bind(w.operation_id);
  }

  Result<std::vector<core::Worker>> ListWhere(const char* where, const std::string* key) {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_.Prepare(fmt::format("SELECT {} FROM workers {} ORDER BY created_at, id",
                                            kColumns, where)));
    if (key != nullptr) s.Bind(*key);
    std::vector<core::Worker> out;
    while (true) {
      CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return out;
      CANOPY_ASSIGN_OR_RETURN(core::Worker w, ReadWorker(s));
      out.push_back(std::move(w));
    }
  }

  Connection& c_;
};

}  // namespace

std::unique_ptr<WorkerRepo> MakeWorkerRepo(Connection& c) {
  return std::make_unique<SqliteWorkerRepo>(c);
}

}  // namespace canopy::store::sqlite::detail
