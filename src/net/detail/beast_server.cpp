// HttpServer over Boost.Beast + Asio C++20 coroutines: the only translation unit that includes
// Beast (one costs ~24 s and ~0.8 GB to compile). See docs/decisions/http.md.
//
// Shape: `io_threads` threads run one io_context. One coroutine accepts (all pending connections
// per wake-up); one coroutine per connection, on its own strand, reads a request, dispatches the
// handler to a separate worker pool, sleeps on a timer until the Responder fires (from any
// thread), writes the response and loops (HTTP/1.1 keep-alive, no pipelining).
//
// Lifetimes: a Responder may outlive its connection and even the server (long-poll registries
// hold them). It touches the io_context only through Conn, under Conn::mu, and only while the
// connection coroutine is alive (`alive`), which Stop() guarantees to end before the io_context
// goes away. Conn never keeps an executor after its coroutine ends (an Asio strand must not
// outlive its io_context).

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <utility>  // Boost 1.74 asio/awaitable.hpp misses it on GCC 12: keep it first.
#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78  // linux/in6.h, which clashes with netinet/in.h
#endif

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cctype>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/log.h"
#include "net/detail/tls_context.h"
#include "net/http.h"

namespace canopy::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using asio::ip::tcp;
using ErrorCodeT = boost::system::error_code;

constexpr uint32_t kHeaderLimit = 16 * 1024;
constexpr size_t kIdleReadChunk = 1024;
constexpr size_t kShrinkAbove = 64 * 1024;
// After an error reply on a connection whose request is not fully read, keep reading (and
// discarding) briefly so that closing does not reset the connection before the client has read
// the reply.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytes = 8u << 20;
constexpr auto kStopGrace = std::chrono::seconds(5);

// Shared between a connection coroutine, the Responders of its requests and Stop().
struct Conn {
  std::string address;  // the peer's address (counted per address while the connection lives)
  std::mutex mu;
  bool alive = true;     // the coroutine has not finished; `ex` is valid
  bool closing = false;  // Stop() asked the connection to close (set on the strand)
  std::optional<asio::any_io_executor> ex;  // the connection's strand
  beast::tcp_stream* stream = nullptr;      // valid while the coroutine runs; strand only
  asio::steady_timer* wake = nullptr;       // idem

  // Runs fn on the connection's strand if the connection still exists; never blocks.
  // Returns whether it posted.
  template <class Fn>
  bool PostIfAlive(std::shared_ptr<Conn> self, Fn fn) {
    std::lock_guard<std::mutex> l(mu);
    if (!alive) {
      return false;
    }
    asio::post(*ex, [self = std::move(self), fn = std::move(fn)]() mutable { fn(*self); });
    return true;
  }
};

// Where a request's response lands. The coroutine polls it after each wake-up.
struct Slot {
  std::mutex mu;
  bool done = false;
  std::optional<Response> resp;  // nullopt with done: the handler dropped its Responder
};

// Held (shared) by every copy of a request's Responder. Delivering wakes the coroutine; dropping
// the last copy without a reply wakes it too, so that a buggy handler cannot hang a connection.
class Exchange {
 public:
  Exchange(std::shared_ptr<Conn> conn, std::shared_ptr<Slot> slot)
      : conn_(std::move(conn)), slot_(std::move(slot)) {}
  ~Exchange() {
    if (Deliver(std::nullopt) == Outcome::kDelivered) {
      SPDLOG_ERROR("HTTP handler dropped its responder without replying");
    }
  }
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  enum class Outcome { kDelivered, kAlreadyDone, kConnectionGone };
  Outcome Deliver(std::optional<Response> r) {
    {
      std::lock_guard<std::mutex> l(slot_->mu);
      if (slot_->done) {
        return Outcome::kAlreadyDone;
      }
      slot_->done = true;
      slot_->resp = std::move(r);
    }
    bool posted = conn_->PostIfAlive(conn_, [](Conn& c) {
      std::lock_guard<std::mutex> l(c.mu);
      if (c.alive && c.wake != nullptr) {
        c.wake->cancel();
      }
    });
    return posted ? Outcome::kDelivered : Outcome::kConnectionGone;
  }

 private:
  std::shared_ptr<Conn> conn_;
  std::shared_ptr<Slot> slot_;
};

std::string_view HttpDate() {
  thread_local std::time_t cached_sec = 0;
  thread_local char buf[64] = {0};
  std::time_t now = std::time(nullptr);
  if (now != cached_sec) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached_sec = now;
  }
  return buf;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view Std(beast::string_view s) { return {s.data(), s.size()}; }

bool HasCrLf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

// Decodes path and query of `target` into req. False on a malformed target.
bool ParseTarget(std::string_view target, Request* req) {
  if (target.empty() || target.front() != '/') {
    return false;
  }
  size_t q = target.find('?');
  if (!UrlDecode(target.substr(0, q), &req->path, false)) {
    return false;
  }
  if (req->path.find('\0') != std::string::npos) {
    return false;
  }
  if (q == std::string_view::npos) {
    return true;
  }
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.empty()) {
      continue;
    }
    size_t eq = pair.find('=');
    std::string key;
    std::string value;
    if (!UrlDecode(pair.substr(0, eq), &key, true)) {
      return false;
    }
    if (eq != std::string_view::npos && !UrlDecode(pair.substr(eq + 1), &value, true)) {
      return false;
    }
    req->query[std::move(key)] = std::move(value);
  }
  return true;
}

class ServerImpl final : public HttpServer {
 public:
  ServerImpl(const ServerOptions& opts, std::shared_ptr<const Router> router, ErrorRenderer errors,
             std::shared_ptr<Metrics> metrics)
      : opts_(opts),
        router_(std::move(router)),
        errors_(std::move(errors)),
        metrics_(std::move(metrics)),
        ioc_(static_cast<int>(std::max<size_t>(opts.io_threads, 1))),
        acceptor_(asio::make_strand(ioc_)),
        workers_(std::max<size_t>(opts.worker_threads, 1)) {}

  ~ServerImpl() override { Stop(); }

  Status Listen() {
    ErrorCodeT ec;
    asio::ip::address addr = asio::ip::make_address(opts_.host, ec);
    if (ec) {
      tcp::resolver resolver(ioc_);
      auto results = resolver.resolve(opts_.host, "", ec);
      if (ec || results.empty()) {
        return Error::InvalidArgument(fmt::format("cannot resolve listen host {}", opts_.host));
      }
      addr = results.begin()->endpoint().address();
    }
    tcp::endpoint ep(addr, opts_.port);
    std::string where = fmt::format("{}:{}", opts_.host, opts_.port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) {
      acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    }
    if (!ec && opts_.freebind) {
      // The address may not exist yet (a bridge made later): bind anyway, serve once it does.
      int on = 1;
      int level = ep.protocol() == tcp::v6() ? IPPROTO_IPV6 : IPPROTO_IP;
      int name = ep.protocol() == tcp::v6() ? IPV6_FREEBIND : IP_FREEBIND;
      if (::setsockopt(acceptor_.native_handle(), level, name, &on, sizeof on) != 0) {
        ec = ErrorCodeT(errno, boost::system::system_category());
      }
    }
    if (!ec) {
      acceptor_.bind(ep, ec);
    }
    if (!ec) {
      acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (!ec) {
      acceptor_.non_blocking(true, ec);
    }
    if (ec) {
      return Error::Unavailable(fmt::format("cannot listen on {}: {}", where, ec.message()));
    }
    port_ = acceptor_.local_endpoint(ec).port();
    return OkStatus();
  }

  void Run() {
    asio::co_spawn(acceptor_.get_executor(), AcceptLoop(), asio::detached);
    size_t n = std::max<size_t>(opts_.io_threads, 1);
    for (size_t i = 0; i < n; ++i) {
      io_threads_.emplace_back([this] { ioc_.run(); });
    }
  }

  uint16_t port() const override { return port_; }

  Status UpdateTls(TlsServerConfigPtr cfg) override {
    if (!tls_on_) {
      return Error::FailedPrecondition("this listener serves plain HTTP");
    }
    if (!cfg) {
      return Error::InvalidArgument("TLS settings are missing");
    }
    CANOPY_ASSIGN_OR_RETURN(auto ctx, detail::MakeServerContext(*cfg));
    std::lock_guard<std::mutex> l(tls_mu_);
    tls_ = std::move(ctx);
    return OkStatus();
  }

  Status InitTls() {
    if (!opts_.tls) {
      return OkStatus();
    }
    tls_on_ = true;
    if (opts_.tls->chain_pem.empty()) {
      // No certificate yet (it comes later through UpdateTls): every handshake fails meanwhile.
      std::lock_guard<std::mutex> l(tls_mu_);
      tls_ = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
      return OkStatus();
    }
    return UpdateTls(opts_.tls);
  }

  std::shared_ptr<asio::ssl::context> CurrentTls() {
    std::lock_guard<std::mutex> l(tls_mu_);
    return tls_;
  }

  void Stop() override {
    std::lock_guard<std::mutex> stop_lock(stop_mu_);
    if (stopped_) {
      return;
    }
    stopped_ = true;
    std::vector<std::shared_ptr<Conn>> conns;
    {
      std::lock_guard<std::mutex> l(conns_mu_);
      stopping_ = true;
      conns.assign(conns_.begin(), conns_.end());
    }
    asio::post(acceptor_.get_executor(), [this] {
      ErrorCodeT ec;
      acceptor_.close(ec);
    });
    for (auto& c : conns) {
      c->PostIfAlive(c, [](Conn& conn) {
        std::lock_guard<std::mutex> l(conn.mu);
        conn.closing = true;
        if (conn.wake != nullptr) {
          conn.wake->cancel();
        }
        if (conn.stream != nullptr) {
          ErrorCodeT ec;
          conn.stream->socket().shutdown(tcp::socket::shutdown_both, ec);
          conn.stream->socket().close(ec);
        }
      });
    }
    {
      std::unique_lock<std::mutex> l(conns_mu_);
      if (!conns_cv_.wait_for(l, kStopGrace, [this] { return conns_.empty(); })) {
        SPDLOG_WARN("HTTP server stop: connections still open after grace period count={}",
                    conns_.size());
      }
    }
    ioc_.stop();
    for (auto& t : io_threads_) {
      t.join();
    }
    io_threads_.clear();
    // Connections that did not finish (never expected): forget their executors before the
    // io_context goes away, so that late Responders do nothing.
    {
      std::lock_guard<std::mutex> l(conns_mu_);
      for (auto& c : conns_) {
        std::lock_guard<std::mutex> cl(c->mu);
        c->alive = false;
        c->ex.reset();
        c->stream = nullptr;
        c->wake = nullptr;
      }
    }
    workers_.stop();
    workers_.join();
  }

 private:
  // Removes the connection from the registry when its coroutine ends (or its frame is destroyed).
  struct ConnGuard {
    ServerImpl* server;
    std::shared_ptr<Conn> conn;
    ~ConnGuard() {
      {
        std::lock_guard<std::mutex> l(conn->mu);
        conn->alive = false;
        conn->ex.reset();
        conn->stream = nullptr;
        conn->wake = nullptr;
      }
      std::lock_guard<std::mutex> l(server->conns_mu_);
      server->conns_.erase(conn);
      server->Uncount(conn->address);
      server->conns_cv_.notify_all();
    }
  };

  asio::awaitable<void> AcceptLoop() {
    asio::steady_timer backoff(acceptor_.get_executor());
    for (;;) {
      ErrorCodeT ec;
      tcp::socket first(asio::make_strand(ioc_));
      co_await acceptor_.async_accept(first, asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) {
        co_return;
      }
      if (ec) {
        // EMFILE and friends: back off instead of spinning on the pending connection.
        SPDLOG_WARN("HTTP accept failed error={}", ec.message());
        backoff.expires_after(std::chrono::milliseconds(50));
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      StartConnection(std::move(first));
      // Take every connection already pending: one accept per wake-up gave 0.5 s p99 and
      // timeouts at 1000 clients (stack notes).
      for (;;) {
        tcp::socket next(asio::make_strand(ioc_));
        acceptor_.accept(next, ec);
        if (ec) {
          break;
        }
        StartConnection(std::move(next));
      }
    }
  }

  // Under conns_mu_.
  void Uncount(const std::string& address) {
    auto it = per_address_.find(address);
    if (it != per_address_.end() && --it->second == 0) {
      per_address_.erase(it);
    }
  }

  // Answers 503 on a connection over a limit and closes it, without a coroutine: one
  // non-blocking write of a fixed reply (it fits any socket buffer), then close.
  // A TLS listener only closes (a plaintext reply would not parse).
  static void Refuse(tcp::socket& sock, std::string_view why, bool tls) {
    static const std::string reply = [] {
      std::string body =
          R"({"error":{"code":"unavailable","message":"too many connections; retry shortly"}})";
      return fmt::format(
          "HTTP/1.1 503 Service Unavailable\r\nServer: canopy\r\nContent-Type: "
          "application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: "
          "close\r\n\r\n{}",
          body.size(), body);
    }();
    ErrorCodeT ec;
    sock.non_blocking(true, ec);
    if (!tls) {
      (void)sock.write_some(asio::buffer(reply), ec);
    }
    sock.shutdown(tcp::socket::shutdown_send, ec);
    sock.close(ec);
    SPDLOG_DEBUG("HTTP connection refused reason={}", why);
    (void)why;
  }

  void StartConnection(tcp::socket sock) {
    auto conn = std::make_shared<Conn>();
    conn->ex = sock.get_executor();
    {
      ErrorCodeT ec;
      auto ep = sock.remote_endpoint(ec);
      if (!ec) {
        conn->address = ep.address().to_string();
      }
    }
    {
      std::lock_guard<std::mutex> l(conns_mu_);
      if (stopping_) {
        return;  // the socket closes here
      }
      if (opts_.max_connections > 0 && conns_.size() >= opts_.max_connections) {
        refused_total_.fetch_add(1, std::memory_order_relaxed);
        Refuse(sock, "max_connections", tls_on_);
        return;
      }
      size_t& mine = per_address_[conn->address];
      if (opts_.max_connections_per_address > 0 && mine >= opts_.max_connections_per_address) {
        if (mine == 0) {
          per_address_.erase(conn->address);
        }
        refused_total_.fetch_add(1, std::memory_order_relaxed);
        Refuse(sock, "max_connections_per_address", tls_on_);
        return;
      }
      ++mine;
      conns_.insert(conn);
    }
    asio::co_spawn(*conn->ex, Session(conn, std::move(sock)), asio::detached);
  }

  // The idle keep-alive timeout for a connection starting to wait now.
  std::chrono::seconds IdleTimeout() {
    if (opts_.max_connections > 0) {
      std::lock_guard<std::mutex> l(conns_mu_);
      if (conns_.size() * 2 > opts_.max_connections) {
        return std::min(opts_.idle_timeout, opts_.idle_timeout_under_load);
      }
    }
    return opts_.idle_timeout;
  }

  Response Render(const Error& e) const {
    try {
      if (errors_) {
        return errors_(e);
      }
    } catch (const std::exception& ex) {
      SPDLOG_ERROR("HTTP error renderer threw error={}", ex.what());
    } catch (...) {
      SPDLOG_ERROR("HTTP error renderer threw");
    }
    Json body = {{"error", {{"code", ErrorCodeName(e.code)}, {"message", e.message}}}};
    return Response::FromJson(500, body);
  }

  Response InternalError() const { return Render(Error::Internal("internal error")); }

  void Observe(std::string_view method, std::string_view route, int status,
               std::chrono::steady_clock::time_point started) const {
    if (metrics_) {
      metrics_->Observe(method, route, status, std::chrono::steady_clock::now() - started);
    }
  }

  static http::response<http::string_body> ToBeast(Response r, bool keep_alive) {
    http::response<http::string_body> res;
    res.version(11);
    int status = r.status;
    if (status < 200 || status > 599) {
      SPDLOG_ERROR("HTTP handler returned an invalid status status={}", status);
      status = 500;
    }
    res.result(static_cast<unsigned>(status));
    res.set(http::field::server, "canopy");
    std::string_view date = HttpDate();
    res.set(http::field::date, beast::string_view(date.data(), date.size()));
    for (auto& [name, value] : r.headers) {
      if (name.empty() || HasCrLf(name) || HasCrLf(value) || name.find(':') != std::string::npos) {
        SPDLOG_ERROR("HTTP handler set an invalid header; dropped");
        continue;
      }
      res.insert(name, value);
    }
    bool bodiless = status == 204 || status == 304;
    if (!bodiless) {
      if (!r.content_type.empty() && res.find(http::field::content_type) == res.end()) {
        res.set(http::field::content_type, r.content_type);
      }
      res.body() = std::move(r.body);
      res.content_length(res.body().size());
    }
    res.keep_alive(keep_alive);
    return res;
  }

  // Writes resp; false if the connection failed.
  template <class Stream>
  asio::awaitable<bool> Write(Stream& stream, Response resp, bool keep_alive) {
    auto res = ToBeast(std::move(resp), keep_alive);
    ErrorCodeT ec;
    beast::get_lowest_layer(stream).expires_after(opts_.read_timeout);
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  // Half-closes and drains what the client still sends, bounded in time and bytes.
  template <class Stream>
  asio::awaitable<void> LingerClose(Stream& stream) {
    ErrorCodeT ec;
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    }
    beast::get_lowest_layer(stream).expires_after(kLingerTime);
    std::vector<char> sink(16 * 1024);
    size_t total = 0;
    while (!ec && total < kLingerBytes) {
      size_t n = co_await stream.async_read_some(asio::buffer(sink),
                                                 asio::redirect_error(asio::use_awaitable, ec));
      total += n;
    }
  }

  asio::awaitable<void> Session(std::shared_ptr<Conn> conn, tcp::socket socket) {
    ConnGuard guard{this, conn};
    std::shared_ptr<asio::ssl::context> tls = CurrentTls();  // outlives the stream
    if (tls) {
      beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *tls);
      co_await Run(conn, stream, true);
    } else {
      beast::tcp_stream stream(std::move(socket));
      co_await Run(conn, stream, false);
    }
  }

  template <class Stream>
  asio::awaitable<void> Run(std::shared_ptr<Conn> conn, Stream& stream, bool tls) {
    beast::tcp_stream& lowest = beast::get_lowest_layer(stream);
    asio::steady_timer wake(lowest.get_executor());
    {
      std::lock_guard<std::mutex> l(conn->mu);
      if (conn->closing) {
        co_return;
      }
      conn->stream = &lowest;
      conn->wake = &wake;
    }
    try {
      std::string peer_cn;
      bool ready = true;
      if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
        // Plain HTTP, a bad or untrusted client certificate, or silence: the handshake fails
        // and the connection closes.
        ErrorCodeT ec;
        lowest.expires_after(opts_.read_timeout);
        co_await stream.async_handshake(asio::ssl::stream_base::server,
                                        asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
          SPDLOG_DEBUG("TLS handshake failed peer={} error={}", conn->address, ec.message());
          tls_failures_.fetch_add(1, std::memory_order_relaxed);
          ready = false;
        } else {
          peer_cn = detail::PeerCommonName(stream.native_handle());
        }
      }
      if (ready) {
        co_await Serve(conn, stream, wake, tls, peer_cn);
      }
    } catch (const std::exception& e) {
      SPDLOG_ERROR("HTTP connection failed error={}", e.what());
    }
    ErrorCodeT ec;
    lowest.socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest.socket().close(ec);
  }

  // References point into the awaiting Session frame, which outlives this coroutine.
  template <class Stream>
  asio::awaitable<void> Serve(const std::shared_ptr<Conn>& conn, Stream& stream,
                              asio::steady_timer& wake, bool tls, const std::string& peer_cn) {
    ErrorCodeT ec;
    beast::tcp_stream& lowest = beast::get_lowest_layer(stream);
    lowest.socket().set_option(tcp::no_delay(true), ec);
    std::string remote;
    {
      auto ep = lowest.socket().remote_endpoint(ec);
      if (!ec) {
        remote = ep.address().to_string();
      }
    }
    beast::flat_buffer buffer;
    for (;;) {
      if (buffer.size() == 0) {
        // Idle keep-alive wait: small buffer, idle timeout.
        if (buffer.capacity() > kShrinkAbove) {
          buffer.shrink_to_fit();
        }
        lowest.expires_after(IdleTimeout());
        size_t n = co_await stream.async_read_some(buffer.prepare(kIdleReadChunk),
                                                   asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
          co_return;  // idle timeout, peer closed, or Stop()
        }
        buffer.commit(n);
      }
      auto started = std::chrono::steady_clock::now();
      http::request_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(static_cast<uint64_t>(opts_.max_body_bytes));
      lowest.expires_after(opts_.read_timeout);
      co_await http::async_read_header(stream, buffer, parser,
                                       asio::redirect_error(asio::use_awaitable, ec));
      if (!ec && !parser.is_done()) {
        auto expect = parser.get().find(http::field::expect);
        if (expect != parser.get().end() && Lower(Std(expect->value())) == "100-continue") {
          http::response<http::empty_body> cont{http::status::continue_, 11};
          co_await http::async_write(stream, cont, asio::redirect_error(asio::use_awaitable, ec));
        }
        if (!ec) {
          co_await http::async_read(stream, buffer, parser,
                                    asio::redirect_error(asio::use_awaitable, ec));
        }
      }
      if (ec) {
        std::string method =
            parser.is_header_done() ? std::string(parser.get().method_string()) : std::string();
        std::optional<Response> reply;
        if (ec == http::error::body_limit) {
          reply = Render(Error{ErrorCode::kPayloadTooLarge,
                               fmt::format("request body exceeds {} bytes", opts_.max_body_bytes),
                               {}});
        } else if (ec == http::error::header_limit) {
          reply = Render(Error::InvalidArgument("request header too large"));
          reply->status = 431;
        } else if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
                   ec != http::error::partial_message && ec != http::error::end_of_stream) {
          reply = Render(Error::InvalidArgument("malformed HTTP request"));
        }
        // Anything else (timeout, reset, closed mid-request, Stop) just closes.
        if (reply) {
          int status = reply->status;
          if (co_await Write(stream, std::move(*reply), false)) {
            co_await LingerClose(stream);
          }
          Observe(method, "", status, started);
        }
        co_return;
      }

      http::request<http::string_body> raw = parser.release();
      bool keep_alive = raw.keep_alive();
      Request req;
      std::string method(raw.method_string());
      req.method = method;
      req.target = std::string(raw.target());
      req.remote_addr = remote;
      req.tls = tls;
      req.peer_cn = peer_cn;
      for (const auto& f : raw) {
        auto [it, inserted] =
            req.headers.emplace(Lower(Std(f.name_string())), std::string(f.value()));
        if (!inserted) {
          it->second += ", ";
          it->second += std::string(f.value());
        }
      }
      req.body = std::move(raw.body());

      Response resp;
      std::string route;
      if (!ParseTarget(req.target, &req)) {
        resp = Render(Error::InvalidArgument("malformed request target"));
        keep_alive = false;
      } else if (auto match = router_->Find(req.method, req.path); !match) {
        resp = Render(match.error());
        if (match.error().code == ErrorCode::kInvalidArgument) {
          // The router's "method not allowed": 405 is not in the ErrorCode table.
          resp.status = 405;
          std::string allow;
          for (const auto& m : router_->AllowedMethods(req.path)) {
            allow += allow.empty() ? m : ", " + m;
          }
          resp.headers.emplace_back("Allow", allow);
        }
      } else {
        route = match->pattern;
        req.route = match->pattern;
        req.params = std::move(match->params);
        std::optional<Response> got =
            co_await Dispatch(conn, wake, match->handler, std::move(req), route);
        if (!got) {
          co_return;  // Stop() while the handler was running
        }
        resp = std::move(*got);
      }
      int status = resp.status;
      if (!co_await Write(stream, std::move(resp), keep_alive)) {
        co_return;
      }
      Observe(method, route, status, started);
      if (!keep_alive) {
        co_return;
      }
    }
  }

  // Runs the handler on the worker pool and waits for its reply. nullopt when the connection is
  // closing.
  asio::awaitable<std::optional<Response>> Dispatch(const std::shared_ptr<Conn>& conn,
                                                    asio::steady_timer& wake,
                                                    const AsyncHandler* handler, Request req,
                                                    std::string route) {
    auto slot = std::make_shared<Slot>();
    if (opts_.max_pending_requests > 0 &&
        pending_.fetch_add(1, std::memory_order_acq_rel) >= opts_.max_pending_requests) {
      pending_.fetch_sub(1, std::memory_order_acq_rel);
      SPDLOG_WARN("HTTP request refused: too many pending requests route={}", route);
      Response busy = Render(Error::Unavailable("the server is busy; retry shortly"));
      busy.headers.emplace_back("Retry-After", "1");
      co_return busy;
    }
    {
      auto exchange = std::make_shared<Exchange>(conn, slot);
      Responder respond = [exchange](Response r) {
        if (exchange->Deliver(std::move(r)) == Exchange::Outcome::kAlreadyDone) {
          SPDLOG_WARN("HTTP responder called more than once; ignored");
        }
      };
      asio::post(workers_, [this, handler, exchange, respond = std::move(respond),
                            req = std::move(req), route = std::move(route)]() mutable {
        try {
          (*handler)(req, std::move(respond));
        } catch (const std::exception& e) {
          SPDLOG_ERROR("HTTP handler threw route={} error={}", route, e.what());
          exchange->Deliver(InternalError());
        } catch (...) {
          SPDLOG_ERROR("HTTP handler threw route={}", route);
          exchange->Deliver(InternalError());
        }
        if (opts_.max_pending_requests > 0) {
          pending_.fetch_sub(1, std::memory_order_acq_rel);
        }
      });
    }
    for (;;) {
      {
        std::lock_guard<std::mutex> l(slot->mu);
        if (slot->done) {
          if (slot->resp) {
            co_return std::move(*slot->resp);
          }
          co_return InternalError();  // the handler dropped its Responder
        }
      }
      {
        std::lock_guard<std::mutex> l(conn->mu);
        if (conn->closing) {
          co_return std::nullopt;
        }
      }
      wake.expires_at(asio::steady_timer::time_point::max());
      ErrorCodeT ec;
      co_await wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  ServerOptions opts_;
  std::shared_ptr<const Router> router_;
  ErrorRenderer errors_;
  std::shared_ptr<Metrics> metrics_;
  uint16_t port_ = 0;

  // Declared before ioc_ so that frames destroyed with the io_context can still unregister.
  std::mutex conns_mu_;
  std::condition_variable conns_cv_;
  std::unordered_set<std::shared_ptr<Conn>> conns_;
  std::unordered_map<std::string, size_t> per_address_;  // open connections per peer address
  bool stopping_ = false;
  std::atomic<size_t> pending_{0};  // handlers posted and not yet returned
  std::atomic<uint64_t> refused_total_{0};
  std::atomic<uint64_t> tls_failures_{0};
  bool tls_on_ = false;  // set before Run
  std::mutex tls_mu_;
  std::shared_ptr<asio::ssl::context> tls_;  // for new connections; swapped by UpdateTls

  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  asio::thread_pool workers_;
  std::vector<std::thread> io_threads_;
  std::mutex stop_mu_;
  bool stopped_ = false;
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const ServerOptions& opts,
                                                      std::shared_ptr<const Router> router,
                                                      ErrorRenderer errors,
                                                      std::shared_ptr<Metrics> metrics) {
  if (router == nullptr) {
    return Error::InvalidArgument("HTTP server needs a router");
  }
  auto server =
      std::make_unique<ServerImpl>(opts, std::move(router), std::move(errors), std::move(metrics));
  CANOPY_TRY(server->InitTls());
  CANOPY_TRY(server->Listen());
  server->Run();
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace canopy::net
