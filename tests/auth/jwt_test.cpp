#include "auth/jwt.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/ids.h"
#include "support/test_util.h"

namespace canopy::auth {
namespace {

using canopy::testing::TempDir;
using std::chrono::seconds;

constexpr int64_t kIat = 1'800'000'000;
const TimePoint kNow = FromUnixMillis(kIat * 1000 + 500);

Claims MakeClaims() {
  Claims c;
  c.subject = "usr-abc";
  c.username = "alice";
  c.roles = {"admin", "infra"};
  c.issued_at = kIat;
  c.expires_at = kIat + 3600;
  c.token_id = "jti-1";
  return c;
}

std::unique_ptr<JwtKeys> Load(const std::string& path) {
  auto keys = JwtKeys::LoadOrCreate(path);
  EXPECT_TRUE(keys.has_value()) << keys.error().ToString();
  return keys ? std::move(keys).value() : nullptr;
}

std::vector<std::string> Split(const std::string& token) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = token.find('.', start);
    parts.push_back(token.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += '.';
    out += parts[i];
  }
  return out;
}

std::string Decode(const std::string& b64) {
  std::string out;
  EXPECT_TRUE(Base64UrlDecode(b64, &out));
  return out;
}

Json DecodeJson(const std::string& b64) {
  auto j = ParseJson(Decode(b64));
  EXPECT_TRUE(j.has_value());
  return j ? *j : Json();
}

std::string EncodeJson(const Json& j) { return Base64UrlEncode(j.dump()); }

void ExpectUnauthenticated(const JwtKeys& keys, const std::string& token, TimePoint now = kNow) {
  auto r = keys.Verify(token, now);
  ASSERT_FALSE(r.has_value()) << "token unexpectedly accepted";
  EXPECT_EQ(r.error().code, ErrorCode::kUnauthenticated) << r.error().ToString();
  EXPECT_FALSE(r.error().message.empty());
  // Messages are short and never echo the token.
  EXPECT_LT(r.error().message.size(), 40u);
  for (const std::string& part : Split(token)) {
    if (part.size() >= 8) {
      EXPECT_EQ(r.error().message.find(part), std::string::npos);
    }
  }
}

mode_t FileMode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 07777;
}

std::string HmacSha256(const std::string& key, const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  return std::string(reinterpret_cast<const char*>(md), len);
}

// Writes `pem` as a private key file with the given mode.
void WriteFile(const std::string& path, const std::string& content, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  ASSERT_EQ(::fchmod(fd, mode), 0);
  ::close(fd);
}

// The RFC 8037 Appendix A.1 private key, as a PKCS#8 PEM.
std::string Rfc8037KeyPem() {
  std::string d;
  EXPECT_TRUE(Base64UrlDecode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A", &d));
  EVP_PKEY* key = EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(d.data()), d.size());
  EXPECT_NE(key, nullptr);
  BIO* bio = BIO_new(BIO_s_mem());
  EXPECT_EQ(PEM_write_bio_PKCS8PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr), 1);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(len));
  BIO_free(bio);
  EVP_PKEY_free(key);
  return pem;
}

TEST(JwtKeys, SignThenVerifyRoundTripsClaims) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  auto claims = keys->Verify(*token, kNow);
  ASSERT_OK(claims);
  EXPECT_EQ(claims->subject, "usr-abc");
  EXPECT_EQ(claims->username, "alice");
  EXPECT_EQ(claims->roles, (std::vector<std::string>{"admin", "infra"}));
  EXPECT_EQ(claims->issued_at, kIat);
  EXPECT_EQ(claims->expires_at, kIat + 3600);
  EXPECT_EQ(claims->token_id, "jti-1");
}

TEST(JwtKeys, TokenHasPinnedHeaderAndStandardClaims) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  auto parts = Split(*token);
  ASSERT_EQ(parts.size(), 3u);
  Json header = DecodeJson(parts[0]);
  EXPECT_EQ(header, Json::parse(R"({"alg":"EdDSA","typ":"JWT","kid":")" + keys->key_id() + "\"}"));
  Json payload = DecodeJson(parts[1]);
  EXPECT_EQ(payload["iss"], "canopy");
  EXPECT_EQ(payload["sub"], "usr-abc");
  EXPECT_EQ(payload["name"], "alice");
  EXPECT_EQ(payload["roles"], Json::parse(R"(["admin","infra"])"));
  EXPECT_EQ(payload["iat"], kIat);
  EXPECT_EQ(payload["nbf"], kIat);
  EXPECT_EQ(payload["exp"], kIat + 3600);
  EXPECT_EQ(payload["jti"], "jti-1");
  EXPECT_EQ(Decode(parts[2]).size(), 64u);
}

TEST(JwtKeys, SignGeneratesDistinctTokenIdsWhenEmpty) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  Claims c = MakeClaims();
  c.token_id.clear();
  auto a = keys->Sign(c);
  auto b = keys->Sign(c);
  ASSERT_OK(a);
  ASSERT_OK(b);
  auto ca = keys->Verify(*a, kNow);
  auto cb = keys->Verify(*b, kNow);
  ASSERT_OK(ca);
  ASSERT_OK(cb);
  EXPECT_GE(ca->token_id.size(), 16u);
  EXPECT_NE(ca->token_id, cb->token_id);
}

TEST(JwtKeys, SignRejectsInvalidClaims) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  Claims no_subject = MakeClaims();
  no_subject.subject.clear();
  auto r1 = keys->Sign(no_subject);
  ASSERT_FALSE(r1.has_value());
  EXPECT_EQ(r1.error().code, ErrorCode::kInvalidArgument);
  Claims backwards = MakeClaims();
  backwards.expires_at = backwards.issued_at;
  auto r2 = keys->Sign(backwards);
  ASSERT_FALSE(r2.has_value());
  EXPECT_EQ(r2.error().code, ErrorCode::kInvalidArgument);
  Claims huge = MakeClaims();
  huge.roles.assign(1000, "role-with-a-long-name");
  auto r3 = keys->Sign(huge);
  ASSERT_FALSE(r3.has_value());
  EXPECT_EQ(r3.error().code, ErrorCode::kInvalidArgument);
}

TEST(JwtKeys, KeyPersistsAcrossLoads) {
  TempDir dir;
  const std::string path = dir.str() + "/jwt.pem";
  std::string token;
  std::string kid;
  {
    auto keys = Load(path);
    ASSERT_NE(keys, nullptr);
    auto t = keys->Sign(MakeClaims());
    ASSERT_OK(t);
    token = *t;
    kid = keys->key_id();
  }
  auto reloaded = Load(path);
  ASSERT_NE(reloaded, nullptr);
  EXPECT_EQ(reloaded->key_id(), kid);
  EXPECT_OK(reloaded->Verify(token, kNow));
  EXPECT_EQ(reloaded->Jwks(), Load(path)->Jwks());
}

TEST(JwtKeys, KeyFileIsPkcs8PemWithMode0600) {
  TempDir dir;
  const std::string path = dir.str() + "/jwt.pem";
  mode_t old_umask = ::umask(0);  // a permissive umask must not widen the mode
  auto keys = Load(path);
  ::umask(old_umask);
  ASSERT_NE(keys, nullptr);
  EXPECT_EQ(FileMode(path), 0600u);
  std::string pem = canopy::testing::ReadFile(path);
  EXPECT_EQ(pem.rfind("-----BEGIN PRIVATE KEY-----", 0), 0u);
  // No temporary files left behind.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST(JwtKeys, ConcurrentCreatorsAgreeOnOneKey) {
  TempDir dir;
  const std::string path = dir.str() + "/jwt.pem";
  constexpr int kThreads = 8;
  std::vector<std::string> kids(kThreads);
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        auto keys = JwtKeys::LoadOrCreate(path);
        if (keys) kids[i] = (*keys)->key_id();
      });
    }
  }
  for (const std::string& kid : kids) EXPECT_EQ(kid, kids[0]);
  EXPECT_FALSE(kids[0].empty());
  auto final_keys = Load(path);
  ASSERT_NE(final_keys, nullptr);
  EXPECT_EQ(final_keys->key_id(), kids[0]);
}

TEST(JwtKeys, LoadRejectsGroupOrOtherAccessibleKeyFile) {
  for (mode_t mode : {0640, 0604, 0644, 0660, 0610}) {
    TempDir dir;
    const std::string path = dir.str() + "/jwt.pem";
    WriteFile(path, Rfc8037KeyPem(), mode);
    auto keys = JwtKeys::LoadOrCreate(path);
    ASSERT_FALSE(keys.has_value()) << std::oct << mode;
    EXPECT_EQ(keys.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_NE(keys.error().message.find("chmod 600"), std::string::npos) << keys.error().message;
    // The file is left as it was, not replaced by a new key.
    EXPECT_EQ(canopy::testing::ReadFile(path), Rfc8037KeyPem());
  }
}

TEST(JwtKeys, LoadRejectsKeyFileWithWrongContent) {
  TempDir dir;
  const std::string garbage = dir.str() + "/garbage.pem";
  WriteFile(garbage, "not a key\n", 0600);
  auto r1 = JwtKeys::LoadOrCreate(garbage);
  ASSERT_FALSE(r1.has_value());
  EXPECT_EQ(r1.error().code, ErrorCode::kFailedPrecondition);

  // A valid PEM of another key type is refused too.
  EVP_PKEY* ec = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  ASSERT_NE(ec, nullptr);
  BIO* bio = BIO_new(BIO_s_mem());
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(bio, ec, nullptr, nullptr, 0, nullptr, nullptr), 1);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  const std::string ec_path = dir.str() + "/ec.pem";
  WriteFile(ec_path, std::string(data, static_cast<size_t>(len)), 0600);
  BIO_free(bio);
  EVP_PKEY_free(ec);
  auto r2 = JwtKeys::LoadOrCreate(ec_path);
  ASSERT_FALSE(r2.has_value());
  EXPECT_EQ(r2.error().code, ErrorCode::kFailedPrecondition);

  const std::string empty = dir.str() + "/empty.pem";
  WriteFile(empty, "", 0600);
  auto r3 = JwtKeys::LoadOrCreate(empty);
  ASSERT_FALSE(r3.has_value());
  EXPECT_EQ(r3.error().code, ErrorCode::kFailedPrecondition);
}

TEST(JwtKeys, LoadFailsWhenDirectoryIsMissing) {
  TempDir dir;
  auto r = JwtKeys::LoadOrCreate(dir.str() + "/missing/jwt.pem");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
}

TEST(JwtKeys, KeyIdMatchesRfc8037Thumbprint) {
  TempDir dir;
  const std::string path = dir.str() + "/jwt.pem";
  WriteFile(path, Rfc8037KeyPem(), 0600);
  auto keys = Load(path);
  ASSERT_NE(keys, nullptr);
  // RFC 8037 Appendix A.2 (public key) and A.3 (thumbprint).
  EXPECT_EQ(keys->key_id(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
  EXPECT_EQ(keys->Jwks()["keys"][0]["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
}

TEST(JwtKeys, JwksHasOkpKeyWhoseThumbprintIsTheKid) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  Json jwks = keys->Jwks();
  ASSERT_TRUE(jwks["keys"].is_array());
  ASSERT_EQ(jwks["keys"].size(), 1u);
  const Json& k = jwks["keys"][0];
  EXPECT_EQ(k.size(), 6u);
  EXPECT_EQ(k["kty"], "OKP");
  EXPECT_EQ(k["crv"], "Ed25519");
  EXPECT_EQ(k["alg"], "EdDSA");
  EXPECT_EQ(k["use"], "sig");
  EXPECT_EQ(k["kid"], keys->key_id());
  ASSERT_TRUE(k["x"].is_string());
  const std::string x = k["x"];
  EXPECT_EQ(Decode(x).size(), 32u);
  const std::string canonical = R"({"crv":"Ed25519","kty":"OKP","x":")" + x + "\"}";
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(canonical.data()), canonical.size(), md);
  EXPECT_EQ(keys->key_id(), Base64UrlEncode(std::string(reinterpret_cast<char*>(md), sizeof md)));
}

TEST(JwtKeys, JwksPublicKeyVerifiesSignature) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  const std::string x = Decode(keys->Jwks()["keys"][0]["x"].get<std::string>());
  EVP_PKEY* pub = EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(x.data()), x.size());
  ASSERT_NE(pub, nullptr);
  auto parts = Split(*token);
  const std::string input = parts[0] + "." + parts[1];
  auto verify = [&](const std::string& msg) {
    const std::string sig = Decode(parts[2]);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EXPECT_EQ(EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, pub), 1);
    int rc = EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                              reinterpret_cast<const unsigned char*>(msg.data()), msg.size());
    EVP_MD_CTX_free(ctx);
    return rc;
  };
  EXPECT_EQ(verify(input), 1);
  EXPECT_NE(verify(input + "x"), 1);
  EVP_PKEY_free(pub);
}

TEST(JwtKeys, VerifyRejectsTokenFromDifferentKey) {
  TempDir dir;
  auto a = Load(dir.str() + "/a.pem");
  auto b = Load(dir.str() + "/b.pem");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(a->key_id(), b->key_id());
  auto token = a->Sign(MakeClaims());
  ASSERT_OK(token);
  ExpectUnauthenticated(*b, *token);
  // Same kid as b but a's signature: the signature check, not only the kid, rejects it.
  auto parts = Split(*token);
  Json header = DecodeJson(parts[0]);
  header["kid"] = b->key_id();
  parts[0] = EncodeJson(header);
  ExpectUnauthenticated(*b, Join(parts));
}

TEST(JwtKeys, VerifyRejectsExpiredToken) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  const TimePoint exp = FromUnixMillis((kIat + 3600) * 1000);
  EXPECT_OK(keys->Verify(*token, exp - std::chrono::milliseconds(1)));
  ExpectUnauthenticated(*keys, *token, exp);  // exp itself is already too late: no leeway
  ExpectUnauthenticated(*keys, *token, exp + seconds(1));
  auto r = keys->Verify(*token, exp + std::chrono::hours(24));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "token expired");
}

TEST(JwtKeys, VerifyRejectsTokenNotYetValid) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  const TimePoint iat = FromUnixMillis(kIat * 1000);
  // Within the documented leeway a slightly early clock is tolerated.
  EXPECT_OK(keys->Verify(*token, iat - kJwtNotBeforeLeeway));
  ExpectUnauthenticated(*keys, *token, iat - kJwtNotBeforeLeeway - seconds(1));
  auto r = keys->Verify(*token, iat - std::chrono::hours(1));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "token not yet valid");
}

TEST(JwtKeys, VerifyRejectsTamperedPayload) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  auto parts = Split(*token);
  Json payload = DecodeJson(parts[1]);
  payload["roles"] = Json::array({"admin", "infra", "app"});
  parts[1] = EncodeJson(payload);
  ExpectUnauthenticated(*keys, Join(parts));
  payload = DecodeJson(Split(*token)[1]);
  payload["exp"] = kIat + 999999;
  parts[1] = EncodeJson(payload);
  ExpectUnauthenticated(*keys, Join(parts));
}

TEST(JwtKeys, VerifyRejectsAnyChangedCharacter) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  for (size_t i = 0; i < token->size(); ++i) {
    std::string t = *token;
    if (t[i] == '.') continue;
    t[i] = t[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(keys->Verify(t, kNow).has_value()) << "position " << i;
  }
}

TEST(JwtKeys, VerifyRejectsTamperedSignature) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  auto parts = Split(*token);
  std::string sig = Decode(parts[2]);
  sig[10] = static_cast<char>(sig[10] ^ 0x01);
  parts[2] = Base64UrlEncode(sig);
  ExpectUnauthenticated(*keys, Join(parts));
  // Truncated, extended, and empty signatures.
  std::string good = Decode(Split(*token)[2]);
  parts[2] = Base64UrlEncode(good.substr(0, 63));
  ExpectUnauthenticated(*keys, Join(parts));
  parts[2] = Base64UrlEncode(good + "x");
  ExpectUnauthenticated(*keys, Join(parts));
  parts[2] = "";
  ExpectUnauthenticated(*keys, Join(parts));
}

TEST(JwtKeys, VerifyRejectsNonCanonicalSignatureEncoding) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  auto parts = Split(*token);
  // 64 bytes -> 86 characters: the last character carries 4 unused bits. Setting one of them
  // decodes to the same bytes in lenient decoders; the token must still have one spelling only.
  std::string& s = parts[2];
  ASSERT_EQ(s.size(), 86u);
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t v = alphabet.find(s.back());
  ASSERT_EQ(v % 16, 0u);
  s.back() = alphabet[v + 1];
  ExpectUnauthenticated(*keys, Join(parts));
}

TEST(JwtKeys, VerifyRejectsAlgNoneAndOtherAlgorithms) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  auto parts = Split(*token);
  for (const char* alg :
       {"none", "None", "HS256", "RS256", "ES256", "EdDSA ", "eddsa", "Ed25519"}) {
    Json header = DecodeJson(parts[0]);
    header["alg"] = alg;
    // Keep the real signature, and also try the empty signature of alg "none".
    std::vector<std::string> with_sig = {EncodeJson(header), parts[1], parts[2]};
    ExpectUnauthenticated(*keys, Join(with_sig));
    std::vector<std::string> no_sig = {EncodeJson(header), parts[1], ""};
    ExpectUnauthenticated(*keys, Join(no_sig));
  }
  Json header = DecodeJson(parts[0]);
  header.erase("alg");
  ExpectUnauthenticated(*keys, Join({EncodeJson(header), parts[1], parts[2]}));
  header["alg"] = Json::array({"EdDSA"});
  ExpectUnauthenticated(*keys, Join({EncodeJson(header), parts[1], parts[2]}));
  auto r = keys->Verify(Join({EncodeJson(Json{{"alg", "none"}}), parts[1], ""}), kNow);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "token algorithm not accepted");
}

TEST(JwtKeys, VerifyRejectsHs256SignedWithPublicKey) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  auto parts = Split(*token);
  Json header = {{"alg", "HS256"}, {"typ", "JWT"}, {"kid", keys->key_id()}};
  const std::string x_b64 = keys->Jwks()["keys"][0]["x"];
  const std::string raw_pub = Decode(x_b64);
  // Every plausible "public key" byte string an attacker could use as the HMAC secret.
  for (const std::string& secret : {raw_pub, x_b64, keys->Jwks().dump()}) {
    const std::string input = EncodeJson(header) + "." + parts[1];
    const std::string forged = input + "." + Base64UrlEncode(HmacSha256(secret, input));
    ExpectUnauthenticated(*keys, forged);
  }
}

TEST(JwtKeys, VerifyRejectsWrongKidAndUnknownHeaderFeatures) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  auto parts = Split(*token);
  auto with_header = [&](const Json& h) { return Join({EncodeJson(h), parts[1], parts[2]}); };
  Json header = DecodeJson(parts[0]);
  Json h = header;
  h["kid"] = "someone-else";
  ExpectUnauthenticated(*keys, with_header(h));
  h = header;
  h.erase("kid");
  ExpectUnauthenticated(*keys, with_header(h));
  h = header;
  h["crit"] = Json::array({"exp"});
  ExpectUnauthenticated(*keys, with_header(h));
  h = header;
  h["typ"] = "at+jwt";
  ExpectUnauthenticated(*keys, with_header(h));
  ExpectUnauthenticated(*keys, Join({Base64UrlEncode("[1,2]"), parts[1], parts[2]}));
}

TEST(JwtKeys, VerifyRejectsWrongIssuerAndBadClaimTypes) {
  // Claims are re-signed with the real key so that only the claim checks can reject them.
  TempDir dir;
  const std::string path = dir.str() + "/jwt.pem";
  auto keys = Load(path);
  ASSERT_NE(keys, nullptr);
  std::string pem = canopy::testing::ReadFile(path);
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* priv = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(priv, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  auto parts = Split(*token);
  auto resign = [&](const Json& payload) {
    const std::string input = parts[0] + "." + EncodeJson(payload);
    unsigned char sig[64];
    size_t len = sizeof sig;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EXPECT_EQ(EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, priv), 1);
    EXPECT_EQ(EVP_DigestSign(ctx, sig, &len, reinterpret_cast<const unsigned char*>(input.data()),
                             input.size()),
              1);
    EVP_MD_CTX_free(ctx);
    return input + "." + Base64UrlEncode(std::string(reinterpret_cast<char*>(sig), len));
  };
  const Json good = DecodeJson(parts[1]);
  // Sanity: the re-signing helper produces an accepted token when nothing is changed.
  ASSERT_OK(keys->Verify(resign(good), kNow));

  Json p = good;
  p["iss"] = "someone-else";
  ExpectUnauthenticated(*keys, resign(p));
  auto r = keys->Verify(resign(p), kNow);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "token issuer not accepted");
  p.erase("iss");
  ExpectUnauthenticated(*keys, resign(p));

  std::vector<std::pair<std::string, Json>> bad = {{"sub", 42},
                                                   {"sub", ""},
                                                   {"name", nullptr},
                                                   {"roles", "admin"},
                                                   {"roles", {1, 2}},
                                                   {"iat", "1800000000"},
                                                   {"exp", 1.9e9},
                                                   {"nbf", true},
                                                   {"jti", Json::array()},
                                                   {"exp", 18446744073709551615ull}};
  for (const auto& [field, value] : bad) {
    p = good;
    p[field] = value;
    ExpectUnauthenticated(*keys, resign(p));
  }
  for (const char* field : {"sub", "name", "roles", "iat", "nbf", "exp", "jti"}) {
    p = good;
    p.erase(field);
    ExpectUnauthenticated(*keys, resign(p));
  }
  ExpectUnauthenticated(*keys, resign(Json::array()));

  // nbf later than iat is honoured on its own; extreme values do not overflow the checks.
  p = good;
  p["nbf"] = kIat + 600;
  auto early = keys->Verify(resign(p), kNow);
  ASSERT_FALSE(early.has_value());
  EXPECT_EQ(early.error().message, "token not yet valid");
  EXPECT_OK(keys->Verify(resign(p), kNow + std::chrono::seconds(600)));
  p["nbf"] = INT64_MAX;
  ExpectUnauthenticated(*keys, resign(p));
  p = good;
  p["iat"] = INT64_MAX;
  ExpectUnauthenticated(*keys, resign(p));
  p = good;
  p["exp"] = INT64_MIN;
  ExpectUnauthenticated(*keys, resign(p));
  EVP_PKEY_free(priv);
}

TEST(JwtKeys, VerifyRejectsMalformedStructure) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  auto parts = Split(*token);
  ExpectUnauthenticated(*keys, "");
  ExpectUnauthenticated(*keys, "abc");
  ExpectUnauthenticated(*keys, parts[0] + "." + parts[1]);                    // 2 parts
  ExpectUnauthenticated(*keys, *token + "." + parts[2]);                      // 4 parts
  ExpectUnauthenticated(*keys, *token + ".");                                 // 4 parts
  ExpectUnauthenticated(*keys, "." + parts[1] + "." + parts[2]);              // empty header
  ExpectUnauthenticated(*keys, parts[0] + ".." + parts[2]);                   // empty payload
  ExpectUnauthenticated(*keys, parts[0] + "=." + parts[1] + "." + parts[2]);  // padding
  ExpectUnauthenticated(*keys, parts[0] + "." + parts[1] + "!." + parts[2]);  // bad char
  ExpectUnauthenticated(*keys, " " + *token);                                 // whitespace
  ExpectUnauthenticated(*keys, *token + "\n");
  std::string plus = parts[1];
  for (char& c : plus) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  if (plus != parts[1]) {
    ExpectUnauthenticated(*keys, parts[0] + "." + plus + "." + parts[2]);
  }
  ExpectUnauthenticated(*keys, parts[0] + "." + Base64UrlEncode("not json") + "." + parts[2]);
  ExpectUnauthenticated(*keys, parts[0] + "." + parts[1].substr(1) + "." + parts[2]);
}

TEST(JwtKeys, VerifyRejectsOversizedToken) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  auto token = keys->Sign(MakeClaims());
  ASSERT_OK(token);
  const std::string big = *token + std::string(kMaxJwtBytes, 'A');
  ExpectUnauthenticated(*keys, big);
  auto r = keys->Verify(big, kNow);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "token too large");
  // Largest claims Sign accepts still verify.
  Claims c = MakeClaims();
  c.roles.assign(100, "some-role");
  auto t = keys->Sign(c);
  ASSERT_OK(t);
  EXPECT_LE(t->size(), kMaxJwtBytes);
  EXPECT_OK(keys->Verify(*t, kNow));
}

TEST(JwtKeys, VerifyIsSafeFromManyThreads) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  std::atomic<int> failures{0};
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&, i] {
        for (int j = 0; j < 200; ++j) {
          Claims c = MakeClaims();
          c.subject = "usr-" + std::to_string(i) + "-" + std::to_string(j);
          auto t = keys->Sign(c);
          auto v = t ? keys->Verify(*t, kNow) : Result<Claims>(t.error());
          if (!v || v->subject != c.subject) ++failures;
        }
      });
    }
  }
  EXPECT_EQ(failures.load(), 0);
}

TEST(JwtKeys, GenerationClaimRoundTripsAndIsAbsentAsZero) {
  TempDir dir;
  auto keys = Load(dir.str() + "/jwt.pem");
  ASSERT_NE(keys, nullptr);
  Claims c = MakeClaims();
  auto plain = keys->Sign(c);
  ASSERT_OK(plain);
  EXPECT_EQ(keys->Verify(*plain, kNow)->generation, 0);
  c.generation = 7;
  auto t = keys->Sign(c);
  ASSERT_OK(t);
  EXPECT_EQ(keys->Verify(*t, kNow)->generation, 7);
}

std::vector<std::string> RetiredFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    std::string name = f.path().filename().string();
    if (name.find(".retired-") != std::string::npos) out.push_back(f.path().string());
  }
  return out;
}

TEST(JwtKeys, RotationKeepsOldTokensValidUntilTheyExpireThenForgetsTheKey) {
  TempDir dir;
  const std::string path = dir.str() + "/jwt.pem";
  JwtRotation rot;
  rot.max_key_age = std::chrono::hours(24);
  rot.token_ttl = std::chrono::seconds(3600);
  auto loaded = JwtKeys::LoadOrCreate(path, rot, kNow);
  ASSERT_OK(loaded);
  auto& keys = **loaded;
  const std::string old_kid = keys.key_id();
  auto old_token = keys.Sign(MakeClaims());
  ASSERT_OK(old_token);
  Claims long_lived = MakeClaims();
  long_lived.expires_at = kIat + 10 * 3600;  // outlives the rotation policy's token lifetime
  auto old_long = keys.Sign(long_lived);
  ASSERT_OK(old_long);

  auto new_kid = keys.Rotate(kNow);
  ASSERT_OK(new_kid);
  EXPECT_NE(*new_kid, old_kid);
  EXPECT_EQ(keys.key_id(), *new_kid);
  // The old token still verifies; new tokens name the new key.
  EXPECT_OK(keys.Verify(*old_token, kNow + seconds(10)));
  auto new_token = keys.Sign(MakeClaims());
  ASSERT_OK(new_token);
  EXPECT_OK(keys.Verify(*new_token, kNow + seconds(10)));
  Json jwks = keys.Jwks();
  ASSERT_EQ(jwks["keys"].size(), 2u);
  EXPECT_EQ(jwks["keys"][0]["kid"], *new_kid);
  EXPECT_EQ(jwks["keys"][1]["kid"], old_kid);
  // The retired key is kept on disk (0600) and found again by a restart.
  auto retired = RetiredFiles(dir.str());
  ASSERT_EQ(retired.size(), 1u);
  struct stat st {};
  ASSERT_EQ(::stat(retired[0].c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto reloaded = JwtKeys::LoadOrCreate(path, rot, kNow + seconds(60));
  ASSERT_OK(reloaded);
  EXPECT_EQ((*reloaded)->key_id(), *new_kid);
  EXPECT_OK((*reloaded)->Verify(*old_token, kNow + seconds(60)));

  // Once every token it signed has expired, the retired key is forgotten and deleted.
  const TimePoint later = kNow + rot.token_ttl + seconds(120);
  ASSERT_OK(keys.MaybeRotate(later));
  EXPECT_EQ(keys.Jwks()["keys"].size(), 1u);
  EXPECT_TRUE(RetiredFiles(dir.str()).empty());
  auto gone = keys.Verify(*old_long, later);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().message, "unknown token key");
  // A restart after that does not resurrect it either.
  auto fresh = JwtKeys::LoadOrCreate(path, rot, later);
  ASSERT_OK(fresh);
  EXPECT_EQ((*fresh)->Jwks()["keys"].size(), 1u);
}

TEST(JwtKeys, MaybeRotateReplacesAKeyOlderThanTheMaximumAge) {
  TempDir dir;
  const std::string path = dir.str() + "/jwt.pem";
  JwtRotation rot;
  rot.max_key_age = std::chrono::hours(24 * 30);
  // The key file was written now (real time); kNow is in 2027, well past 30 days later.
  auto loaded = JwtKeys::LoadOrCreate(path, rot, SystemClock().Now());
  ASSERT_OK(loaded);
  const std::string kid = (*loaded)->key_id();
  ASSERT_OK((*loaded)->MaybeRotate(SystemClock().Now()));
  EXPECT_EQ((*loaded)->key_id(), kid);  // young: kept
  ASSERT_OK((*loaded)->MaybeRotate(kNow));
  EXPECT_NE((*loaded)->key_id(), kid);
  // Never, with a zero maximum age.
  rot.max_key_age = std::chrono::seconds(0);
  auto never = JwtKeys::LoadOrCreate(dir.str() + "/other.pem", rot, SystemClock().Now());
  ASSERT_OK(never);
  const std::string kept = (*never)->key_id();
  ASSERT_OK((*never)->MaybeRotate(kNow));
  EXPECT_EQ((*never)->key_id(), kept);
}

TEST(JwtKeys, AnotherKeysTokenIsUnknownEvenWithTheSameShape) {
  TempDir dir;
  auto a = Load(dir.str() + "/a.pem");
  auto b = Load(dir.str() + "/b.pem");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto t = a->Sign(MakeClaims());
  ASSERT_OK(t);
  auto v = b->Verify(*t, kNow);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().message, "unknown token key");
}

}  // namespace
}  // namespace canopy::auth
