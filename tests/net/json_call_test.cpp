// PostJson against our HttpServer: bearer and body sent, 2xx JSON returned, API errors and
// transport failures mapped, malformed answers refused, and no request content in messages.
#include "net/json_call.h"

#include <gtest/gtest.h>

#include "net/error_mapping.h"
#include "net/http.h"
#include "support/test_util.h"

namespace canopy::net {
namespace {

class PostJsonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_->Add("POST", "/echo", [](const Request& req) {
      auto body = ParseJson(req.body);
      return Response::FromJson(200, Json{{"auth", req.Header("authorization")},
                                          {"body", body.has_value() ? *body : Json()}});
    });
    router_->Add("POST", "/empty", [](const Request&) { return Response::Text(204, ""); });
    router_->Add("POST", "/array",
                 [](const Request&) { return Response::FromJson(200, Json::array()); });
    router_->Add("POST", "/denied", [](const Request&) {
      return Response::FromJson(
          401, Json{{"error", {{"code", "unauthenticated"}, {"message", "bad key"}}}});
    });
    auto s = HttpServer::Start(
        ServerOptions{}, router_, [](const Error& e) { return Response::Text(500, e.message); },
        nullptr);
    ASSERT_OK(s);
    server_ = std::move(*s);
  }
  void TearDown() override { server_->Stop(); }

  JsonCall Call(const std::string& path) {
    JsonCall c;
    c.url = "http://127.0.0.1:" + std::to_string(server_->port()) + path;
    c.peer = "test peer";
    return c;
  }

  std::shared_ptr<Router> router_ = std::make_shared<Router>();
  std::unique_ptr<HttpServer> server_;
};

TEST_F(PostJsonTest, SendsBearerAndBodyAndReturnsTheReply) {
  JsonCall c = Call("/echo");
  c.bearer = SecretString("k-123");
  c.body = {{"a", 1}};
  auto r = PostJson(c);
  ASSERT_OK(r);
  EXPECT_EQ((*r)["auth"], "Bearer k-123");
  EXPECT_EQ((*r)["body"], (Json{{"a", 1}}));
  auto none = PostJson(Call("/echo"));
  ASSERT_OK(none);
  EXPECT_EQ((*none)["auth"], "");
}

TEST_F(PostJsonTest, EmptyReplyIsAnEmptyObjectAndNonObjectIsMalformed) {
  auto e = PostJson(Call("/empty"));
  ASSERT_OK(e);
  EXPECT_TRUE(e->is_object() && e->empty());
  auto a = PostJson(Call("/array"));
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().code, ErrorCode::kInternal);
  EXPECT_NE(a.error().message.find("test peer"), std::string::npos);
}

TEST_F(PostJsonTest, ApiErrorsKeepTheirCodeAndTransportFailuresAreUnavailable) {
  JsonCall c = Call("/denied");
  c.bearer = SecretString("SECRET-KEY");
  auto d = PostJson(c);
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(d.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(d.error().message.find("SECRET-KEY"), std::string::npos);
  JsonCall gone;
  canopy::testing::ClosedPort closed;
  gone.url = closed.url() + "/x";
  gone.peer = "root at nowhere";
  gone.bearer = SecretString("SECRET-KEY");
  auto u = PostJson(gone);
  ASSERT_FALSE(u.has_value());
  EXPECT_EQ(u.error().code, ErrorCode::kUnavailable);
  EXPECT_TRUE(u.error().message.starts_with("cannot reach root at nowhere: ")) << u.error().message;
}

}  // namespace
}  // namespace canopy::net
