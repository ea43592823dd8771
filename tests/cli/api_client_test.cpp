// cli/api_client: request building, error body mapping, transport failures, URL handling.
#include "cli/api_client.h"

#include <gtest/gtest.h>

#include "cli/commands.h"
#include "support/test_util.h"

namespace canopy::cli {
namespace {

// A transport that records the request and answers with a fixed response or error.
struct Canned {
  Result<net::ClientResponse> answer = net::ClientResponse{200, {}, "{}"};
  net::ClientRequest seen;
  Transport transport() {
    return [this](const net::ClientRequest& r) {
      seen = r;
      return answer;
    };
  }
};

TEST(ApiClient, SendsBearerTokenAndJsonBody) {
  Canned c;
  ApiClient api("http://root:8080", SecretString("tok"), c.transport());
  auto r = api.Post("/api/v1/users", Json{{"username", "bob"}});
  ASSERT_OK(r);
  EXPECT_EQ(c.seen.method, "POST");
  EXPECT_EQ(c.seen.url, "http://root:8080/api/v1/users");
  EXPECT_EQ(c.seen.headers["Authorization"], "Bearer tok");
  EXPECT_EQ(c.seen.headers["Content-Type"], "application/json");
  auto body = ParseJson(c.seen.body);
  ASSERT_OK(body);
  EXPECT_EQ((*body)["username"], "bob");
}

TEST(ApiClient, OmitsAuthorizationWithoutToken) {
  Canned c;
  ApiClient api("http://root", SecretString(), c.transport());
  ASSERT_OK(api.Get("/healthz"));
  EXPECT_EQ(c.seen.headers.count("Authorization"), 0u);
  EXPECT_TRUE(c.seen.body.empty());
}

TEST(ApiClient, ReturnsParsedBodyOrEmptyObjectFor204) {
  Canned c;
  c.answer = net::ClientResponse{200, {}, R"([{"id":"a"}])"};
  ApiClient api("http://root", SecretString("t"), c.transport());
  auto r = api.Get("/x");
  ASSERT_OK(r);
  EXPECT_EQ((*r)[0]["id"], "a");
  c.answer = net::ClientResponse{204, {}, ""};
  auto d = api.Delete("/x/1");
  ASSERT_OK(d);
  EXPECT_EQ(*d, Json::object());
  EXPECT_EQ(c.seen.method, "DELETE");
}

TEST(ApiClient, MapsErrorBodyToCodeMessageAndStatus) {
  Canned c;
  c.answer = net::ClientResponse{
      404, {}, R"({"error":{"code":"not_found","message":"user usr-9 not found"}})"};
  ApiClient api("http://root", SecretString("t"), c.transport());
  auto r = api.Get("/api/v1/users/usr-9");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(r.error().message, "user usr-9 not found (not_found, HTTP 404)");
}

TEST(ApiClient, NonJsonSuccessBodyIsAnError) {
  Canned c;
  c.answer = net::ClientResponse{200, {}, "<html>"};
  ApiClient api("http://root", SecretString("t"), c.transport());
  auto r = api.Get("/x");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("not JSON"), std::string::npos);
}

TEST(ApiClient, TransportFailureNamesTheRoot) {
  Canned c;
  c.answer = Error::Unavailable("request to http://root:1 failed: Connection refused");
  ApiClient api("http://root:1", SecretString("t"), c.transport());
  auto r = api.Get("/x");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(r.error().message, "cannot reach root at http://root:1: Connection refused");
}

TEST(ApiErrorFromResponse, KeepsUnknownCodeNamesAndUsesStatusForTheCode) {
  Error e = ApiErrorFromResponse(
      405, R"({"error":{"code":"method_not_allowed","message":"method not allowed"}})");
  EXPECT_EQ(e.code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(e.message, "method not allowed (method_not_allowed, HTTP 405)");
}

TEST(ApiErrorFromResponse, FallsBackToStatusWhenBodyIsNotAnApiError) {
  Error e = ApiErrorFromResponse(502, "<html>Bad Gateway</html>");
  EXPECT_EQ(e.code, ErrorCode::kProviderError);
  EXPECT_EQ(e.message, "the root answered without an error description (provider_error, HTTP 502)");
  Error u = ApiErrorFromResponse(401, "");
  EXPECT_EQ(u.code, ErrorCode::kUnauthenticated);
  EXPECT_NE(u.message.find("(unauthenticated, HTTP 401)"), std::string::npos);
}

TEST(ApiErrorFromResponse, FlattensMultiLineMessages) {
  Error e = ApiErrorFromResponse(
      400, R"({"error":{"code":"invalid_argument","message":"bad\nthing\u001b[31m"}})");
  EXPECT_EQ(e.message.find('\n'), std::string::npos);
  EXPECT_EQ(e.message.find('\x1b'), std::string::npos);
  EXPECT_EQ(e.message.rfind("bad thing", 0), 0u);
}

TEST(ApiErrorFromResponse, BoundsVeryLongMessages) {
  std::string longmsg(10000, 'x');
  Error e = ApiErrorFromResponse(
      500, Json{{"error", {{"code", "internal"}, {"message", longmsg}}}}.dump());
  EXPECT_LT(e.message.size(), 700u);
}

TEST(NormalizeRootUrl, AcceptsHttpAndHttpsAndStripsTrailingSlashes) {
  auto a = NormalizeRootUrl("http://127.0.0.1:8080/");
  ASSERT_OK(a);
  EXPECT_EQ(*a, "http://127.0.0.1:8080");
  auto b = NormalizeRootUrl("HTTPS://canopy.example/base//");
  ASSERT_OK(b);
  EXPECT_EQ(*b, "https://canopy.example/base");
}

TEST(NormalizeRootUrl, RejectsOtherSchemesUserInfoQueriesAndSpaces) {
  for (const char* bad : {"ftp://x", "127.0.0.1:8080", "http://", "http:///path",
                          "http://user:pw@host", "http://h/?q=1", "http://h /x", ""}) {
    auto r = NormalizeRootUrl(bad);
    EXPECT_FALSE(r.has_value()) << bad;
  }
}

TEST(EscapeUrlComponent, EncodesReservedCharacters) {
  EXPECT_EQ(EscapeUrlComponent("usr-1_a.b~"), "usr-1_a.b~");
  EXPECT_EQ(EscapeUrlComponent("../x y/?&="), "..%2Fx%20y%2F%3F%26%3D");
}

}  // namespace
}  // namespace canopy::cli
