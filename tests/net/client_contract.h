// The outbound HTTP client contract, as typed tests: net::HttpClient (Beast, what Canopy's tiers
// use) and providers::CurlClient (cloud APIs) both pass it. Each test file instantiates it for
// its client: INSTANTIATE_TYPED_TEST_SUITE_P(Name, HttpClientContract, ::testing::Types<C>).
// Against our HttpServer and against a raw fake server (for behaviour our server never shows:
// stalls, huge declared bodies, connection counting).
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <thread>

#include "net/client.h"
#include "net/http.h"
#include "net/raw_socket.h"
#include "support/test_util.h"

namespace canopy::net::testing {

using namespace std::chrono_literals;

// Accepts connections on 127.0.0.1 and answers every request (read up to the blank line; no
// request bodies) with `reply`, or never answers when `reply` is empty.
class FakeServer {
 public:
  explicit FakeServer(std::string reply) : reply_(std::move(reply)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(fd_, 16);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~FakeServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }
  int connections() const { return connections_.load(); }
  std::string last_request() {
    std::lock_guard<std::mutex> l(mu_);
    return last_request_;
  }

 private:
  void Loop() {
    std::vector<RawSocket> conns;
    std::vector<std::string> pending;
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 10) == 1) {
        conns.emplace_back(accept(fd_, nullptr, nullptr));
        pending.emplace_back();
        ++connections_;
      }
      for (size_t i = 0; i < conns.size(); ++i) {
        if (!conns[i].ok()) {
          continue;
        }
        bool eof = false;
        char buf[4096];
        ssize_t n = recv(conns[i].fd(), buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
          pending[i].append(buf, static_cast<size_t>(n));
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
          eof = true;
        }
        size_t end;
        while ((end = pending[i].find("\r\n\r\n")) != std::string::npos) {
          {
            std::lock_guard<std::mutex> l(mu_);
            last_request_ = pending[i].substr(0, end + 4);
          }
          pending[i].erase(0, end + 4);
          if (!reply_.empty()) {
            conns[i].Send(reply_);
          }
        }
        if (eof) {
          conns[i].Close();
        }
      }
    }
  }

  std::string reply_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::mutex mu_;
  std::string last_request_;
  std::thread thread_;
};

// A listening socket on 127.0.0.1 and a port the kernel chose, for tests that accept by hand.
struct Listener {
  int fd = -1;
  uint16_t port = 0;
  Listener() {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 4) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      close(fd);
      fd = -1;
      return;
    }
    port = ntohs(a.sin_port);
  }
  ~Listener() {
    if (fd >= 0) close(fd);
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
};

template <typename Client>
class HttpClientContract : public ::testing::Test {
 protected:
  void SetUp() override {
    router_->Add("GET", "/get", [](const Request& req) {
      Response r = Response::FromJson(200, Json{{"auth", req.Header("authorization")}});
      r.headers.emplace_back("X-Multi", "a");
      r.headers.emplace_back("x-multi", "b");
      return r;
    });
    for (const char* m : {"POST", "PUT", "PATCH", "DELETE"}) {
      router_->Add(m, "/echo", [](const Request& req) {
        return Response::FromJson(200, Json{{"method", req.method},
                                            {"body", req.body},
                                            {"content_type", req.Header("content-type")},
                                            {"expect", req.Header("expect")}});
      });
    }
    router_->Add("GET", "/redirect", [](const Request&) {
      Response r = Response::Text(302, "");
      r.headers.emplace_back("Location", "/get");
      return r;
    });
    router_->AddAsync("GET", "/never", [this](const Request&, Responder respond) {
      std::lock_guard<std::mutex> l(mu_);
      held_.push_back(std::move(respond));
    });
    ServerOptions opts;
    opts.max_body_bytes = 4 << 20;
    auto s = HttpServer::Start(
        opts, router_, [](const Error& e) { return Response::Text(500, e.message); }, nullptr);
    ASSERT_OK(s);
    server_ = std::move(*s);
  }
  void TearDown() override { server_->Stop(); }

  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + path;
  }

  std::shared_ptr<Router> router_ = std::make_shared<Router>();
  std::unique_ptr<HttpServer> server_;
  std::mutex mu_;
  std::vector<Responder> held_;
  Client client_;
};

TYPED_TEST_SUITE_P(HttpClientContract);

TYPED_TEST_P(HttpClientContract, GetSendsHeadersAndLowerCasesResponseHeaders) {
  ClientRequest req;
  req.url = this->Url("/get");
  req.headers["Authorization"] = "Bearer t0k";
  auto r = this->client_.Do(req);
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(ParseJson(r->body).value()["auth"], "Bearer t0k");
  EXPECT_EQ(r->headers["content-type"], "application/json");
  EXPECT_EQ(r->headers["x-multi"], "a, b");
  EXPECT_EQ(r->headers.count("X-Multi"), 0u);
}

TYPED_TEST_P(HttpClientContract, MethodsCarryBodiesWithoutExpectOrFormContentType) {
  for (const char* m : {"POST", "PUT", "PATCH", "DELETE"}) {
    ClientRequest req;
    req.method = m;
    req.url = this->Url("/echo");
    req.body = std::string(2 << 20, 'z');  // above curl's Expect: 100-continue threshold
    auto r = this->client_.Do(req);
    ASSERT_OK(r);
    Json j = ParseJson(r->body).value();
    EXPECT_EQ(j["method"], m);
    EXPECT_EQ(j["body"], req.body);
    EXPECT_EQ(j["content_type"], "");
    EXPECT_EQ(j["expect"], "");
  }
  ClientRequest empty;
  empty.method = "POST";
  empty.url = this->Url("/echo");
  empty.headers["Content-Type"] = "application/json";
  auto r = this->client_.Do(empty);
  ASSERT_OK(r);
  Json j = ParseJson(r->body).value();
  EXPECT_EQ(j["body"], "");
  EXPECT_EQ(j["content_type"], "application/json");
}

TYPED_TEST_P(HttpClientContract, RedirectsAreNotFollowed) {
  ClientRequest req;
  req.url = this->Url("/redirect");
  auto r = this->client_.Do(req);
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 302);
  EXPECT_EQ(r->headers["location"], "/get");
}

TYPED_TEST_P(HttpClientContract, ErrorStatusesAreSuccessfulResults) {
  ClientRequest req;
  req.url = this->Url("/missing");
  auto r = this->client_.Do(req);
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 500);  // this fixture's renderer answers every error with 500
  EXPECT_EQ(r->body, "no such route");
}

TYPED_TEST_P(HttpClientContract, TimeoutIsDeadlineExceeded) {
  ClientRequest req;
  req.url = this->Url("/never");
  req.timeout = 300ms;
  auto t0 = std::chrono::steady_clock::now();
  auto r = this->client_.Do(req);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
}

TYPED_TEST_P(HttpClientContract, ConnectionRefusedIsUnavailableAndMessageHidesSecrets) {
  canopy::testing::ClosedPort closed;
  uint16_t port = closed.port();
  ClientRequest req;
  req.url = "http://user:hunter2@127.0.0.1:" + std::to_string(port) + "/p?token=sekrit";
  req.headers["Authorization"] = "Bearer sekrit-header";
  auto r = TypeParam().Do(req);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("http://127.0.0.1:" + std::to_string(port)), std::string::npos)
      << r.error().message;
  EXPECT_EQ(r.error().message.find("hunter2"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find("sekrit"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find("/p"), std::string::npos) << r.error().message;
}

TYPED_TEST_P(HttpClientContract, BadUrlsAndInjectedHeadersAreInvalidArgument) {
  for (const char* url : {"", "ftp://127.0.0.1/x", "not a url at all", "http://a\r\nb/"}) {
    ClientRequest req;
    req.url = url;
    auto r = TypeParam().Do(req);
    ASSERT_FALSE(r) << url;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << url << " " << r.error().message;
  }
  ClientRequest req;
  req.url = "http://127.0.0.1:1/";
  req.headers["X-Evil"] = "a\r\nInjected: yes";
  auto r = TypeParam().Do(req);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  req.headers.clear();
  req.method = "GE T";
  r = TypeParam().Do(req);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
}

TYPED_TEST_P(HttpClientContract, ReusesOneConnectionPerThread) {
  FakeServer fake("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  TypeParam client;
  for (int i = 0; i < 5; ++i) {
    ClientRequest req;
    req.url = "http://127.0.0.1:" + std::to_string(fake.port()) + "/n" + std::to_string(i);
    auto r = client.Do(req);
    ASSERT_OK(r);
    EXPECT_EQ(r->body, "ok");
  }
  EXPECT_EQ(fake.connections(), 1);
  EXPECT_TRUE(fake.last_request().starts_with("GET /n4 HTTP/1.1\r\n")) << fake.last_request();
  // Another thread has its own handle, hence its own connection.
  std::thread([&] {
    ClientRequest req;
    req.url = "http://127.0.0.1:" + std::to_string(fake.port()) + "/other";
    EXPECT_TRUE(client.Do(req).has_value());
  }).join();
  EXPECT_EQ(fake.connections(), 2);
}

TYPED_TEST_P(HttpClientContract, HugeDeclaredResponseIsRefused) {
  FakeServer fake("HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\npartial");
  ClientRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(fake.port()) + "/big";
  req.timeout = 5s;
  auto r = TypeParam().Do(req);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kProviderError);
  EXPECT_NE(r.error().message.find("exceeds"), std::string::npos) << r.error().message;
}

TYPED_TEST_P(HttpClientContract, StalledServerTimesOut) {
  FakeServer fake("");  // reads requests, never answers
  ClientRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(fake.port()) + "/stall";
  req.timeout = 200ms;
  auto r = TypeParam().Do(req);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kDeadlineExceeded);
}

TYPED_TEST_P(HttpClientContract, ServerClosingWithoutReplyIsUnavailable) {
  // Accepts, reads the request, closes without a byte.
  Listener listener;
  ASSERT_GE(listener.fd, 0);
  const int fd = listener.fd;
  std::thread t([fd] {
    RawSocket c(accept(fd, nullptr, nullptr));
    c.Recv(1s, nullptr, "\r\n\r\n");
  });
  ClientRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(listener.port) + "/x";
  auto r = TypeParam().Do(req);
  t.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().message;
}

TYPED_TEST_P(HttpClientContract, ReconnectsWhenTheServerClosedAKeptAliveConnection) {
  // Answers one request per connection with a keep-alive reply, then closes it: the client's
  // next call finds its kept connection dead and must go on with a fresh one, not fail.
  Listener listener;
  ASSERT_GE(listener.fd, 0);
  const int fd = listener.fd;
  std::thread t([fd] {
    for (int i = 0; i < 2; ++i) {
      RawSocket c(accept(fd, nullptr, nullptr));
      c.Recv(2s, nullptr, "\r\n\r\n");
      c.Send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      std::this_thread::sleep_for(50ms);
    }
  });
  TypeParam client;
  for (int i = 0; i < 2; ++i) {
    ClientRequest req;
    req.method = "POST";
    req.url = "http://127.0.0.1:" + std::to_string(listener.port) + "/x";
    req.body = "{}";
    auto r = client.Do(req);
    ASSERT_OK(r);
    EXPECT_EQ(r->body, "ok");
    std::this_thread::sleep_for(150ms);  // the server has closed the kept connection by now
  }
  t.join();
}

REGISTER_TYPED_TEST_SUITE_P(HttpClientContract, GetSendsHeadersAndLowerCasesResponseHeaders,
                            MethodsCarryBodiesWithoutExpectOrFormContentType,
                            RedirectsAreNotFollowed, ErrorStatusesAreSuccessfulResults,
                            TimeoutIsDeadlineExceeded,
                            ConnectionRefusedIsUnavailableAndMessageHidesSecrets,
                            BadUrlsAndInjectedHeadersAreInvalidArgument,
                            ReusesOneConnectionPerThread, HugeDeclaredResponseIsRefused,
                            StalledServerTimesOut, ServerClosingWithoutReplyIsUnavailable,
                            ReconnectsWhenTheServerClosedAKeptAliveConnection);

}  // namespace canopy::net::testing
