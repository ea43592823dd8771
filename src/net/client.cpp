// HttpClient over Boost.Beast (the same stack as the server), so that everything the agent needs
// links statically: no libcurl and its twenty shared libraries. One keep-alive connection per
// thread, reused while the next call goes to the same origin. Every step runs on a per-thread
// io_context for at most the time left (connect_timeout for resolve + connect + TLS handshake,
// timeout for the whole call); a step still pending then is cancelled and the call is a
// DeadlineExceeded. Redirects are never followed; only http and https.
#include "net/client.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cctype>
#include <memory>
#include <optional>
#include <utility>

#include "net/detail/tls_context.h"

namespace canopy::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxResponseBytes = 64u << 20;
constexpr size_t kMaxHeaderBytes = 64u << 10;

bool HasCtl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) ||
           std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
  });
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

struct Target {
  bool tls = false;
  std::string host;  // without brackets
  std::string port;
  std::string host_header;
  std::string path;  // origin-form: path and query
  std::string origin() const { return fmt::format("{}://{}", tls ? "https" : "http", host_header); }
};

// "https://user:pw@host:8443/path?q#f". The origin never carries user info, path or query, so
// messages built from it never leak credentials or tokens.
Result<Target> ParseUrl(std::string_view url) {
  Target t;
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return Error::InvalidArgument("invalid URL");
  std::string scheme = Lower(url.substr(0, scheme_end));
  if (scheme == "https") {
    t.tls = true;
  } else if (scheme != "http") {
    return Error::InvalidArgument(fmt::format("unsupported URL scheme '{}'", scheme));
  }
  std::string_view rest = url.substr(scheme_end + 3);
  size_t auth_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, auth_end);
  std::string_view tail = auth_end == std::string_view::npos ? "" : rest.substr(auth_end);
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    authority = authority.substr(at + 1);
  }
  std::string_view host = authority;
  std::string_view port;
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return Error::InvalidArgument("invalid URL");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return Error::InvalidArgument("invalid URL");
      port = after.substr(1);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  auto bad_host = [](unsigned char c) {
    return !(std::isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':' || c == '%');
  };
  if (host.empty() || std::any_of(host.begin(), host.end(), bad_host)) {
    return Error::InvalidArgument("invalid URL host");
  }
  if (!port.empty()) {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit) ||
        std::stoi(std::string(port)) == 0 || std::stoi(std::string(port)) > 65535) {
      return Error::InvalidArgument("invalid URL port");
    }
  }
  t.host = std::string(host);
  t.port = port.empty() ? (t.tls ? "443" : "80") : std::string(port);
  t.host_header = std::string(authority);
  if (size_t hash = tail.find('#'); hash != std::string_view::npos) tail = tail.substr(0, hash);
  t.path = tail.empty() ? "/" : (tail[0] == '?' ? "/" + std::string(tail) : std::string(tail));
  if (std::any_of(t.path.begin(), t.path.end(), [](unsigned char c) { return c <= 0x20; })) {
    return Error::InvalidArgument("invalid URL path");
  }
  return t;
}

// The calling thread's connection: kept open after a keep-alive answer, for the next call to the
// same origin.
struct ThreadConn {
  asio::io_context ioc;
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  std::string key;  // scheme://host:port and TLS settings of the open connection
  beast::flat_buffer buffer;

  std::shared_ptr<asio::ssl::context> tls_ctx;  // for `tls_cfg`, made on the first https call
  TlsClientConfigPtr tls_cfg;                   // the settings of `tls_ctx` and of `tls`
  static inline const TlsClientConfigPtr kSystem = std::make_shared<TlsClientConfig>();

  Result<asio::ssl::context*> TlsContext(const TlsClientConfigPtr& cfg) {
    const TlsClientConfigPtr& want = cfg ? cfg : kSystem;
    if (!tls_ctx || tls_cfg != want) {
      tls_ctx.reset();
      CANOPY_ASSIGN_OR_RETURN(tls_ctx, detail::MakeClientContext(*want));
      tls_cfg = want;
    }
    return tls_ctx.get();
  }
  bool open() const { return plain != nullptr || tls != nullptr; }
  beast::tcp_stream& lowest() { return plain ? *plain : beast::get_lowest_layer(*tls); }
  void Close() {
    if (open()) {
      beast::error_code ignored;
      lowest().socket().close(ignored);
    }
    tls.reset();
    plain.reset();
    key.clear();
    buffer.clear();
  }
};

// Runs the io_context until the started operation completes or `deadline` passes; on the
// deadline, `cancel` aborts the operation and this returns false.
template <typename Cancel>
bool RunUntil(asio::io_context& ioc, Clock::time_point deadline, bool& done, Cancel cancel) {
  ioc.restart();
  while (!done) {
    auto now = Clock::now();
    if (now >= deadline) break;
    ioc.run_one_for(deadline - now);
  }
  if (done) return true;
  cancel();
  ioc.restart();
  while (!done) ioc.run_one();  // the cancelled operation completes with operation_aborted
  return false;
}

struct Outcome {
  beast::error_code ec;
  bool timed_out = false;
};

Error TransportError(const Target& t, const Outcome& o, std::chrono::milliseconds limit) {
  if (o.timed_out) {
    return Error::DeadlineExceeded(
        fmt::format("request to {} failed: timed out after {} ms", t.origin(), limit.count()));
  }
  return Error::Unavailable(fmt::format("request to {} failed: {}", t.origin(), o.ec.message()));
}

Outcome Connect(ThreadConn& c, const Target& t, asio::ssl::context* tls_ctx,
                const TlsClientConfig& tls_cfg, const std::string& key,
                Clock::time_point deadline) {
  Outcome o;
  tcp::resolver resolver(c.ioc);
  tcp::resolver::results_type endpoints;
  bool done = false;
  resolver.async_resolve(t.host, t.port, [&](beast::error_code ec, tcp::resolver::results_type r) {
    o.ec = ec;
    endpoints = std::move(r);
    done = true;
  });
  if (!RunUntil(c.ioc, deadline, done, [&] { resolver.cancel(); })) o.timed_out = true;
  if (o.timed_out || o.ec) return o;

  auto stream = std::make_unique<beast::tcp_stream>(c.ioc);
  done = false;
  stream->async_connect(endpoints, [&](beast::error_code ec, const tcp::endpoint&) {
    o.ec = ec;
    done = true;
  });
  if (!RunUntil(c.ioc, deadline, done, [&] { stream->cancel(); })) o.timed_out = true;
  if (o.timed_out || o.ec) return o;
  stream->socket().set_option(tcp::no_delay(true), o.ec);
  o.ec = {};

  if (!t.tls) {
    c.plain = std::move(stream);
  } else {
    auto s = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(*stream), *tls_ctx);
    boost::system::error_code not_ip;
    (void)asio::ip::make_address(t.host, not_ip);
    // SNI carries host names only (RFC 6066), never an IP address.
    if (not_ip && !SSL_set_tlsext_host_name(s->native_handle(), t.host.c_str())) {
      o.ec =
          beast::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
      return o;
    }
    s->set_verify_callback([&tls_cfg, host = t.host](bool pre, asio::ssl::verify_context& v) {
      return detail::VerifyServer(tls_cfg, host, pre, v);
    });
    done = false;
    s->async_handshake(asio::ssl::stream_base::client, [&](beast::error_code ec) {
      o.ec = ec;
      done = true;
    });
    if (!RunUntil(c.ioc, deadline, done, [&] { beast::get_lowest_layer(*s).cancel(); })) {
      o.timed_out = true;
    }
    if (o.timed_out || o.ec) return o;
    c.tls = std::move(s);
  }
  c.key = key;
  return o;
}

// Starts `start(stream, handler)` on the connection's open stream (plain or TLS) and runs it
// until it completes or `deadline` passes. True when it succeeded in time.
template <typename Start>
bool Step(ThreadConn& c, Clock::time_point deadline, Outcome& o, Start start) {
  bool done = false;
  auto on_done = [&](beast::error_code ec, size_t) {
    o.ec = ec;
    done = true;
  };
  if (c.plain) {
    start(*c.plain, on_done);
  } else {
    start(*c.tls, on_done);
  }
  if (!RunUntil(c.ioc, deadline, done, [&] { c.lowest().cancel(); })) o.timed_out = true;
  return !o.timed_out && !o.ec;
}

// Writes the request and reads the answer (skipping 1xx interim answers). `got_some` tells
// whether any byte of an answer arrived (a reused connection that fails before is retried).
Outcome Exchange(ThreadConn& c, const http::request<http::string_body>& request, bool head,
                 Clock::time_point deadline,
                 std::optional<http::response_parser<http::string_body>>& parser, bool& got_some) {
  Outcome o;
  if (!Step(c, deadline, o, [&](auto& s, auto h) { http::async_write(s, request, h); })) return o;
  while (true) {
    parser.emplace();
    parser->body_limit(kMaxResponseBytes);
    parser->header_limit(kMaxHeaderBytes);
    if (head) parser->skip(true);
    bool read = Step(c, deadline, o,
                     [&](auto& s, auto h) { http::async_read_header(s, c.buffer, *parser, h); });
    got_some = got_some || parser->got_some();
    if (!read) return o;
    // A declared length over the limit is refused before any of the body is read.
    if (parser->content_length() && *parser->content_length() > kMaxResponseBytes) {
      o.ec = http::error::body_limit;
      return o;
    }
    if (!parser->is_done() && !Step(c, deadline, o, [&](auto& s, auto h) {
          http::async_read(s, c.buffer, *parser, h);
        })) {
      return o;
    }
    unsigned status = parser->get().result_int();
    if (status >= 200 || status == 101) return o;
  }
}

}  // namespace

Result<ClientResponse> HttpClient::Do(const ClientRequest& req) const {
  if (!IsToken(req.method)) return Error::InvalidArgument("invalid HTTP method");
  if (req.url.empty() || HasCtl(req.url)) return Error::InvalidArgument("invalid URL");
  CANOPY_ASSIGN_OR_RETURN(Target t, ParseUrl(req.url));

  http::request<http::string_body> request;
  http::verb verb = http::string_to_verb(req.method);
  if (verb == http::verb::unknown) {
    request.method_string(req.method);
  } else {
    request.method(verb);
  }
  request.target(t.path);
  request.version(11);
  request.set(http::field::host, t.host_header);
  for (const auto& [name, value] : req.headers) {
    if (!IsToken(name) || HasCtl(value)) return Error::InvalidArgument("invalid HTTP header");
    if (Lower(name) == "host") {
      request.set(http::field::host, value);
    } else {
      request.insert(name, value);
    }
  }
  request.body() = req.body;
  bool head = req.method == "HEAD";
  if (!req.body.empty() || (req.method != "GET" && !head)) {
    request.content_length(req.body.size());
  }

  auto start = Clock::now();
  auto deadline = start + req.timeout;
  auto connect_deadline = std::min(deadline, start + req.connect_timeout);
  thread_local ThreadConn conn;
  asio::ssl::context* tls_ctx = nullptr;
  std::string key = t.origin();
  if (t.tls) {
    if (conn.open() && conn.tls_cfg != (tls_ ? tls_ : ThreadConn::kSystem)) conn.Close();
    auto made = conn.TlsContext(tls_);
    if (!made) return made.error();
    tls_ctx = *made;
    key += fmt::format("#{}", static_cast<const void*>(conn.tls_cfg.get()));
  }
  if (conn.open() && conn.key != key) conn.Close();

  std::optional<http::response_parser<http::string_body>> parser;
  for (int attempt = 0;; ++attempt) {
    bool reused = conn.open();
    if (!reused) {
      Outcome o = Connect(conn, t, tls_ctx, tls_ctx ? *conn.tls_cfg : *ThreadConn::kSystem, key,
                          connect_deadline);
      if (o.timed_out || o.ec) {
        conn.Close();
        return TransportError(
            t, o, o.timed_out && connect_deadline < deadline ? req.connect_timeout : req.timeout);
      }
    }
    bool got_some = false;
    Outcome o = Exchange(conn, request, head, deadline, parser, got_some);
    if (!o.timed_out && !o.ec) break;
    conn.Close();
    if (o.ec == http::error::body_limit) {
      return Error::Provider(
          fmt::format("response from {} exceeds {} bytes", t.origin(), kMaxResponseBytes));
    }
    // A kept-alive connection the server closed meanwhile fails before any answer: once more on
    // a fresh one (as curl does). Anything else is the call's outcome.
    if (reused && attempt == 0 && !got_some && !o.timed_out) continue;
    return TransportError(t, o, req.timeout);
  }

  auto& answer = parser->get();
  ClientResponse resp;
  resp.status = static_cast<int>(answer.result_int());
  for (const auto& field : answer) {
    auto raw = field.name_string();
    std::string name = Lower(std::string_view(raw.data(), raw.size()));
    std::string value(field.value().data(), field.value().size());
    auto [it, inserted] = resp.headers.emplace(name, value);
    if (!inserted) {
      it->second += ", ";
      it->second += value;
    }
  }
  resp.body = std::move(answer.body());
  if (!answer.keep_alive()) conn.Close();
  return resp;
}

}  // namespace canopy::net
