// GCP credentials without Google: key JSON validation (errors never quote the private key), the
// RS256 JWT assertion (decoded and its signature verified with OpenSSL), the token exchange
// against a local token endpoint, and the token cache's expiry on a fake clock.
#include "providers/gcp/gcp_auth.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/ids.h"
#include "providers/gcp/gcp_test_support.h"
#include "providers/provider.h"
#include "support/test_util.h"

namespace canopy::providers::gcp {
namespace {

using namespace std::chrono_literals;
using canopy::testing::FakeClock;
using testing::FakeGoogle;
using testing::MakeKeyJson;
using testing::TestPem;

// The base64 body of the PEM (what must never leak), without its armour lines.
std::string KeyBody() {
  std::string pem = TestPem();
  auto a = pem.find('\n') + 1;
  return pem.substr(a, 64);
}

TEST(GcpKey, ParsesGooglesKeyFile) {
  auto k = ParseServiceAccountKey(MakeKeyJson());
  ASSERT_OK(k);
  EXPECT_EQ(k->project_id, "proj-1");
  EXPECT_EQ(k->client_email, "canopy@proj-1.iam.gserviceaccount.com");
  EXPECT_EQ(k->token_uri, "https://oauth2.googleapis.com/token");
  EXPECT_EQ(k->private_key.Reveal(), TestPem());
  EXPECT_TRUE(k->cluster_id.empty());
  Json with_cluster = MakeKeyJson();
  with_cluster[kClusterField] = "cl-1";
  auto c = ParseServiceAccountKey(with_cluster);
  ASSERT_OK(c);
  EXPECT_EQ(c->cluster_id, "cl-1");
}

TEST(GcpKey, ValidationErrorsNameTheFieldButNeverTheKey) {
  std::vector<std::pair<std::string, Json>> bad;
  auto without = [](const char* f) {
    Json j = MakeKeyJson();
    j.erase(f);
    return j;
  };
  auto with = [](const char* f, Json v) {
    Json j = MakeKeyJson();
    j[f] = std::move(v);
    return j;
  };
  for (const char* f :
       {"type", "project_id", "private_key_id", "private_key", "client_email", "token_uri"}) {
    bad.emplace_back(std::string("missing ") + f, without(f));
  }
  bad.emplace_back("type", with("type", "authorized_user"));
  bad.emplace_back("project path", with("project_id", "proj/../other"));
  bad.emplace_back("upper project", with("project_id", "Proj"));
  bad.emplace_back("email", with("client_email", "nobody"));
  bad.emplace_back("token_uri", with("token_uri", "file:///etc/passwd"));
  bad.emplace_back("key id", with("private_key_id", "a/b"));
  bad.emplace_back("number", with("client_id", 12));
  bad.emplace_back("cluster", with(kClusterField, "a b"));
  // A key that is not RSA PEM: an Ed25519 key, a truncated one, and garbage around the real one.
  std::string truncated = TestPem().substr(0, TestPem().size() / 2);
  bad.emplace_back("truncated key", with("private_key", truncated));
  bad.emplace_back("no key", with("private_key", "-----BEGIN PRIVATE KEY-----\n" + KeyBody() +
                                                     "\n-----END PRIVATE KEY-----\n"));
  bad.emplace_back("array", Json::array({MakeKeyJson()}));
  for (const auto& [what, j] : bad) {
    auto r = ParseServiceAccountKey(j);
    ASSERT_FALSE(r) << what;
    EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kInvalidRequest) << what;
    EXPECT_EQ(r.error().message.find(KeyBody().substr(0, 20)), std::string::npos) << what;
    EXPECT_EQ(r.error().message.find("BEGIN"), std::string::npos) << what;
    EXPECT_EQ(r.error().message.find(truncated.substr(40, 30)), std::string::npos) << what;
  }
}

// Splits a JWT and decodes its parts.
struct Decoded {
  Json header, claims;
  std::string signing_input, signature;
};
Decoded Decode(const std::string& jwt) {
  Decoded d;
  auto a = jwt.find('.'), b = jwt.rfind('.');
  EXPECT_NE(a, b);
  std::string h, c;
  EXPECT_TRUE(Base64UrlDecode(jwt.substr(0, a), &h));
  EXPECT_TRUE(Base64UrlDecode(jwt.substr(a + 1, b - a - 1), &c));
  EXPECT_TRUE(Base64UrlDecode(jwt.substr(b + 1), &d.signature));
  d.header = Json::parse(h);
  d.claims = Json::parse(c);
  d.signing_input = jwt.substr(0, b);
  return d;
}

bool VerifyRs256(const std::string& pem, const std::string& input, const std::string& sig) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  // Verify with the public half only.
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(key.get(), &der);
  const unsigned char* p = der;
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pub(d2i_PUBKEY(nullptr, &p, n),
                                                          &EVP_PKEY_free);
  OPENSSL_free(der);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  return EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pub.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
}

TEST(GcpJwt, HeaderClaimsAndAValidRs256Signature) {
  auto k = ParseServiceAccountKey(MakeKeyJson());
  ASSERT_OK(k);
  const TimePoint now = FromUnixMillis(1'800'000'000'000);
  auto jwt = MakeJwtAssertion(*k, now);
  ASSERT_OK(jwt);
  EXPECT_EQ(jwt->find('='), std::string::npos);  // base64url without padding
  EXPECT_EQ(jwt->find('+'), std::string::npos);
  EXPECT_EQ(jwt->find('/'), std::string::npos);
  Decoded d = Decode(*jwt);
  EXPECT_EQ(d.header, (Json{{"alg", "RS256"},
                            {"typ", "JWT"},
                            {"kid", "0123456789abcdef0123456789abcdef01234567"}}));
  EXPECT_EQ(d.claims, (Json{{"iss", "canopy@proj-1.iam.gserviceaccount.com"},
                            {"scope", "https://www.googleapis.com/auth/cloud-platform"},
                            {"aud", "https://oauth2.googleapis.com/token"},
                            {"iat", 1'800'000'000},
                            {"exp", 1'800'003'600}}));
  EXPECT_EQ(d.signature.size(), 256u);
  EXPECT_TRUE(VerifyRs256(TestPem(), d.signing_input, d.signature));
  EXPECT_FALSE(VerifyRs256(TestPem(), d.signing_input + "x", d.signature));
  // Another key does not verify it.
  EXPECT_FALSE(VerifyRs256(testing::MakeRsaPem(), d.signing_input, d.signature));
}

TEST(GcpTokenCache, ValidUntilSixtySecondsBeforeExpiry) {
  auto clock = std::make_shared<FakeClock>();
  TokenCache cache(clock);
  auto k = ParseServiceAccountKey(MakeKeyJson());
  ASSERT_OK(k);
  int fetches = 0;
  auto fetch = [&]() -> Result<AccessToken> {
    ++fetches;
    return AccessToken{SecretString("t" + std::to_string(fetches)), clock->Now() + 3600s};
  };
  auto a = cache.Get(*k, fetch);
  ASSERT_OK(a);
  EXPECT_EQ(a->Reveal(), "t1");
  clock->Advance(3539s);  // 61 s left
  EXPECT_EQ(cache.Get(*k, fetch)->Reveal(), "t1");
  clock->Advance(1s);  // 60 s left: renewed
  EXPECT_EQ(cache.Get(*k, fetch)->Reveal(), "t2");
  EXPECT_EQ(fetches, 2);
  cache.Drop(*k);
  EXPECT_EQ(cache.Get(*k, fetch)->Reveal(), "t3");
  cache.DropAccount(k->client_email);
  EXPECT_EQ(cache.size(), 0u);
  // A failed fetch caches nothing.
  auto failing = []() -> Result<AccessToken> {
    return MakeProviderError(ProviderErrorKind::kAuth, "no");
  };
  EXPECT_FALSE(cache.Get(*k, failing));
  EXPECT_EQ(cache.size(), 0u);
}

TEST(GcpTokenCache, ATokenIsNeverHandedToAnotherPrivateKey) {
  TokenCache cache(std::make_shared<FakeClock>());
  auto real = ParseServiceAccountKey(MakeKeyJson());
  ASSERT_OK(real);
  Json forged_json = MakeKeyJson();
  forged_json["private_key"] = testing::MakeRsaPem();  // same email and key id, another key
  auto forged = ParseServiceAccountKey(forged_json);
  ASSERT_OK(forged);
  auto fetch_real = [&]() -> Result<AccessToken> {
    return AccessToken{SecretString("real"), TimePoint::max() - 3600s};
  };
  auto fetch_forged = [&]() -> Result<AccessToken> {
    return MakeProviderError(ProviderErrorKind::kAuth, "invalid_grant");
  };
  ASSERT_OK(cache.Get(*real, fetch_real));
  auto r = cache.Get(*forged, fetch_forged);
  ASSERT_FALSE(r);
  EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kAuth);
  EXPECT_EQ(cache.Get(*real, fetch_forged)->Reveal(), "real");
}

TEST(GcpTokenExchange, PostsTheJwtBearerFormAndReadsTheToken) {
  FakeGoogle g;
  g.Start();
  auto k = ParseServiceAccountKey(MakeKeyJson(g.url() + "/token"));
  ASSERT_OK(k);
  FakeClock clock;
  auto t = ExchangeJwt(*k, g.url() + "/token", clock, RetryPolicy{2, 1ms, 2ms});
  ASSERT_OK(t);
  EXPECT_EQ(t->token.Reveal(), "tok-1");
  EXPECT_EQ(t->expires_at, clock.Now() + 3599s);
  const std::string body = g.last_token_body();
  const std::string prefix =
      "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";
  ASSERT_EQ(body.rfind(prefix, 0), 0u) << body;
  Decoded d = Decode(body.substr(prefix.size()));
  EXPECT_EQ(d.claims["aud"], g.url() + "/token");
  EXPECT_TRUE(VerifyRs256(TestPem(), d.signing_input, d.signature));
}

TEST(GcpTokenExchange, InvalidGrantIsAnAuthError) {
  FakeGoogle g;
  g.set_token_status(400);
  g.Start();
  auto k = ParseServiceAccountKey(MakeKeyJson(g.url() + "/token"));
  ASSERT_OK(k);
  FakeClock clock;
  auto t = ExchangeJwt(*k, g.url() + "/token", clock, RetryPolicy{3, 1ms, 2ms});
  ASSERT_FALSE(t);
  EXPECT_EQ(KindOf(t.error()), ProviderErrorKind::kAuth);
  EXPECT_NE(t.error().message.find("invalid_grant"), std::string::npos);
  EXPECT_EQ(t.error().message.find(KeyBody().substr(0, 20)), std::string::npos);
  EXPECT_EQ(g.token_calls(), 1);  // not retried
}

TEST(GcpTokenExchange, ServerErrorsAreRetriedThenTransient) {
  FakeGoogle g;
  g.set_token_status(503);
  g.Start();
  auto k = ParseServiceAccountKey(MakeKeyJson(g.url() + "/token"));
  ASSERT_OK(k);
  FakeClock clock;
  auto t = ExchangeJwt(*k, g.url() + "/token", clock, RetryPolicy{3, 1ms, 2ms});
  ASSERT_FALSE(t);
  EXPECT_EQ(KindOf(t.error()), ProviderErrorKind::kTransient);
  EXPECT_EQ(g.token_calls(), 3);
}

TEST(GcpTokenExchange, UnreachableIsTransient) {
  canopy::testing::ClosedPort closed;
  auto k = ParseServiceAccountKey(MakeKeyJson());
  ASSERT_OK(k);
  FakeClock clock;
  auto t = ExchangeJwt(*k, closed.url() + "/token", clock, RetryPolicy{2, 1ms, 2ms});
  ASSERT_FALSE(t);
  EXPECT_EQ(KindOf(t.error()), ProviderErrorKind::kTransient);
}

}  // namespace
}  // namespace canopy::providers::gcp
