// The store suite: written against the Store interface only, and run on every backend listed in
// kBackends at the bottom (add a PostgreSQL backend there with one line).
#include "store/store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "support/test_util.h"

namespace canopy::store {
namespace {

using namespace std::chrono_literals;
using core::Operation;
using core::OperationState;

// One database on which the suite can open several Store handles, as separate processes would.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual Result<StorePtr> Open() = 0;
};

struct BackendFactory {
  std::string name;
  std::function<std::unique_ptr<Backend>()> make;
};

// Readable parameter in gtest's failure lines.
void PrintTo(const BackendFactory& f, std::ostream* os) { *os << f.name; }

class SqliteBackend final : public Backend {
 public:
  Result<StorePtr> Open() override { return OpenStore("sqlite:" + dir_.str() + "/db/canopy.db"); }

 private:
  canopy::testing::TempDir dir_;
};

const TimePoint kT0 = FromUnixMillis(1'800'000'000'000);
TimePoint At(int64_t ms) { return kT0 + std::chrono::milliseconds(ms); }

core::User MakeUser(const std::string& id, const std::string& username, int64_t created_ms = 0) {
  core::User u;
  u.id = id;
  u.username = username;
  u.password_hash = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA";
  u.roles = {core::Role::kAdmin, core::Role::kApp};
  u.created_at = At(created_ms);
  return u;
}

core::ProviderToken MakeToken(const std::string& id, const std::string& hash, int64_t expires_ms) {
  core::ProviderToken t;
  t.id = id;
  t.token_hash = hash;
  t.expires_at = At(expires_ms);
  t.created_at = At(0);
  t.created_by = "usr-admin";
  return t;
}

core::ProviderRecord MakeProvider(const std::string& id, int64_t registered_ms = 0) {
  core::ProviderRecord p;
  p.id = id;
  p.type = "fake";
  p.url = "http://127.0.0.1:9001";
  p.capabilities = Json{{"regions", Json::array({"local-1", "local-2"})}, {"gpu", false}};
  p.version = "1.0.0";
  p.key_ciphertext = std::string("\x01\x00\xff key", 7);
  p.registered_at = At(registered_ms);
  p.last_seen = At(registered_ms);
  return p;
}

core::Credential MakeCredential(const std::string& id, const std::string& name,
                                int64_t created_ms = 0) {
  core::Credential c;
  c.id = id;
  c.name = name;
  c.provider = "aws";
  c.secret_ciphertext = "sealed-" + id;
  c.created_by = "usr-infra";
  c.created_at = At(created_ms);
  return c;
}

Operation MakeOp(const std::string& id, const std::string& target, int64_t created_ms = 0,
                 int64_t next_run_ms = 0) {
  Operation op;
  op.id = id;
  op.kind = "create_cluster";
  op.target_id = target;
  op.state = OperationState::kPending;
  op.steps = {{"allocate", core::StepState::kPending, std::nullopt, std::nullopt},
              {"install", core::StepState::kPending, std::nullopt, std::nullopt}};
  op.next_run_at = At(next_run_ms);
  op.data = Json{{"size", 3}};
  op.version = 1;
  op.created_at = At(created_ms);
  op.updated_at = At(created_ms);
  return op;
}

std::vector<std::string> Ids(const std::vector<Operation>& ops) {
  std::vector<std::string> ids;
  for (const auto& op : ops) {
    ids.push_back(op.id);
  }
  return ids;
}

class StoreTest : public ::testing::TestWithParam<BackendFactory> {
 protected:
  void SetUp() override {
    backend_ = GetParam().make();
    auto s = backend_->Open();
    ASSERT_TRUE(s.has_value()) << s.error().ToString();
    store_ = std::move(s).value();
  }

  Store& store() { return *store_; }

  std::unique_ptr<Backend> backend_;
  StorePtr store_;
};

// ---------------- users ----------------

TEST_P(StoreTest, UserCreateThenGetReturnsEveryField) {
  core::User u = MakeUser("usr-1", "alice", 42);
  ASSERT_OK(store().users().Create(u));
  auto got = store().users().Get("usr-1");
  ASSERT_OK(got);
  EXPECT_EQ(got->id, "usr-1");
  EXPECT_EQ(got->username, "alice");
  EXPECT_EQ(got->password_hash, u.password_hash);
  EXPECT_EQ(got->roles, u.roles);
  EXPECT_EQ(got->created_at, At(42));
}

TEST_P(StoreTest, UserGetByUsernameFindsTheUser) {
  ASSERT_OK(store().users().Create(MakeUser("usr-1", "alice")));
  ASSERT_OK(store().users().Create(MakeUser("usr-2", "bob")));
  auto got = store().users().GetByUsername("bob");
  ASSERT_OK(got);
  EXPECT_EQ(got->id, "usr-2");
}

TEST_P(StoreTest, UserCreateWithTakenUsernameIsAlreadyExists) {
  ASSERT_OK(store().users().Create(MakeUser("usr-1", "alice")));
  auto st = store().users().Create(MakeUser("usr-2", "alice"));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kAlreadyExists);
  // Messages are shown to users: no SQL, no values.
  EXPECT_EQ(st.error().message.find("alice"), std::string::npos);
  EXPECT_EQ(st.error().message.find("INSERT"), std::string::npos);
  EXPECT_EQ(store().users().Count().value_or(-1), 1);
}

TEST_P(StoreTest, UserCreateWithTakenIdIsAlreadyExists) {
  ASSERT_OK(store().users().Create(MakeUser("usr-1", "alice")));
  auto st = store().users().Create(MakeUser("usr-1", "bob"));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kAlreadyExists);
}

TEST_P(StoreTest, UserGetUnknownIsNotFound) {
  auto a = store().users().Get("usr-none");
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, ErrorCode::kNotFound);
  auto b = store().users().GetByUsername("nobody");
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, UserListIsOrderedByCreatedAtThenId) {
  ASSERT_OK(store().users().Create(MakeUser("usr-c", "carol", 5)));
  ASSERT_OK(store().users().Create(MakeUser("usr-b", "bob", 1)));
  ASSERT_OK(store().users().Create(MakeUser("usr-a", "alice", 5)));
  auto list = store().users().List();
  ASSERT_OK(list);
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].id, "usr-b");
  EXPECT_EQ((*list)[1].id, "usr-a");
  EXPECT_EQ((*list)[2].id, "usr-c");
}

TEST_P(StoreTest, UserDeleteRemovesItAndASecondDeleteIsNotFound) {
  ASSERT_OK(store().users().Create(MakeUser("usr-1", "alice")));
  ASSERT_OK(store().users().Create(MakeUser("usr-2", "bob")));
  ASSERT_OK(store().users().Delete("usr-1"));
  EXPECT_EQ(store().users().Get("usr-1").error().code, ErrorCode::kNotFound);
  EXPECT_OK(store().users().Get("usr-2"));
  auto again = store().users().Delete("usr-1");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kNotFound);
  // The username is free again.
  EXPECT_OK(store().users().Create(MakeUser("usr-3", "alice")));
}

TEST_P(StoreTest, UserCountCountsRows) {
  EXPECT_EQ(store().users().Count().value_or(-1), 0);
  ASSERT_OK(store().users().Create(MakeUser("usr-1", "alice")));
  ASSERT_OK(store().users().Create(MakeUser("usr-2", "bob")));
  EXPECT_EQ(store().users().Count().value_or(-1), 2);
}

TEST_P(StoreTest, UserWithNoRolesRoundTrips) {
  core::User u = MakeUser("usr-1", "alice");
  u.roles.clear();
  ASSERT_OK(store().users().Create(u));
  auto got = store().users().Get("usr-1");
  ASSERT_OK(got);
  EXPECT_TRUE(got->roles.empty());
}

// ---------------- provider tokens ----------------

TEST_P(StoreTest, TokenConsumeReturnsTheTokenMarkedUsed) {
  ASSERT_OK(store().provider_tokens().Create(MakeToken("ptk-1", "hash-1", 60'000)));
  auto t = store().provider_tokens().Consume("hash-1", At(1000));
  ASSERT_OK(t);
  EXPECT_EQ(t->id, "ptk-1");
  EXPECT_EQ(t->token_hash, "hash-1");
  EXPECT_EQ(t->expires_at, At(60'000));
  EXPECT_EQ(t->created_at, At(0));
  EXPECT_EQ(t->created_by, "usr-admin");
  ASSERT_TRUE(t->used_at.has_value());
  EXPECT_EQ(*t->used_at, At(1000));
}

TEST_P(StoreTest, TokenConsumeIsSingleUse) {
  ASSERT_OK(store().provider_tokens().Create(MakeToken("ptk-1", "hash-1", 60'000)));
  ASSERT_OK(store().provider_tokens().Consume("hash-1", At(1000)));
  auto second = store().provider_tokens().Consume("hash-1", At(2000));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, ErrorCode::kUnauthenticated);
}

TEST_P(StoreTest, TokenConsumeFailsOnceExpired) {
  ASSERT_OK(store().provider_tokens().Create(MakeToken("ptk-1", "hash-1", 60'000)));
  ASSERT_OK(store().provider_tokens().Create(MakeToken("ptk-2", "hash-2", 60'000)));
  auto at_expiry = store().provider_tokens().Consume("hash-1", At(60'000));
  ASSERT_FALSE(at_expiry);
  EXPECT_EQ(at_expiry.error().code, ErrorCode::kUnauthenticated);
  EXPECT_FALSE(store().provider_tokens().Consume("hash-1", At(90'000)));
  // One millisecond before expiry it still works.
  EXPECT_OK(store().provider_tokens().Consume("hash-2", At(59'999)));
}

TEST_P(StoreTest, TokenConsumeFailuresAreIndistinguishable) {
  ASSERT_OK(store().provider_tokens().Create(MakeToken("ptk-1", "hash-used", 60'000)));
  ASSERT_OK(store().provider_tokens().Create(MakeToken("ptk-2", "hash-expired", 10)));
  ASSERT_OK(store().provider_tokens().Consume("hash-used", At(1)));
  auto used = store().provider_tokens().Consume("hash-used", At(100));
  auto expired = store().provider_tokens().Consume("hash-expired", At(100));
  auto unknown = store().provider_tokens().Consume("hash-unknown", At(100));
  ASSERT_FALSE(used);
  ASSERT_FALSE(expired);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(used.error().code, unknown.error().code);
  EXPECT_EQ(expired.error().code, unknown.error().code);
  EXPECT_EQ(used.error().message, unknown.error().message);
  EXPECT_EQ(expired.error().message, unknown.error().message);
}

TEST_P(StoreTest, TokenConcurrentConsumersExactlyOneWins) {
  auto other = backend_->Open();
  ASSERT_OK(other);
  for (int round = 0; round < 5; ++round) {
    std::string hash = "hash-race-" + std::to_string(round);
    ASSERT_OK(store().provider_tokens().Create(
        MakeToken("ptk-race-" + std::to_string(round), hash, 60'000)));
    std::atomic<int> wins{0};
    std::atomic<int> unauthenticated{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
      // Half the threads go through a second handle on the same database.
      Store* s = (i % 2 == 0) ? &store() : other->get();
      threads.emplace_back([s, &hash, &wins, &unauthenticated] {
        auto r = s->provider_tokens().Consume(hash, At(1000));
        if (r) {
          ++wins;
        } else if (r.error().code == ErrorCode::kUnauthenticated) {
          ++unauthenticated;
        }
      });
    }
    for (auto& t : threads) {
      t.join();
    }
    EXPECT_EQ(wins.load(), 1) << "round " << round;
    EXPECT_EQ(unauthenticated.load(), 7) << "round " << round;
  }
}

TEST_P(StoreTest, TokenCreateWithTakenIdIsAlreadyExists) {
  ASSERT_OK(store().provider_tokens().Create(MakeToken("ptk-1", "hash-1", 60'000)));
  auto st = store().provider_tokens().Create(MakeToken("ptk-1", "hash-2", 60'000));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kAlreadyExists);
}

// ---------------- providers ----------------

TEST_P(StoreTest, ProviderCreateThenGetReturnsEveryField) {
  core::ProviderRecord p = MakeProvider("prv-1", 7);
  p.last_seen = At(9);
  ASSERT_OK(store().providers().Create(p));
  auto got = store().providers().Get("prv-1");
  ASSERT_OK(got);
  EXPECT_EQ(got->id, "prv-1");
  EXPECT_EQ(got->type, "fake");
  EXPECT_EQ(got->url, p.url);
  EXPECT_EQ(got->capabilities, p.capabilities);
  EXPECT_EQ(got->version, "1.0.0");
  EXPECT_EQ(got->key_ciphertext, p.key_ciphertext);
  EXPECT_EQ(got->key_ciphertext.size(), 7u);
  EXPECT_EQ(got->registered_at, At(7));
  EXPECT_EQ(got->last_seen, At(9));
}

TEST_P(StoreTest, ProviderListIsOrderedByRegistrationThenId) {
  ASSERT_OK(store().providers().Create(MakeProvider("prv-b", 10)));
  ASSERT_OK(store().providers().Create(MakeProvider("prv-c", 1)));
  ASSERT_OK(store().providers().Create(MakeProvider("prv-a", 10)));
  auto list = store().providers().List();
  ASSERT_OK(list);
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].id, "prv-c");
  EXPECT_EQ((*list)[1].id, "prv-a");
  EXPECT_EQ((*list)[2].id, "prv-b");
}

TEST_P(StoreTest, ProviderTouchRecordsTheHeartbeatOnly) {
  ASSERT_OK(store().providers().Create(MakeProvider("prv-1", 0)));
  ASSERT_OK(store().providers().Touch("prv-1", At(5000)));
  auto got = store().providers().Get("prv-1");
  ASSERT_OK(got);
  EXPECT_EQ(got->last_seen, At(5000));
  EXPECT_EQ(got->registered_at, At(0));
  auto missing = store().providers().Touch("prv-none", At(5000));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, ProviderUpdateChangesUrlCapabilitiesAndVersion) {
  core::ProviderRecord p = MakeProvider("prv-1", 0);
  ASSERT_OK(store().providers().Create(p));
  core::ProviderRecord changed = p;
  changed.url = "http://127.0.0.1:9999";
  changed.capabilities = Json{{"regions", Json::array({"eu-1"})}};
  changed.version = "2.0.0";
  changed.type = "aws";  // not updatable
  ASSERT_OK(store().providers().Update(changed));
  auto got = store().providers().Get("prv-1");
  ASSERT_OK(got);
  EXPECT_EQ(got->url, "http://127.0.0.1:9999");
  EXPECT_EQ(got->capabilities, changed.capabilities);
  EXPECT_EQ(got->version, "2.0.0");
  EXPECT_EQ(got->type, "fake");
  EXPECT_EQ(got->key_ciphertext, p.key_ciphertext);
  auto missing = store().providers().Update(MakeProvider("prv-none"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, ProviderDeleteRemovesItAndUnknownIsNotFound) {
  ASSERT_OK(store().providers().Create(MakeProvider("prv-1")));
  ASSERT_OK(store().providers().Delete("prv-1"));
  EXPECT_EQ(store().providers().Get("prv-1").error().code, ErrorCode::kNotFound);
  auto again = store().providers().Delete("prv-1");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, ProviderCreateWithTakenIdIsAlreadyExists) {
  ASSERT_OK(store().providers().Create(MakeProvider("prv-1")));
  auto st = store().providers().Create(MakeProvider("prv-1"));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kAlreadyExists);
}

// ---------------- credentials ----------------

TEST_P(StoreTest, CredentialCiphertextIsStoredExactlyAsGiven) {
  std::string every_byte;
  for (int i = 0; i < 256; ++i) {
    every_byte.push_back(static_cast<char>(i));
  }
  every_byte += every_byte;  // NULs in the middle, high bytes, invalid UTF-8
  core::Credential c = MakeCredential("crd-1", "prod-aws", 3);
  c.secret_ciphertext = every_byte;
  ASSERT_OK(store().credentials().Create(c));
  core::Credential empty = MakeCredential("crd-2", "empty");
  empty.secret_ciphertext.clear();
  ASSERT_OK(store().credentials().Create(empty));

  auto got = store().credentials().Get("crd-1");
  ASSERT_OK(got);
  EXPECT_EQ(got->secret_ciphertext.size(), 512u);
  EXPECT_EQ(got->secret_ciphertext, every_byte);
  EXPECT_EQ(got->name, "prod-aws");
  EXPECT_EQ(got->provider, "aws");
  EXPECT_EQ(got->created_by, "usr-infra");
  EXPECT_EQ(got->created_at, At(3));
  auto got_empty = store().credentials().Get("crd-2");
  ASSERT_OK(got_empty);
  EXPECT_EQ(got_empty->secret_ciphertext, "");
}

TEST_P(StoreTest, CredentialGetByNameAndUnknownIsNotFound) {
  ASSERT_OK(store().credentials().Create(MakeCredential("crd-1", "prod-aws")));
  auto got = store().credentials().GetByName("prod-aws");
  ASSERT_OK(got);
  EXPECT_EQ(got->id, "crd-1");
  EXPECT_EQ(store().credentials().GetByName("dev-aws").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store().credentials().Get("crd-none").error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, CredentialNamesAreUnique) {
  ASSERT_OK(store().credentials().Create(MakeCredential("crd-1", "prod-aws")));
  auto st = store().credentials().Create(MakeCredential("crd-2", "prod-aws"));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(st.error().message.find("prod-aws"), std::string::npos);
}

TEST_P(StoreTest, CredentialListAndDelete) {
  ASSERT_OK(store().credentials().Create(MakeCredential("crd-2", "b", 2)));
  ASSERT_OK(store().credentials().Create(MakeCredential("crd-1", "a", 1)));
  auto list = store().credentials().List();
  ASSERT_OK(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, "crd-1");
  EXPECT_EQ((*list)[1].id, "crd-2");
  ASSERT_OK(store().credentials().Delete("crd-1"));
  auto after = store().credentials().List();
  ASSERT_OK(after);
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].id, "crd-2");
  EXPECT_EQ(store().credentials().Delete("crd-1").error().code, ErrorCode::kNotFound);
}

// ---------------- operations ----------------

TEST_P(StoreTest, OperationCreateThenGetReturnsEveryField) {
  Operation op = MakeOp("op-1", "cls-1", 10, 20);
  op.state = OperationState::kRunning;
  op.step = 1;
  op.steps[0].state = core::StepState::kSucceeded;
  op.steps[0].started_at = At(11);
  op.steps[0].finished_at = At(12);
  op.steps[1].state = core::StepState::kRunning;
  op.steps[1].started_at = At(13);
  op.attempt = 2;
  op.lease_owner = "worker-a";
  op.lease_until = At(30);
  op.last_error_code = "unavailable";
  op.last_error_message = "adapter is down";
  op.data = Json{{"nested", {{"list", {1, 2, 3}}}}, {"text", "é"}};
  op.version = 4;
  op.updated_at = At(15);
  ASSERT_OK(store().operations().Create(op));

  auto got = store().operations().Get("op-1");
  ASSERT_OK(got);
  EXPECT_EQ(got->id, "op-1");
  EXPECT_EQ(got->kind, "create_cluster");
  EXPECT_EQ(got->target_id, "cls-1");
  EXPECT_EQ(got->state, OperationState::kRunning);
  EXPECT_EQ(got->step, 1);
  ASSERT_EQ(got->steps.size(), 2u);
  EXPECT_EQ(got->steps[0].name, "allocate");
  EXPECT_EQ(got->steps[0].state, core::StepState::kSucceeded);
  EXPECT_EQ(got->steps[0].started_at, std::optional<TimePoint>(At(11)));
  EXPECT_EQ(got->steps[0].finished_at, std::optional<TimePoint>(At(12)));
  EXPECT_EQ(got->steps[1].name, "install");
  EXPECT_EQ(got->steps[1].state, core::StepState::kRunning);
  EXPECT_EQ(got->steps[1].started_at, std::optional<TimePoint>(At(13)));
  EXPECT_FALSE(got->steps[1].finished_at.has_value());
  EXPECT_EQ(got->attempt, 2);
  EXPECT_EQ(got->next_run_at, At(20));
  EXPECT_EQ(got->lease_owner, "worker-a");
  EXPECT_EQ(got->lease_until, At(30));
  EXPECT_EQ(got->last_error_code, "unavailable");
  EXPECT_EQ(got->last_error_message, "adapter is down");
  EXPECT_EQ(got->data, op.data);
  EXPECT_EQ(got->version, 4);
  EXPECT_EQ(got->created_at, At(10));
  EXPECT_EQ(got->updated_at, At(15));
}

TEST_P(StoreTest, OperationCreateWithTakenIdIsAlreadyExists) {
  ASSERT_OK(store().operations().Create(MakeOp("op-1", "cls-1")));
  auto st = store().operations().Create(MakeOp("op-1", "cls-2"));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kAlreadyExists);
}

TEST_P(StoreTest, OperationGetUnknownIsNotFound) {
  auto got = store().operations().Get("op-none");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, OperationListByTargetIsNewestFirstAndOnlyThatTarget) {
  ASSERT_OK(store().operations().Create(MakeOp("op-1", "cls-1", 1)));
  ASSERT_OK(store().operations().Create(MakeOp("op-2", "cls-2", 2)));
  ASSERT_OK(store().operations().Create(MakeOp("op-3", "cls-1", 3)));
  ASSERT_OK(store().operations().Create(MakeOp("op-4", "cls-1", 2)));
  auto list = store().operations().ListByTarget("cls-1");
  ASSERT_OK(list);
  EXPECT_EQ(Ids(*list), (std::vector<std::string>{"op-3", "op-4", "op-1"}));
  auto none = store().operations().ListByTarget("cls-none");
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
}

TEST_P(StoreTest, OperationListIsNewestFirstUpToLimit) {
  for (int i = 1; i <= 5; ++i) {
    ASSERT_OK(store().operations().Create(MakeOp("op-" + std::to_string(i), "cls-1", i * 10)));
  }
  auto three = store().operations().List(3);
  ASSERT_OK(three);
  EXPECT_EQ(Ids(*three), (std::vector<std::string>{"op-5", "op-4", "op-3"}));
  auto all = store().operations().List(100);
  ASSERT_OK(all);
  EXPECT_EQ(all->size(), 5u);
}

TEST_P(StoreTest, ClaimDueClaimsDueOperationsButNotFutureOnes) {
  ASSERT_OK(store().operations().Create(MakeOp("op-past", "cls-1", 0, 500)));
  ASSERT_OK(store().operations().Create(MakeOp("op-now", "cls-1", 0, 1000)));
  ASSERT_OK(store().operations().Create(MakeOp("op-future", "cls-1", 0, 1001)));
  auto claimed = store().operations().ClaimDue("w1", At(1000), At(16'000), 10);
  ASSERT_OK(claimed);
  EXPECT_EQ(Ids(*claimed), (std::vector<std::string>{"op-past", "op-now"}));
  auto future = store().operations().Get("op-future");
  ASSERT_OK(future);
  EXPECT_EQ(future->lease_owner, "");
  EXPECT_EQ(future->version, 1);
}

TEST_P(StoreTest, ClaimDueSetsTheLeaseAndBumpsTheVersion) {
  ASSERT_OK(store().operations().Create(MakeOp("op-1", "cls-1", 0, 0)));
  auto claimed = store().operations().ClaimDue("w1", At(1000), At(16'000), 10);
  ASSERT_OK(claimed);
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_EQ((*claimed)[0].lease_owner, "w1");
  EXPECT_EQ((*claimed)[0].lease_until, At(16'000));
  EXPECT_EQ((*claimed)[0].version, 2);
  // Returned as stored.
  auto stored = store().operations().Get("op-1");
  ASSERT_OK(stored);
  EXPECT_EQ(stored->lease_owner, "w1");
  EXPECT_EQ(stored->lease_until, At(16'000));
  EXPECT_EQ(stored->version, 2);
  EXPECT_EQ(stored->data, (*claimed)[0].data);
}

TEST_P(StoreTest, ClaimDueSkipsHeldLeasesAndTakesOverExpiredOnes) {
  ASSERT_OK(store().operations().Create(MakeOp("op-1", "cls-1", 0, 0)));
  auto first = store().operations().ClaimDue("w1", At(1000), At(16'000), 10);
  ASSERT_OK(first);
  ASSERT_EQ(first->size(), 1u);
  // Lease still held by w1.
  auto held = store().operations().ClaimDue("w2", At(15'999), At(30'000), 10);
  ASSERT_OK(held);
  EXPECT_TRUE(held->empty());
  // Lease expired: w2 resumes the operation.
  auto taken = store().operations().ClaimDue("w2", At(16'000), At(31'000), 10);
  ASSERT_OK(taken);
  ASSERT_EQ(taken->size(), 1u);
  EXPECT_EQ((*taken)[0].lease_owner, "w2");
  EXPECT_EQ((*taken)[0].lease_until, At(31'000));
  EXPECT_EQ((*taken)[0].version, 3);
}

TEST_P(StoreTest, ClaimDueClaimsRunningButNeverFinishedOperations) {
  Operation running = MakeOp("op-running", "cls-1");
  running.state = OperationState::kRunning;
  Operation done = MakeOp("op-done", "cls-1");
  done.state = OperationState::kSucceeded;
  Operation failed = MakeOp("op-failed", "cls-1");
  failed.state = OperationState::kFailed;
  ASSERT_OK(store().operations().Create(running));
  ASSERT_OK(store().operations().Create(done));
  ASSERT_OK(store().operations().Create(failed));
  auto claimed = store().operations().ClaimDue("w1", At(1'000'000), At(2'000'000), 10);
  ASSERT_OK(claimed);
  EXPECT_EQ(Ids(*claimed), (std::vector<std::string>{"op-running"}));
  EXPECT_EQ(store().operations().Get("op-done")->version, 1);
  EXPECT_EQ(store().operations().Get("op-failed")->lease_owner, "");
}

TEST_P(StoreTest, ClaimDueRespectsTheLimitOldestDueFirst) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK(store().operations().Create(MakeOp("op-" + std::to_string(i), "cls-1", 0, 50 - i)));
  }
  auto two = store().operations().ClaimDue("w1", At(1000), At(5000), 2);
  ASSERT_OK(two);
  EXPECT_EQ(Ids(*two), (std::vector<std::string>{"op-4", "op-3"}));
  auto zero = store().operations().ClaimDue("w1", At(1000), At(5000), 0);
  ASSERT_OK(zero);
  EXPECT_TRUE(zero->empty());
  auto rest = store().operations().ClaimDue("w2", At(1000), At(5000), 10);
  ASSERT_OK(rest);
  EXPECT_EQ(Ids(*rest), (std::vector<std::string>{"op-2", "op-1", "op-0"}));
}

TEST_P(StoreTest, RenewLeaseByTheOwnerExtendsItWithoutBumpingTheVersion) {
  ASSERT_OK(store().operations().Create(MakeOp("op-1", "cls-1")));
  auto claimed = store().operations().ClaimDue("w1", At(0), At(1000), 1);
  ASSERT_OK(claimed);
  ASSERT_EQ(claimed->size(), 1u);
  ASSERT_OK(store().operations().RenewLease("op-1", "w1", At(9000)));
  auto got = store().operations().Get("op-1");
  ASSERT_OK(got);
  EXPECT_EQ(got->lease_until, At(9000));
  EXPECT_EQ(got->version, (*claimed)[0].version);
  // The renewed lease holds off other claimers past the original expiry.
  auto other = store().operations().ClaimDue("w2", At(5000), At(20'000), 1);
  ASSERT_OK(other);
  EXPECT_TRUE(other->empty());
}

TEST_P(StoreTest, RenewLeaseByAnotherOwnerIsConflict) {
  ASSERT_OK(store().operations().Create(MakeOp("op-1", "cls-1")));
  ASSERT_OK(store().operations().ClaimDue("w1", At(0), At(1000), 1));
  auto st = store().operations().RenewLease("op-1", "w2", At(9000));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kConflict);
  EXPECT_EQ(store().operations().Get("op-1")->lease_until, At(1000));
  auto missing = store().operations().RenewLease("op-none", "w1", At(9000));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, RenewLeaseAfterAnotherWorkerTookOverIsConflict) {
  ASSERT_OK(store().operations().Create(MakeOp("op-1", "cls-1")));
  ASSERT_OK(store().operations().ClaimDue("w1", At(0), At(1000), 1));
  auto taken = store().operations().ClaimDue("w2", At(1000), At(5000), 1);
  ASSERT_OK(taken);
  ASSERT_EQ(taken->size(), 1u);
  auto st = store().operations().RenewLease("op-1", "w1", At(9000));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kConflict);
}

TEST_P(StoreTest, UpdateWritesEveryMutableFieldAndBumpsTheVersion) {
  ASSERT_OK(store().operations().Create(MakeOp("op-1", "cls-1", 0, 0)));
  auto claimed = store().operations().ClaimDue("w1", At(0), At(1000), 1);
  ASSERT_OK(claimed);
  ASSERT_EQ(claimed->size(), 1u);
  Operation op = (*claimed)[0];
  op.state = OperationState::kFailed;
  op.step = 1;
  op.steps[0].state = core::StepState::kSucceeded;
  op.steps[0].finished_at = At(700);
  op.steps[1].state = core::StepState::kFailed;
  op.attempt = 3;
  op.next_run_at = At(800);
  op.lease_owner = "";
  op.lease_until = At(0);
  op.last_error_code = "provider_error";
  op.last_error_message = "quota exceeded";
  op.data = Json{{"instance", "i-123"}};
  op.updated_at = At(900);
  op.kind = "ignored_kind";
  op.target_id = "ignored-target";
  ASSERT_OK(store().operations().Update(op));

  auto got = store().operations().Get("op-1");
  ASSERT_OK(got);
  EXPECT_EQ(got->version, op.version + 1);
  EXPECT_EQ(got->state, OperationState::kFailed);
  EXPECT_EQ(got->step, 1);
  EXPECT_EQ(got->steps[0].state, core::StepState::kSucceeded);
  EXPECT_EQ(got->steps[0].finished_at, std::optional<TimePoint>(At(700)));
  EXPECT_EQ(got->steps[1].state, core::StepState::kFailed);
  EXPECT_EQ(got->attempt, 3);
  EXPECT_EQ(got->next_run_at, At(800));
  EXPECT_EQ(got->lease_owner, "");
  EXPECT_EQ(got->lease_until, At(0));
  EXPECT_EQ(got->last_error_code, "provider_error");
  EXPECT_EQ(got->last_error_message, "quota exceeded");
  EXPECT_EQ(got->data, op.data);
  EXPECT_EQ(got->updated_at, At(900));
  // Identity fields do not change.
  EXPECT_EQ(got->kind, "create_cluster");
  EXPECT_EQ(got->target_id, "cls-1");
  EXPECT_EQ(got->created_at, At(0));
}

TEST_P(StoreTest, UpdateWithAStaleVersionIsConflictAndWritesNothing) {
  ASSERT_OK(store().operations().Create(MakeOp("op-1", "cls-1")));
  auto before = store().operations().Get("op-1");
  ASSERT_OK(before);
  Operation first = *before;
  Operation second = *before;
  first.attempt = 1;
  ASSERT_OK(store().operations().Update(first));
  second.attempt = 99;
  auto st = store().operations().Update(second);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kConflict);
  auto got = store().operations().Get("op-1");
  ASSERT_OK(got);
  EXPECT_EQ(got->attempt, 1);
  EXPECT_EQ(got->version, 2);
}

TEST_P(StoreTest, UpdateAfterAClaimNeedsTheClaimedVersion) {
  ASSERT_OK(store().operations().Create(MakeOp("op-1", "cls-1")));
  auto before = store().operations().Get("op-1");
  ASSERT_OK(before);
  ASSERT_OK(store().operations().ClaimDue("w1", At(0), At(1000), 1));
  auto st = store().operations().Update(*before);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kConflict);
}

TEST_P(StoreTest, UpdateOfUnknownOperationIsNotFound) {
  auto st = store().operations().Update(MakeOp("op-none", "cls-1"));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, ConcurrentUpdatesWithOneVersionExactlyOneWins) {
  ASSERT_OK(store().operations().Create(MakeOp("op-1", "cls-1")));
  auto base = store().operations().Get("op-1");
  ASSERT_OK(base);
  std::atomic<int> wins{0};
  std::atomic<int> conflicts{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      Operation op = *base;
      op.attempt = i + 1;
      auto st = store().operations().Update(op);
      if (st) {
        ++wins;
      } else if (st.error().code == ErrorCode::kConflict) {
        ++conflicts;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(conflicts.load(), 5);
  EXPECT_EQ(store().operations().Get("op-1")->version, 2);
}

// Claims everything with `workers` threads spread over `stores`, one op at a time, and checks
// every operation was claimed exactly once.
void ClaimConcurrently(const std::vector<Store*>& stores, int ops, int workers) {
  std::mutex mu;
  std::vector<std::string> claimed;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    Store* s = stores[w % stores.size()];
    threads.emplace_back([&, s, w] {
      std::string owner = "worker-" + std::to_string(w);
      int empty_rounds = 0;
      while (empty_rounds < 3) {
        auto r = s->operations().ClaimDue(owner, At(1000), At(1'000'000), 2);
        if (!r) {
          ADD_FAILURE() << r.error().ToString();
          if (++errors > 20) {
            return;
          }
          continue;
        }
        if (r->empty()) {
          ++empty_rounds;
          continue;
        }
        std::lock_guard<std::mutex> l(mu);
        for (const auto& op : *r) {
          EXPECT_EQ(op.lease_owner, owner);
          claimed.push_back(op.id);
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(errors.load(), 0);
  std::set<std::string> unique(claimed.begin(), claimed.end());
  EXPECT_EQ(claimed.size(), unique.size()) << "an operation was claimed twice";
  EXPECT_EQ(unique.size(), static_cast<size_t>(ops));
}

TEST_P(StoreTest, ConcurrentClaimersOnOneStoreNeverShareAnOperation) {
  constexpr int kOps = 60;
  for (int i = 0; i < kOps; ++i) {
    ASSERT_OK(store().operations().Create(MakeOp("op-" + std::to_string(i), "cls-1", 0, i)));
  }
  ClaimConcurrently({&store()}, kOps, 4);
}

TEST_P(StoreTest, TwoStoresOnOneDatabaseNeverClaimTheSameOperation) {
  constexpr int kOps = 80;
  for (int i = 0; i < kOps; ++i) {
    ASSERT_OK(store().operations().Create(MakeOp("op-" + std::to_string(i), "cls-1", 0, i)));
  }
  auto other = backend_->Open();
  ASSERT_OK(other);
  ClaimConcurrently({&store(), other->get()}, kOps, 4);
}

// ---------------- transactions ----------------

TEST_P(StoreTest, TransactionCommitsWhenFnReturnsOk) {
  ASSERT_OK(store().Transaction([](Store& s) -> Status {
    CANOPY_TRY(s.users().Create(MakeUser("usr-1", "alice")));
    CANOPY_TRY(s.operations().Create(MakeOp("op-1", "usr-1")));
    return OkStatus();
  }));
  EXPECT_OK(store().users().Get("usr-1"));
  EXPECT_OK(store().operations().Get("op-1"));
}

TEST_P(StoreTest, TransactionRollsBackEverythingWhenFnFails) {
  auto st = store().Transaction([](Store& s) -> Status {
    CANOPY_TRY(s.users().Create(MakeUser("usr-1", "alice")));
    CANOPY_TRY(s.operations().Create(MakeOp("op-1", "usr-1")));
    return Error::FailedPrecondition("changed my mind");
  });
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(st.error().message, "changed my mind");
  EXPECT_EQ(store().users().Get("usr-1").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store().operations().Get("op-1").error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, TransactionRollsBackWhenARepoCallFails) {
  ASSERT_OK(store().users().Create(MakeUser("usr-1", "alice")));
  auto st = store().Transaction([](Store& s) -> Status {
    CANOPY_TRY(s.credentials().Create(MakeCredential("crd-1", "prod")));
    CANOPY_TRY(s.users().Create(MakeUser("usr-2", "alice")));  // taken username
    return OkStatus();
  });
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(store().credentials().Get("crd-1").error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, NestedTransactionCommitsWithTheOuterOne) {
  ASSERT_OK(store().Transaction([](Store& s) -> Status {
    CANOPY_TRY(s.users().Create(MakeUser("usr-1", "alice")));
    return s.Transaction([](Store& inner) -> Status {
      // The inner transaction sees the outer one's writes.
      CANOPY_TRY(inner.users().Get("usr-1"));
      return inner.users().Create(MakeUser("usr-2", "bob"));
    });
  }));
  EXPECT_EQ(store().users().Count().value_or(-1), 2);
}

TEST_P(StoreTest, NestedTransactionIsUndoneWhenTheOuterOneFails) {
  auto st = store().Transaction([](Store& s) -> Status {
    CANOPY_TRY(s.Transaction(
        [](Store& inner) -> Status { return inner.users().Create(MakeUser("usr-2", "bob")); }));
    return Error::Internal("outer failed");
  });
  ASSERT_FALSE(st);
  EXPECT_EQ(store().users().Count().value_or(-1), 0);
}

TEST_P(StoreTest, FailedNestedTransactionUndoesOnlyItsOwnWrites) {
  ASSERT_OK(store().Transaction([](Store& s) -> Status {
    CANOPY_TRY(s.users().Create(MakeUser("usr-1", "alice")));
    auto inner = s.Transaction([](Store& t) -> Status {
      CANOPY_TRY(t.users().Create(MakeUser("usr-2", "bob")));
      return Error::Conflict("inner failed");
    });
    EXPECT_FALSE(inner);
    EXPECT_EQ(inner.error().code, ErrorCode::kConflict);
    // The outer transaction goes on and commits.
    return s.users().Create(MakeUser("usr-3", "carol"));
  }));
  EXPECT_OK(store().users().Get("usr-1"));
  EXPECT_EQ(store().users().Get("usr-2").error().code, ErrorCode::kNotFound);
  EXPECT_OK(store().users().Get("usr-3"));
}

TEST_P(StoreTest, UncommittedWritesAreInvisibleToAnotherHandle) {
  auto other = backend_->Open();
  ASSERT_OK(other);
  ASSERT_OK(store().Transaction([&](Store& s) -> Status {
    CANOPY_TRY(s.users().Create(MakeUser("usr-1", "alice")));
    auto seen = (*other)->users().Get("usr-1");
    EXPECT_FALSE(seen);
    return OkStatus();
  }));
  EXPECT_OK((*other)->users().Get("usr-1"));
}

TEST_P(StoreTest, ReopeningKeepsTheData) {
  ASSERT_OK(store().users().Create(MakeUser("usr-1", "alice")));
  ASSERT_OK(store().operations().Create(MakeOp("op-1", "cls-1")));
  store_.reset();
  auto reopened = backend_->Open();
  ASSERT_OK(reopened);
  auto u = (*reopened)->users().GetByUsername("alice");
  ASSERT_OK(u);
  EXPECT_EQ(u->id, "usr-1");
  EXPECT_OK((*reopened)->operations().Get("op-1"));
}

// ---------------- clusters ----------------

core::Cluster MakeCluster(const std::string& id, const std::string& name, int64_t created_ms = 0) {
  core::Cluster c;
  c.id = id;
  c.name = name;
  c.kind = core::ClusterKind::kEdge;
  c.state = core::ClusterState::kPairing;
  c.created_by = "usr-infra";
  c.created_at = c.updated_at = At(created_ms);
  return c;
}

TEST_P(StoreTest, ClusterCreateThenGetReturnsEveryField) {
  core::Cluster c = MakeCluster("cls-1", "edge");
  c.kind = core::ClusterKind::kCloud;
  c.state = core::ClusterState::kProvisioning;
  c.credential_id = "crd-1";
  c.provider = "local";
  c.region = "local-1";
  c.instance_type = "small";
  c.image = "debian-12";
  c.disk_gb = 20;
  c.key_ciphertext = std::string("\x01\x00sealed", 8);
  c.link_interval_seconds = 7;
  c.last_seen = At(5);
  c.nodes = {
      {"nod-1", "10.0.0.2", core::NodeState::kOnline, 2000, 4096, 1024, 0.5, At(4), false,
       core::NodeSystem{"Debian GNU/Linux 11 (bullseye)", "5.10.0-28-amd64", "x86_64", 2, 3942}}};
  c.resources = Json{{"cpu_millis", 2000}};
  c.cloud.provider_id = "i-1";
  c.cloud.ssh_firewall = "fw-1";
  c.cloud.identity = core::IdentityState::kNone;
  c.cloud.handle = Json{{"version", 1}, {"data", {{"id", "i-1"}}}};
  c.cloud.ssh = core::SshLogin{"debian", 2222, "SHA256:abc", "10.0.0.9"};
  c.cloud.service_firewalls = {{"svc-1", "fw-9"}};
  ASSERT_OK(store().clusters().Create(c));
  auto got = store().clusters().Get("cls-1");
  ASSERT_OK(got);
  EXPECT_EQ(core::ClusterCloudToJson(got->cloud), core::ClusterCloudToJson(c.cloud));
  EXPECT_EQ(got->cloud.identity, core::IdentityState::kNone);
  ASSERT_TRUE(got->cloud.ssh.has_value());
  EXPECT_EQ(got->cloud.ssh->port, 2222);
  EXPECT_EQ(got->cloud.service_firewalls.at("svc-1"), "fw-9");
  EXPECT_EQ(got->name, "edge");
  EXPECT_EQ(got->kind, core::ClusterKind::kCloud);
  EXPECT_EQ(got->state, core::ClusterState::kProvisioning);
  EXPECT_EQ(got->credential_id, "crd-1");
  EXPECT_EQ(got->provider, "local");
  EXPECT_EQ(got->region, "local-1");
  EXPECT_EQ(got->instance_type, "small");
  EXPECT_EQ(got->image, "debian-12");
  EXPECT_EQ(got->disk_gb, 20);
  EXPECT_EQ(got->key_ciphertext, c.key_ciphertext);
  EXPECT_EQ(got->link_interval_seconds, 7);
  EXPECT_EQ(got->last_seen, At(5));
  ASSERT_EQ(got->nodes.size(), 1u);
  EXPECT_EQ(got->nodes[0].id, "nod-1");
  EXPECT_EQ(got->nodes[0].memory_available_mib, 1024);
  EXPECT_EQ(got->nodes[0].last_seen, At(4));
  EXPECT_EQ(got->nodes[0].system.os, "Debian GNU/Linux 11 (bullseye)");
  EXPECT_EQ(got->nodes[0].system.kernel, "5.10.0-28-amd64");
  EXPECT_EQ(got->nodes[0].system.memory_mib, 3942);
  EXPECT_EQ(got->resources, c.resources);
  EXPECT_EQ(got->version, 1);
  auto edge = MakeCluster("cls-2", "edge2");
  ASSERT_OK(store().clusters().Create(edge));
  auto e = store().clusters().Get("cls-2");
  ASSERT_OK(e);
  EXPECT_FALSE(e->credential_id.has_value());
  EXPECT_FALSE(e->disk_gb.has_value());
  EXPECT_FALSE(e->last_seen.has_value());
}

TEST_P(StoreTest, ClusterNamesAreUniqueAndUnknownIsNotFound) {
  ASSERT_OK(store().clusters().Create(MakeCluster("cls-1", "edge")));
  auto dup = store().clusters().Create(MakeCluster("cls-2", "edge"));
  ASSERT_FALSE(dup.has_value());
  EXPECT_EQ(dup.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(store().clusters().Get("nope").error().code, ErrorCode::kNotFound);
  EXPECT_OK(store().clusters().GetByName("edge"));
  EXPECT_EQ(store().clusters().Delete("nope").error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, ClusterUpdateIsCompareAndSwap) {
  ASSERT_OK(store().clusters().Create(MakeCluster("cls-1", "edge")));
  auto c = store().clusters().Get("cls-1");
  ASSERT_OK(c);
  c->state = core::ClusterState::kActive;
  ASSERT_OK(store().clusters().Update(*c));
  auto stale = store().clusters().Update(*c);
  ASSERT_FALSE(stale.has_value());
  EXPECT_EQ(stale.error().code, ErrorCode::kConflict);
  auto got = store().clusters().Get("cls-1");
  EXPECT_EQ(got->state, core::ClusterState::kActive);
  EXPECT_EQ(got->version, 2);
}

TEST_P(StoreTest, ClusterMarkStaleOfflineAndRecordLinkBringsItBack) {
  auto c = MakeCluster("cls-1", "edge");
  c.state = core::ClusterState::kActive;
  c.link_interval_seconds = 2;
  c.last_seen = At(0);
  ASSERT_OK(store().clusters().Create(c));
  auto pairing = MakeCluster("cls-2", "other");  // never linked: never OFFLINE
  ASSERT_OK(store().clusters().Create(pairing));
  auto none = store().clusters().MarkStaleOffline(At(6000), 3);  // exactly 3 intervals: not yet
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
  auto ids = store().clusters().MarkStaleOffline(At(6001), 3);
  ASSERT_OK(ids);
  EXPECT_EQ(*ids, std::vector<std::string>{"cls-1"});
  EXPECT_EQ(store().clusters().Get("cls-1")->state, core::ClusterState::kOffline);
  ClusterLinkRecord r;
  r.url = "http://10.0.0.1:7000";
  r.software_version = "0.2";
  r.link_interval_seconds = 1;
  r.nodes = {
      {"nod-1", "10.0.0.2", core::NodeState::kOnline, 1000, 512, 256, 0.1, At(6500), false, {}}};
  r.resources = Json{{"cpu_millis", 1000}};
  auto after = store().clusters().RecordLink("cls-1", r, At(7000));
  ASSERT_OK(after);
  EXPECT_EQ(after->state, core::ClusterState::kActive);
  EXPECT_EQ(after->last_seen, At(7000));
  EXPECT_EQ(after->cluster_url, "http://10.0.0.1:7000");
  EXPECT_EQ(after->nodes.size(), 1u);
  EXPECT_EQ(store().clusters().RecordLink("nope", r, At(7000)).error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, ClusterTokenIsSingleUseAndNeedsItsCluster) {
  ASSERT_OK(store().clusters().Create(MakeCluster("cls-1", "edge")));
  core::ClusterToken t{"ctk-1", "cls-1", "hash-1", At(1000), At(0), std::nullopt, "usr-1"};
  ASSERT_OK(store().cluster_tokens().Create(t));
  auto got = store().cluster_tokens().Consume("hash-1", At(10));
  ASSERT_OK(got);
  EXPECT_EQ(got->cluster_id, "cls-1");
  EXPECT_EQ(store().cluster_tokens().Consume("hash-1", At(20)).error().code,
            ErrorCode::kUnauthenticated);
  core::ClusterToken expired{"ctk-2", "cls-1", "hash-2", At(1000), At(0), std::nullopt, "usr-1"};
  ASSERT_OK(store().cluster_tokens().Create(expired));
  EXPECT_EQ(store().cluster_tokens().Consume("hash-2", At(1000)).error().code,
            ErrorCode::kUnauthenticated);
  core::ClusterToken orphan{"ctk-3", "cls-none", "hash-3", At(1000), At(0), std::nullopt, "usr-1"};
  EXPECT_EQ(store().cluster_tokens().Create(orphan).error().code, ErrorCode::kNotFound);
}

TEST_P(StoreTest, ClusterCommandsArePendingUntilCompletedOnceByTheirCluster) {
  ASSERT_OK(store().clusters().Create(MakeCluster("cls-1", "edge")));
  ASSERT_OK(store().clusters().Create(MakeCluster("cls-2", "edge2")));
  for (int i = 0; i < 3; ++i) {
    core::ClusterCommand c;
    c.id = "cmd-" + std::to_string(i);
    c.cluster_id = "cls-1";
    c.type = "ping";
    c.created_at = At(i);
    ASSERT_OK(store().cluster_commands().Create(c));
  }
  auto pending = store().cluster_commands().ListPending("cls-1", 2);
  ASSERT_OK(pending);
  ASSERT_EQ(pending->size(), 2u);
  EXPECT_EQ((*pending)[0].id, "cmd-0");
  ASSERT_OK(store().cluster_commands().MarkDelivered({"cmd-0"}, At(5)));
  EXPECT_EQ(store().cluster_commands().Get("cmd-0")->deliveries, 1);
  // Another cluster cannot complete it.
  EXPECT_EQ(store()
                .cluster_commands()
                .Complete("cmd-0", "cls-2", core::ClusterCommandState::kSucceeded, Json::object(),
                          nullptr, At(6))
                .error()
                .code,
            ErrorCode::kNotFound);
  ASSERT_OK(store().cluster_commands().Complete("cmd-0", "cls-1",
                                                core::ClusterCommandState::kSucceeded,
                                                Json{{"pong", true}}, nullptr, At(6)));
  // A repeated ack changes nothing.
  Error late = Error::Internal("x");
  ASSERT_OK(store().cluster_commands().Complete(
      "cmd-0", "cls-1", core::ClusterCommandState::kFailed, Json::object(), &late, At(7)));
  auto done = store().cluster_commands().Get("cmd-0");
  EXPECT_EQ(done->state, core::ClusterCommandState::kSucceeded);
  EXPECT_EQ(done->result, (Json{{"pong", true}}));
  EXPECT_EQ(done->completed_at, At(6));
  EXPECT_EQ(store().cluster_commands().ListPending("cls-1", 10)->size(), 2u);
  // A failure keeps its code, message and machine-readable reason.
  Error full = Error{ErrorCode::kResourceExhausted, "no room", "no_worker_capacity"};
  ASSERT_OK(store().cluster_commands().Complete(
      "cmd-1", "cls-1", core::ClusterCommandState::kFailed, Json::object(), &full, At(8)));
  auto failed = store().cluster_commands().Get("cmd-1");
  EXPECT_EQ(failed->error_code, "resource_exhausted");
  EXPECT_EQ(failed->error_message, "no room");
  EXPECT_EQ(failed->error_reason, "no_worker_capacity");
  ASSERT_OK(store().clusters().Delete("cls-1"));
  EXPECT_EQ(store().cluster_commands().Get("cmd-1").error().code, ErrorCode::kNotFound);
}

// Add a backend here (e.g. {"postgres", MakePostgresBackend}) to run the whole suite on it.
const BackendFactory kBackends[] = {
    {"sqlite", [] { return std::unique_ptr<Backend>(std::make_unique<SqliteBackend>()); }},
};

// ---------------- workers ----------------

core::Worker MakeWorker(const std::string& id, const std::string& cluster, int64_t created_ms) {
  core::Worker w;
  w.id = id;
  w.cluster_id = cluster;
  w.name = "w-" + id;
  w.instance_type = "small";
  w.image = "debian-12";
  w.disk_gb = 3;
  w.created_at = w.updated_at = At(created_ms);
  return w;
}

TEST_P(StoreTest, WorkerCreateGetUpdateRoundTripsEveryField) {
  ASSERT_OK(store().clusters().Create(MakeCluster("cls-1", "c1")));
  core::Worker w = MakeWorker("wrk-1", "cls-1", 1);
  ASSERT_OK(store().workers().Create(w));
  auto got = store().workers().Get("wrk-1");
  ASSERT_OK(got);
  EXPECT_EQ(got->state, core::WorkerState::kBooting);
  EXPECT_TRUE(got->handle.is_null());
  EXPECT_EQ(got->InstanceCanopyId(), "wrk-1-g1");
  got->state = core::WorkerState::kActive;
  got->handle = Json{{"version", 1}, {"data", {{"id", "i-9"}}}};
  got->generation = 2;
  got->provider_id = "i-9";
  got->address = "198.18.0.9";
  got->node_id = "nod-1";
  got->last_error = "boom";
  got->operation_id = "op-1";
  got->updated_at = At(9);
  ASSERT_OK(store().workers().Update(*got));
  auto again = store().workers().Get("wrk-1");
  ASSERT_OK(again);
  EXPECT_EQ(again->state, core::WorkerState::kActive);
  EXPECT_EQ(again->handle, got->handle);
  EXPECT_EQ(again->generation, 2);
  EXPECT_EQ(again->provider_id, "i-9");
  EXPECT_EQ(again->address, "198.18.0.9");
  EXPECT_EQ(again->node_id, "nod-1");
  EXPECT_EQ(again->last_error, "boom");
  EXPECT_EQ(again->operation_id, "op-1");
  EXPECT_EQ(again->updated_at, At(9));
  EXPECT_EQ(again->version, got->version + 1);
  // A stale version is a conflict.
  EXPECT_EQ(store().workers().Update(*got).error().code, ErrorCode::kConflict);
}

TEST_P(StoreTest, WorkerNeedsItsClusterAndNamesAreUnique) {
  EXPECT_EQ(store().workers().Create(MakeWorker("wrk-1", "cls-none", 1)).error().code,
            ErrorCode::kNotFound);
  ASSERT_OK(store().clusters().Create(MakeCluster("cls-1", "c1")));
  ASSERT_OK(store().workers().Create(MakeWorker("wrk-1", "cls-1", 1)));
  core::Worker same_name = MakeWorker("wrk-2", "cls-1", 2);
  same_name.name = "w-wrk-1";
  EXPECT_EQ(store().workers().Create(same_name).error().code, ErrorCode::kAlreadyExists);
}

TEST_P(StoreTest, WorkerListsAreOrderedAndDeleteRemoves) {
  ASSERT_OK(store().clusters().Create(MakeCluster("cls-1", "c1")));
  ASSERT_OK(store().clusters().Create(MakeCluster("cls-2", "c2")));
  ASSERT_OK(store().workers().Create(MakeWorker("wrk-b", "cls-1", 2)));
  ASSERT_OK(store().workers().Create(MakeWorker("wrk-a", "cls-1", 2)));
  ASSERT_OK(store().workers().Create(MakeWorker("wrk-c", "cls-2", 1)));
  auto one = store().workers().ListByCluster("cls-1");
  ASSERT_OK(one);
  ASSERT_EQ(one->size(), 2u);
  EXPECT_EQ((*one)[0].id, "wrk-a");
  EXPECT_EQ((*one)[1].id, "wrk-b");
  auto all = store().workers().List();
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].id, "wrk-c");
  ASSERT_OK(store().workers().Delete("wrk-a"));
  EXPECT_EQ(store().workers().Delete("wrk-a").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store().workers().Get("wrk-a").error().code, ErrorCode::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::ValuesIn(kBackends),
                         [](const ::testing::TestParamInfo<BackendFactory>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace canopy::store
