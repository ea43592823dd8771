#include <gtest/gtest.h>

#include <string>

#include "net/http.h"
#include "support/test_util.h"

namespace canopy::net {
namespace {

Handler Named(std::string name) {
  return [name](const Request&) { return Response::Text(200, name); };
}

// Calls the matched handler and returns the body it replied with.
std::string Invoke(const Router::Match& m, const Request& req = {}) {
  std::string out;
  (*m.handler)(req, [&out](Response r) { out = r.body; });
  return out;
}

TEST(Router, MatchesLiteralPathAndReportsPattern) {
  Router r;
  r.Add("GET", "/healthz", Named("health"));
  auto m = r.Find("GET", "/healthz");
  ASSERT_OK(m);
  EXPECT_EQ(m->pattern, "/healthz");
  EXPECT_TRUE(m->params.empty());
  EXPECT_EQ(Invoke(*m), "health");
}

TEST(Router, ExtractsPathParameters) {
  Router r;
  r.Add("GET", "/api/v1/clusters/{cluster}/nodes/{node}", Named("node"));
  auto m = r.Find("GET", "/api/v1/clusters/c-1/nodes/n 2");
  ASSERT_OK(m);
  EXPECT_EQ(m->params.at("cluster"), "c-1");
  EXPECT_EQ(m->params.at("node"), "n 2");
  EXPECT_EQ(m->pattern, "/api/v1/clusters/{cluster}/nodes/{node}");
}

TEST(Router, LiteralSegmentWinsOverParameterWhateverTheOrder) {
  Router r;
  r.Add("GET", "/users/{id}", Named("by-id"));
  r.Add("GET", "/users/me", Named("me"));
  r.Add("GET", "/users/{id}/keys", Named("keys-by-id"));
  auto me = r.Find("GET", "/users/me");
  ASSERT_OK(me);
  EXPECT_EQ(Invoke(*me), "me");
  EXPECT_EQ(me->pattern, "/users/me");
  auto other = r.Find("GET", "/users/u-7");
  ASSERT_OK(other);
  EXPECT_EQ(Invoke(*other), "by-id");
  EXPECT_EQ(other->params.at("id"), "u-7");
  auto keys = r.Find("GET", "/users/me/keys");
  ASSERT_OK(keys);
  EXPECT_EQ(Invoke(*keys), "keys-by-id");
}

TEST(Router, LeftmostLiteralDecidesBetweenTwoParameterPatterns) {
  Router r;
  r.Add("GET", "/{a}/x", Named("param-first"));
  r.Add("GET", "/y/{b}", Named("literal-first"));
  auto m = r.Find("GET", "/y/x");
  ASSERT_OK(m);
  EXPECT_EQ(Invoke(*m), "literal-first");
}

TEST(Router, PrecedenceIsPerMethod) {
  Router r;
  r.Add("GET", "/users/me", Named("get-me"));
  r.Add("DELETE", "/users/{id}", Named("delete-by-id"));
  auto m = r.Find("DELETE", "/users/me");
  ASSERT_OK(m);
  EXPECT_EQ(Invoke(*m), "delete-by-id");
  EXPECT_EQ(m->params.at("id"), "me");
}

TEST(Router, UnknownPathIsNotFound) {
  Router r;
  r.Add("GET", "/a", Named("a"));
  auto m = r.Find("GET", "/b");
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(m.error().message, "no such route");
}

TEST(Router, KnownPathWithOtherMethodIsMethodNotAllowed) {
  Router r;
  r.Add("GET", "/a/{id}", Named("get"));
  r.Add("PUT", "/a/{id}", Named("put"));
  auto m = r.Find("POST", "/a/1");
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(m.error().message, "method not allowed");
  EXPECT_EQ(r.AllowedMethods("/a/1"), (std::vector<std::string>{"GET", "PUT"}));
  EXPECT_TRUE(r.AllowedMethods("/b").empty());
}

TEST(Router, TrailingAndDoubledSlashesDoNotMatch) {
  Router r;
  r.Add("GET", "/a/b", Named("ab"));
  r.Add("GET", "/p/{x}", Named("p"));
  for (const char* path : {"/a/b/", "/a//b", "//a/b", "/p/", "/p//", "a/b", ""}) {
    auto m = r.Find("GET", path);
    ASSERT_FALSE(m) << path;
    EXPECT_EQ(m.error().code, ErrorCode::kNotFound) << path;
  }
}

TEST(Router, RootPatternMatchesOnlyRoot) {
  Router r;
  r.Add("GET", "/", Named("root"));
  ASSERT_OK(r.Find("GET", "/"));
  EXPECT_FALSE(r.Find("GET", "/x"));
}

TEST(Router, ParameterMatchesExactlyOneSegment) {
  Router r;
  r.Add("GET", "/f/{name}", Named("f"));
  EXPECT_FALSE(r.Find("GET", "/f/a/b"));
  EXPECT_FALSE(r.Find("GET", "/f"));
  auto m = r.Find("GET", "/f/%zz");  // the router sees decoded paths; this one is literal text
  ASSERT_OK(m);
  EXPECT_EQ(m->params.at("name"), "%zz");
}

TEST(Router, RoutesListsEveryRegistration) {
  Router r;
  r.Add("GET", "/a", Named("a"));
  r.AddAsync("POST", "/b/{id}",
             [](const Request&, Responder respond) { respond(Response::Text(202, "later")); });
  auto routes = r.Routes();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0], (std::pair<std::string, std::string>{"GET", "/a"}));
  EXPECT_EQ(routes[1], (std::pair<std::string, std::string>{"POST", "/b/{id}"}));
  auto m = r.Find("POST", "/b/9");
  ASSERT_OK(m);
  EXPECT_EQ(Invoke(*m), "later");
}

TEST(Router, SyncHandlerSeesTheRequest) {
  Router r;
  r.Add("GET", "/q", [](const Request& req) { return Response::Text(200, req.Query("k")); });
  auto m = r.Find("GET", "/q");
  ASSERT_OK(m);
  Request req;
  req.query["k"] = "v1";
  EXPECT_EQ(Invoke(*m, req), "v1");
}

TEST(RouterDeathTest, DuplicateRouteAborts) {
  EXPECT_DEATH(
      {
        Router r;
        r.Add("GET", "/a", Named("1"));
        r.Add("GET", "/a", Named("2"));
      },
      "");
}

TEST(RouterDeathTest, MalformedPatternAborts) {
  EXPECT_DEATH({ Router().Add("GET", "no-slash", Named("x")); }, "");
  EXPECT_DEATH({ Router().Add("GET", "/a/{x", Named("x")); }, "");
}

TEST(UrlDecode, DecodesEscapesAndOptionallyPlus) {
  std::string out;
  ASSERT_TRUE(UrlDecode("a%20b+c%2Fd%c3%a9", &out, true));
  EXPECT_EQ(out, "a b c/d\xc3\xa9");
  ASSERT_TRUE(UrlDecode("a+b", &out, false));
  EXPECT_EQ(out, "a+b");
  ASSERT_TRUE(UrlDecode("", &out, false));
  EXPECT_EQ(out, "");
}

TEST(UrlDecode, RejectsBadEscapes) {
  for (const char* bad : {"%", "%2", "a%zz", "%g0", "abc%"}) {
    std::string out = "untouched";
    EXPECT_FALSE(UrlDecode(bad, &out, false)) << bad;
    EXPECT_EQ(out, "untouched") << bad;
  }
}

TEST(UrlEncode, EscapesAllButUnreservedAndRoundTrips) {
  EXPECT_EQ(UrlEncode("aZ09-_.~"), "aZ09-_.~");
  EXPECT_EQ(UrlEncode("a b/c?d=e&f"), "a%20b%2Fc%3Fd%3De%26f");
  std::string raw = "x\x01\xff\xc3\xa9 +%";
  std::string back;
  ASSERT_TRUE(UrlDecode(UrlEncode(raw), &back, false));
  EXPECT_EQ(back, raw);
}

TEST(ParseHostPort, AcceptsHostNamesIpv4AndBracketedIpv6) {
  auto a = ParseHostPort("example.com:8080");
  ASSERT_OK(a);
  EXPECT_EQ(a->first, "example.com");
  EXPECT_EQ(a->second, 8080);
  auto b = ParseHostPort("127.0.0.1:0");
  ASSERT_OK(b);
  EXPECT_EQ(b->second, 0);
  auto c = ParseHostPort("[::1]:65535");
  ASSERT_OK(c);
  EXPECT_EQ(c->first, "::1");
  EXPECT_EQ(c->second, 65535);
}

TEST(ParseHostPort, RejectsMalformedInput) {
  for (const char* bad : {"", "host", ":80", "host:", "host:65536", "host:-1", "host:8o", "::1:80",
                          "[::1]", "[::1]80", "[]:80", "host:123456"}) {
    auto r = ParseHostPort(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad;
  }
}

TEST(Request, AccessorsReturnEmptyWhenAbsent) {
  Request req;
  req.headers["x-token"] = "t";
  req.query["q"] = "1";
  req.params["id"] = "7";
  EXPECT_EQ(req.Header("x-token"), "t");
  EXPECT_EQ(req.Header("x-other"), "");
  EXPECT_EQ(req.Query("q"), "1");
  EXPECT_EQ(req.Query("r"), "");
  EXPECT_EQ(req.Param("id"), "7");
  EXPECT_EQ(req.Param("x"), "");
}

TEST(Response, FromJsonAndTextSetStatusTypeAndBody) {
  Response j = Response::FromJson(201, Json{{"id", "x"}});
  EXPECT_EQ(j.status, 201);
  EXPECT_EQ(j.content_type, "application/json");
  EXPECT_EQ(ParseJson(j.body).value(), (Json{{"id", "x"}}));
  Response t = Response::Text(503, "busy");
  EXPECT_EQ(t.status, 503);
  EXPECT_EQ(t.content_type, "text/plain");
  EXPECT_EQ(t.body, "busy");
  EXPECT_EQ(Response::Text(200, "<p/>", "text/html").content_type, "text/html");
}

}  // namespace
}  // namespace canopy::net
