// Round trips of every Provider struct through the adapter wire format (providers/wire.h), and
// typed-error helpers of provider.h.
#include "providers/wire.h"

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace canopy::providers::wire {
namespace {

TEST(Wire, InstanceRoundTripsEveryField) {
  Instance i;
  i.handle = ProviderHandle{2, Json{{"id", "i-1"}, {"zone", "a"}}};
  i.provider_id = "i-1";
  i.canopy_id = "wkr_1";
  i.state = InstanceState::kStopping;
  i.address = "203.0.113.4";
  i.private_address = "10.0.0.4";
  i.ssh_user = "admin";
  i.ssh_port = 2222;
  i.host_key_sha256 = "SHA256:abc";
  i.firewalls = {"fw-1", "fw-2"};
  i.tags = {{"canopy-id", "wkr_1"}, {"x", "y"}};
  auto back = InstanceFromJson(ToJson(i));
  ASSERT_OK(back);
  EXPECT_EQ(back->handle.version, 2);
  EXPECT_EQ(back->handle.data, i.handle.data);
  EXPECT_EQ(back->provider_id, i.provider_id);
  EXPECT_EQ(back->canopy_id, i.canopy_id);
  EXPECT_EQ(back->state, InstanceState::kStopping);
  EXPECT_EQ(back->address, i.address);
  EXPECT_EQ(back->private_address, i.private_address);
  EXPECT_EQ(back->ssh_user, i.ssh_user);
  EXPECT_EQ(back->ssh_port, 2222);
  EXPECT_EQ(back->host_key_sha256, i.host_key_sha256);
  EXPECT_EQ(back->firewalls, i.firewalls);
  EXPECT_EQ(back->tags, i.tags);
}

TEST(Wire, SpecsRoundTrip) {
  InstanceSpec s{"wkr_2", "k", "n", "t.small", "img", 33, "kp", {"fw"}, {{"a", "b"}}};
  auto sb = InstanceSpecFromJson(ToJson(s));
  ASSERT_OK(sb);
  EXPECT_EQ(sb->canopy_id, "wkr_2");
  EXPECT_EQ(sb->idempotency_key, "k");
  EXPECT_EQ(sb->name, "n");
  EXPECT_EQ(sb->instance_type, "t.small");
  EXPECT_EQ(sb->image, "img");
  EXPECT_EQ(sb->disk_gb, 33);
  EXPECT_EQ(sb->key_pair, "kp");
  EXPECT_EQ(sb->firewalls, s.firewalls);
  EXPECT_EQ(sb->tags, s.tags);

  FirewallSpec f{"cl_1",
                 "web",
                 {FirewallRule{443, "tcp", {}}, FirewallRule{53, "udp", {"10.0.0.0/8"}}},
                 {{"k", "v"}}};
  auto fb = FirewallSpecFromJson(ToJson(f));
  ASSERT_OK(fb);
  ASSERT_EQ(fb->rules.size(), 2u);
  EXPECT_EQ(fb->rules[1].port, 53);
  EXPECT_EQ(fb->rules[1].protocol, "udp");
  EXPECT_EQ(fb->rules[1].source_cidrs, std::vector<std::string>{"10.0.0.0/8"});
  EXPECT_EQ(fb->tags, f.tags);
  auto fw = FirewallFromJson(ToJson(Firewall{"fw-9", "web", "cl_1", f.rules}));
  ASSERT_OK(fw);
  EXPECT_EQ(fw->id, "fw-9");
  EXPECT_EQ(fw->canopy_id, "cl_1");
  EXPECT_EQ(fw->rules.size(), 2u);
}

TEST(Wire, OffersQuoteKeyPairIdentityInfoRoundTrip) {
  Offers o{{"r1", "r2"},
           {InstanceType{"a", 2, 4096, 1, 0.5, "list"},
            InstanceType{"b", 1, 512, 0, std::nullopt, "unknown"}},
           {Image{"img-1", "Debian"}}};
  auto ob = OffersFromJson(ToJson(o));
  ASSERT_OK(ob);
  EXPECT_EQ(ob->regions, o.regions);
  ASSERT_EQ(ob->instance_types.size(), 2u);
  EXPECT_EQ(ob->instance_types[0].gpus, 1);
  EXPECT_EQ(ob->instance_types[0].memory_mib, 4096);
  EXPECT_DOUBLE_EQ(*ob->instance_types[0].price_hour, 0.5);
  EXPECT_FALSE(ob->instance_types[1].price_hour.has_value());
  EXPECT_EQ(ob->instance_types[1].price_note, "unknown");
  EXPECT_EQ(ob->images[0].name, "Debian");

  auto qb = QuoteFromJson(ToJson(Quote{"a", 3, 0.5, 1.5, "n"}));
  ASSERT_OK(qb);
  EXPECT_EQ(qb->count, 3);
  EXPECT_DOUBLE_EQ(*qb->price_hour_total, 1.5);

  auto kb =
      KeyPairFromJson(ToJson(KeyPair{"kp", "ssh-ed25519 AAA", SecretString("PEM"), "SHA256:x"}));
  ASSERT_OK(kb);
  EXPECT_EQ(kb->private_key.Reveal(), "PEM");
  EXPECT_EQ(kb->fingerprint, "SHA256:x");

  auto cb =
      ClusterIdentityFromJson(ToJson(ClusterIdentity{"ci", CredentialSecret(Json{{"k", 1}})}));
  ASSERT_OK(cb);
  EXPECT_EQ(cb->credential.Reveal()["k"], 1);

  auto ib = ProviderInfoFromJson(ToJson(ProviderInfo{"fake", "1.0", {1, 2}, {"gpu"}}));
  ASSERT_OK(ib);
  EXPECT_EQ(ib->contract_versions, (std::vector<int>{1, 2}));
  EXPECT_EQ(ib->capabilities, std::vector<std::string>{"gpu"});
}

TEST(Wire, MalformedDocumentsAreInvalidRequestNotExceptions) {
  auto a = InstanceFromJson(Json{{"handle", "x"}});
  ASSERT_FALSE(a);
  EXPECT_EQ(KindOf(a.error()), ProviderErrorKind::kInvalidRequest);
  auto b = InstanceSpecFromJson(Json{{"canopy_id", 5}});
  ASSERT_FALSE(b);
  EXPECT_EQ(KindOf(b.error()), ProviderErrorKind::kInvalidRequest);
  auto c = FirewallSpecFromJson(Json{{"canopy_id", "x"}, {"rules", {{{"port", "http"}}}}});
  ASSERT_FALSE(c);
  auto d = InstanceStateFromName("exploded");
  ASSERT_FALSE(d);
}

TEST(ProviderErrors, EveryKindMapsToItsCodeAndBack) {
  const std::pair<ProviderErrorKind, ErrorCode> table[] = {
      {ProviderErrorKind::kCapacity, ErrorCode::kResourceExhausted},
      {ProviderErrorKind::kQuota, ErrorCode::kResourceExhausted},
      {ProviderErrorKind::kAuth, ErrorCode::kUnauthenticated},
      {ProviderErrorKind::kInvalidRequest, ErrorCode::kInvalidArgument},
      {ProviderErrorKind::kNotFound, ErrorCode::kNotFound},
      {ProviderErrorKind::kTransient, ErrorCode::kUnavailable}};
  for (const auto& [kind, code] : table) {
    Error e = MakeProviderError(kind, "m");
    EXPECT_EQ(e.code, code);
    EXPECT_EQ(e.reason, ProviderErrorKindName(kind));
    EXPECT_EQ(KindOf(e), kind);
  }
  // Untyped errors are classified by code.
  EXPECT_EQ(KindOf(Error::NotFound("x")), ProviderErrorKind::kNotFound);
  EXPECT_EQ(KindOf(Error::Unauthenticated("x")), ProviderErrorKind::kAuth);
  EXPECT_EQ(KindOf(Error::Internal("x")), ProviderErrorKind::kTransient);
}

}  // namespace
}  // namespace canopy::providers::wire
