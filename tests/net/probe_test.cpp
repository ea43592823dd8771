#include "net/probe.h"

#include <gtest/gtest.h>

#include <chrono>

#include "net/error_mapping.h"
#include "net/http.h"

namespace canopy::net {
namespace {

using namespace std::chrono_literals;

TEST(Probe, AnyHttpAnswerIsReachable) {
  auto router = std::make_shared<Router>();
  router->Add("GET", "/healthz", [](const Request&) { return Response::Text(503, "busy"); });
  auto server = HttpServer::Start(ServerOptions{}, router, ErrorResponse, nullptr);
  ASSERT_TRUE(server.has_value());
  std::string base = "http://127.0.0.1:" + std::to_string((*server)->port());
  EXPECT_TRUE(Probe(base + "/healthz", 2s).has_value());
  EXPECT_TRUE(Probe(base + "/no-such-path", 2s).has_value());  // a 404 is an answer too
  (*server)->Stop();
}

TEST(Probe, NothingListeningIsUnavailableWithTheTransportError) {
  auto server =
      HttpServer::Start(ServerOptions{}, std::make_shared<Router>(), ErrorResponse, nullptr);
  ASSERT_TRUE(server.has_value());
  uint16_t port = (*server)->port();
  (*server)->Stop();  // the port is free again, nothing listens
  std::string url = "http://127.0.0.1:" + std::to_string(port) + "/healthz";
  auto started = std::chrono::steady_clock::now();
  auto st = Probe(url, 1s);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(st.error().message.find("cannot reach " + url + " from this machine: "),
            std::string::npos)
      << st.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
}

TEST(Probe, MalformedUrlIsInvalidAtOnce) {
  auto st = Probe("not a url", 5s);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace canopy::net
