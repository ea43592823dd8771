// The provider contract suite (docs/contracts/provider-adapter.md): every Provider implementation
// must pass it. Parameterized over subjects: the fake provider, the local provider (real
// namespaces; skipped unless root), and RemoteProvider talking over HTTP to an in-process
// AdapterServer serving each of them. A new provider is added with one line in kSubjects (its
// SubjectMaker, see contract_subject.h).
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>

#include "common/ids.h"
#include "providers/adapter/adapter_server.h"
#include "providers/aws/aws_provider.h"
#include "providers/contract_subject.h"
#include "providers/fake/fake_provider.h"
#include "providers/gcp/gcp_factory.h"
#include "providers/gcp/gcp_provider.h"
#include "providers/local/local_provider.h"
#include "providers/remote/remote_provider.h"
#include "support/gce_sim.h"
#include "support/local_env.h"
#include "support/moto.h"
#include "support/test_util.h"

namespace canopy::providers {
namespace {

using fake::FakeProvider;

using contract::Subject;
using contract::SubjectMaker;

struct NamedMaker {
  std::string name;
  SubjectMaker make;
  bool injectable = false;  // failures and capacity can be injected (the fake behind it)
};
void PrintTo(const NamedMaker& m, std::ostream* os) { *os << m.name; }

CallContext FakeCtx() {
  return CallContext{CredentialSecret(Json{{"api_key", "k-" + RandomHex(8)}}), "fake-east"};
}

Result<Subject> MakeFakeSubject() {
  auto fake = std::make_shared<FakeProvider>();
  Subject s;
  s.provider = fake.get();
  s.ctx = FakeCtx();
  s.malformed_credential = Json{{"token", 1}};
  s.rejected_credential = Json{{"api_key", "invalid-key"}};
  s.fake = fake.get();
  s.keep = fake;
  return s;
}

// RemoteProvider -> HTTP -> AdapterServer -> FakeProvider, all in this process.
struct RemoteStack {
  FakeProvider fake;
  std::unique_ptr<adapter::AdapterServer> server;
  std::unique_ptr<remote::RemoteProvider> remote;
};

Result<Subject> MakeRemoteFakeSubject() {
  auto stack = std::make_shared<RemoteStack>();
  std::string key = RandomHex(16);
  stack->server = std::make_unique<adapter::AdapterServer>(stack->fake, SecretString(key));
  CANOPY_TRY(stack->server->Start("127.0.0.1:0"));
  stack->remote = std::make_unique<remote::RemoteProvider>(
      "http://127.0.0.1:" + std::to_string(stack->server->port()), SecretString(key),
      stack->fake.Info());
  Subject s;
  s.provider = stack->remote.get();
  s.ctx = FakeCtx();
  s.malformed_credential = Json{{"token", 1}};
  s.rejected_credential = Json{{"api_key", "invalid-key"}};
  s.fake = &stack->fake;
  s.keep = stack;
  return s;
}

// Serves `provider` from an in-process AdapterServer and returns a RemoteProvider talking to it.
Status ServeRemotely(Provider& provider, std::unique_ptr<adapter::AdapterServer>& server,
                     std::unique_ptr<remote::RemoteProvider>& remote) {
  std::string key = RandomHex(16);
  server = std::make_unique<adapter::AdapterServer>(provider, SecretString(key));
  CANOPY_TRY(server->Start("127.0.0.1:0"));
  remote = std::make_unique<remote::RemoteProvider>(
      "http://127.0.0.1:" + std::to_string(server->port()), SecretString(key), provider.Info());
  return OkStatus();
}

// A LocalProvider on a private bridge and /24; the destructor removes everything it made.
struct LocalStack {
  canopy::testing::LocalTestNet net;
  std::unique_ptr<local::LocalProvider> provider;
  std::unique_ptr<adapter::AdapterServer> server;
  std::unique_ptr<remote::RemoteProvider> remote;
  ~LocalStack() {
    remote.reset();
    server.reset();
    provider.reset();
    net.Cleanup();
  }
};

Result<std::shared_ptr<LocalStack>> MakeLocalStack() {
  if (!canopy::testing::LocalTestNet::Available()) {
    return Error::FailedPrecondition("the local provider needs root");
  }
  auto stack = std::make_shared<LocalStack>();
  CANOPY_ASSIGN_OR_RETURN(stack->provider, local::LocalProvider::Create(stack->net.Options()));
  return stack;
}

CallContext LocalCtx() { return CallContext{CredentialSecret(Json::object()), "local"}; }

Result<Subject> MakeLocalSubject() {
  CANOPY_ASSIGN_OR_RETURN(auto stack, MakeLocalStack());
  Subject s;
  s.provider = stack->provider.get();
  s.ctx = LocalCtx();
  s.malformed_credential = Json{{"type", 7}};
  s.keep = stack;
  return s;
}

Result<Subject> MakeRemoteLocalSubject() {
  CANOPY_ASSIGN_OR_RETURN(auto stack, MakeLocalStack());
  CANOPY_TRY(ServeRemotely(*stack->provider, stack->server, stack->remote));
  Subject s;
  s.provider = stack->remote.get();
  s.ctx = LocalCtx();
  s.malformed_credential = Json{{"type", 7}};
  s.keep = stack;
  return s;
}

// AwsProvider against the shared moto server (signatures checked), with the offline price
// catalog for us-east-1 when the reference data is at hand; moto has no Pricing API, so other
// prices are null with a reason.
struct AwsStack {
  aws::AwsProvider* provider = nullptr;
  std::unique_ptr<adapter::AdapterServer> server;
  std::unique_ptr<remote::RemoteProvider> remote;
};

Result<std::shared_ptr<AwsStack>> MakeAwsStack(Json* admin) {
  CANOPY_ASSIGN_OR_RETURN(canopy::testing::MotoServer * moto,
                          canopy::testing::MotoServer::Shared());
  aws::AwsOptions o;
  o.endpoints.all = moto->url();
  o.console_host_keys = false;                            // moto has no cloud-init console
  o.instance_type_patterns = {"t3.*", "m5.*", "g4dn.*"};  // moto lists all types in 5 s
  o.retry = aws::RetryPolicy{2, std::chrono::milliseconds(20), std::chrono::milliseconds(100)};
  std::string catalog = canopy::testing::SourceDir() + "/../shared/reference/catalog/aws-vms.csv";
  if (std::filesystem::exists(catalog)) o.price_catalog = catalog;
  // One provider for all tests, as one adapter serves many calls (its offer cache saves ~1 s
  // per test); the stack's own pointer does not own it.
  static aws::AwsProvider* shared = new aws::AwsProvider(o);
  auto stack = std::make_shared<AwsStack>();
  stack->provider = shared;
  *admin = moto->admin_credential();
  return stack;
}

Result<Subject> AwsSubjectOf(std::shared_ptr<AwsStack> stack, Provider* p, const Json& admin) {
  Subject s;
  s.provider = p;
  s.ctx = CallContext{CredentialSecret(admin), "us-east-1"};
  s.malformed_credential = Json{{"access_key_id", 7}};
  Json wrong = admin;
  wrong["secret_access_key"] = "wrong-secret-key-0000000000000000000000";
  s.rejected_credential = wrong;
  s.keep = std::move(stack);
  return s;
}

Result<Subject> MakeAwsSubject() {
  Json admin;
  CANOPY_ASSIGN_OR_RETURN(auto stack, MakeAwsStack(&admin));
  Provider* p = stack->provider;
  return AwsSubjectOf(std::move(stack), p, admin);
}

Result<Subject> MakeRemoteAwsSubject() {
  Json admin;
  CANOPY_ASSIGN_OR_RETURN(auto stack, MakeAwsStack(&admin));
  CANOPY_TRY(ServeRemotely(*stack->provider, stack->server, stack->remote));
  Provider* p = stack->remote.get();
  return AwsSubjectOf(std::move(stack), p, admin);
}

// GcpProvider against the Compute Engine double (scripts/sim/gcp-sim: every request validated
// against Google's discovery documents, tokens by signed JWT, a machine behind each instance),
// one per test process on its own network, with the offline price catalog.
struct GcpStack {
  gcp::GcpProvider* provider = nullptr;
  std::unique_ptr<adapter::AdapterServer> server;
  std::unique_ptr<remote::RemoteProvider> remote;
};

struct SharedGceSim {
  canopy::testing::LocalTestNet net;
  canopy::testing::GceSim sim;
  ~SharedGceSim() {
    sim.Stop();
    net.Cleanup();
  }
};

Result<std::shared_ptr<GcpStack>> MakeGcpStack(Json* owner) {
  if (!canopy::testing::LocalTestNet::Available()) {
    return Error::FailedPrecondition("the GCP double's machines need root");
  }
  static std::unique_ptr<SharedGceSim> shared_sim;
  static gcp::GcpProvider* shared = nullptr;
  if (!shared_sim) {
    auto s = std::make_unique<SharedGceSim>();
    Status st = s->sim.Start(s->net);
    if (!st) {
      ADD_FAILURE() << "the GCP double did not start: " << st.error().message;
      return st.error();
    }
    Json config = s->sim.info()["adapter_config"];
    config["operation_poll_ms"] = 50;
    std::string catalog = canopy::testing::SourceDir() + "/../shared/reference/catalog/gcp-vms.csv";
    if (std::filesystem::exists(catalog)) config["price_catalog"] = catalog;
    CANOPY_ASSIGN_OR_RETURN(gcp::GcpOptions o, gcp::ParseGcpOptions(config));
    shared = new gcp::GcpProvider(o);  // one for all tests, as one adapter serves many calls
    shared_sim = std::move(s);
    std::atexit([] { shared_sim.reset(); });
  }
  auto stack = std::make_shared<GcpStack>();
  stack->provider = shared;
  *owner = shared_sim->sim.info()["credential"];
  return stack;
}

Result<Subject> GcpSubjectOf(std::shared_ptr<GcpStack> stack, Provider* p, const Json& owner) {
  Subject s;
  s.provider = p;
  s.ctx = CallContext{CredentialSecret(owner), "us-central1"};
  s.malformed_credential = Json{{"type", "service_account"}, {"project_id", 7}};
  Json wrong = owner;
  wrong["private_key_id"] = "0000000000000000000000000000000000000000";
  s.rejected_credential = wrong;
  s.keep = std::move(stack);
  return s;
}

Result<Subject> MakeGcpSubject() {
  Json owner;
  CANOPY_ASSIGN_OR_RETURN(auto stack, MakeGcpStack(&owner));
  Provider* p = stack->provider;
  return GcpSubjectOf(std::move(stack), p, owner);
}

Result<Subject> MakeRemoteGcpSubject() {
  Json owner;
  CANOPY_ASSIGN_OR_RETURN(auto stack, MakeGcpStack(&owner));
  CANOPY_TRY(ServeRemotely(*stack->provider, stack->server, stack->remote));
  Provider* p = stack->remote.get();
  return GcpSubjectOf(std::move(stack), p, owner);
}

const NamedMaker kSubjects[] = {
    {"fake", MakeFakeSubject, true}, {"remote_fake", MakeRemoteFakeSubject, true},
    {"local", MakeLocalSubject},     {"remote_local", MakeRemoteLocalSubject},
    {"aws", MakeAwsSubject},         {"remote_aws", MakeRemoteAwsSubject},
    {"gcp", MakeGcpSubject},         {"remote_gcp", MakeRemoteGcpSubject},
};

class ProviderContract : public ::testing::TestWithParam<NamedMaker> {
 protected:
  void SetUp() override {
    // Tests of injected failures need the fake: skip before starting a costly subject.
    std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    if (!GetParam().injectable &&
        (test.rfind("InjectedErrors", 0) == 0 || test.rfind("CapacityLimit", 0) == 0)) {
      GTEST_SKIP() << "no failure injection for this subject";
    }
    auto s = GetParam().make();
    if (!s) {
      GTEST_SKIP() << GetParam().name << ": " << s.error().message;
    }
    s_ = std::move(*s);
    auto offers = P().ListOffers(s_.ctx);
    ASSERT_OK(offers);
    ASSERT_FALSE(offers->instance_types.empty());
    ASSERT_FALSE(offers->images.empty());
    type_ = offers->instance_types.front().name;
    image_ = offers->images.front().id;
    // The broker always creates instances with a key pair (it must reach them over SSH).
    key_pair_ = "contract-" + RandomHex(4);
    ASSERT_OK(P().CreateKeyPair(s_.ctx, key_pair_));
  }

  Provider& P() { return *s_.provider; }
  const CallContext& Ctx() { return s_.ctx; }
  CallContext WithCredential(const Json& c) {
    return CallContext{CredentialSecret(c), s_.ctx.region};
  }

  InstanceSpec Spec(const std::string& canopy_id) {
    InstanceSpec spec;
    spec.canopy_id = canopy_id;
    spec.idempotency_key = "idem-" + canopy_id;
    spec.name = "contract-" + canopy_id;
    spec.instance_type = type_;
    spec.image = image_;
    spec.disk_gb = 1;
    spec.key_pair = key_pair_;
    spec.tags = {{"suite", "contract"}};
    return spec;
  }

  void TearDown() override {
    for (const auto& h : made_) {
      (void)P().TerminateInstance(Ctx(), h);
    }
  }

  Result<Instance> Create(const std::string& canopy_id) {
    auto i = P().CreateInstance(Ctx(), Spec(canopy_id));
    if (i) {
      made_.push_back(i->handle);
    }
    return i;
  }

  Subject s_;
  std::string type_;
  std::string image_;
  std::string key_pair_;
  std::vector<ProviderHandle> made_;
};

TEST_P(ProviderContract, InfoSpeaksTheContractVersion) {
  ProviderInfo info = P().Info();
  EXPECT_FALSE(info.type.empty());
  EXPECT_NE(
      std::find(info.contract_versions.begin(), info.contract_versions.end(), kContractVersion),
      info.contract_versions.end());
}

TEST_P(ProviderContract, CredentialValidationIsTyped) {
  EXPECT_OK(P().ValidateCredential(Ctx()));
  if (s_.malformed_credential) {
    auto r = P().ValidateCredential(WithCredential(*s_.malformed_credential));
    ASSERT_FALSE(r);
    EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kInvalidRequest);
    EXPECT_EQ(r.error().reason, "invalid_request");
  }
  if (s_.rejected_credential) {
    auto r = P().ValidateCredential(WithCredential(*s_.rejected_credential));
    ASSERT_FALSE(r);
    EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kAuth);
    EXPECT_EQ(r.error().code, ErrorCode::kUnauthenticated);
  }
}

TEST_P(ProviderContract, OffersHaveRegionsTypesAndImages) {
  auto o = P().ListOffers(Ctx());
  ASSERT_OK(o);
  EXPECT_FALSE(o->regions.empty());
  std::set<std::string> names;
  for (const auto& t : o->instance_types) {
    EXPECT_FALSE(t.name.empty());
    EXPECT_GT(t.vcpus, 0) << t.name;
    EXPECT_GT(t.memory_mib, 0) << t.name;
    EXPECT_GE(t.gpus, 0) << t.name;
    // Prices are never guessed: either a price or a reason why none is known.
    EXPECT_TRUE(t.price_hour.has_value() || !t.price_note.empty()) << t.name;
    if (t.price_hour) {
      EXPECT_GE(*t.price_hour, 0.0);
    }
    EXPECT_TRUE(names.insert(t.name).second) << "duplicate type " << t.name;
  }
  for (const auto& i : o->images) {
    EXPECT_FALSE(i.id.empty());
  }
}

TEST_P(ProviderContract, QuoteScalesWithCount) {
  auto q = P().GetQuote(Ctx(), type_, 3);
  ASSERT_OK(q);
  EXPECT_EQ(q->instance_type, type_);
  EXPECT_EQ(q->count, 3);
  if (q->price_hour_each) {
    ASSERT_TRUE(q->price_hour_total.has_value());
    EXPECT_NEAR(*q->price_hour_total, *q->price_hour_each * 3, 1e-9);
  } else {
    EXPECT_FALSE(q->note.empty());
  }
  auto bad = P().GetQuote(Ctx(), "no-such-type", 1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(KindOf(bad.error()), ProviderErrorKind::kInvalidRequest);
}

TEST_P(ProviderContract, InstanceLifecycle) {
  std::string cid = "ins-" + RandomHex(6);
  auto created = Create(cid);
  ASSERT_OK(created);
  EXPECT_EQ(created->canopy_id, cid);
  EXPECT_EQ(created->tags.at(kCanopyIdTag), cid);
  EXPECT_FALSE(created->provider_id.empty());

  auto desc = P().DescribeInstance(Ctx(), created->handle);
  ASSERT_OK(desc);
  EXPECT_EQ(desc->provider_id, created->provider_id);

  auto running = P().WaitUntilRunning(Ctx(), created->handle, std::chrono::seconds(60));
  ASSERT_OK(running);
  EXPECT_EQ(running->state, InstanceState::kRunning);
  EXPECT_FALSE(running->address.empty());
  EXPECT_FALSE(running->ssh_user.empty());

  ASSERT_OK(P().StopInstance(Ctx(), created->handle));
  auto stopped = P().DescribeInstance(Ctx(), created->handle);
  ASSERT_OK(stopped);
  EXPECT_TRUE(stopped->state == InstanceState::kStopped ||
              stopped->state == InstanceState::kStopping)
      << InstanceStateName(stopped->state);

  ASSERT_OK(P().StartInstance(Ctx(), created->handle));
  auto again = P().WaitUntilRunning(Ctx(), created->handle, std::chrono::seconds(60));
  ASSERT_OK(again);
  EXPECT_EQ(again->state, InstanceState::kRunning);

  ASSERT_OK(P().TerminateInstance(Ctx(), created->handle));
  auto gone = P().DescribeInstance(Ctx(), created->handle);
  if (gone) {
    EXPECT_EQ(gone->state, InstanceState::kTerminated);
  } else {
    EXPECT_EQ(KindOf(gone.error()), ProviderErrorKind::kNotFound);
  }
  // Terminating twice is fine: not found counts as success.
  EXPECT_OK(P().TerminateInstance(Ctx(), created->handle));
  auto found = P().FindInstancesByTag(Ctx(), kCanopyIdTag, cid);
  ASSERT_OK(found);
  EXPECT_TRUE(found->empty());
}

TEST_P(ProviderContract, CreateIsIdempotentPerCanopyId) {
  std::string cid = "idem-" + RandomHex(6);
  auto a = Create(cid);
  ASSERT_OK(a);
  auto b = Create(cid);
  ASSERT_OK(b);
  EXPECT_EQ(a->provider_id, b->provider_id);
  auto found = P().FindInstancesByTag(Ctx(), kCanopyIdTag, cid);
  ASSERT_OK(found);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ(found->front().provider_id, a->provider_id);
  // A different canopy id is a different instance.
  auto c = Create("idem-" + RandomHex(6));
  ASSERT_OK(c);
  EXPECT_NE(c->provider_id, a->provider_id);
}

TEST_P(ProviderContract, KeyPairCreateIsIdempotentAndGettable) {
  std::string name = "kp-" + RandomHex(6);
  auto a = P().CreateKeyPair(Ctx(), name);
  ASSERT_OK(a);
  EXPECT_EQ(a->name, name);
  EXPECT_EQ(a->public_key.rfind("ssh-", 0), 0u) << a->public_key;
  EXPECT_FALSE(a->private_key.Reveal().empty());
  EXPECT_EQ(a->fingerprint.rfind("SHA256:", 0), 0u);
  auto b = P().CreateKeyPair(Ctx(), name);
  ASSERT_OK(b);
  EXPECT_EQ(a->public_key, b->public_key);
  EXPECT_EQ(a->private_key.Reveal(), b->private_key.Reveal());
  auto got = P().GetKeyPair(Ctx(), name);
  ASSERT_OK(got);
  EXPECT_EQ(got->public_key, a->public_key);
  auto missing = P().GetKeyPair(Ctx(), "kp-missing-" + RandomHex(6));
  ASSERT_FALSE(missing);
  EXPECT_EQ(KindOf(missing.error()), ProviderErrorKind::kNotFound);
}

TEST_P(ProviderContract, FirewallOperationsAreIdempotent) {
  FirewallSpec spec;
  spec.canopy_id = "fw-" + RandomHex(6);
  spec.name = "contract";
  spec.rules = {FirewallRule{8080, "tcp", {}}, FirewallRule{5353, "udp", {"10.0.0.0/8"}}};
  auto a = P().CreateFirewall(Ctx(), spec);
  ASSERT_OK(a);
  EXPECT_FALSE(a->id.empty());
  EXPECT_EQ(a->rules.size(), 2u);
  auto b = P().CreateFirewall(Ctx(), spec);
  ASSERT_OK(b);
  EXPECT_EQ(a->id, b->id);
  auto exists = P().FirewallExists(Ctx(), a->id);
  ASSERT_OK(exists);
  EXPECT_TRUE(*exists);

  auto inst = Create("fwi-" + RandomHex(6));
  ASSERT_OK(inst);
  ASSERT_OK(P().WaitUntilRunning(Ctx(), inst->handle, std::chrono::seconds(60)));
  EXPECT_OK(P().AttachFirewall(Ctx(), inst->handle, a->id));
  EXPECT_OK(P().AttachFirewall(Ctx(), inst->handle, a->id));
  auto desc = P().DescribeInstance(Ctx(), inst->handle);
  ASSERT_OK(desc);
  EXPECT_EQ(std::count(desc->firewalls.begin(), desc->firewalls.end(), a->id), 1);
  EXPECT_OK(P().DetachFirewall(Ctx(), inst->handle, a->id));
  EXPECT_OK(P().DetachFirewall(Ctx(), inst->handle, a->id));
  desc = P().DescribeInstance(Ctx(), inst->handle);
  ASSERT_OK(desc);
  EXPECT_EQ(std::count(desc->firewalls.begin(), desc->firewalls.end(), a->id), 0);

  EXPECT_OK(P().DeleteFirewall(Ctx(), a->id));
  EXPECT_OK(P().DeleteFirewall(Ctx(), a->id));
  exists = P().FirewallExists(Ctx(), a->id);
  ASSERT_OK(exists);
  EXPECT_FALSE(*exists);
}

TEST_P(ProviderContract, ClusterIdentityCreateAndDelete) {
  auto id = P().CreateClusterIdentity(Ctx(), "cl-" + RandomHex(6));
  if (!id && id.error().code == ErrorCode::kFailedPrecondition) {
    GTEST_SKIP() << "cluster identities are optional: " << id.error().message;
  }
  ASSERT_OK(id);
  EXPECT_FALSE(id->id.empty());
  EXPECT_TRUE(id->credential.Reveal().is_object());
  EXPECT_OK(P().DeleteClusterIdentity(Ctx(), id->id));
  EXPECT_OK(P().DeleteClusterIdentity(Ctx(), id->id));
}

// A cluster identity manages only its own cluster's firewalls (kClusterTag), nothing else.
TEST_P(ProviderContract, ClusterIdentityIsConfinedToItsClustersFirewalls) {
  const std::string c1 = "cl-" + RandomHex(6), c2 = "cl-" + RandomHex(6);
  auto ident = P().CreateClusterIdentity(Ctx(), c1);
  if (!ident && ident.error().code == ErrorCode::kFailedPrecondition) {
    GTEST_SKIP() << "cluster identities are optional: " << ident.error().message;
  }
  ASSERT_OK(ident);
  CallContext cc{ident->credential, s_.ctx.region};
  auto expect_auth = [](const auto& r, const char* what) {
    ASSERT_FALSE(r.has_value()) << what;
    EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kAuth) << what << ": " << r.error().ToString();
  };
  // Instances of cluster c1 and c2, made with the full credential.
  auto spec1 = Spec("ci1-" + RandomHex(4));
  spec1.tags[kClusterTag] = c1;
  auto spec2 = Spec("ci2-" + RandomHex(4));
  spec2.tags[kClusterTag] = c2;
  auto i1 = P().CreateInstance(Ctx(), spec1);
  ASSERT_OK(i1);
  made_.push_back(i1->handle);
  auto i2 = P().CreateInstance(Ctx(), spec2);
  ASSERT_OK(i2);
  made_.push_back(i2->handle);
  // Not allowed at all with the identity.
  expect_auth(P().CreateInstance(cc, Spec("ci3-" + RandomHex(4))), "create instance");
  expect_auth(P().TerminateInstance(cc, i1->handle), "terminate");
  expect_auth(P().CreateKeyPair(cc, "ci-" + RandomHex(4)), "create key pair");
  expect_auth(P().ListOffers(cc), "offers");
  expect_auth(P().CreateClusterIdentity(cc, c1), "identity from identity");
  // Its own firewalls on its own instances: allowed.
  FirewallSpec own{"cfw-" + RandomHex(4), "own", {FirewallRule{8080, "tcp", {}}}, {}};
  auto f1 = P().CreateFirewall(cc, own);
  ASSERT_OK(f1);
  auto exists = P().FirewallExists(cc, f1->id);
  ASSERT_OK(exists);
  EXPECT_TRUE(*exists);
  EXPECT_OK(P().AttachFirewall(cc, i1->handle, f1->id));
  // Another cluster's instance, or a firewall that is not its cluster's: refused.
  expect_auth(P().AttachFirewall(cc, i2->handle, f1->id), "attach to other cluster's instance");
  FirewallSpec other{
      "cfw-" + RandomHex(4), "other", {FirewallRule{9090, "tcp", {}}}, {{kClusterTag, c2}}};
  auto f2 = P().CreateFirewall(Ctx(), other);
  ASSERT_OK(f2);
  expect_auth(P().AttachFirewall(cc, i1->handle, f2->id), "attach other cluster's firewall");
  expect_auth(P().DeleteFirewall(cc, f2->id), "delete other cluster's firewall");
  expect_auth(P().CreateFirewall(cc, other), "take over other cluster's firewall by canopy id");
  // Its own again: detach and delete.
  EXPECT_OK(P().DetachFirewall(cc, i1->handle, f1->id));
  EXPECT_OK(P().DeleteFirewall(cc, f1->id));
  EXPECT_OK(P().DeleteFirewall(Ctx(), f2->id));
  // A deleted identity is refused.
  EXPECT_OK(P().DeleteClusterIdentity(Ctx(), ident->id));
  expect_auth(P().CreateFirewall(cc, own), "deleted identity");
}

TEST_P(ProviderContract, InjectedErrorsKeepTheirKind) {
  if (!s_.fake) {
    GTEST_SKIP() << "no failure injection for this subject";
  }
  for (ProviderErrorKind kind : {ProviderErrorKind::kCapacity, ProviderErrorKind::kQuota,
                                 ProviderErrorKind::kAuth, ProviderErrorKind::kInvalidRequest,
                                 ProviderErrorKind::kNotFound, ProviderErrorKind::kTransient}) {
    s_.fake->FailNext("CreateInstance", kind);
    auto r = P().CreateInstance(Ctx(), Spec("inj-" + RandomHex(6)));
    ASSERT_FALSE(r) << ProviderErrorKindName(kind);
    EXPECT_EQ(KindOf(r.error()), kind);
    EXPECT_EQ(r.error().reason, ProviderErrorKindName(kind));
    EXPECT_EQ(r.error().code, MakeProviderError(kind, "").code);
  }
  // One failure only: the next call works.
  EXPECT_OK(Create("inj-" + RandomHex(6)));
}

TEST_P(ProviderContract, CapacityLimitRaisesCapacity) {
  if (!s_.fake) {
    GTEST_SKIP() << "no capacity knob for this subject";
  }
  s_.fake->SetCapacity(type_, 1);
  ASSERT_OK(Create("cap-" + RandomHex(6)));
  auto second = Create("cap-" + RandomHex(6));
  ASSERT_FALSE(second);
  EXPECT_EQ(KindOf(second.error()), ProviderErrorKind::kCapacity);
}

INSTANTIATE_TEST_SUITE_P(All, ProviderContract, ::testing::ValuesIn(kSubjects),
                         [](const ::testing::TestParamInfo<NamedMaker>& i) {
                           return i.param.name;
                         });

}  // namespace
}  // namespace canopy::providers
