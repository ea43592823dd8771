#include "store/sqlite/detail/cluster_repos.h"

#include <fmt/format.h>

#include <mutex>

#include "common/json.h"
#include "common/log.h"
#include "store/sqlite/detail/connection.h"

namespace canopy::store::sqlite::detail {
namespace {

using Lock = std::lock_guard<std::recursive_mutex>;

int64_t Ms(TimePoint t) { return UnixMillis(t); }
TimePoint At(int64_t ms) { return FromUnixMillis(ms); }
std::optional<int64_t> OptMs(const std::optional<TimePoint>& t) {
  return t ? std::optional<int64_t>(Ms(*t)) : std::nullopt;
}
std::optional<TimePoint> OptAt(const Statement& s, int col) {
  return s.IsNull(col) ? std::nullopt : std::optional<TimePoint>(At(s.Int(col)));
}
std::optional<std::string> OptText(const Statement& s, int col) {
  return s.IsNull(col) ? std::nullopt : std::optional<std::string>(s.Text(col));
}
void BindOpt(Statement& s, const std::optional<std::string>& v) {
  if (v) {
    s.Bind(*v);
  } else {
    s.Bind(std::optional<int64_t>());
  }
}

Error Corrupt(std::string_view table, const std::string& id, std::string_view what) {
  SPDLOG_ERROR("Stored row is corrupt table={} id={} detail={}", table, id, what);
  return Error::Internal("stored data is corrupt");
}

Result<Json> StoredJson(std::string_view table, const std::string& id, const std::string& text) {
  auto j = ParseJson(text);
  if (!j) return Corrupt(table, id, "malformed JSON");
  return std::move(j).value();
}

Status WithExistsMessage(Status st, const char* message) {
  if (!st && st.error().code == ErrorCode::kAlreadyExists) return Error::AlreadyExists(message);
  return st;
}

// ---- nodes as JSON ----

std::string NodesToJson(const std::vector<core::ClusterNodeInfo>& nodes) {
  Json arr = Json::array();
  for (const auto& n : nodes) {
    arr.push_back({{"id", n.id},
                   {"address", n.address},
                   {"state", core::NodeStateName(n.state)},
                   {"cpu_millis", n.cpu_millis},
                   {"memory_mib", n.memory_mib},
                   {"memory_available_mib", n.memory_available_mib},
                   {"load1", n.load1},
                   {"draining", n.draining},
                   {"system", core::NodeSystemToJson(n.system)},
                   {"last_seen", n.last_seen ? Json(Ms(*n.last_seen)) : Json(nullptr)}});
  }
  return DumpJson(arr);
}

Result<std::vector<core::ClusterNodeInfo>> ParseNodes(const std::string& id,
                                                      const std::string& text) {
  CANOPY_ASSIGN_OR_RETURN(Json arr, StoredJson("clusters", id, text));
  if (!arr.is_array()) return Corrupt("clusters", id, "nodes is not an array");
  std::vector<core::ClusterNodeInfo> out;
  for (const Json& j : arr) {
    if (!j.is_object()) return Corrupt("clusters", id, "malformed node");
    core::ClusterNodeInfo n;
    n.id = j.value("id", "");
    n.address = j.value("address", "");
    n.state = core::ParseNodeState(j.value("state", "")).value_or(core::NodeState::kOffline);
    n.cpu_millis = j.value("cpu_millis", int64_t{0});
    n.memory_mib = j.value("memory_mib", int64_t{0});
    n.memory_available_mib = j.value("memory_available_mib", int64_t{0});
    n.load1 = j.value("load1", 0.0);
    n.draining = j.value("draining", false);
    if (j.contains("system")) {
      auto sys = core::NodeSystemFromJson(j["system"]);
      if (sys) n.system = *sys;  // rows from before nodes reported it read as empty
    }
    if (j.contains("last_seen") && j["last_seen"].is_number_integer()) {
      n.last_seen = At(j["last_seen"].get<int64_t>());
    }
    out.push_back(std::move(n));
  }
  return out;
}

// ---- clusters ----

constexpr const char* kClusterColumns =
    "id, name, kind, state, credential_id, provider, region, instance_type, image, disk_gb, "
    "cluster_url, software_version, key_ciphertext, link_interval_seconds, last_seen, paired_at, "
    "nodes, node_count, resources, cloud, created_by, created_at, updated_at, version";

Result<core::Cluster> ReadCluster(const Statement& s) {
  core::Cluster c;
  c.id = s.Text(0);
  c.name = s.Text(1);
  auto kind = core::ParseClusterKind(s.Text(2));
  if (!kind) return Corrupt("clusters", c.id, "unknown kind");
  c.kind = *kind;
  auto state = core::ParseClusterState(s.Text(3));
  if (!state) return Corrupt("clusters", c.id, "unknown state");
  c.state = *state;
  c.credential_id = OptText(s, 4);
  c.provider = OptText(s, 5);
  c.region = OptText(s, 6);
  c.instance_type = OptText(s, 7);
  c.image = OptText(s, 8);
  if (!s.IsNull(9)) c.disk_gb = s.Int(9);
  c.cluster_url = s.Text(10);
  c.software_version = s.Text(11);
  c.key_ciphertext = s.BlobBytes(12);
  c.link_interval_seconds = s.Int(13);
  c.last_seen = OptAt(s, 14);
  c.paired_at = OptAt(s, 15);
  CANOPY_ASSIGN_OR_RETURN(c.nodes, ParseNodes(c.id, s.Text(16)));
  CANOPY_ASSIGN_OR_RETURN(c.resources, StoredJson("clusters", c.id, s.Text(18)));
  CANOPY_ASSIGN_OR_RETURN(Json cloud, StoredJson("clusters", c.id, s.Text(19)));
  c.cloud = core::ClusterCloudFromJson(cloud);
  c.created_by = s.Text(20);
  c.created_at = At(s.Int(21));
  c.updated_at = At(s.Int(22));
  c.version = s.Int(23);
  return c;
}

class SqliteClusterRepo final : public ClusterRepo {
 public:
  explicit SqliteClusterRepo(Connection& c) : c_(c) {}

  Status Create(const core::Cluster& c) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare(fmt::format("INSERT INTO clusters ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                               "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               kClusterColumns)));
    s.Bind(c.id).Bind(c.name).Bind(core::ClusterKindName(c.kind));
    s.Bind(core::ClusterStateName(c.state));
    BindMutable(s, c);
    s.Bind(c.created_by).Bind(Ms(c.created_at)).Bind(Ms(c.updated_at)).Bind(c.version);
    return WithExistsMessage(s.Run(), "cluster already exists");
  }

  Result<core::Cluster> Get(const std::string& id) override {
    return GetWhere(fmt::format("SELECT {} FROM clusters WHERE id = ?", kClusterColumns), id);
  }

  Result<core::Cluster> GetByName(const std::string& name) override {
    return GetWhere(fmt::format("SELECT {} FROM clusters WHERE name = ?", kClusterColumns), name);
  }

  Result<std::vector<core::Cluster>> List() override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_.Prepare(fmt::format("SELECT {} FROM clusters ORDER BY created_at, id",
                                            kClusterColumns)));
    std::vector<core::Cluster> out;
    while (true) {
      CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return out;
      CANOPY_ASSIGN_OR_RETURN(core::Cluster c, ReadCluster(s));
      out.push_back(std::move(c));
    }
  }

  Status Update(const core::Cluster& c) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare("UPDATE clusters SET name = ?, state = ?, credential_id = ?, provider = ?, "
                   "region = ?, instance_type = ?, image = ?, disk_gb = ?, cluster_url = ?, "
                   "software_version = ?, key_ciphertext = ?, link_interval_seconds = ?, "
                   "last_seen = ?, paired_at = ?, nodes = ?, node_count = ?, resources = ?, "
                   "cloud = ?, updated_at = ?, version = ? WHERE id = ? AND version = ?"));
    s.Bind(c.name).Bind(core::ClusterStateName(c.state));
    BindMutable(s, c);
    s.Bind(Ms(c.updated_at)).Bind(c.version + 1).Bind(c.id).Bind(c.version);
    CANOPY_TRY(WithExistsMessage(s.Run(), "cluster already exists"));
    if (c_.Changes() == 0) {
      CANOPY_TRY(Get(c.id));
      return Error::Conflict("cluster was modified concurrently");
    }
    return OkStatus();
  }

  Result<core::Cluster> RecordLink(const std::string& id, const ClusterLinkRecord& r,
                                   TimePoint now) override {
    Lock lock(c_.mutex());
    {
      CANOPY_ASSIGN_OR_RETURN(
          Statement s,
          c_.Prepare("UPDATE clusters SET cluster_url = ?, software_version = ?, "
                     "link_interval_seconds = ?, nodes = ?, node_count = ?, resources = ?, "
                     "last_seen = ?, updated_at = ?, version = version + 1, "
                     "state = CASE WHEN state = 'OFFLINE' THEN 'ACTIVE' ELSE state END "
                     "WHERE id = ?"));
      s.Bind(r.url).Bind(r.software_version).Bind(r.link_interval_seconds);
      s.Bind(NodesToJson(r.nodes)).Bind(static_cast<int64_t>(r.nodes.size()));
      s.Bind(DumpJson(r.resources)).Bind(Ms(now)).Bind(Ms(now)).Bind(id);
      CANOPY_TRY(s.Run());
      if (c_.Changes() == 0) return Error::NotFound("cluster not found");
    }
    return Get(id);
  }

  Result<std::vector<std::string>> MarkStaleOffline(TimePoint now, int64_t missed_links) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare("UPDATE clusters SET state = 'OFFLINE', updated_at = ?, version = version + 1 "
                   "WHERE state = 'ACTIVE' AND last_seen IS NOT NULL "
                   "AND last_seen + ? * link_interval_seconds * 1000 < ? RETURNING id"));
    s.Bind(Ms(now)).Bind(missed_links).Bind(Ms(now));
    std::vector<std::string> ids;
    while (true) {
      CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      ids.push_back(s.Text(0));
    }
    return ids;
  }

  Status Delete(const std::string& id) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare("DELETE FROM clusters WHERE id = ?"));
    s.Bind(id);
    CANOPY_TRY(s.Run());
    if (c_.Changes() == 0) return Error::NotFound("cluster not found");
    return OkStatus();
  }

 private:
  // credential_id .. cloud, in column order (16 values).
  static void BindMutable(Statement& s, const core::Cluster& c) {
    BindOpt(s, c.credential_id);
    BindOpt(s, c.provider);
    BindOpt(s, c.region);
    BindOpt(s, c.instance_type);
    BindOpt(s, c.image);
    s.Bind(c.disk_gb);
    s.Bind(c.cluster_url).Bind(c.software_version).Bind(Blob{c.key_ciphertext});
    s.Bind(c.link_interval_seconds).Bind(OptMs(c.last_seen)).Bind(OptMs(c.paired_at));
    s.Bind(NodesToJson(c.nodes)).Bind(static_cast<int64_t>(c.nodes.size()));
    s.Bind(DumpJson(c.resources)).Bind(DumpJson(core::ClusterCloudToJson(c.cloud)));
  }

  Result<core::Cluster> GetWhere(const std::string& sql, const std::string& key) {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare(sql));
    s.Bind(key);
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return Error::NotFound("cluster not found");
    return ReadCluster(s);
  }

  Connection& c_;
};

// ---- cluster tokens ----

class SqliteClusterTokenRepo final : public ClusterTokenRepo {
 public:
  explicit SqliteClusterTokenRepo(Connection& c) : c_(c) {}

  Status Create(const core::ClusterToken& t) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare("INSERT INTO cluster_tokens "
                   "(id, cluster_id, token_hash, expires_at, created_at, used_at, created_by) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)"));
    s.Bind(t.id).Bind(t.cluster_id).Bind(t.token_hash).Bind(Ms(t.expires_at));
    s.Bind(Ms(t.created_at)).Bind(OptMs(t.used_at)).Bind(t.created_by);
    auto st = s.Run();
    if (!st && st.error().code == ErrorCode::kFailedPrecondition) {
      return Error::NotFound("cluster not found");
    }
    return WithExistsMessage(std::move(st), "cluster token already exists");
  }

  Result<core::ClusterToken> Consume(const std::string& token_hash, TimePoint now) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare("UPDATE cluster_tokens SET used_at = ? "
                   "WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? "
                   "RETURNING id, cluster_id, token_hash, expires_at, created_at, used_at, "
                   "created_by"));
    s.Bind(Ms(now)).Bind(token_hash).Bind(Ms(now));
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return Error::Unauthenticated("invalid or expired cluster token");
    core::ClusterToken t;
    t.id = s.Text(0);
    t.cluster_id = s.Text(1);
    t.token_hash = s.Text(2);
    t.expires_at = At(s.Int(3));
    t.created_at = At(s.Int(4));
    t.used_at = OptAt(s, 5);
    t.created_by = s.Text(6);
    CANOPY_TRY(s.Run());
    return t;
  }

 private:
  Connection& c_;
};

// ---- cluster commands ----

constexpr const char* kCommandColumns =
    "id, cluster_id, type, args, state, result, error_code, error_message, deliveries, "
    "created_at, delivered_at, completed_at, error_reason";

Result<core::ClusterCommand> ReadCommand(const Statement& s) {
  core::ClusterCommand c;
  c.id = s.Text(0);
  c.cluster_id = s.Text(1);
  c.type = s.Text(2);
  CANOPY_ASSIGN_OR_RETURN(c.args, StoredJson("cluster_commands", c.id, s.Text(3)));
  auto state = core::ParseClusterCommandState(s.Text(4));
  if (!state) return Corrupt("cluster_commands", c.id, "unknown state");
  c.state = *state;
  CANOPY_ASSIGN_OR_RETURN(c.result, StoredJson("cluster_commands", c.id, s.Text(5)));
  c.error_code = s.Text(6);
  c.error_message = s.Text(7);
  c.deliveries = s.Int(8);
  c.created_at = At(s.Int(9));
  c.delivered_at = OptAt(s, 10);
  c.completed_at = OptAt(s, 11);
  c.error_reason = s.Text(12);
  return c;
}

class SqliteClusterCommandRepo final : public ClusterCommandRepo {
 public:
  explicit SqliteClusterCommandRepo(Connection& c) : c_(c) {}

  Status Create(const core::ClusterCommand& c) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s,
                            c_.Prepare(fmt::format("INSERT INTO cluster_commands ({}) "
                                                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                                   kCommandColumns)));
    s.Bind(c.id).Bind(c.cluster_id).Bind(c.type).Bind(DumpJson(c.args));
    s.Bind(core::ClusterCommandStateName(c.state)).Bind(DumpJson(c.result));
    s.Bind(c.error_code).Bind(c.error_message).Bind(c.deliveries).Bind(Ms(c.created_at));
    s.Bind(OptMs(c.delivered_at)).Bind(OptMs(c.completed_at)).Bind(c.error_reason);
    auto st = s.Run();
    if (!st && st.error().code == ErrorCode::kFailedPrecondition) {
      return Error::NotFound("cluster not found");
    }
    return WithExistsMessage(std::move(st), "cluster command already exists");
  }

  Result<core::ClusterCommand> Get(const std::string& id) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare(fmt::format("SELECT {} FROM cluster_commands WHERE id = ?", kCommandColumns)));
    s.Bind(id);
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return Error::NotFound("cluster command not found");
    return ReadCommand(s);
  }

  Result<std::vector<core::ClusterCommand>> ListPending(const std::string& cluster_id,
                                                        size_t limit) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare(fmt::format("SELECT {} FROM cluster_commands WHERE cluster_id = ? AND "
                               "state = 'pending' ORDER BY created_at, id LIMIT ?",
                               kCommandColumns)));
    s.Bind(cluster_id).Bind(static_cast<int64_t>(std::min<size_t>(limit, 1u << 30)));
    std::vector<core::ClusterCommand> out;
    while (true) {
      CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return out;
      CANOPY_ASSIGN_OR_RETURN(core::ClusterCommand c, ReadCommand(s));
      out.push_back(std::move(c));
    }
  }

  Status MarkDelivered(const std::vector<std::string>& ids, TimePoint now) override {
    Lock lock(c_.mutex());
    for (const auto& id : ids) {
      CANOPY_ASSIGN_OR_RETURN(Statement s,
                              c_.Prepare("UPDATE cluster_commands SET deliveries = deliveries + 1, "
                                         "delivered_at = ? WHERE id = ? AND state = 'pending'"));
      s.Bind(Ms(now)).Bind(id);
      CANOPY_TRY(s.Run());
    }
    return OkStatus();
  }

  Status Complete(const std::string& id, const std::string& cluster_id,
                  core::ClusterCommandState state, const Json& result, const Error* error,
                  TimePoint now) override {
    const std::string error_code = error ? std::string(ErrorCodeName(error->code)) : "";
    const std::string error_message = error ? error->message : "";
    const std::string error_reason = error ? error->reason : "";
    if (state == core::ClusterCommandState::kPending) {
      return Error::InvalidArgument("a command completes as succeeded or failed");
    }
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare("UPDATE cluster_commands SET state = ?, result = ?, error_code = ?, "
                   "error_message = ?, error_reason = ?, completed_at = ? "
                   "WHERE id = ? AND cluster_id = ? AND state = 'pending'"));
    s.Bind(core::ClusterCommandStateName(state)).Bind(DumpJson(result)).Bind(error_code);
    s.Bind(error_message).Bind(error_reason).Bind(Ms(now)).Bind(id).Bind(cluster_id);
    CANOPY_TRY(s.Run());
    if (c_.Changes() == 0) {
      auto existing = Get(id);
      if (!existing || existing->cluster_id != cluster_id) {
        return Error::NotFound("cluster command not found");
      }
    }
    return OkStatus();
  }

 private:
  Connection& c_;
};

}  // namespace

std::unique_ptr<ClusterRepo> MakeClusterRepo(Connection& c) {
  return std::make_unique<SqliteClusterRepo>(c);
}
std::unique_ptr<ClusterTokenRepo> MakeClusterTokenRepo(Connection& c) {
  return std::make_unique<SqliteClusterTokenRepo>(c);
}
std::unique_ptr<ClusterCommandRepo> MakeClusterCommandRepo(Connection& c) {
  return std::make_unique<SqliteClusterCommandRepo>(c);
}

}  // namespace canopy::store::sqlite::detail
