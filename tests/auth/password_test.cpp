#include "auth/password.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "support/test_util.h"

namespace canopy::auth {
namespace {

// Cheap parameters keep the functional tests fast; one test covers the defaults.
const KdfParams kFast{1, 64, 1};

SecretString S(std::string s) { return SecretString(std::move(s)); }

TEST(Password, HashThenVerifyAcceptsSamePassword) {
  auto h = HashPassword(S("correct horse battery staple"), kFast);
  ASSERT_OK(h);
  EXPECT_EQ(h->rfind("$argon2id$v=19$m=64,t=1,p=1$", 0), 0u) << *h;
  EXPECT_TRUE(VerifyPassword(S("correct horse battery staple"), *h));
}

TEST(Password, DefaultParamsAreEncodedAndVerify) {
  auto h = HashPassword(S("hunter2"));
  ASSERT_OK(h);
  const KdfParams d;
  EXPECT_EQ(h->rfind("$argon2id$v=19$m=" + std::to_string(d.memory_kib) + ",t=" +
                         std::to_string(d.time_cost) + ",p=" + std::to_string(d.parallelism) + "$",
                     0),
            0u)
      << *h;
  EXPECT_TRUE(VerifyPassword(S("hunter2"), *h));
  EXPECT_FALSE(VerifyPassword(S("hunter3"), *h));
}

TEST(Password, VerifyRejectsWrongPassword) {
  auto h = HashPassword(S("secret-one"), kFast);
  ASSERT_OK(h);
  EXPECT_FALSE(VerifyPassword(S("secret-two"), *h));
  EXPECT_FALSE(VerifyPassword(S("secret-on"), *h));
  EXPECT_FALSE(VerifyPassword(S("secret-one "), *h));
  EXPECT_FALSE(VerifyPassword(S("SECRET-ONE"), *h));
  EXPECT_FALSE(VerifyPassword(S(""), *h));
}

TEST(Password, VerifyRejectsMalformedHash) {
  auto h = HashPassword(S("pw"), kFast);
  ASSERT_OK(h);
  const std::string good = *h;
  ASSERT_TRUE(VerifyPassword(S("pw"), good));
  std::string flipped = good;
  char& last = flipped[flipped.size() - 2];
  last = last == 'A' ? 'B' : 'A';
  for (const std::string& bad :
       {std::string(), std::string("pw"), std::string("$argon2id$"),
        good.substr(0, good.size() - 5), flipped, "$argon2i$" + good.substr(10),
        "$argon2d$" + good.substr(10), std::string("$2b$10$abcdefghijklmnopqrstuv"),
        good + "$extra", std::string(600, 'a')}) {
    EXPECT_FALSE(VerifyPassword(S("pw"), bad)) << bad;
  }
}

TEST(Password, VerifyRefusesHashWithExcessiveCost) {
  // A planted hash asking for 4 GiB must be refused without being computed.
  auto h = HashPassword(S("pw"), kFast);
  ASSERT_OK(h);
  std::string huge = *h;
  huge.replace(huge.find("m=64"), 4, "m=4194304");
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(VerifyPassword(S("pw"), huge));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST(Password, DistinctSaltsGiveDistinctHashes) {
  auto a = HashPassword(S("same"), kFast);
  auto b = HashPassword(S("same"), kFast);
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_NE(*a, *b);
  // The salt field (4th '$'-separated field) differs, and each hash verifies on its own.
  auto salt = [](const std::string& h) {
    size_t p = 0;
    for (int i = 0; i < 4; ++i) p = h.find('$', p) + 1;
    return h.substr(p, h.find('$', p) - p);
  };
  EXPECT_NE(salt(*a), salt(*b));
  EXPECT_EQ(salt(*a).size(), 22u);  // 16 bytes, unpadded base64
  EXPECT_TRUE(VerifyPassword(S("same"), *a));
  EXPECT_TRUE(VerifyPassword(S("same"), *b));
}

TEST(Password, HashRejectsEmptyAndTooLongPasswords) {
  auto empty = HashPassword(S(""), kFast);
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().code, ErrorCode::kInvalidArgument);
  auto too_long = HashPassword(S(std::string(kMaxPasswordBytes + 1, 'x')), kFast);
  ASSERT_FALSE(too_long.has_value());
  EXPECT_EQ(too_long.error().code, ErrorCode::kInvalidArgument);
  // The limit itself is allowed.
  auto max = HashPassword(S(std::string(kMaxPasswordBytes, 'x')), kFast);
  ASSERT_OK(max);
  EXPECT_TRUE(VerifyPassword(S(std::string(kMaxPasswordBytes, 'x')), *max));
  EXPECT_FALSE(VerifyPassword(S(std::string(kMaxPasswordBytes + 1, 'x')), *max));
}

TEST(Password, HandlesBinaryAndUnicodePasswords) {
  const std::string pw = std::string("p\0w\xff\xc3\xa9", 6);
  auto h = HashPassword(S(pw), kFast);
  ASSERT_OK(h);
  EXPECT_TRUE(VerifyPassword(S(pw), *h));
  EXPECT_FALSE(VerifyPassword(S(std::string("p")), *h));  // not truncated at the NUL
}

TEST(Password, HashRejectsInvalidParams) {
  auto r = HashPassword(S("pw"), KdfParams{0, 64, 1});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  auto r2 = HashPassword(S("pw"), KdfParams{1, 1, 1});
  ASSERT_FALSE(r2.has_value());
  EXPECT_EQ(r2.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace canopy::auth
