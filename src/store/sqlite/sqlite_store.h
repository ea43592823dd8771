// SqliteStore: the Store on one SQLite file (WAL, synchronous=NORMAL, foreign keys on, file mode
// 0600). Made by OpenStore("sqlite:PATH"); tests and tools may open it directly.
// Thread-safe: one connection guarded by a recursive mutex. SQLite allows one writer per file
// anyway, and the recursive mutex lets Transaction(fn) hold the connection while fn calls the
// repositories on the same thread; other threads wait until the transaction ends. Several
// processes (or SqliteStore instances) may share the file: writes take SQLite's file lock.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "store/detail/migrations.h"
#include "store/store.h"

namespace canopy::store::sqlite {

namespace detail {
class Connection;
}

class SqliteStore final : public Store {
 public:
  struct AppliedMigration {
    int64_t version = 0;
    TimePoint applied_at{};
  };

  // Opens or creates the database file at `path` (its directory must exist) and applies the
  // pending embedded migrations, each in its own transaction. A database whose schema is newer
  // than this binary -> kFailedPrecondition.
  static Result<std::unique_ptr<SqliteStore>> Open(const std::string& path);
  // Same with an explicit migration list (tests).
  static Result<std::unique_ptr<SqliteStore>> Open(
      const std::string& path, const std::vector<store::detail::Migration>& migrations);

  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  UserRepo& users() override;
  ProviderTokenRepo& provider_tokens() override;
  ProviderRepo& providers() override;
  CredentialRepo& credentials() override;
  OperationRepo& operations() override;
  ClusterRepo& clusters() override;
  ClusterTokenRepo& cluster_tokens() override;
  ClusterCommandRepo& cluster_commands() override;
  WorkerRepo& workers() override;
  ServiceRepo& services() override;
  Status Transaction(const std::function<Status(Store&)>& fn) override;

  // Diagnostics: the journal mode in force ("wal") and the rows of schema_migrations.
  Result<std::string> JournalMode();
  Result<std::vector<AppliedMigration>> AppliedMigrations();

 private:
  class Repos;  // the repository implementations (sqlite_store.cpp)

  explicit SqliteStore(std::unique_ptr<detail::Connection> conn);
  Status Migrate(const std::vector<store::detail::Migration>& migrations);

  std::unique_ptr<detail::Connection> conn_;
  std::unique_ptr<Repos> repos_;
};

}  // namespace canopy::store::sqlite
