// SQLite-only behaviour of the store: file mode, WAL, migrations, OpenStore URLs, corrupt rows,
// and claims from two real processes. The backend-neutral suite is store_test.cpp.
#include "store/sqlite/sqlite_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "store/detail/migrations.h"
#include "store/store.h"
#include "support/test_util.h"

namespace canopy::store::sqlite {
namespace {

using namespace std::chrono_literals;
using canopy::testing::TempDir;
using store::detail::Migration;

const TimePoint kT0 = FromUnixMillis(1'800'000'000'000);
TimePoint At(int64_t ms) { return kT0 + std::chrono::milliseconds(ms); }

mode_t FileMode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return 07777;  // never a valid answer for these tests
  }
  return st.st_mode & 0777;
}

core::User MakeUser(const std::string& id, const std::string& username) {
  core::User u;
  u.id = id;
  u.username = username;
  u.password_hash = "hash";
  u.roles = {core::Role::kInfra};
  u.created_at = At(0);
  return u;
}

core::Operation MakeOp(const std::string& id, int64_t next_run_ms) {
  core::Operation op;
  op.id = id;
  op.kind = "test";
  op.target_id = "tgt-1";
  op.steps = {{"only", core::StepState::kPending, std::nullopt, std::nullopt}};
  op.next_run_at = At(next_run_ms);
  op.version = 1;
  op.created_at = At(0);
  op.updated_at = At(0);
  return op;
}

// Runs one statement on the file with a raw connection (to plant data the store would refuse).
void RawExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = err != nullptr ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << msg;
}

TEST(SqliteStore, FilesAreCreatedWithMode0600EvenUnderAPermissiveUmask) {
  TempDir dir;
  std::string path = dir.str() + "/canopy.db";
  mode_t old = ::umask(0);
  auto s = SqliteStore::Open(path);
  ::umask(old);
  ASSERT_OK(s);
  ASSERT_OK((*s)->users().Create(MakeUser("usr-1", "alice")));
  EXPECT_EQ(FileMode(path), 0600u);
  EXPECT_EQ(FileMode(path + "-wal"), 0600u);
  EXPECT_EQ(FileMode(path + "-shm"), 0600u);
}

TEST(SqliteStore, OpenTightensAWorldReadableFile) {
  TempDir dir;
  std::string path = dir.str() + "/canopy.db";
  { std::ofstream(path).flush(); }
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto s = SqliteStore::Open(path);
  ASSERT_OK(s);
  EXPECT_EQ(FileMode(path), 0600u);
}

TEST(SqliteStore, JournalModeIsWal) {
  TempDir dir;
  std::string path = dir.str() + "/canopy.db";
  auto s = SqliteStore::Open(path);
  ASSERT_OK(s);
  auto mode = (*s)->JournalMode();
  ASSERT_OK(mode);
  EXPECT_EQ(*mode, "wal");
  ASSERT_OK((*s)->users().Create(MakeUser("usr-1", "alice")));
  EXPECT_TRUE(std::filesystem::exists(path + "-wal"));
}

TEST(SqliteStore, EmbeddedMigrationsAreOrderedAndStartWithInit) {
  const auto& ms = store::detail::EmbeddedMigrations();
  ASSERT_FALSE(ms.empty());
  EXPECT_EQ(ms[0].version, 1);
  EXPECT_EQ(ms[0].name, "0001_init");
  for (const char* table : {"users", "provider_tokens", "providers", "credentials", "operations"}) {
    EXPECT_NE(ms[0].sql.find(std::string("CREATE TABLE ") + table + " ("), std::string::npos)
        << table;
  }
  for (size_t i = 1; i < ms.size(); ++i) {
    EXPECT_LT(ms[i - 1].version, ms[i].version);
  }
}

TEST(SqliteStore, ReopenKeepsDataAndDoesNotRerunMigrations) {
  TempDir dir;
  std::string path = dir.str() + "/canopy.db";
  std::vector<SqliteStore::AppliedMigration> first;
  {
    auto s = SqliteStore::Open(path);
    ASSERT_OK(s);
    auto applied = (*s)->AppliedMigrations();
    ASSERT_OK(applied);
    first = *applied;
    ASSERT_OK((*s)->users().Create(MakeUser("usr-1", "alice")));
  }
  ASSERT_EQ(first.size(), store::detail::EmbeddedMigrations().size());
  std::this_thread::sleep_for(5ms);  // a re-run would record a later applied_at
  auto s = SqliteStore::Open(path);
  ASSERT_OK(s);
  auto applied = (*s)->AppliedMigrations();
  ASSERT_OK(applied);
  ASSERT_EQ(applied->size(), first.size());
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ((*applied)[i].version, first[i].version);
    EXPECT_EQ((*applied)[i].applied_at, first[i].applied_at);
  }
  EXPECT_OK((*s)->users().GetByUsername("alice"));
}

TEST(SqliteStore, PendingMigrationsApplyInVersionOrderOnlyOnce) {
  TempDir dir;
  std::string path = dir.str() + "/m.db";
  // Given out of order: 2 needs the table made by 1.
  std::vector<Migration> ms = {
      {2, "0002_add_b", "ALTER TABLE t ADD COLUMN b TEXT;"},
      {1, "0001_make_t", "CREATE TABLE t (a TEXT);\nINSERT INTO t (a) VALUES ('x');"},
  };
  {
    auto s = SqliteStore::Open(path, ms);
    ASSERT_OK(s);
    auto applied = (*s)->AppliedMigrations();
    ASSERT_OK(applied);
    ASSERT_EQ(applied->size(), 2u);
    EXPECT_EQ((*applied)[0].version, 1);
    EXPECT_EQ((*applied)[1].version, 2);
  }
  // A new binary adds 3; 1 and 2 must not run again (the INSERT would add a second row).
  ms.push_back({3, "0003_add_c", "ALTER TABLE t ADD COLUMN c TEXT;"});
  auto s = SqliteStore::Open(path, ms);
  ASSERT_OK(s);
  auto applied = (*s)->AppliedMigrations();
  ASSERT_OK(applied);
  ASSERT_EQ(applied->size(), 3u);
  EXPECT_EQ((*applied)[2].version, 3);
  s->reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT COUNT(*), COUNT(c) FROM t", -1, &st, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), 1);
  EXPECT_EQ(sqlite3_column_int(st, 1), 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST(SqliteStore, FailedMigrationIsRolledBackAndOpenFails) {
  TempDir dir;
  std::string path = dir.str() + "/m.db";
  std::vector<Migration> ms = {
      {1, "0001_ok", "CREATE TABLE a (x TEXT);"},
      {2, "0002_broken", "CREATE TABLE b (y TEXT);\nINSERT INTO missing_table VALUES (1);"},
  };
  auto bad = SqliteStore::Open(path, ms);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInternal);
  EXPECT_NE(bad.error().message.find("0002_broken"), std::string::npos);
  EXPECT_EQ(bad.error().message.find("missing_table"), std::string::npos);  // no SQL text
  // Fixed migration 2: table b must not be left over from the failed attempt.
  ms[1].sql = "CREATE TABLE b (y TEXT);";
  auto s = SqliteStore::Open(path, ms);
  ASSERT_OK(s);
  auto applied = (*s)->AppliedMigrations();
  ASSERT_OK(applied);
  EXPECT_EQ(applied->size(), 2u);
}

TEST(SqliteStore, SchemaNewerThanTheBinaryIsFailedPrecondition) {
  TempDir dir;
  std::string path = dir.str() + "/m.db";
  std::vector<Migration> ms = {{1, "0001_a", "CREATE TABLE a (x TEXT);"},
                               {2, "0002_b", "CREATE TABLE b (x TEXT);"}};
  ASSERT_OK(SqliteStore::Open(path, ms));
  ms.pop_back();
  auto s = SqliteStore::Open(path, ms);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::kFailedPrecondition);
}

TEST(SqliteStore, ConcurrentOpensOfANewFileMigrateOnce) {
  TempDir dir;
  std::string path = dir.str() + "/race.db";
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      auto s = SqliteStore::Open(path);
      if (s) {
        ++ok;
      } else {
        ADD_FAILURE() << s.error().ToString();
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(ok.load(), 4);
  auto s = SqliteStore::Open(path);
  ASSERT_OK(s);
  auto applied = (*s)->AppliedMigrations();
  ASSERT_OK(applied);
  EXPECT_EQ(applied->size(), store::detail::EmbeddedMigrations().size());
}

TEST(SqliteStore, OpenOfAFileThatIsNotADatabaseFails) {
  TempDir dir;
  std::string path = dir.str() + "/junk.db";
  {
    std::ofstream f(path);
    f << std::string(8192, 'x');
  }
  auto s = SqliteStore::Open(path);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::kInternal);
}

TEST(SqliteStore, CorruptStoredRowIsInternalError) {
  TempDir dir;
  std::string path = dir.str() + "/canopy.db";
  auto s = SqliteStore::Open(path);
  ASSERT_OK(s);
  ASSERT_OK((*s)->operations().Create(MakeOp("op-1", 0)));
  ASSERT_OK((*s)->users().Create(MakeUser("usr-1", "alice")));
  RawExec(path, "UPDATE operations SET data = '{not json' WHERE id = 'op-1'");
  RawExec(path, "UPDATE users SET roles = '[\"emperor\"]' WHERE id = 'usr-1'");
  auto op = (*s)->operations().Get("op-1");
  ASSERT_FALSE(op);
  EXPECT_EQ(op.error().code, ErrorCode::kInternal);
  EXPECT_EQ(op.error().message, "stored data is corrupt");
  auto u = (*s)->users().Get("usr-1");
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, ErrorCode::kInternal);
}

TEST(SqliteStore, TransactionExcludesOtherThreadsUntilItEnds) {
  TempDir dir;
  auto opened = SqliteStore::Open(dir.str() + "/canopy.db");
  ASSERT_OK(opened);
  SqliteStore& store = **opened;
  std::atomic<bool> started{false};
  std::atomic<bool> other_done{false};
  std::atomic<int64_t> other_count{-1};
  std::thread t;
  ASSERT_OK(store.Transaction([&](Store& s) -> Status {
    CANOPY_TRY(s.users().Create(MakeUser("usr-1", "alice")));
    t = std::thread([&] {
      started = true;
      other_count = store.users().Count().value_or(-2);
      other_done = true;
    });
    while (!started.load()) {
      std::this_thread::yield();
    }
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(other_done.load()) << "another thread got in during the transaction";
    return s.users().Create(MakeUser("usr-2", "bob"));
  }));
  t.join();
  // It ran after the commit and saw both rows.
  EXPECT_EQ(other_count.load(), 2);
}

TEST(SqliteStore, ClaimDueRejectsAnEmptyOwner) {
  TempDir dir;
  auto s = SqliteStore::Open(dir.str() + "/canopy.db");
  ASSERT_OK(s);
  ASSERT_OK((*s)->operations().Create(MakeOp("op-1", 0)));
  auto r = (*s)->operations().ClaimDue("", At(0), At(10), 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
}

// ---- OpenStore ----

TEST(OpenStore, SqliteUrlCreatesTheParentDirectories) {
  TempDir dir;
  std::string path = dir.str() + "/a/b/canopy.db";
  auto s = OpenStore("sqlite:" + path);
  ASSERT_OK(s);
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(FileMode(path), 0600u);
  ASSERT_OK((*s)->users().Create(MakeUser("usr-1", "alice")));
}

TEST(OpenStore, SqliteUrlWithSlashesAndPlainPathOpenTheSameFile) {
  TempDir dir;
  std::string path = dir.str() + "/canopy.db";
  {
    auto s = OpenStore("sqlite://" + path);  // sqlite:///tmp/... -> /tmp/...
    ASSERT_OK(s);
    ASSERT_OK((*s)->users().Create(MakeUser("usr-1", "alice")));
  }
  auto s = OpenStore(path);
  ASSERT_OK(s);
  EXPECT_OK((*s)->users().Get("usr-1"));
}

TEST(OpenStore, PostgresIsNotBuiltYet) {
  for (const char* url : {"postgres://canopy@localhost/canopy", "postgresql://localhost/x"}) {
    auto s = OpenStore(url);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(s.error().message, "PostgreSQL store is not built yet");
  }
}

TEST(OpenStore, EmptyPathAndUnknownSchemeAreInvalidArgument) {
  for (const char* url : {"", "sqlite:", "mysql://localhost/db"}) {
    auto s = OpenStore(url);
    ASSERT_FALSE(s) << url;
    EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument) << url;
  }
}

// ---- two processes ----

// Claims one operation at a time until none is due; writes the claimed ids to `out`, one a line.
// Returns 0 on success. Used by a forked child, so it reports through its exit code only.
int ClaimAll(const std::string& path, const std::string& owner, std::vector<std::string>* out) {
  auto s = SqliteStore::Open(path);
  if (!s) {
    return 2;
  }
  int empty_rounds = 0;
  while (empty_rounds < 3) {
    auto r = (*s)->operations().ClaimDue(owner, At(1000), At(1'000'000), 1);
    if (!r) {
      return 3;
    }
    if (r->empty()) {
      ++empty_rounds;
      continue;
    }
    for (const auto& op : *r) {
      if (op.lease_owner != owner) {
        return 4;
      }
      out->push_back(op.id);
    }
    std::this_thread::sleep_for(1ms);  // let the other process in
  }
  return 0;
}

TEST(SqliteStore, TwoProcessesNeverClaimTheSameOperation) {
  TempDir dir;
  std::string path = dir.str() + "/shared.db";
  constexpr int kOps = 120;
  {
    auto s = SqliteStore::Open(path);
    ASSERT_OK(s);
    for (int i = 0; i < kOps; ++i) {
      ASSERT_OK((*s)->operations().Create(MakeOp("op-" + std::to_string(i), i)));
    }
  }  // closed before fork: SQLite connections must not cross fork()

  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  std::string child_file = dir.str() + "/child.txt";
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(go[1]);
    char c = 0;
    if (::read(go[0], &c, 1) != 1) {
      ::_exit(5);
    }
    std::vector<std::string> ids;
    int rc = ClaimAll(path, "child", &ids);
    std::ofstream f(child_file);
    for (const auto& id : ids) {
      f << id << "\n";
    }
    f.close();
    ::_exit(rc != 0 ? rc : (f ? 0 : 6));
  }
  ::close(go[0]);
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);
  std::vector<std::string> parent_ids;
  int parent_rc = ClaimAll(path, "parent", &parent_ids);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  ASSERT_EQ(parent_rc, 0);

  std::vector<std::string> child_ids;
  std::ifstream in(child_file);
  for (std::string line; std::getline(in, line);) {
    child_ids.push_back(line);
  }
  EXPECT_GT(parent_ids.size(), 0u);
  EXPECT_GT(child_ids.size(), 0u);
  std::set<std::string> all(parent_ids.begin(), parent_ids.end());
  for (const auto& id : child_ids) {
    EXPECT_TRUE(all.insert(id).second) << id << " claimed by both processes";
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kOps));
  EXPECT_EQ(parent_ids.size() + child_ids.size(), static_cast<size_t>(kOps));
}

}  // namespace
}  // namespace canopy::store::sqlite
