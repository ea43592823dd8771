// HttpServer round trips on 127.0.0.1 (port 0) through HttpClient and raw sockets.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "net/client.h"
#include "net/http.h"
#include "net/raw_socket.h"
#include "support/test_util.h"

namespace canopy::net {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::RawSocket;

// A renderer like api/'s, independent of it: JSON body, status from the code.
Response TestRenderer(const Error& e) {
  int status = 500;
  switch (e.code) {
    case ErrorCode::kInvalidArgument:
      status = 400;
      break;
    case ErrorCode::kNotFound:
      status = 404;
      break;
    case ErrorCode::kPayloadTooLarge:
      status = 413;
      break;
    default:
      break;
  }
  return Response::FromJson(
      status, Json{{"error", {{"code", ErrorCodeName(e.code)}, {"message", e.message}}}});
}

Json BodyJson(const ClientResponse& r) {
  auto j = ParseJson(r.body);
  return j ? *j : Json();
}

long Ms(Clock::duration d) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

// The value of one sample line in Prometheus text, or -1.
double Sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return -1;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_->Add("GET", "/hello", [](const Request& req) {
      Json j{{"method", req.method},
             {"path", req.path},
             {"target", req.target},
             {"query", req.query},
             {"route", req.route},
             {"remote", req.remote_addr},
             {"x_test", req.Header("x-test")}};
      return Response::FromJson(200, j);
    });
    router_->Add("POST", "/echo", [](const Request& req) {
      Response r = Response::Text(200, req.body, "application/octet-stream");
      r.headers.emplace_back("X-Echo-Len", std::to_string(req.body.size()));
      return r;
    });
    router_->Add("GET", "/users/{id}", [](const Request& req) {
      return Response::FromJson(200, Json{{"id", req.Param("id")}, {"route", req.route}});
    });
    router_->Add("GET", "/users/me", [](const Request&) {
      return Response::FromJson(200, Json{{"id", "me-literal"}});
    });
    router_->Add("GET", "/throw",
                 [](const Request&) -> Response { throw std::runtime_error("boom"); });
    router_->Add("GET", "/sleep", [](const Request&) {
      std::this_thread::sleep_for(300ms);
      return Response::Text(200, "slept");
    });
    router_->Add("GET", "/headers", [](const Request&) {
      Response r = Response::Text(204, "ignored body");
      r.headers.emplace_back("X-Good", "yes");
      r.headers.emplace_back("X-Bad", "a\r\nInjected: 1");
      return r;
    });
    router_->AddAsync("GET", "/later", [this](const Request& req, Responder respond) {
      std::string who = req.Query("who");
      std::lock_guard<std::mutex> l(mu_);
      threads_.emplace_back([respond = std::move(respond), who] {
        std::this_thread::sleep_for(100ms);
        respond(Response::Text(200, "later " + who));
      });
    });
    router_->AddAsync("GET", "/hold", [this](const Request& req, Responder respond) {
      std::lock_guard<std::mutex> l(mu_);
      held_.emplace_back(req.Query("n"), std::move(respond));
      cv_.notify_all();
    });
    router_->AddAsync("GET", "/drop", [](const Request&, Responder) {});
  }

  void TearDown() override {
    if (server_) {
      server_->Stop();
    }
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> l(mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) {
      t.join();
    }
  }

  void Start(ServerOptions opts = {}) {
    opts.host = "127.0.0.1";
    opts.port = 0;
    auto s = HttpServer::Start(opts, router_, TestRenderer, metrics_);
    ASSERT_OK(s);
    server_ = std::move(*s);
    ASSERT_NE(server_->port(), 0);
  }

  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + path;
  }

  Result<ClientResponse> Do(const std::string& method, const std::string& path,
                            std::string body = "",
                            std::map<std::string, std::string> headers = {}) {
    ClientRequest req;
    req.method = method;
    req.url = Url(path);
    req.body = std::move(body);
    req.headers = std::move(headers);
    req.timeout = 10s;
    return client_.Do(req);
  }

  size_t WaitHeld(size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, 5s, [&] { return held_.size() >= n; });
    return held_.size();
  }

  // Metrics are recorded just after the response is written: poll briefly.
  double WaitSample(const std::string& series, double want) {
    double v = -1;
    for (int i = 0; i < 100; ++i) {
      v = Sample(metrics_->RenderPrometheus(), series);
      if (v == want) {
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    return v;
  }

  std::shared_ptr<Router> router_ = std::make_shared<Router>();
  std::shared_ptr<Metrics> metrics_ = std::make_shared<Metrics>();
  std::unique_ptr<HttpServer> server_;
  HttpClient client_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<std::string, Responder>> held_;  // (query n, responder)
  std::vector<std::thread> threads_;
};

TEST_F(HttpServerTest, GetFillsRequestFieldsAndStandardHeaders) {
  Start();
  auto r = Do("GET", "/hello?name=a%20b&plus=x+y&flag&name2=%C3%A9", "", {{"X-Test", "Value"}});
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200);
  Json j = BodyJson(*r);
  EXPECT_EQ(j["method"], "GET");
  EXPECT_EQ(j["path"], "/hello");
  EXPECT_EQ(j["target"], "/hello?name=a%20b&plus=x+y&flag&name2=%C3%A9");
  EXPECT_EQ(j["query"]["name"], "a b");
  EXPECT_EQ(j["query"]["plus"], "x y");
  EXPECT_EQ(j["query"]["flag"], "");
  EXPECT_EQ(j["query"]["name2"], "\xc3\xa9");
  EXPECT_EQ(j["route"], "/hello");
  EXPECT_EQ(j["remote"], "127.0.0.1");
  EXPECT_EQ(j["x_test"], "Value");
  EXPECT_EQ(r->headers["server"], "canopy");
  EXPECT_EQ(r->headers["content-type"], "application/json");
  EXPECT_EQ(r->headers["content-length"], std::to_string(r->body.size()));
  EXPECT_TRUE(r->headers["date"].ends_with(" GMT")) << r->headers["date"];
}

TEST_F(HttpServerTest, PostBodyRoundTripsWithHandlerHeaders) {
  Start();
  std::string body(100000, 'x');
  body[5] = '\0';
  auto r = Do("POST", "/echo", body, {{"Content-Type", "application/octet-stream"}});
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, body);
  EXPECT_EQ(r->headers["x-echo-len"], "100000");
}

TEST_F(HttpServerTest, PathParametersAreDecodedAndLiteralWins) {
  Start();
  auto r = Do("GET", "/users/caf%C3%A9");
  ASSERT_OK(r);
  EXPECT_EQ(BodyJson(*r)["id"], "caf\xc3\xa9");
  EXPECT_EQ(BodyJson(*r)["route"], "/users/{id}");
  auto me = Do("GET", "/users/me");
  ASSERT_OK(me);
  EXPECT_EQ(BodyJson(*me)["id"], "me-literal");
}

TEST_F(HttpServerTest, BadPercentEscapeIsBadRequest) {
  Start();
  auto r = Do("GET", "/users/%zz");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(BodyJson(*r)["error"]["code"], "invalid_argument");
}

TEST_F(HttpServerTest, UnknownPathIsRenderedNotFound) {
  Start();
  auto r = Do("GET", "/nope");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(BodyJson(*r)["error"]["code"], "not_found");
  EXPECT_EQ(BodyJson(*r)["error"]["message"], "no such route");
  auto slash = Do("GET", "/hello/");
  ASSERT_OK(slash);
  EXPECT_EQ(slash->status, 404);
}

TEST_F(HttpServerTest, OtherMethodOnKnownPathIs405WithAllow) {
  Start();
  auto r = Do("DELETE", "/users/7");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(BodyJson(*r)["error"]["code"], "invalid_argument");
  EXPECT_EQ(BodyJson(*r)["error"]["message"], "method not allowed");
  EXPECT_EQ(r->headers["allow"], "GET");
}

TEST_F(HttpServerTest, OversizedBodyIs413) {
  ServerOptions o;
  o.max_body_bytes = 1024;
  Start(o);
  auto ok = Do("POST", "/echo", std::string(1024, 'a'));
  ASSERT_OK(ok);
  EXPECT_EQ(ok->status, 200);
  auto r = Do("POST", "/echo", std::string(4096, 'a'));
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(BodyJson(*r)["error"]["code"], "payload_too_large");
  // A large declared length is refused from the header alone, before any body (and without a
  // "100 Continue").
  RawSocket s = RawSocket::Connect(server_->port());
  ASSERT_TRUE(s.ok());
  s.Send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n"
      "Expect: 100-continue\r\n\r\n");
  std::string resp = s.RecvResponse();
  EXPECT_TRUE(resp.starts_with("HTTP/1.1 413")) << resp;
  EXPECT_TRUE(s.WaitClosed(5s));
}

TEST_F(HttpServerTest, OversizedChunkedBodyIs413) {
  ServerOptions o;
  o.max_body_bytes = 1024;
  Start(o);
  RawSocket s = RawSocket::Connect(server_->port());
  ASSERT_TRUE(s.ok());
  s.Send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" +
         std::string(0x800, 'b') + "\r\n0\r\n\r\n");
  std::string resp = s.RecvResponse();
  EXPECT_TRUE(resp.starts_with("HTTP/1.1 413")) << resp;
}

TEST_F(HttpServerTest, ExpectContinueIsHonoured) {
  Start();
  RawSocket s = RawSocket::Connect(server_->port());
  ASSERT_TRUE(s.ok());
  s.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  std::string interim = s.Recv(2s, nullptr, "\r\n\r\n");
  EXPECT_TRUE(interim.starts_with("HTTP/1.1 100 Continue")) << interim;
  s.Send("hello");
  std::string resp = s.RecvResponse();
  EXPECT_TRUE(resp.starts_with("HTTP/1.1 200")) << resp;
  EXPECT_TRUE(resp.ends_with("\r\n\r\nhello")) << resp;
}

TEST_F(HttpServerTest, GarbageBytesGet400AndClose) {
  Start();
  RawSocket s = RawSocket::Connect(server_->port());
  ASSERT_TRUE(s.ok());
  s.Send(std::string("\x16\x03\x01\x02\x00 garbage\r\n\r\n", 17));
  std::string resp = s.RecvResponse();
  EXPECT_TRUE(resp.starts_with("HTTP/1.1 400")) << resp;
  EXPECT_NE(resp.find("malformed HTTP request"), std::string::npos) << resp;
  EXPECT_TRUE(s.WaitClosed(5s));
  // The server is still fine.
  auto r = Do("GET", "/hello");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, HugeHeaderGets431) {
  Start();
  RawSocket s = RawSocket::Connect(server_->port());
  ASSERT_TRUE(s.ok());
  s.Send("GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'h') + "\r\n\r\n");
  std::string resp = s.RecvResponse();
  EXPECT_TRUE(resp.starts_with("HTTP/1.1 431")) << resp;
}

TEST_F(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  Start();
  RawSocket s = RawSocket::Connect(server_->port());
  ASSERT_TRUE(s.ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(s.Send("GET /users/" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::string resp = s.RecvResponse();
    EXPECT_TRUE(resp.starts_with("HTTP/1.1 200")) << resp;
    EXPECT_NE(resp.find("\"id\":\"" + std::to_string(i) + "\""), std::string::npos) << resp;
    EXPECT_EQ(resp.find("Connection: close"), std::string::npos) << resp;
  }
  // Errors that leave the stream in sync (404) keep the connection too.
  ASSERT_TRUE(s.Send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(s.RecvResponse().starts_with("HTTP/1.1 404"));
  ASSERT_TRUE(s.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(s.RecvResponse().starts_with("HTTP/1.1 200"));
}

TEST_F(HttpServerTest, Http10AndConnectionCloseAreClosedAfterReply) {
  Start();
  RawSocket a = RawSocket::Connect(server_->port());
  a.Send("GET /hello HTTP/1.0\r\n\r\n");
  EXPECT_NE(a.RecvResponse().find("\"route\":\"/hello\""), std::string::npos);
  EXPECT_TRUE(a.WaitClosed(5s));
  RawSocket b = RawSocket::Connect(server_->port());
  b.Send("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string resp = b.RecvResponse();
  EXPECT_NE(resp.find("Connection: close"), std::string::npos) << resp;
  EXPECT_TRUE(b.WaitClosed(5s));
}

TEST_F(HttpServerTest, HandlerHeadersAreSentAndInvalidOnesDropped) {
  Start();
  auto r = Do("GET", "/headers");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 204);
  EXPECT_EQ(r->body, "");
  EXPECT_EQ(r->headers["x-good"], "yes");
  EXPECT_EQ(r->headers.count("x-bad"), 0u);
  EXPECT_EQ(r->headers.count("injected"), 0u);
  EXPECT_EQ(r->headers.count("content-length"), 0u);
}

TEST_F(HttpServerTest, AsyncHandlerRepliesLaterFromAnotherThread) {
  Start();
  auto t0 = Clock::now();
  auto r = Do("GET", "/later?who=bob");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "later bob");
  EXPECT_GE(Ms(Clock::now() - t0), 90);
}

TEST_F(HttpServerTest, HeldRequestsDoNotBlockOthers) {
  ServerOptions o;
  o.io_threads = 1;
  o.worker_threads = 2;
  Start(o);
  std::vector<RawSocket> waiting;
  for (int i = 0; i < 20; ++i) {
    waiting.push_back(RawSocket::Connect(server_->port()));
    waiting.back().Send("GET /hold?n=" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n");
  }
  ASSERT_EQ(WaitHeld(20), 20u);
  auto t0 = Clock::now();
  auto r = Do("GET", "/hello");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_LT(Ms(Clock::now() - t0), 1000);
  // Answer them in reverse arrival order from this thread; each reaches its own connection.
  std::vector<std::pair<std::string, Responder>> held;
  {
    std::lock_guard<std::mutex> l(mu_);
    held.swap(held_);
  }
  for (size_t i = held.size(); i-- > 0;) {
    held[i].second(Response::Text(200, "held " + held[i].first));
  }
  for (size_t i = 0; i < waiting.size(); ++i) {
    std::string resp = waiting[i].RecvResponse();
    EXPECT_TRUE(resp.starts_with("HTTP/1.1 200")) << resp;
    EXPECT_TRUE(resp.ends_with("\r\n\r\nheld " + std::to_string(i))) << resp;
  }
}

TEST_F(HttpServerTest, BlockingHandlerDoesNotStallOtherRequests) {
  Start();
  std::thread slow([this] {
    auto r = Do("GET", "/sleep");
    EXPECT_TRUE(r && r->body == "slept");
  });
  std::this_thread::sleep_for(50ms);
  auto t0 = Clock::now();
  auto r = Do("GET", "/hello");
  ASSERT_OK(r);
  EXPECT_LT(Ms(Clock::now() - t0), 200);
  slow.join();
}

TEST_F(HttpServerTest, ResponderCalledTwiceKeepsFirstReply) {
  Start();
  RawSocket s = RawSocket::Connect(server_->port());
  s.Send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(WaitHeld(1), 1u);
  Responder respond;
  {
    std::lock_guard<std::mutex> l(mu_);
    respond = held_[0].second;
  }
  respond(Response::Text(200, "first"));
  respond(Response::Text(500, "second"));
  std::string resp = s.RecvResponse();
  EXPECT_TRUE(resp.starts_with("HTTP/1.1 200")) << resp;
  EXPECT_TRUE(resp.ends_with("first")) << resp;
  // Nothing else arrives on the connection.
  EXPECT_EQ(s.Recv(200ms), "");
}

TEST_F(HttpServerTest, ResponderCalledAfterClientLeftIsHarmless) {
  Start();
  {
    RawSocket s = RawSocket::Connect(server_->port());
    s.Send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_EQ(WaitHeld(1), 1u);
  }
  std::this_thread::sleep_for(50ms);
  std::lock_guard<std::mutex> l(mu_);
  held_[0].second(Response::Text(200, "nobody listens"));
  auto r = Do("GET", "/hello");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, ResponderCalledAfterServerDestroyedIsHarmless) {
  Start();
  RawSocket s = RawSocket::Connect(server_->port());
  s.Send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(WaitHeld(1), 1u);
  server_->Stop();
  server_.reset();
  EXPECT_TRUE(s.WaitClosed(2s));
  std::vector<std::pair<std::string, Responder>> held;
  {
    std::lock_guard<std::mutex> l(mu_);
    held.swap(held_);
  }
  held[0].second(Response::Text(200, "too late"));
  held.clear();  // destroying the last copy must be harmless too
}

TEST_F(HttpServerTest, ThrowingHandlerGets500AndServerSurvives) {
  Start();
  auto r = Do("GET", "/throw");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(BodyJson(*r)["error"]["code"], "internal");
  EXPECT_EQ(BodyJson(*r)["error"]["message"], "internal error");
  EXPECT_EQ(r->body.find("boom"), std::string::npos);
  auto ok = Do("GET", "/hello");
  ASSERT_OK(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST_F(HttpServerTest, DroppedResponderGets500) {
  Start();
  auto r = Do("GET", "/drop");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(BodyJson(*r)["error"]["message"], "internal error");
}

TEST_F(HttpServerTest, MetricsRecordEveryRequest) {
  Start();
  ASSERT_OK(Do("GET", "/hello"));
  ASSERT_OK(Do("GET", "/hello"));
  ASSERT_OK(Do("GET", "/users/1"));
  ASSERT_OK(Do("GET", "/nope"));
  ASSERT_OK(Do("PUT", "/hello"));
  ASSERT_OK(Do("GET", "/throw"));
  EXPECT_EQ(
      WaitSample(R"(canopy_http_requests_total{method="GET",route="/hello",status="200"})", 2), 2);
  EXPECT_EQ(
      WaitSample(R"(canopy_http_requests_total{method="GET",route="/users/{id}",status="200"})", 1),
      1);
  EXPECT_EQ(
      WaitSample(R"(canopy_http_requests_total{method="GET",route="unmatched",status="404"})", 1),
      1);
  EXPECT_EQ(
      WaitSample(R"(canopy_http_requests_total{method="PUT",route="unmatched",status="405"})", 1),
      1);
  EXPECT_EQ(
      WaitSample(R"(canopy_http_requests_total{method="GET",route="/throw",status="500"})", 1), 1);
  EXPECT_EQ(
      WaitSample(R"(canopy_http_request_duration_seconds_count{method="GET",route="/hello"})", 2),
      2);
  std::string text = metrics_->RenderPrometheus();
  EXPECT_GT(Sample(text, "process_open_fds"), 3);
  EXPECT_GT(Sample(text, "process_resident_memory_bytes"), 0);
}

TEST_F(HttpServerTest, IdleConnectionIsClosedAfterIdleTimeout) {
  ServerOptions o;
  o.idle_timeout = 1s;
  Start(o);
  RawSocket s = RawSocket::Connect(server_->port());
  s.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(s.RecvResponse().starts_with("HTTP/1.1 200"));
  auto t0 = Clock::now();
  EXPECT_TRUE(s.WaitClosed(5s));
  EXPECT_GE(Ms(Clock::now() - t0), 800);
}

TEST_F(HttpServerTest, IncompleteRequestIsClosedAfterReadTimeout) {
  ServerOptions o;
  o.read_timeout = 1s;
  Start(o);
  RawSocket s = RawSocket::Connect(server_->port());
  s.Send("GET /hello HTTP/1.1\r\nHost: x\r\n");
  auto t0 = Clock::now();
  EXPECT_TRUE(s.WaitClosed(5s));
  EXPECT_GE(Ms(Clock::now() - t0), 800);
}

TEST_F(HttpServerTest, StopClosesIdleAndWaitingConnectionsQuickly) {
  Start();
  std::vector<RawSocket> idle;
  for (int i = 0; i < 50; ++i) {
    idle.push_back(RawSocket::Connect(server_->port()));
    idle.back().Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(idle.back().RecvResponse().starts_with("HTTP/1.1 200"));
  }
  RawSocket silent = RawSocket::Connect(server_->port());  // never sends a byte
  RawSocket waiting = RawSocket::Connect(server_->port());
  waiting.Send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(WaitHeld(1), 1u);
  auto t0 = Clock::now();
  server_->Stop();
  EXPECT_LT(Ms(Clock::now() - t0), 1000);
  server_->Stop();  // idempotent
  for (auto& s : idle) {
    EXPECT_TRUE(s.WaitClosed(1s));
  }
  EXPECT_TRUE(silent.WaitClosed(1s));
  EXPECT_TRUE(waiting.WaitClosed(1s));
  EXPECT_FALSE(RawSocket::Connect(server_->port()).ok());
}

TEST_F(HttpServerTest, ManyIdleConnectionsDoNotDelayNewRequests) {
  constexpr int kIdle = 1000;
  ASSERT_GE(testing::RaiseFdLimit(4096), static_cast<rlim_t>(2 * kIdle + 100));
  Start();
  std::vector<RawSocket> idle;
  idle.reserve(kIdle);
  for (int i = 0; i < kIdle; ++i) {
    idle.push_back(RawSocket::Connect(server_->port()));
    ASSERT_TRUE(idle.back().ok()) << i;
  }
  for (auto& s : idle) {
    ASSERT_TRUE(s.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  for (auto& s : idle) {
    ASSERT_TRUE(s.RecvResponse().starts_with("HTTP/1.1 200"));
  }
  // All kIdle connections are now idle keep-alive links. New clients are still served at once.
  for (int i = 0; i < 5; ++i) {
    auto t0 = Clock::now();
    auto r = Do("GET", "/users/" + std::to_string(i));
    ASSERT_OK(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_LT(Ms(Clock::now() - t0), 500);
  }
  // And the idle ones still work.
  ASSERT_TRUE(idle[kIdle / 2].Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(idle[kIdle / 2].RecvResponse().starts_with("HTTP/1.1 200"));
  auto t0 = Clock::now();
  server_->Stop();
  EXPECT_LT(Ms(Clock::now() - t0), 2000);
}

TEST_F(HttpServerTest, ConnectionsBeyondThePerAddressCapGet503AndOthersAreServed) {
  ServerOptions o;
  o.max_connections_per_address = 3;
  Start(o);
  std::vector<RawSocket> mine;
  for (int i = 0; i < 3; ++i) {
    mine.push_back(RawSocket::ConnectFrom(server_->port(), "127.0.0.2"));
    ASSERT_TRUE(mine.back().ok());
    ASSERT_TRUE(mine.back().Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_TRUE(mine.back().RecvResponse().starts_with("HTTP/1.1 200"));
  }
  // The fourth from that address is answered 503 and closed.
  RawSocket extra = RawSocket::ConnectFrom(server_->port(), "127.0.0.2");
  ASSERT_TRUE(extra.ok());
  std::string reply = extra.RecvResponse();
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 503")) << reply;
  EXPECT_NE(reply.find("Retry-After: 1"), std::string::npos);
  EXPECT_NE(reply.find(R"("code":"unavailable")"), std::string::npos);
  EXPECT_TRUE(extra.WaitClosed(1s));
  // Another address is served; and once one of the three closes, the address may connect again.
  auto r = Do("GET", "/hello");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200);
  mine.pop_back();
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {  // the server notices the close asynchronously
    RawSocket again = RawSocket::ConnectFrom(server_->port(), "127.0.0.2");
    ASSERT_TRUE(again.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
    served = again.RecvResponse().starts_with("HTTP/1.1 200");
    if (!served) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(served);
}

TEST_F(HttpServerTest, ConnectionsBeyondTheTotalCapGet503) {
  ServerOptions o;
  o.max_connections = 4;
  Start(o);
  std::vector<RawSocket> open;
  for (int i = 0; i < 4; ++i) {
    open.push_back(RawSocket::Connect(server_->port()));
    ASSERT_TRUE(open.back().Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_TRUE(open.back().RecvResponse().starts_with("HTTP/1.1 200"));
  }
  RawSocket extra = RawSocket::ConnectFrom(server_->port(), "127.0.0.3");
  EXPECT_TRUE(extra.RecvResponse().starts_with("HTTP/1.1 503"));
}

TEST_F(HttpServerTest, IdleConnectionsAreClosedSoonerUnderLoad) {
  ServerOptions o;
  o.max_connections = 4;  // more than 2 open = under load
  o.idle_timeout = 30s;
  o.idle_timeout_under_load = 1s;
  Start(o);
  std::vector<RawSocket> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(RawSocket::Connect(server_->port()));
    ASSERT_TRUE(open.back().ok());
  }
  // Requests make each start a new idle wait, now under load.
  for (auto& s : open) {
    ASSERT_TRUE(s.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_TRUE(s.RecvResponse().starts_with("HTTP/1.1 200"));
  }
  auto t0 = Clock::now();
  EXPECT_TRUE(open[2].WaitClosed(5s));
  EXPECT_LT(Ms(Clock::now() - t0), 4000);
}

TEST_F(HttpServerTest, RequestsBeyondThePendingCapGet503WithoutRunningTheHandler) {
  std::atomic<int> ran{0};
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool open_gate = false;
  router_->Add("GET", "/gate", [&](const Request&) {
    ++ran;
    std::unique_lock<std::mutex> l(gate_mu);
    gate_cv.wait_for(l, 10s, [&] { return open_gate; });
    return Response::Text(200, "through");
  });
  ServerOptions o;
  o.max_pending_requests = 2;
  o.worker_threads = 4;
  Start(o);
  std::vector<RawSocket> blocked;
  for (int i = 0; i < 2; ++i) {
    blocked.push_back(RawSocket::Connect(server_->port()));
    ASSERT_TRUE(blocked.back().Send("GET /gate HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  for (int i = 0; i < 100 && ran.load() < 2; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(ran.load(), 2);
  auto busy = Do("GET", "/gate");
  ASSERT_OK(busy);
  EXPECT_EQ(busy->status, 500);  // TestRenderer maps kUnavailable to 500; the API maps it to 503
  EXPECT_EQ(BodyJson(*busy)["error"]["code"], "unavailable");
  EXPECT_EQ(busy->headers["retry-after"], "1");
  EXPECT_EQ(ran.load(), 2);
  {
    std::lock_guard<std::mutex> l(gate_mu);
    open_gate = true;
  }
  gate_cv.notify_all();
  for (auto& s : blocked) EXPECT_TRUE(s.RecvResponse().starts_with("HTTP/1.1 200"));
  auto after = Do("GET", "/hello");
  ASSERT_OK(after);
  EXPECT_EQ(after->status, 200);
}

TEST_F(HttpServerTest, ConcurrentClientsAllSucceed) {
  Start();
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, &ok, t] {
      for (int i = 0; i < 50; ++i) {
        auto r = Do("POST", "/echo", std::to_string(t * 1000 + i));
        if (r && r->status == 200 && r->body == std::to_string(t * 1000 + i)) {
          ++ok;
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(ok.load(), 200);
}

TEST_F(HttpServerTest, StartFailsWhenPortIsTaken) {
  Start();
  ServerOptions o;
  o.port = server_->port();
  auto second = HttpServer::Start(o, router_, TestRenderer, nullptr);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, ErrorCode::kUnavailable);
}

TEST_F(HttpServerTest, WorksWithoutMetrics) {
  auto s = HttpServer::Start(ServerOptions{}, router_, TestRenderer, nullptr);
  ASSERT_OK(s);
  ClientRequest req;
  req.url = "http://127.0.0.1:" + std::to_string((*s)->port()) + "/hello";
  auto r = client_.Do(req);
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200);
}

}  // namespace
}  // namespace canopy::net
