// HTTP server layer: Request/Response values, a path-pattern Router and the server itself
// (Boost.Beast + Asio, C++20 coroutines; see docs/decisions/http.md). Handlers run on a worker
// pool, never on the I/O threads, so they may block (SQLite, KDF, outbound calls).
// Router is immutable after Start (thread-safe for reads); HttpServer is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/json.h"
#include "common/result.h"
#include "net/tls.h"

namespace canopy::net {

struct Request {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // raw request target: "/api/v1/x?y=1"
  std::string path;                            // decoded path without query
  std::map<std::string, std::string> query;    // decoded query parameters (last one wins)
  std::map<std::string, std::string> headers;  // header names lower-cased
  std::map<std::string, std::string> params;   // path parameters from the route pattern
  std::string body;
  std::string remote_addr;  // peer IP address, without the port
  std::string route;        // the matched pattern, e.g. "/api/v1/users/{id}"
  bool tls = false;         // it came over TLS
  std::string peer_cn;      // the common name of the client's verified certificate, "" if none

  // Header by lower-case name, "" if absent.
  std::string Header(std::string_view lower_name) const;
  std::string Query(std::string_view name) const;
  std::string Param(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;

  static Response FromJson(int status, const Json& j);
  static Response Text(int status, std::string body, std::string content_type = "text/plain");
};

using Handler = std::function<Response(const Request&)>;
// Replies to a request; call exactly once, from any thread (long-poll handlers keep it).
using Responder = std::function<void(Response)>;
using AsyncHandler = std::function<void(const Request&, Responder)>;
// Turns an Error into the API's JSON error response (supplied by api/ which owns the status table).
// Called from I/O and worker threads: must be thread-safe. For "method not allowed" the server
// forces status 405 (plus an Allow header) and for an oversized header 431, whatever it returns.
using ErrorRenderer = std::function<Response(const Error&)>;

// Maps METHOD + path pattern to handlers. Patterns are literal segments and "{name}" segments
// ("/api/v1/users/{id}"); literal segments win over parameters.
// Matching is strict and per method: the path is the decoded path; "/a/b/" does not match "/a/b"
// (no redirect; a trailing or doubled slash gives 404); "{name}" matches one non-empty segment.
// Among the routes of the request's method the most specific pattern wins (the leftmost position
// where one has a literal and the other a parameter decides), so "GET /users/me" beats
// "GET /users/{id}" while "DELETE /users/me" still reaches "DELETE /users/{id}".
// Add/AddAsync abort on a malformed pattern or a duplicate (method, pattern): programmer errors.
// A Request passed to a handler lives only during the call; async handlers copy what they keep.
class Router {
 public:
  void Add(std::string method, std::string pattern, Handler h);
  void AddAsync(std::string method, std::string pattern, AsyncHandler h);

  struct Match {
    const AsyncHandler* handler = nullptr;
    std::map<std::string, std::string> params;
    std::string pattern;
  };
  // kNotFound for an unknown path; kConflict-free: unknown method on a known path gives an
  // Error with message "method not allowed" and code kInvalidArgument (rendered as 405).
  Result<Match> Find(std::string_view method, std::string_view path) const;
  // Methods registered for patterns matching `path`, sorted (for the Allow header of a 405).
  std::vector<std::string> AllowedMethods(std::string_view path) const;
  // All (method, pattern) pairs, for tests that walk every route.
  std::vector<std::pair<std::string, std::string>> Routes() const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    AsyncHandler handler;
  };
  std::vector<Route> routes_;
};

// Request counts and latency histograms per method/route/status, rendered as Prometheus text.
class Metrics {
 public:
  Metrics();
  ~Metrics();
  void Observe(std::string_view method, std::string_view route, int status,
               std::chrono::nanoseconds latency);
  std::string RenderPrometheus() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0 picks a free port
  // Bind even when `host` is not (yet) an address of this machine (IP_FREEBIND): for an address
  // that appears later, such as the local provider's bridge gateway.
  bool freebind = false;
  size_t io_threads = 2;
  size_t worker_threads = 8;
  size_t max_body_bytes = 1 << 20;         // larger bodies get 413
  std::chrono::seconds idle_timeout{120};  // idle keep-alive connections are closed after this
  std::chrono::seconds read_timeout{30};   // a started request must arrive within this (and
                                           // a response be written within this)
  // Limits against abuse (0 = none). A connection beyond `max_connections` open ones, or
  // beyond `max_connections_per_address` from one peer address, is answered 503 and closed at
  // once. While more than half of `max_connections` are open, idle keep-alive connections are
  // closed after `idle_timeout_under_load` instead of `idle_timeout`. A request arriving while
  // `max_pending_requests` handlers are queued or running is answered 503 (Retry-After: 1)
  // without running its handler.
  size_t max_connections = 0;
  size_t max_connections_per_address = 0;
  std::chrono::seconds idle_timeout_under_load{5};
  size_t max_pending_requests = 0;
  // TLS (null: plain HTTP). With a config whose chain is empty the listener is TLS but has no
  // certificate until UpdateTls gives one (every handshake fails meanwhile).
  TlsServerConfigPtr tls;
  // Fixed limits: request header 16 KiB (431 beyond). Handlers that throw get 500 "internal error".
};

class HttpServer {
 public:
  // Binds and starts serving. Unmatched routes/methods, malformed HTTP and oversized bodies are
  // answered through `errors`. Every request is recorded in `metrics` (may be null).
  static Result<std::unique_ptr<HttpServer>> Start(const ServerOptions& opts,
                                                   std::shared_ptr<const Router> router,
                                                   ErrorRenderer errors,
                                                   std::shared_ptr<Metrics> metrics);
  virtual ~HttpServer() = default;
  virtual uint16_t port() const = 0;
  // New certificate/key/client CA for connections accepted from now on (rotation without
  // downtime); open connections keep theirs. kFailedPrecondition on a plain listener.
  virtual Status UpdateTls(TlsServerConfigPtr cfg) = 0;
  // Stops accepting, closes connections (idle ones and ones waiting for a handler), joins
  // threads. Idempotent. Responders called afterwards do nothing. Do not call from a handler.
  virtual void Stop() = 0;
};

// Splits "host:port" ("[::1]:80" too). kInvalidArgument on bad input.
Result<std::pair<std::string, uint16_t>> ParseHostPort(std::string_view s);
// The host of "scheme://host:port/..." without brackets; "" when there is none or it is a
// wildcard address (0.0.0.0, ::).
std::string UrlHost(std::string_view url);
// Percent-decoding; false on bad escapes.
bool UrlDecode(std::string_view in, std::string* out, bool plus_as_space);
std::string UrlEncode(std::string_view in);

}  // namespace canopy::net
