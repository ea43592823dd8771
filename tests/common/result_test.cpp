#include "common/result.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <sstream>
#include <vector>

#include "common/ids.h"
#include "common/json.h"
#include "common/secret.h"
#include "support/test_util.h"

namespace canopy {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return Error::InvalidArgument("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  CANOPY_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

Status CheckEven(int x) {
  CANOPY_TRY(Half(x));
  return OkStatus();
}

TEST(Result, HoldsValueOrError) {
  auto ok = Half(4);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 2);
  auto bad = Half(3);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.value_or(7), 7);
}

TEST(Result, MacrosPropagateErrors) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_FALSE(Quarter(6));
  EXPECT_EQ(Quarter(6).error().message, "odd");
  EXPECT_OK(CheckEven(2));
  EXPECT_FALSE(CheckEven(1));
}

TEST(Error, CodesHaveStableNames) {
  EXPECT_EQ(ErrorCodeName(ErrorCode::kNotFound), "not_found");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kPermissionDenied), "permission_denied");
  EXPECT_TRUE(IsRetryable(ErrorCode::kUnavailable));
  EXPECT_FALSE(IsRetryable(ErrorCode::kInvalidArgument));
}

TEST(Secret, NeverPrintsItsValue) {
  SecretString s("hunter2-very-secret");
  std::ostringstream os;
  os << s;
  EXPECT_EQ(os.str(), "<redacted>");
  EXPECT_EQ(fmt::format("{}", s), "<redacted>");
  EXPECT_EQ(s.Reveal(), "hunter2-very-secret");
}

TEST(Ids, AreUniqueAndPrefixed) {
  RandomIdGenerator g;
  auto a = g.NewId("usr");
  auto b = g.NewId("usr");
  EXPECT_NE(a, b);
  EXPECT_EQ(a.rfind("usr-", 0), 0u);
  EXPECT_EQ(a.size(), 20u);
}

TEST(Encoding, Base64UrlRoundTrips) {
  for (std::string s :
       std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\xff\x00\x10", 3)}) {
    std::string out;
    ASSERT_TRUE(Base64UrlDecode(Base64UrlEncode(s), &out));
    EXPECT_EQ(out, s);
  }
  std::string out;
  EXPECT_FALSE(Base64UrlDecode("a", &out));
  EXPECT_FALSE(Base64UrlDecode("ab+/", &out));
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Json, NestingDeeperThanTheLimitIsRefusedBeforeParsing) {
  auto nested = [](size_t n, char open, char close) {
    return std::string(n, open) + std::string(n, close);
  };
  EXPECT_OK(ParseJson(nested(kMaxJsonDepth, '[', ']')));
  auto deep = ParseJson(nested(kMaxJsonDepth + 1, '[', ']'));
  ASSERT_FALSE(deep);
  EXPECT_EQ(deep.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(deep.error().message.find("nested deeper"), std::string::npos);
  // A million levels: refused at once (the parser never builds them).
  EXPECT_FALSE(ParseJson(nested(1'000'000, '[', ']')));
  std::string objects;
  for (size_t i = 0; i <= kMaxJsonDepth; ++i) objects += R"({"a":)";
  objects += "1" + std::string(kMaxJsonDepth + 1, '}');
  EXPECT_FALSE(ParseJson(objects));
  // Brackets inside strings (escaped quotes too) do not count.
  EXPECT_OK(ParseJson(R"({"s":")" + std::string(200, '[') + R"(\"[[[[\\"})"));
}

TEST(Json, RejectsMalformedAndWrongTypes) {
  EXPECT_FALSE(ParseJsonObject("{"));
  EXPECT_FALSE(ParseJsonObject("[]"));
  auto j = ParseJsonObject(R"({"a":"x","n":5,"b":true,"arr":["p"],"big":18446744073709551615})");
  ASSERT_OK(j);
  EXPECT_EQ(*GetString(*j, "a"), "x");
  EXPECT_FALSE(GetString(*j, "n"));
  EXPECT_FALSE(GetString(*j, "missing"));
  EXPECT_EQ(*GetInt(*j, "n", 0, 10), 5);
  EXPECT_FALSE(GetInt(*j, "n", 6, 10));
  EXPECT_FALSE(GetInt(*j, "big", 0, 10));
  EXPECT_FALSE(GetInt(*j, "a", 0, 10));
  EXPECT_TRUE(*GetOptBool(*j, "b", false));
  EXPECT_EQ(GetStringArray(*j, "arr")->size(), 1u);
}

}  // namespace
}  // namespace canopy
