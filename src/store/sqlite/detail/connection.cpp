#include "store/sqlite/detail/connection.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/log.h"

namespace canopy::store::sqlite::detail {
namespace {

constexpr int kBusyTimeoutMs = 5000;

// Creates the file with mode 0600 before SQLite opens it, so the database (and the -wal/-shm
// files, which SQLite creates with the database's mode) is never readable by others.
Status CreatePrivateFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    SPDLOG_ERROR("Cannot create database file path={} error={}", path, std::strerror(err));
    return Error::Internal("cannot create the database file");
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0 && (st.st_mode & 0077) != 0 && ::fchmod(fd, 0600) != 0) {
    int err = errno;
    SPDLOG_WARN("Cannot restrict database file mode path={} error={}", path, std::strerror(err));
  }
  ::close(fd);
  return OkStatus();
}

}  // namespace

// ---- Statement ----

Statement::Statement(Connection* conn, sqlite3_stmt* stmt, CachedStatement* cached)
    : conn_(conn), stmt_(stmt), cached_(cached) {}

Statement::Statement(Statement&& o) noexcept
    : conn_(o.conn_),
      stmt_(o.stmt_),
      cached_(o.cached_),
      next_(o.next_),
      bind_status_(std::move(o.bind_status_)) {
  o.stmt_ = nullptr;
  o.cached_ = nullptr;
}

Statement::~Statement() {
  if (stmt_ == nullptr) {
    return;
  }
  if (cached_ == nullptr) {
    sqlite3_finalize(stmt_);
    return;
  }
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  cached_->in_use = false;
}

Statement& Statement::Bind(std::string_view text) {
  int rc =
      sqlite3_bind_text64(stmt_, next_++, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK && bind_status_) {
    bind_status_ = conn_->MapError(rc, sqlite3_sql(stmt_));
  }
  return *this;
}

Statement& Statement::Bind(Blob blob) {
  // A zero-length blob must still be a BLOB, not NULL: pass a non-null pointer.
  static const char kEmpty = 0;
  const char* data = blob.bytes.empty() ? &kEmpty : blob.bytes.data();
  int rc = sqlite3_bind_blob64(stmt_, next_++, data, blob.bytes.size(), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK && bind_status_) {
    bind_status_ = conn_->MapError(rc, sqlite3_sql(stmt_));
  }
  return *this;
}

Statement& Statement::Bind(int64_t v) {
  int rc = sqlite3_bind_int64(stmt_, next_++, v);
  if (rc != SQLITE_OK && bind_status_) {
    bind_status_ = conn_->MapError(rc, sqlite3_sql(stmt_));
  }
  return *this;
}

Statement& Statement::Bind(std::optional<int64_t> v) {
  if (v.has_value()) {
    return Bind(*v);
  }
  int rc = sqlite3_bind_null(stmt_, next_++);
  if (rc != SQLITE_OK && bind_status_) {
    bind_status_ = conn_->MapError(rc, sqlite3_sql(stmt_));
  }
  return *this;
}

Result<bool> Statement::Step() {
  if (!bind_status_) {
    return Unexpected(bind_status_.error());
  }
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  return conn_->MapError(rc, sqlite3_sql(stmt_));
}

Status Statement::Run() {
  while (true) {
    CANOPY_ASSIGN_OR_RETURN(bool row, Step());
    if (!row) {
      return OkStatus();
    }
  }
}

bool Statement::IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

int64_t Statement::Int(int col) const { return sqlite3_column_int64(stmt_, col); }

std::string Statement::Text(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  int n = sqlite3_column_bytes(stmt_, col);
  return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), n);
}

std::string Statement::BlobBytes(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  int n = sqlite3_column_bytes(stmt_, col);
  return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), n);
}

// ---- Connection ----

Connection::Connection(sqlite3* db) : db_(db) {}

Connection::~Connection() {
  for (auto& [sql, entry] : cache_) {
    sqlite3_finalize(entry.stmt);
  }
  sqlite3_close_v2(db_);
}

Result<std::unique_ptr<Connection>> Connection::Open(const std::string& path) {
  CANOPY_TRY(CreatePrivateFile(path));
  sqlite3* db = nullptr;
  // SQLite's own mutexes are off: the store serializes use of the connection with its own mutex.
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    SPDLOG_ERROR("Cannot open database path={} rc={} detail={}", path, rc,
                 db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close_v2(db);
    return Error::Internal("cannot open the database");
  }
  std::unique_ptr<Connection> conn(new Connection(db));
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  CANOPY_TRY(conn->Exec("PRAGMA foreign_keys = ON"));
  {
    // journal_mode answers with the mode in force: WAL must actually be on. Switching a
    // new file to WAL needs an exclusive lock and SQLite does not run the busy handler for
    // it, so concurrent first opens retry here for up to the busy timeout.
    std::string mode;
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kBusyTimeoutMs);
    for (int attempt = 0;; ++attempt) {
      CANOPY_ASSIGN_OR_RETURN(Statement s, conn->Prepare("PRAGMA journal_mode = WAL"));
      Result<bool> row = s.Step();
      if (row.has_value()) {
        mode = *row ? s.Text(0) : "";
        break;
      }
      if (row.error().code != ErrorCode::kUnavailable ||
          std::chrono::steady_clock::now() >= deadline) {
        return row.error();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5 + attempt * 5, 50)));
    }
    if (mode != "wal") {
      SPDLOG_ERROR("Cannot enable WAL path={} journal_mode={}", path, mode);
      return Error::Internal("cannot enable write-ahead logging on the database");
    }
  }
  CANOPY_TRY(conn->Exec("PRAGMA synchronous = NORMAL"));
  return conn;
}

Result<Statement> Connection::Prepare(const std::string& sql) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  auto it = cache_.find(sql);
  if (it != cache_.end() && !it->second.in_use) {
    it->second.in_use = true;
    return Statement(this, it->second.stmt, &it->second);
  }
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    return MapError(rc, sql);
  }
  if (it != cache_.end()) {
    // The cached one is busy (re-entrant use): this copy is finalized after use.
    return Statement(this, stmt, nullptr);
  }
  auto [ins, ok] = cache_.emplace(sql, CachedStatement{stmt, true});
  return Statement(this, stmt, &ins->second);
}

Status Connection::Exec(const std::string& sql) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  sqlite3_free(err);  // the same text is available from sqlite3_errmsg in MapError
  if (rc != SQLITE_OK) {
    // Migrations are long: name them by their first line only.
    return MapError(rc, std::string_view(sql).substr(0, sql.find('\n')));
  }
  return OkStatus();
}

int64_t Connection::Changes() const { return sqlite3_changes64(db_); }

Error Connection::MapError(int rc, std::string_view what) const {
  int ext = sqlite3_extended_errcode(db_);
  if (ext == 0) {
    ext = rc;
  }
  // The detail names tables and columns, never values; the SQL text holds only placeholders.
  const char* detail = sqlite3_errmsg(db_);
  switch (ext) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      // Expected (a taken name): not worth an error line.
      SPDLOG_DEBUG("SQLite constraint sql=\"{}\" rc={} detail={}", what, ext, detail);
      return Error::AlreadyExists("already exists");
    case SQLITE_CONSTRAINT_FOREIGNKEY:
      SPDLOG_DEBUG("SQLite constraint sql=\"{}\" rc={} detail={}", what, ext, detail);
      return Error::FailedPrecondition("a referenced record is missing or still in use");
    default:
      break;
  }
  switch (ext & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      SPDLOG_WARN("SQLite busy sql=\"{}\" rc={} detail={}", what, ext, detail);
      return Error::Unavailable("the database is busy");
    default:
      SPDLOG_ERROR("SQLite statement failed sql=\"{}\" rc={} detail={}", what, ext, detail);
      return Error::Internal("database error");
  }
}

Status Connection::InTransaction(const std::function<Status()>& fn) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  const bool outer = depth_ == 0;
  const std::string savepoint = fmt::format("canopy_sp_{}", depth_);
  // IMMEDIATE takes the write lock up front: a deferred transaction that later writes could fail
  // with SQLITE_BUSY_SNAPSHOT under WAL, which the busy timeout does not retry.
  CANOPY_TRY(Exec(outer ? std::string("BEGIN IMMEDIATE") : "SAVEPOINT " + savepoint));
  ++depth_;
  Status st;
  try {
    st = fn();
  } catch (...) {
    --depth_;
    Abort(outer, savepoint);
    throw;
  }
  --depth_;
  if (!st) {
    Abort(outer, savepoint);
    return st;
  }
  Status end = Exec(outer ? std::string("COMMIT") : "RELEASE " + savepoint);
  if (!end) {
    Abort(outer, savepoint);
    return end;
  }
  return OkStatus();
}

void Connection::Abort(bool outer, const std::string& savepoint) {
  if (sqlite3_get_autocommit(db_) != 0) {
    return;  // SQLite already rolled the whole transaction back (e.g. after an I/O error)
  }
  if (outer) {
    (void)Exec("ROLLBACK");
    return;
  }
  (void)Exec("ROLLBACK TO " + savepoint);
  (void)Exec("RELEASE " + savepoint);
}

}  // namespace canopy::store::sqlite::detail
