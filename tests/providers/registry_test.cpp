// ProviderRegistry, the built-in factories and the fake provider's own behaviour beyond the
// contract suite (key format, capacity config).
#include "providers/registry.h"

#include <gtest/gtest.h>

#include "providers/builtin.h"
#include "providers/fake/fake_factory.h"
#include "providers/fake/fake_provider.h"
#include "support/test_util.h"

namespace canopy::providers {
namespace {

TEST(ProviderRegistry, BuiltinsIncludeFakeAndCreateIt) {
  ProviderRegistry r;
  ASSERT_OK(RegisterBuiltinProviders(r));
  auto names = r.Names();
  EXPECT_NE(std::find(names.begin(), names.end(), "fake"), names.end());
  auto p = r.Create("fake", Json::object());
  ASSERT_OK(p);
  EXPECT_EQ((*p)->Info().type, "fake");
}

TEST(ProviderRegistry, BuiltinsIncludeLocalWhoseConfigIsCheckedWithoutRoot) {
  ProviderRegistry r;
  ASSERT_OK(RegisterBuiltinProviders(r));
  auto names = r.Names();
  EXPECT_NE(std::find(names.begin(), names.end(), "local"), names.end());
  auto ok = r.ValidateConfig(
      "local",
      Json{{"boot_delay_ms", 100}, {"fail_rate", 0.5}, {"capacity", {{"local.small", 3}}}});
  ASSERT_OK(ok);
  for (const Json& bad :
       {Json{{"colour", "red"}}, Json{{"fail_rate", 2}}, Json{{"boot_delay_ms", -1}},
        Json{{"capacity", {{"local.small", "x"}}}}, Json{{"bridge", 7}}, Json::array()}) {
    auto v = r.ValidateConfig("local", bad);
    ASSERT_FALSE(v) << bad.dump();
    EXPECT_EQ(v.error().code, ErrorCode::kInvalidArgument) << bad.dump();
  }
}

TEST(ProviderRegistry, DuplicateNameIsAlreadyExists) {
  ProviderRegistry r;
  ASSERT_OK(r.Register(std::make_unique<fake::FakeProviderFactory>()));
  auto dup = r.Register(std::make_unique<fake::FakeProviderFactory>());
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(r.Names().size(), 1u);
}

TEST(ProviderRegistry, UnknownNameIsNotFoundListingKnownTypes) {
  ProviderRegistry r;
  ASSERT_OK(RegisterBuiltinProviders(r));
  auto p = r.Create("azure", Json::object());
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, ErrorCode::kNotFound);
  EXPECT_NE(p.error().message.find("azure"), std::string::npos);
  EXPECT_NE(p.error().message.find("fake"), std::string::npos);
}

TEST(ProviderRegistry, RegistriesAreIndependent) {
  ProviderRegistry a;
  ProviderRegistry b;
  ASSERT_OK(RegisterBuiltinProviders(a));
  EXPECT_TRUE(b.Names().empty());
  EXPECT_FALSE(b.Create("fake", Json::object()));
}

TEST(FakeFactory, RejectsUnknownKeysAndAppliesCapacity) {
  fake::FakeProviderFactory f;
  auto bad = f.ValidateConfig(Json{{"colour", "red"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_FALSE(f.ValidateConfig(Json{{"capacity", {{"fake.small", -1}}}}));
  auto p = f.Create(Json{{"capacity", {{"fake.small", 0}}}});
  ASSERT_OK(p);
  CallContext ctx{CredentialSecret(Json{{"api_key", "k"}}), ""};
  InstanceSpec spec;
  spec.canopy_id = "w1";
  spec.instance_type = "fake.small";
  spec.image = "fake-debian-12";
  auto r = (*p)->CreateInstance(ctx, spec);
  ASSERT_FALSE(r);
  EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kCapacity);
  spec.instance_type = "fake.medium";
  EXPECT_OK((*p)->CreateInstance(ctx, spec));
}

TEST(FakeProvider, KeyPairIsRealEd25519InOpenSshAndPem) {
  fake::FakeProvider p;
  CallContext ctx{CredentialSecret(Json{{"api_key", "k"}}), ""};
  auto a = p.CreateKeyPair(ctx, "kp1");
  ASSERT_OK(a);
  EXPECT_EQ(a->public_key.rfind("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", 0), 0u) << a->public_key;
  EXPECT_NE(a->private_key.Reveal().find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  EXPECT_EQ(a->fingerprint.size(), 7u + 43u);
  auto b = p.CreateKeyPair(ctx, "kp2");
  ASSERT_OK(b);
  EXPECT_NE(a->public_key.substr(0, 80), b->public_key.substr(0, 80));
}

TEST(FakeProvider, EveryCallChecksTheCredential) {
  fake::FakeProvider p;
  CallContext bad{CredentialSecret(Json{{"api_key", "invalid-x"}}), ""};
  auto r = p.ListOffers(bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kAuth);
  CallContext region{CredentialSecret(Json{{"api_key", "k"}}), "mars-1"};
  auto q = p.ListOffers(region);
  ASSERT_FALSE(q);
  EXPECT_EQ(KindOf(q.error()), ProviderErrorKind::kInvalidRequest);
}

TEST(FakeProvider, ClusterIdentityCredentialStopsWorkingWhenDeleted) {
  fake::FakeProvider p;
  CallContext ctx{CredentialSecret(Json{{"api_key", "k"}}), ""};
  auto id = p.CreateClusterIdentity(ctx, "cl1");
  ASSERT_OK(id);
  CallContext as_cluster{id->credential, ""};
  EXPECT_OK(p.ValidateCredential(as_cluster));
  ASSERT_OK(p.DeleteClusterIdentity(ctx, id->id));
  auto r = p.ValidateCredential(as_cluster);
  ASSERT_FALSE(r);
  EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kAuth);
}

}  // namespace
}  // namespace canopy::providers
