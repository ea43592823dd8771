// SqliteClusterStore: the ClusterStore on one SQLite file (same connection settings as the root's
// SqliteStore). Thread-safe: one connection guarded by its recursive mutex.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <mutex>

#include "common/json.h"
#include "common/log.h"
#include "store/cluster_store.h"
#include "store/sqlite/detail/connection.h"

namespace canopy::store {
namespace {

using sqlite::detail::Connection;
using sqlite::detail::Statement;
using Lock = std::lock_guard<std::recursive_mutex>;

int64_t Ms(TimePoint t) { return UnixMillis(t); }
TimePoint At(int64_t ms) { return FromUnixMillis(ms); }

// The cluster store's migrations, in order. Append new ones; never edit an applied one.
struct ClusterMigration {
  int64_t version;
  const char* name;
  const char* sql;
};
constexpr ClusterMigration kClusterMigrations[] = {
    {1, "0001_cluster_init", R"sql(
CREATE TABLE node_tokens (
  id         TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL UNIQUE,
  expires_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  used_at    BIGINT
);
CREATE TABLE nodes (
  id                   TEXT PRIMARY KEY,
  hostname             TEXT NOT NULL,
  address              TEXT NOT NULL,
  key_hash             TEXT NOT NULL,
  cpu_millis           BIGINT NOT NULL,
  memory_mib           BIGINT NOT NULL,
  memory_available_mib BIGINT NOT NULL,
  load1_milli          BIGINT NOT NULL,
  registered_at        BIGINT NOT NULL,
  last_heartbeat       BIGINT NOT NULL
);
CREATE TABLE command_outcomes (
  id            TEXT PRIMARY KEY,
  type          TEXT NOT NULL,
  ok            BIGINT NOT NULL,
  result        TEXT NOT NULL,
  error_code    TEXT NOT NULL,
  error_message TEXT NOT NULL,
  acknowledged  BIGINT NOT NULL,
  created_at    BIGINT NOT NULL
);
CREATE INDEX command_outcomes_ack_idx ON command_outcomes (acknowledged, created_at);
)sql"},
    {2, "0002_cluster_jobs", R"sql(
CREATE TABLE jobs (
  job_id     TEXT PRIMARY KEY,
  service_id TEXT NOT NULL,
  node_id    TEXT NOT NULL,
  spec       TEXT NOT NULL,
  status     TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_node_idx ON jobs (node_id, created_at);
)sql"},
    {3, "0003_cluster_node_draining", R"sql(
ALTER TABLE nodes ADD COLUMN draining BIGINT NOT NULL DEFAULT 0;
)sql"},
    {4, "0004_cluster_outcome_reason", R"sql(
ALTER TABLE command_outcomes ADD COLUMN error_reason TEXT NOT NULL DEFAULT '';
)sql"},
    {5, "0005_cluster_node_system", R"sql(
ALTER TABLE nodes ADD COLUMN system TEXT NOT NULL DEFAULT '{}';
)sql"},
};

constexpr const char* kNodeColumns =
    "id, hostname, address, key_hash, cpu_millis, memory_mib, memory_available_mib, load1_milli, "
    "registered_at, last_heartbeat, system";

// The node's system as stored; a row from before it was reported reads as empty.
core::NodeSystem ReadSystem(const std::string& text) {
  auto j = ParseJson(text);
  if (!j) return {};
  auto sys = core::NodeSystemFromJson(*j);
  return sys ? *sys : core::NodeSystem{};
}

core::NodeRecord ReadNode(const Statement& s) {
  core::NodeRecord n;
  n.id = s.Text(0);
  n.hostname = s.Text(1);
  n.address = s.Text(2);
  n.key_hash = s.Text(3);
  n.cpu_millis = s.Int(4);
  n.memory_mib = s.Int(5);
  n.memory_available_mib = s.Int(6);
  n.load1 = static_cast<double>(s.Int(7)) / 1000.0;
  n.registered_at = At(s.Int(8));
  n.last_heartbeat = At(s.Int(9));
  n.system = ReadSystem(s.Text(10));
  return n;
}

constexpr const char* kOutcomeColumns =
    "id, type, ok, result, error_code, error_message, acknowledged, created_at, error_reason";

Result<core::CommandOutcome> ReadOutcome(const Statement& s) {
  core::CommandOutcome o;
  o.id = s.Text(0);
  o.type = s.Text(1);
  o.ok = s.Int(2) != 0;
  auto j = ParseJson(s.Text(3));
  if (!j) {
    SPDLOG_ERROR("Stored row is corrupt table=command_outcomes id={}", o.id);
    return Error::Internal("stored data is corrupt");
  }
  o.result = std::move(*j);
  o.error_code = s.Text(4);
  o.error_message = s.Text(5);
  o.acknowledged = s.Int(6) != 0;
  o.created_at = At(s.Int(7));
  o.error_reason = s.Text(8);
  return o;
}

constexpr const char* kJobColumns =
    "job_id, service_id, node_id, spec, status, created_at, updated_at";

Result<JobPlacement> ReadJob(const Statement& s) {
  JobPlacement j;
  j.job_id = s.Text(0);
  j.service_id = s.Text(1);
  j.node_id = s.Text(2);
  auto spec = ParseJson(s.Text(3));
  auto status = ParseJson(s.Text(4));
  if (!spec || !status) {
    SPDLOG_ERROR("Stored row is corrupt table=jobs id={}", j.job_id);
    return Error::Internal("stored data is corrupt");
  }
  j.spec = std::move(*spec);
  j.status = std::move(*status);
  j.created_at = At(s.Int(5));
  j.updated_at = At(s.Int(6));
  return j;
}

class SqliteClusterStore final : public ClusterStore {
 public:
  explicit SqliteClusterStore(std::unique_ptr<Connection> c) : c_(std::move(c)) {}

  Status Migrate() {
    Lock lock(c_->mutex());
    CANOPY_TRY(
        c_->Exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
                 "version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)"));
    const int64_t known = std::size(kClusterMigrations);
    {
      CANOPY_ASSIGN_OR_RETURN(Statement s,
                              c_->Prepare("SELECT MAX(version) FROM schema_migrations"));
      CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
      if (row && !s.IsNull(0) && s.Int(0) > known) {
        return Error::FailedPrecondition(
            "the cluster database is newer than this version of Canopy");
      }
    }
    for (const auto& m : kClusterMigrations) {
      Status st = c_->InTransaction([&]() -> Status {
        {
          CANOPY_ASSIGN_OR_RETURN(Statement s,
                                  c_->Prepare("SELECT 1 FROM schema_migrations WHERE version = ?"));
          s.Bind(m.version);
          CANOPY_ASSIGN_OR_RETURN(bool applied, s.Step());
          if (applied) return OkStatus();
        }
        SPDLOG_INFO("Applying cluster store migration version={} name={}", m.version, m.name);
        CANOPY_TRY(c_->Exec(m.sql));
        CANOPY_ASSIGN_OR_RETURN(
            Statement s,
            c_->Prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"));
        s.Bind(m.version).Bind(UnixMillis(std::chrono::system_clock::now()));
        return s.Run();
      });
      if (!st) return Error::Internal(fmt::format("cluster store migration {} failed", m.name));
    }
    return OkStatus();
  }

  Status InTransaction(const std::function<Status()>& fn) override { return c_->InTransaction(fn); }

  Status CreateNodeToken(const core::NodeToken& t) override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_->Prepare("INSERT INTO node_tokens (id, token_hash, expires_at, created_at, "
                                 "used_at) VALUES (?, ?, ?, ?, ?)"));
    s.Bind(t.id).Bind(t.token_hash).Bind(Ms(t.expires_at)).Bind(Ms(t.created_at));
    s.Bind(t.used_at ? std::optional<int64_t>(Ms(*t.used_at)) : std::nullopt);
    return s.Run();
  }

  Result<core::NodeToken> ConsumeNodeToken(const std::string& token_hash, TimePoint now) override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_->Prepare(
            "UPDATE node_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL "
            "AND expires_at > ? RETURNING id, token_hash, expires_at, created_at, used_at"));
    s.Bind(Ms(now)).Bind(token_hash).Bind(Ms(now));
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return Error::Unauthenticated("invalid or expired node token");
    core::NodeToken t;
    t.id = s.Text(0);
    t.token_hash = s.Text(1);
    t.expires_at = At(s.Int(2));
    t.created_at = At(s.Int(3));
    if (!s.IsNull(4)) t.used_at = At(s.Int(4));
    CANOPY_TRY(s.Run());
    return t;
  }

  Status CreateNode(const core::NodeRecord& n) override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_->Prepare(fmt::format("INSERT INTO nodes ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                kNodeColumns)));
    s.Bind(n.id).Bind(n.hostname).Bind(n.address).Bind(n.key_hash).Bind(n.cpu_millis);
    s.Bind(n.memory_mib).Bind(n.memory_available_mib).Bind(Milli(n.load1));
    s.Bind(Ms(n.registered_at)).Bind(Ms(n.last_heartbeat));
    s.Bind(DumpJson(core::NodeSystemToJson(n.system)));
    auto st = s.Run();
    if (!st && st.error().code == ErrorCode::kAlreadyExists)
      return Error::AlreadyExists("node already exists");
    return st;
  }

  Result<core::NodeRecord> GetNode(const std::string& id) override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_->Prepare(fmt::format("SELECT {} FROM nodes WHERE id = ?", kNodeColumns)));
    s.Bind(id);
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return Error::NotFound("node not found");
    return ReadNode(s);
  }

  Result<std::vector<core::NodeRecord>> ListNodes() override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_->Prepare(fmt::format("SELECT {} FROM nodes ORDER BY registered_at, id", kNodeColumns)));
    std::vector<core::NodeRecord> out;
    while (true) {
      CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return out;
      out.push_back(ReadNode(s));
    }
  }

  Status UpdateNode(const core::NodeRecord& n) override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_->Prepare("UPDATE nodes SET hostname = ?, address = ?, cpu_millis = ?, memory_mib = ?, "
                    "memory_available_mib = ?, load1_milli = ?, last_heartbeat = ?, system = ? "
                    "WHERE id = ?"));
    s.Bind(n.hostname).Bind(n.address).Bind(n.cpu_millis).Bind(n.memory_mib);
    s.Bind(n.memory_available_mib).Bind(Milli(n.load1)).Bind(Ms(n.last_heartbeat));
    s.Bind(DumpJson(core::NodeSystemToJson(n.system))).Bind(n.id);
    CANOPY_TRY(s.Run());
    if (c_->Changes() == 0) return Error::NotFound("node not found");
    return OkStatus();
  }

  Status SetNodeDraining(const std::string& id, bool draining) override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_->Prepare("UPDATE nodes SET draining = ? WHERE id = ?"));
    s.Bind(int64_t{draining ? 1 : 0}).Bind(id);
    CANOPY_TRY(s.Run());
    if (c_->Changes() == 0) return Error::NotFound("node not found");
    return OkStatus();
  }

  Result<std::vector<std::string>> ListDrainingNodes() override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s,
                            c_->Prepare("SELECT id FROM nodes WHERE draining != 0 ORDER BY id"));
    std::vector<std::string> out;
    while (true) {
      CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return out;
      out.push_back(s.Text(0));
    }
  }

  Status PutOutcome(const core::CommandOutcome& o) override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_->Prepare(fmt::format(
                         "INSERT INTO command_outcomes ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                         "ON CONFLICT (id) DO NOTHING",
                         kOutcomeColumns)));
    s.Bind(o.id).Bind(o.type).Bind(int64_t{o.ok ? 1 : 0}).Bind(DumpJson(o.result));
    s.Bind(o.error_code).Bind(o.error_message).Bind(int64_t{o.acknowledged ? 1 : 0});
    s.Bind(Ms(o.created_at)).Bind(o.error_reason);
    return s.Run();
  }

  Result<core::CommandOutcome> GetOutcome(const std::string& id) override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_->Prepare(fmt::format("SELECT {} FROM command_outcomes WHERE id = ?", kOutcomeColumns)));
    s.Bind(id);
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return Error::NotFound("command outcome not found");
    return ReadOutcome(s);
  }

  Result<std::vector<core::CommandOutcome>> ListUnacknowledged() override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_->Prepare(fmt::format("SELECT {} FROM command_outcomes WHERE "
                                             "acknowledged = 0 ORDER BY created_at, id LIMIT 100",
                                             kOutcomeColumns)));
    std::vector<core::CommandOutcome> out;
    while (true) {
      CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return out;
      CANOPY_ASSIGN_OR_RETURN(auto o, ReadOutcome(s));
      out.push_back(std::move(o));
    }
  }

  Status MarkAcknowledged(const std::vector<std::string>& ids) override {
    Lock lock(c_->mutex());
    for (const auto& id : ids) {
      CANOPY_ASSIGN_OR_RETURN(
          Statement s, c_->Prepare("UPDATE command_outcomes SET acknowledged = 1 WHERE id = ?"));
      s.Bind(id);
      CANOPY_TRY(s.Run());
    }
    return OkStatus();
  }

  Status CreateJob(const JobPlacement& j) override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_->Prepare(fmt::format("INSERT INTO jobs ({}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                             kJobColumns)));
    s.Bind(j.job_id)
        .Bind(j.service_id)
        .Bind(j.node_id)
        .Bind(DumpJson(j.spec))
        .Bind(DumpJson(j.status));
    s.Bind(Ms(j.created_at)).Bind(Ms(j.updated_at));
    auto st = s.Run();
    if (!st && st.error().code == ErrorCode::kAlreadyExists)
      return Error::AlreadyExists("job already exists");
    return st;
  }

  Result<JobPlacement> GetJob(const std::string& job_id) override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_->Prepare(fmt::format("SELECT {} FROM jobs WHERE job_id = ?", kJobColumns)));
    s.Bind(job_id);
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return Error::NotFound("job not found");
    return ReadJob(s);
  }

  Result<std::vector<JobPlacement>> ListJobs(const std::string& node_id) override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_->Prepare(fmt::format("SELECT {} FROM jobs WHERE (? = '' OR node_id = ?) "
                                             "ORDER BY created_at, job_id",
                                             kJobColumns)));
    s.Bind(node_id).Bind(node_id);
    std::vector<JobPlacement> out;
    while (true) {
      CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return out;
      CANOPY_ASSIGN_OR_RETURN(auto j, ReadJob(s));
      out.push_back(std::move(j));
    }
  }

  Status UpdateJobStatus(const std::string& job_id, const std::string& node_id, const Json& status,
                         TimePoint at) override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_->Prepare("UPDATE jobs SET status = ?, updated_at = ? WHERE job_id = ? AND node_id = ?"));
    s.Bind(DumpJson(status)).Bind(Ms(at)).Bind(job_id).Bind(node_id);
    CANOPY_TRY(s.Run());
    if (c_->Changes() == 0) return Error::NotFound("job not found");
    return OkStatus();
  }

  Status MoveJob(const std::string& job_id, const std::string& from_node,
                 const std::string& to_node, TimePoint at) override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_->Prepare("UPDATE jobs SET node_id = ?, status = '{}', updated_at = ? "
                                 "WHERE job_id = ? AND node_id = ?"));
    s.Bind(to_node).Bind(Ms(at)).Bind(job_id).Bind(from_node);
    CANOPY_TRY(s.Run());
    if (c_->Changes() == 0) return Error::NotFound("job not found");
    return OkStatus();
  }

  Status DeleteJob(const std::string& job_id) override {
    Lock lock(c_->mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_->Prepare("DELETE FROM jobs WHERE job_id = ?"));
    s.Bind(job_id);
    CANOPY_TRY(s.Run());
    if (c_->Changes() == 0) return Error::NotFound("job not found");
    return OkStatus();
  }

 private:
  static int64_t Milli(double v) { return static_cast<int64_t>(std::clamp(v, 0.0, 1e9) * 1000.0); }

  std::unique_ptr<Connection> c_;
};

}  // namespace

Result<ClusterStorePtr> OpenClusterStore(const std::string& path) {
  if (path.empty()) return Error::InvalidArgument("the cluster store needs a file path");
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) return Error::Internal("cannot create the cluster database directory");
  }
  CANOPY_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connection::Open(path));
  auto store = std::make_unique<SqliteClusterStore>(std::move(conn));
  CANOPY_TRY(store->Migrate());
  return ClusterStorePtr(std::move(store));
}

}  // namespace canopy::store
