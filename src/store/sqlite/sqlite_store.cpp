#include "store/sqlite/sqlite_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <mutex>
#include <utility>

#include "common/json.h"
#include "common/log.h"
#include "store/sqlite/detail/cluster_repos.h"
#include "store/sqlite/detail/connection.h"

namespace canopy::store::sqlite {

using detail::Blob;
using detail::Connection;
using detail::Statement;
using Lock = std::lock_guard<std::recursive_mutex>;

namespace {

int64_t Ms(TimePoint t) { return UnixMillis(t); }
TimePoint At(int64_t ms) { return FromUnixMillis(ms); }

int64_t LimitParam(size_t limit) {
  return static_cast<int64_t>(
      std::min<size_t>(limit, static_cast<size_t>(std::numeric_limits<int64_t>::max())));
}

// Gives a uniqueness violation a message that names the resource (never the value).
Status WithExistsMessage(Status st, const char* message) {
  if (!st && st.error().code == ErrorCode::kAlreadyExists) {
    return Error::AlreadyExists(message);
  }
  return st;
}

Error Corrupt(std::string_view table, const std::string& id, std::string_view what) {
  SPDLOG_ERROR("Stored row is corrupt table={} id={} detail={}", table, id, what);
  return Error::Internal("stored data is corrupt");
}

Result<Json> ParseStoredJson(std::string_view table, const std::string& id,
                             const std::string& text) {
  auto j = ParseJson(text);
  if (!j) {
    return Corrupt(table, id, "malformed JSON");
  }
  return std::move(j).value();
}

std::string RolesToJson(const std::vector<core::Role>& roles) {
  Json arr = Json::array();
  for (core::Role r : roles) {
    arr.push_back(std::string(core::RoleName(r)));
  }
  return DumpJson(arr);
}

Result<std::vector<core::Role>> ParseRoles(const std::string& id, const std::string& text) {
  CANOPY_ASSIGN_OR_RETURN(Json arr, ParseStoredJson("users", id, text));
  if (!arr.is_array()) {
    return Corrupt("users", id, "roles is not an array");
  }
  std::vector<core::Role> roles;
  for (const Json& v : arr) {
    std::optional<core::Role> r =
        v.is_string() ? core::ParseRole(v.get_ref<const std::string&>()) : std::nullopt;
    if (!r) {
      return Corrupt("users", id, "unknown role");
    }
    roles.push_back(*r);
  }
  return roles;
}

std::string StepsToJson(const std::vector<core::OperationStep>& steps) {
  Json arr = Json::array();
  for (const auto& s : steps) {
    Json j = {{"name", s.name}, {"state", std::string(core::StepStateName(s.state))}};
    j["started_at"] = s.started_at ? Json(Ms(*s.started_at)) : Json(nullptr);
    j["finished_at"] = s.finished_at ? Json(Ms(*s.finished_at)) : Json(nullptr);
    arr.push_back(std::move(j));
  }
  return DumpJson(arr);
}

Result<std::vector<core::OperationStep>> ParseSteps(const std::string& id,
                                                    const std::string& text) {
  CANOPY_ASSIGN_OR_RETURN(Json arr, ParseStoredJson("operations", id, text));
  if (!arr.is_array()) {
    return Corrupt("operations", id, "steps is not an array");
  }
  std::vector<core::OperationStep> steps;
  for (const Json& j : arr) {
    if (!j.is_object() || !j.contains("name") || !j["name"].is_string() || !j.contains("state") ||
        !j["state"].is_string()) {
      return Corrupt("operations", id, "malformed step");
    }
    core::OperationStep s;
    s.name = j["name"].get<std::string>();
    auto state = core::ParseStepState(j["state"].get<std::string>());
    if (!state) {
      return Corrupt("operations", id, "unknown step state");
    }
    s.state = *state;
    for (auto [key, field] :
         {std::pair{"started_at", &s.started_at}, std::pair{"finished_at", &s.finished_at}}) {
      if (j.contains(key) && j[key].is_number_integer()) {
        *field = At(j[key].get<int64_t>());
      } else if (j.contains(key) && !j[key].is_null()) {
        return Corrupt("operations", id, "malformed step time");
      }
    }
    steps.push_back(std::move(s));
  }
  return steps;
}

// ---- users ----

constexpr const char* kUserColumns =
    "id, username, password_hash, roles, created_at, token_generation";

Result<core::User> ReadUser(const Statement& s) {
  core::User u;
  u.id = s.Text(0);
  u.username = s.Text(1);
  u.password_hash = s.Text(2);
  CANOPY_ASSIGN_OR_RETURN(u.roles, ParseRoles(u.id, s.Text(3)));
  u.created_at = At(s.Int(4));
  u.token_generation = s.Int(5);
  return u;
}

class SqliteUserRepo final : public UserRepo {
 public:
  explicit SqliteUserRepo(Connection& c) : c_(c) {}

  Status Create(const core::User& u) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare("INSERT INTO users (id, username, password_hash, roles, created_at, "
                   "token_generation) VALUES (?, ?, ?, ?, ?, ?)"));
    s.Bind(u.id).Bind(u.username).Bind(u.password_hash).Bind(RolesToJson(u.roles));
    s.Bind(Ms(u.created_at)).Bind(u.token_generation);
    return WithExistsMessage(s.Run(), "user already exists");
  }

  Result<core::User> Get(const std::string& id) override {
    return GetWhere(fmt::format("SELECT {} FROM users WHERE id = ?", kUserColumns), id);
  }

  Result<core::User> GetByUsername(const std::string& username) override {
    return GetWhere(fmt::format("SELECT {} FROM users WHERE username = ?", kUserColumns), username);
  }

  Result<std::vector<core::User>> List() override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare(fmt::format("SELECT {} FROM users ORDER BY created_at, id", kUserColumns)));
    std::vector<core::User> out;
    while (true) {
      CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        return out;
      }
      CANOPY_ASSIGN_OR_RETURN(core::User u, ReadUser(s));
      out.push_back(std::move(u));
    }
  }

  Status Delete(const std::string& id) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare("DELETE FROM users WHERE id = ?"));
    s.Bind(id);
    CANOPY_TRY(s.Run());
    if (c_.Changes() == 0) {
      return Error::NotFound("user not found");
    }
    return OkStatus();
  }

  Result<int64_t> ChangePassword(const std::string& id, const std::string& password_hash) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_.Prepare("UPDATE users SET password_hash = ?, token_generation = "
                                "token_generation + 1 WHERE id = ? RETURNING token_generation"));
    s.Bind(password_hash).Bind(id);
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return Error::NotFound("user not found");
    }
    return s.Int(0);
  }

  Result<int64_t> Count() override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare("SELECT COUNT(*) FROM users"));
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    return row ? s.Int(0) : int64_t{0};
  }

 private:
  Result<core::User> GetWhere(const std::string& sql, const std::string& key) {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare(sql));
    s.Bind(key);
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return Error::NotFound("user not found");
    }
    return ReadUser(s);
  }

  Connection& c_;
};

// ---- provider tokens ----

class SqliteProviderTokenRepo final : public ProviderTokenRepo {
 public:
  explicit SqliteProviderTokenRepo(Connection& c) : c_(c) {}

  Status Create(const core::ProviderToken& t) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s, c_.Prepare("INSERT INTO provider_tokens "
                                "(id, token_hash, expires_at, created_at, used_at, created_by) "
                                "VALUES (?, ?, ?, ?, ?, ?)"));
    s.Bind(t.id).Bind(t.token_hash).Bind(Ms(t.expires_at)).Bind(Ms(t.created_at));
    s.Bind(t.used_at ? std::optional<int64_t>(Ms(*t.used_at)) : std::nullopt).Bind(t.created_by);
    return WithExistsMessage(s.Run(), "provider token already exists");
  }

  Result<core::ProviderToken> Consume(const std::string& token_hash, TimePoint now) override {
    Lock lock(c_.mutex());
    // One statement: the check and the mark happen under SQLite's write lock, so exactly one of
    // several concurrent consumers (threads or processes) gets the row back.
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare("UPDATE provider_tokens SET used_at = ? "
                   "WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? "
                   "RETURNING id, token_hash, expires_at, created_at, used_at, created_by"));
    s.Bind(Ms(now)).Bind(token_hash).Bind(Ms(now));
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return Error::Unauthenticated("invalid or expired provider token");
    }
    core::ProviderToken t;
    t.id = s.Text(0);
    t.token_hash = s.Text(1);
    t.expires_at = At(s.Int(2));
    t.created_at = At(s.Int(3));
    if (!s.IsNull(4)) {
      t.used_at = At(s.Int(4));
    }
    t.created_by = s.Text(5);
    CANOPY_TRY(s.Run());  // finish the statement so its implicit transaction commits now
    return t;
  }

 private:
  Connection& c_;
};

// ---- providers ----

constexpr const char* kProviderColumns =
    "id, type, url, capabilities, version, key_ciphertext, registered_at, last_seen, approved";

Result<core::ProviderRecord> ReadProvider(const Statement& s) {
  core::ProviderRecord p;
  p.id = s.Text(0);
  p.type = s.Text(1);
  p.url = s.Text(2);
  CANOPY_ASSIGN_OR_RETURN(p.capabilities, ParseStoredJson("providers", p.id, s.Text(3)));
  p.version = s.Text(4);
  p.key_ciphertext = s.BlobBytes(5);
  p.registered_at = At(s.Int(6));
  p.last_seen = At(s.Int(7));
  p.approved = s.Int(8) != 0;
  return p;
}

class SqliteProviderRepo final : public ProviderRepo {
 public:
  explicit SqliteProviderRepo(Connection& c) : c_(c) {}

  Status Create(const core::ProviderRecord& p) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare(fmt::format("INSERT INTO providers ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               kProviderColumns)));
    s.Bind(p.id).Bind(p.type).Bind(p.url).Bind(DumpJson(p.capabilities)).Bind(p.version);
    s.Bind(Blob{p.key_ciphertext}).Bind(Ms(p.registered_at)).Bind(Ms(p.last_seen));
    s.Bind(int64_t{p.approved ? 1 : 0});
    return WithExistsMessage(s.Run(), "provider already exists");
  }

  Result<core::ProviderRecord> Get(const std::string& id) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare(fmt::format("SELECT {} FROM providers WHERE id = ?", kProviderColumns)));
    s.Bind(id);
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return Error::NotFound("provider not found");
    }
    return ReadProvider(s);
  }

  Result<std::vector<core::ProviderRecord>> List() override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare(fmt::format("SELECT {} FROM providers "
                                                                "ORDER BY registered_at, id",
                                                                kProviderColumns)));
    std::vector<core::ProviderRecord> out;
    while (true) {
      CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        return out;
      }
      CANOPY_ASSIGN_OR_RETURN(core::ProviderRecord p, ReadProvider(s));
      out.push_back(std::move(p));
    }
  }

  Status Touch(const std::string& id, TimePoint now) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s,
                            c_.Prepare("UPDATE providers SET last_seen = ? WHERE id = ?"));
    s.Bind(Ms(now)).Bind(id);
    return RunOne(s);
  }

  Status Update(const core::ProviderRecord& p) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare("UPDATE providers SET url = ?, capabilities = ?, version = ?, approved = ? "
                   "WHERE id = ?"));
    s.Bind(p.url).Bind(DumpJson(p.capabilities)).Bind(p.version);
    s.Bind(int64_t{p.approved ? 1 : 0}).Bind(p.id);
    return RunOne(s);
  }

  Status Delete(const std::string& id) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare("DELETE FROM providers WHERE id = ?"));
    s.Bind(id);
    return RunOne(s);
  }

 private:
  Status RunOne(Statement& s) {
    CANOPY_TRY(s.Run());
    if (c_.Changes() == 0) {
      return Error::NotFound("provider not found");
    }
    return OkStatus();
  }

  Connection& c_;
};

// ---- credentials ----

constexpr const char* kCredentialColumns =
    "id, name, provider, secret_ciphertext, created_by, created_at, adapter_id";

core::Credential ReadCredential(const Statement& s) {
  core::Credential c;
  c.id = s.Text(0);
  c.name = s.Text(1);
  c.provider = s.Text(2);
  c.secret_ciphertext = s.BlobBytes(3);
  c.created_by = s.Text(4);
  c.created_at = At(s.Int(5));
  c.adapter_id = s.Text(6);
  return c;
}

class SqliteCredentialRepo final : public CredentialRepo {
 public:
  explicit SqliteCredentialRepo(Connection& c) : c_(c) {}

  Status Create(const core::Credential& c) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare(fmt::format("INSERT INTO credentials ({}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               kCredentialColumns)));
    s.Bind(c.id).Bind(c.name).Bind(c.provider).Bind(Blob{c.secret_ciphertext});
    s.Bind(c.created_by).Bind(Ms(c.created_at)).Bind(c.adapter_id);
    return WithExistsMessage(s.Run(), "credential already exists");
  }

  Result<core::Credential> Get(const std::string& id) override {
    return GetWhere(fmt::format("SELECT {} FROM credentials WHERE id = ?", kCredentialColumns), id);
  }

  Result<core::Credential> GetByName(const std::string& name) override {
    return GetWhere(fmt::format("SELECT {} FROM credentials WHERE name = ?", kCredentialColumns),
                    name);
  }

  Result<std::vector<core::Credential>> List() override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare(fmt::format("SELECT {} FROM credentials "
                                                                "ORDER BY created_at, id",
                                                                kCredentialColumns)));
    std::vector<core::Credential> out;
    while (true) {
      CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        return out;
      }
      out.push_back(ReadCredential(s));
    }
  }

  Status Delete(const std::string& id) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare("DELETE FROM credentials WHERE id = ?"));
    s.Bind(id);
    CANOPY_TRY(s.Run());
    if (c_.Changes() == 0) {
      return Error::NotFound("credential not found");
    }
    return OkStatus();
  }

 private:
  Result<core::Credential> GetWhere(const std::string& sql, const std::string& key) {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare(sql));
    s.Bind(key);
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return Error::NotFound("credential not found");
    }
    return ReadCredential(s);
  }

  Connection& c_;
};

// ---- operations ----

constexpr const char* kOperationColumns =
    "id, kind, target_id, state, step, steps, attempt, next_run_at, lease_owner, lease_until, "
    "last_error_code, last_error_message, data, version, created_at, updated_at";

Result<core::Operation> ReadOperation(const Statement& s) {
  core::Operation op;
  op.id = s.Text(0);
  op.kind = s.Text(1);
  op.target_id = s.Text(2);
  auto state = core::ParseOperationState(s.Text(3));
  if (!state) {
    return Corrupt("operations", op.id, "unknown state");
  }
  op.state = *state;
  op.step = s.Int(4);
  CANOPY_ASSIGN_OR_RETURN(op.steps, ParseSteps(op.id, s.Text(5)));
  op.attempt = s.Int(6);
  op.next_run_at = At(s.Int(7));
  op.lease_owner = s.Text(8);
  op.lease_until = At(s.Int(9));
  op.last_error_code = s.Text(10);
  op.last_error_message = s.Text(11);
  CANOPY_ASSIGN_OR_RETURN(op.data, ParseStoredJson("operations", op.id, s.Text(12)));
  op.version = s.Int(13);
  op.created_at = At(s.Int(14));
  op.updated_at = At(s.Int(15));
  return op;
}

Result<std::vector<core::Operation>> ReadOperations(Statement& s) {
  std::vector<core::Operation> out;
  while (true) {
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return out;
    }
    CANOPY_ASSIGN_OR_RETURN(core::Operation op, ReadOperation(s));
    out.push_back(std::move(op));
  }
}

class SqliteOperationRepo final : public OperationRepo {
 public:
  explicit SqliteOperationRepo(Connection& c) : c_(c) {}

  Status Create(const core::Operation& op) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare(fmt::format("INSERT INTO operations ({}) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               kOperationColumns)));
    s.Bind(op.id).Bind(op.kind).Bind(op.target_id);
    s.Bind(core::OperationStateName(op.state)).Bind(op.step).Bind(StepsToJson(op.steps));
    s.Bind(op.attempt).Bind(Ms(op.next_run_at)).Bind(op.lease_owner).Bind(Ms(op.lease_until));
    s.Bind(op.last_error_code).Bind(op.last_error_message).Bind(DumpJson(op.data));
    s.Bind(op.version).Bind(Ms(op.created_at)).Bind(Ms(op.updated_at));
    return WithExistsMessage(s.Run(), "operation already exists");
  }

  Result<core::Operation> Get(const std::string& id) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare(fmt::format("SELECT {} FROM operations WHERE id = ?", kOperationColumns)));
    s.Bind(id);
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return Error::NotFound("operation not found");
    }
    return ReadOperation(s);
  }

  Result<std::vector<core::Operation>> ListByTarget(const std::string& target_id) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare(fmt::format("SELECT {} FROM operations "
                                                                "WHERE target_id = ? "
                                                                "ORDER BY created_at DESC, id DESC",
                                                                kOperationColumns)));
    s.Bind(target_id);
    return ReadOperations(s);
  }

  Result<std::vector<core::Operation>> List(size_t limit) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare(fmt::format("SELECT {} FROM operations "
                                                                "ORDER BY created_at DESC, id DESC "
                                                                "LIMIT ?",
                                                                kOperationColumns)));
    s.Bind(LimitParam(limit));
    return ReadOperations(s);
  }

  Result<std::vector<core::Operation>> ClaimDue(const std::string& owner, TimePoint now,
                                                TimePoint lease_until, size_t limit) override {
    if (owner.empty()) {
      return Error::InvalidArgument("lease owner must not be empty");
    }
    std::vector<core::Operation> claimed;
    if (limit == 0) {
      return claimed;
    }
    Lock lock(c_.mutex());
    // BEGIN IMMEDIATE holds SQLite's write lock from the select to the commit, so no other
    // thread or process can claim the same rows in between.
    Status st = c_.InTransaction([&]() -> Status {
      std::vector<std::string> ids;
      {
        CANOPY_ASSIGN_OR_RETURN(Statement s,
                                c_.Prepare("SELECT id FROM operations "
                                           "WHERE state IN (?, ?) AND next_run_at <= ? "
                                           "AND (lease_owner = '' OR lease_until <= ?) "
                                           "ORDER BY next_run_at, id LIMIT ?"));
        s.Bind(core::OperationStateName(core::OperationState::kPending));
        s.Bind(core::OperationStateName(core::OperationState::kRunning));
        s.Bind(Ms(now)).Bind(Ms(now)).Bind(LimitParam(limit));
        while (true) {
          CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
          if (!row) {
            break;
          }
          ids.push_back(s.Text(0));
        }
      }
      for (const auto& id : ids) {
        CANOPY_ASSIGN_OR_RETURN(
            Statement s, c_.Prepare("UPDATE operations SET lease_owner = ?, lease_until = ?, "
                                    "version = version + 1 WHERE id = ?"));
        s.Bind(owner).Bind(Ms(lease_until)).Bind(id);
        CANOPY_TRY(s.Run());
      }
      for (const auto& id : ids) {
        CANOPY_ASSIGN_OR_RETURN(core::Operation op, Get(id));
        claimed.push_back(std::move(op));
      }
      return OkStatus();
    });
    if (!st) {
      return Unexpected(std::move(st).error());
    }
    return claimed;
  }

  Status RenewLease(const std::string& id, const std::string& owner,
                    TimePoint lease_until) override {
    if (owner.empty()) {
      return Error::InvalidArgument("lease owner must not be empty");
    }
    Lock lock(c_.mutex());
    // The version is left alone: a renewal from the worker's heartbeat must not make the worker's
    // own next Update fail its compare-and-swap.
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare("UPDATE operations SET lease_until = ? WHERE id = ? AND lease_owner = ?"));
    s.Bind(Ms(lease_until)).Bind(id).Bind(owner);
    CANOPY_TRY(s.Run());
    if (c_.Changes() == 0) {
      CANOPY_TRY(Exists(id));
      return Error::Conflict("operation lease is held by another owner");
    }
    return OkStatus();
  }

  Status Update(const core::Operation& op) override {
    Lock lock(c_.mutex());
    CANOPY_ASSIGN_OR_RETURN(
        Statement s,
        c_.Prepare("UPDATE operations SET state = ?, step = ?, steps = ?, attempt = ?, "
                   "next_run_at = ?, lease_owner = ?, lease_until = ?, last_error_code = ?, "
                   "last_error_message = ?, data = ?, version = ?, updated_at = ? "
                   "WHERE id = ? AND version = ?"));
    s.Bind(core::OperationStateName(op.state)).Bind(op.step).Bind(StepsToJson(op.steps));
    s.Bind(op.attempt).Bind(Ms(op.next_run_at)).Bind(op.lease_owner).Bind(Ms(op.lease_until));
    s.Bind(op.last_error_code).Bind(op.last_error_message).Bind(DumpJson(op.data));
    s.Bind(op.version + 1).Bind(Ms(op.updated_at)).Bind(op.id).Bind(op.version);
    CANOPY_TRY(s.Run());
    if (c_.Changes() == 0) {
      CANOPY_TRY(Exists(op.id));
      return Error::Conflict("operation was modified concurrently");
    }
    return OkStatus();
  }

 private:
  // OK when the operation exists, kNotFound otherwise.
  Status Exists(const std::string& id) {
    CANOPY_ASSIGN_OR_RETURN(Statement s, c_.Prepare("SELECT 1 FROM operations WHERE id = ?"));
    s.Bind(id);
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return Error::NotFound("operation not found");
    }
    return OkStatus();
  }

  Connection& c_;
};

}  // namespace

class SqliteStore::Repos {
 public:
  explicit Repos(Connection& c)
      : users(c),
        provider_tokens(c),
        providers(c),
        credentials(c),
        operations(c),
        clusters(detail::MakeClusterRepo(c)),
        cluster_tokens(detail::MakeClusterTokenRepo(c)),
        cluster_commands(detail::MakeClusterCommandRepo(c)),
        workers(detail::MakeWorkerRepo(c)),
        services(detail::MakeServiceRepo(c)) {}
  SqliteUserRepo users;
  SqliteProviderTokenRepo provider_tokens;
  SqliteProviderRepo providers;
  SqliteCredentialRepo credentials;
  SqliteOperationRepo operations;
  std::unique_ptr<ClusterRepo> clusters;
  std::unique_ptr<ClusterTokenRepo> cluster_tokens;
  std::unique_ptr<ClusterCommandRepo> cluster_commands;
  std::unique_ptr<WorkerRepo> workers;
  std::unique_ptr<ServiceRepo> services;
};

SqliteStore::SqliteStore(std::unique_ptr<Connection> conn)
    : conn_(std::move(conn)), repos_(std::make_unique<Repos>(*conn_)) {}

SqliteStore::~SqliteStore() {
  repos_.reset();
  conn_.reset();
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path) {
  return Open(path, store::detail::EmbeddedMigrations());
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    const std::string& path, const std::vector<store::detail::Migration>& migrations) {
  CANOPY_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connection::Open(path));
  std::unique_ptr<SqliteStore> store(new SqliteStore(std::move(conn)));
  CANOPY_TRY(store->Migrate(migrations));
  return store;
}

Status SqliteStore::Migrate(const std::vector<store::detail::Migration>& migrations) {
  Lock lock(conn_->mutex());
  CANOPY_TRY(
      conn_->Exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
                  "version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)"));
  std::vector<const store::detail::Migration*> ordered;
  for (const auto& m : migrations) {
    ordered.push_back(&m);
  }
  std::sort(ordered.begin(), ordered.end(),
            [](const auto* a, const auto* b) { return a->version < b->version; });
  const int64_t known = ordered.empty() ? 0 : ordered.back()->version;
  {
    CANOPY_ASSIGN_OR_RETURN(Statement s,
                            conn_->Prepare("SELECT MAX(version) FROM schema_migrations"));
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row && !s.IsNull(0) && s.Int(0) > known) {
      SPDLOG_ERROR("Database schema is newer than this binary schema_version={} known={}", s.Int(0),
                   known);
      return Error::FailedPrecondition("the database schema is newer than this version of Canopy");
    }
  }
  for (const auto* m : ordered) {
    // The check runs inside the transaction: when two processes open a new file at once, the
    // second one waits for the first one's write lock and then sees the migration applied.
    Status st = conn_->InTransaction([&]() -> Status {
      {
        CANOPY_ASSIGN_OR_RETURN(
            Statement s, conn_->Prepare("SELECT 1 FROM schema_migrations WHERE version = ?"));
        s.Bind(m->version);
        CANOPY_ASSIGN_OR_RETURN(bool applied, s.Step());
        if (applied) {
          return OkStatus();
        }
      }
      SPDLOG_INFO("Applying store migration version={} name={}", m->version, m->name);
      CANOPY_TRY(conn_->Exec(m->sql));
      CANOPY_ASSIGN_OR_RETURN(
          Statement s,
          conn_->Prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"));
      // Bookkeeping only, so the system clock is fine here (domain rows take caller times).
      s.Bind(m->version).Bind(UnixMillis(std::chrono::system_clock::now()));
      return s.Run();
    });
    if (!st) {
      SPDLOG_ERROR("Store migration failed version={} name={} error={}", m->version, m->name,
                   st.error().ToString());
      return Error::Internal(fmt::format("store migration {} failed", m->name));
    }
  }
  return OkStatus();
}

UserRepo& SqliteStore::users() { return repos_->users; }
ProviderTokenRepo& SqliteStore::provider_tokens() { return repos_->provider_tokens; }
ProviderRepo& SqliteStore::providers() { return repos_->providers; }
CredentialRepo& SqliteStore::credentials() { return repos_->credentials; }
OperationRepo& SqliteStore::operations() { return repos_->operations; }
ClusterRepo& SqliteStore::clusters() { return *repos_->clusters; }
ClusterTokenRepo& SqliteStore::cluster_tokens() { return *repos_->cluster_tokens; }
ClusterCommandRepo& SqliteStore::cluster_commands() { return *repos_->cluster_commands; }
WorkerRepo& SqliteStore::workers() { return *repos_->workers; }
ServiceRepo& SqliteStore::services() { return *repos_->services; }

Status SqliteStore::Transaction(const std::function<Status(Store&)>& fn) {
  return conn_->InTransaction([&]() { return fn(*this); });
}

Result<std::string> SqliteStore::JournalMode() {
  Lock lock(conn_->mutex());
  CANOPY_ASSIGN_OR_RETURN(Statement s, conn_->Prepare("PRAGMA journal_mode"));
  CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? s.Text(0) : std::string();
}

Result<std::vector<SqliteStore::AppliedMigration>> SqliteStore::AppliedMigrations() {
  Lock lock(conn_->mutex());
  CANOPY_ASSIGN_OR_RETURN(
      Statement s,
      conn_->Prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version"));
  std::vector<AppliedMigration> out;
  while (true) {
    CANOPY_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return out;
    }
    out.push_back({s.Int(0), FromUnixMillis(s.Int(1))});
  }
}

}  // namespace canopy::store::sqlite
