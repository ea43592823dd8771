// Connection: one SQLite connection with a prepared-statement cache, transactions (nested ones as
// savepoints) and the mapping of SQLite failures to Errors. Internal to store/sqlite.
// Thread-safe only under mutex(): callers hold it while they use the connection or a Statement.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace canopy::store::sqlite::detail {

class Connection;

// One cached prepared statement; `in_use` while a Statement borrows it.
struct CachedStatement {
  sqlite3_stmt* stmt = nullptr;
  bool in_use = false;
};

// Marks a value to bind as BLOB (binary, may hold NUL bytes) rather than TEXT.
struct Blob {
  std::string_view bytes;
};

// A prepared statement borrowed from the cache (or owned, when the cached one is already in use).
// Resets itself and clears its bindings on destruction. Move-only.
class Statement {
 public:
  // `cached` is null for a statement this object owns and finalizes.
  Statement(Connection* conn, sqlite3_stmt* stmt, CachedStatement* cached);
  Statement(Statement&& o) noexcept;
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  // Binds the next parameter (1, 2, ...).
  Statement& Bind(std::string_view text);
  Statement& Bind(const std::string& text) { return Bind(std::string_view(text)); }
  Statement& Bind(const char* text) { return Bind(std::string_view(text)); }
  Statement& Bind(Blob blob);
  Statement& Bind(int64_t v);
  Statement& Bind(std::optional<int64_t> v);

  // Advances: true when a row is available, false when done.
  Result<bool> Step();
  // Runs to completion, ignoring rows.
  Status Run();

  bool IsNull(int col) const;
  int64_t Int(int col) const;
  std::string Text(int col) const;
  std::string BlobBytes(int col) const;

 private:
  Connection* conn_;
  sqlite3_stmt* stmt_;
  CachedStatement* cached_;
  int next_ = 1;
  Status bind_status_;
};

class Connection {
 public:
  // Opens (creating if needed, mode 0600) the database file and sets WAL, synchronous=NORMAL,
  // foreign_keys=ON and a busy timeout.
  static Result<std::unique_ptr<Connection>> Open(const std::string& path);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  std::recursive_mutex& mutex() { return mu_; }

  // A cached prepared statement for `sql` (which must hold no values, only placeholders).
  Result<Statement> Prepare(const std::string& sql);
  // Runs one or more statements without results (DDL, migrations). Not cached.
  Status Exec(const std::string& sql);
  // Runs fn atomically: BEGIN IMMEDIATE / COMMIT at the outermost level; a nested call runs in a
  // savepoint of the outer transaction, so an error undoes only its own writes. An error from fn
  // (or an exception, rethrown) rolls back.
  Status InTransaction(const std::function<Status()>& fn);
  // Rows changed by the last INSERT/UPDATE/DELETE.
  int64_t Changes() const;

  // Maps a SQLite result code to an Error and logs the detail (never values). `what` names the
  // statement for the log.
  Error MapError(int rc, std::string_view what) const;

 private:
  explicit Connection(sqlite3* db);
  void Abort(bool outer, const std::string& savepoint);

  std::recursive_mutex mu_;
  sqlite3* db_;
  int depth_ = 0;  // transaction nesting
  // Node-based map: Statements keep pointers to entries.
  std::unordered_map<std::string, CachedStatement> cache_;
};

}  // namespace canopy::store::sqlite::detail
