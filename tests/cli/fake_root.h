// A tiny fake of the root's REST API for CLI tests: canned users, providers, credentials and
// operations behind bearer-token auth. Reachable in memory (InMemoryTransport, no sockets) or over
// HTTP (StartServer: net::HttpServer on 127.0.0.1, port 0). Records every request. Thread-safe.
#pragma once

#include <cctype>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cli/api_client.h"
#include "common/json.h"
#include "net/client.h"
#include "net/error_mapping.h"
#include "net/http.h"

namespace canopy::cli::fake {

struct RecordedRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

class FakeRoot {
 public:
  static constexpr const char* kUser = "admin";
  static constexpr const char* kPassword = "admin-pw-1";
  static constexpr const char* kToken = "tok-abc.def.ghi";
  static constexpr const char* kProviderToken = "ptk-0123456789";
  static constexpr const char* kCreated = "2026-11-28T13:00:00Z";

  FakeRoot() : router_(std::make_shared<net::Router>()) { AddRoutes(); }
  ~FakeRoot() {
    if (server_) {
      server_->Stop();
    }
  }

  // Serves the API on 127.0.0.1:<free port>.
  Status StartServer() {
    net::ServerOptions opts;
    opts.port = 0;
    opts.io_threads = 1;
    opts.worker_threads = 2;
    CANOPY_ASSIGN_OR_RETURN(server_,
                            net::HttpServer::Start(opts, router_, net::ErrorResponse, nullptr));
    return OkStatus();
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server_ ? server_->port() : 0);
  }

  // Dispatches requests straight to the routes. With `unreachable` set it fails like a refused
  // connection.
  Transport InMemoryTransport() {
    return [this](const net::ClientRequest& req) -> Result<net::ClientResponse> {
      return Dispatch(req);
    };
  }

  std::vector<RecordedRequest> requests() const {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }
  RecordedRequest last() const {
    std::lock_guard<std::mutex> l(mu_);
    return requests_.empty() ? RecordedRequest{} : requests_.back();
  }

  // Knobs (set before use).
  void set_unreachable(bool v) {
    std::lock_guard<std::mutex> l(mu_);
    unreachable_ = v;
  }
  void set_expires_in(int64_t v) {
    std::lock_guard<std::mutex> l(mu_);
    expires_in_ = v;
  }
  // Makes every authenticated call answer 401 (a revoked or expired token).
  void RevokeTokens() {
    std::lock_guard<std::mutex> l(mu_);
    revoked_ = true;
  }

 private:
  static net::Response ApiError(int status, const char* code, const std::string& message) {
    return net::Response::FromJson(status,
                                   Json{{"error", {{"code", code}, {"message", message}}}});
  }

  void Record(const net::Request& r) {
    std::lock_guard<std::mutex> l(mu_);
    requests_.push_back({r.method, r.path, r.query, r.headers, r.body});
  }

  bool Authorized(const net::Request& r) {
    std::lock_guard<std::mutex> l(mu_);
    return !revoked_ && r.Header("authorization") == std::string("Bearer ") + kToken;
  }

  // Wraps a handler with recording and the bearer check.
  net::Handler Auth(net::Handler h) {
    return [this, h = std::move(h)](const net::Request& r) {
      Record(r);
      if (!Authorized(r)) {
        return ApiError(401, "unauthenticated", "invalid or expired token");
      }
      return h(r);
    };
  }

  void AddRoutes() {
    router_->Add("POST", "/api/v1/auth/login", [this](const net::Request& r) {
      Record(r);
      auto body = ParseJsonObject(r.body);
      if (!body || body->value("username", "") != kUser ||
          body->value("password", "") != kPassword) {
        return ApiError(401, "unauthenticated", "wrong username or password");
      }
      std::lock_guard<std::mutex> l(mu_);
      return net::Response::FromJson(
          200,
          Json{{"access_token", kToken}, {"token_type", "Bearer"}, {"expires_in", expires_in_}});
    });

    router_->Add("GET", "/api/v1/users", Auth([](const net::Request&) {
      return net::Response::FromJson(
          200, Json::array({Json{{"id", "usr-1"},
                                 {"username", "admin"},
                                 {"roles", {"admin", "infra", "app"}},
                                 {"created_at", "2026-11-28T12:00:00.000Z"}},
                            Json{{"id", "usr-22"},
                                 {"username", "bob"},
                                 {"roles", {"app"}},
                                 {"created_at", "2026-11-28T12:05:00.000Z"}}}));
    }));
    router_->Add("POST", "/api/v1/users", Auth([](const net::Request& r) {
      auto body = ParseJsonObject(r.body);
      if (!body || !body->contains("roles") || !(*body)["roles"].is_array()) {
        return ApiError(400, "invalid_argument", "roles required");
      }
      for (const auto& role : (*body)["roles"]) {
        if (role != "admin" && role != "infra" && role != "app") {
          return ApiError(400, "invalid_argument", "unknown role " + role.dump());
        }
      }
      return net::Response::FromJson(201, Json{{"id", "usr-new"},
                                               {"username", body->value("username", "")},
                                               {"roles", (*body)["roles"]},
                                               {"created_at", "2026-11-28T13:00:00.000Z"}});
    }));
    router_->Add("DELETE", "/api/v1/users/{id}", Auth([](const net::Request& r) {
      if (r.Param("id") != "usr-22") {
        return ApiError(404, "not_found", "user " + r.Param("id") + " not found");
      }
      return net::Response::Text(204, "", "application/json");
    }));

    router_->Add("POST", "/api/v1/provider-tokens", Auth([](const net::Request&) {
      return net::Response::FromJson(
          201, Json{{"token", kProviderToken}, {"expires_at", "2026-11-28T13:00:00.000Z"}});
    }));
    router_->Add("GET", "/api/v1/providers", Auth([](const net::Request&) {
      return net::Response::FromJson(
          200, Json::array({Json{{"id", "prv-1"},
                                 {"type", "local"},
                                 {"url", "http://127.0.0.1:7001"},
                                 {"status", "live"},
                                 {"last_seen", "2026-11-28T12:59:58.000Z"}},
                            Json{{"id", "prv-2222"},
                                 {"type", "aws"},
                                 {"url", "http://10.0.0.5:7002"},
                                 {"status", "down"},
                                 {"last_seen", "2026-11-28T11:00:00.000Z"}}}));
    }));
    router_->Add("DELETE", "/api/v1/providers/{id}", Auth([](const net::Request&) {
      return net::Response::Text(204, "", "application/json");
    }));

    router_->Add("POST", "/api/v1/credentials", Auth([](const net::Request& r) {
      auto body = ParseJsonObject(r.body);
      if (!body || !body->contains("secret") || !(*body)["secret"].is_object()) {
        return ApiError(400, "invalid_argument", "field 'secret' must be an object");
      }
      if (body->value("name", "") == "rejected") {
        return ApiError(422, "unprocessable", "the provider rejected the credential");
      }
      return net::Response::FromJson(201, Json{{"id", "crd-1"},
                                               {"name", body->value("name", "")},
                                               {"provider", body->value("provider", "")},
                                               {"created_at", "2026-11-28T13:00:00.000Z"}});
    }));
    router_->Add("GET", "/api/v1/credentials", Auth([](const net::Request&) {
      return net::Response::FromJson(200, Json::array({Json{{"id", "crd-1"},
                                                            {"name", "local"},
                                                            {"provider", "local"},
                                                            {"created_at", kCreated}}}));
    }));
    router_->Add("GET", "/api/v1/credentials/{id}", Auth([](const net::Request& r) {
      if (r.Param("id") != "crd-1") {
        return ApiError(404, "not_found", "credential not found");
      }
      return net::Response::FromJson(200, Json{{"id", "crd-1"},
                                               {"name", "local"},
                                               {"provider", "local"},
                                               {"created_at", "2026-11-28T13:00:00Z"}});
    }));
    router_->Add("DELETE", "/api/v1/credentials/{id}", Auth([](const net::Request& r) {
      if (r.Param("id") == "crd-busy") {
        return ApiError(409, "conflict", "credential crd-busy is used by 2 billed workers");
      }
      return net::Response::Text(204, "", "application/json");
    }));

    router_->Add("GET", "/api/v1/operations/{id}", Auth([](const net::Request& r) {
      if (r.Param("id") != "op-1") {
        return ApiError(404, "not_found", "operation not found");
      }
      return net::Response::FromJson(200, Operation());
    }));
    router_->Add("GET", "/api/v1/operations", Auth([](const net::Request& r) {
      Json list = Json::array();
      if (r.Query("target") == "cls-1") {
        list.push_back(Operation());
      }
      return net::Response::FromJson(200, list);
    }));
  }

  static Json Operation() {
    return Json{{"id", "op-1"},
                {"kind", "create_cluster"},
                {"target_id", "cls-1"},
                {"state", "failed"},
                {"step", 1},
                {"steps",
                 Json::array({Json{{"name", "create_vm"},
                                   {"state", "succeeded"},
                                   {"started_at", "2026-11-28T12:00:00Z"},
                                   {"finished_at", "2026-11-28T12:01:00Z"}},
                              Json{{"name", "install"},
                                   {"state", "failed"},
                                   {"started_at", "2026-11-28T12:01:00Z"},
                                   {"finished_at", nullptr}}})},
                {"error", {{"code", "provider_error"}, {"message", "ssh timed out"}}},
                {"created_at", "2026-11-28T12:00:00Z"}};
  }

  Result<net::ClientResponse> Dispatch(const net::ClientRequest& req) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (unreachable_) {
        return Error::Unavailable("request to http://fake failed: Connection refused");
      }
    }
    // "http://host:port/path?query"
    size_t scheme = req.url.find("://");
    size_t slash = req.url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
    std::string target = slash == std::string::npos ? "/" : req.url.substr(slash);
    net::Request r;
    r.method = req.method;
    r.target = target;
    std::string raw_path = target.substr(0, target.find('?'));
    if (!net::UrlDecode(raw_path, &r.path, false)) {
      return net::ClientResponse{400, {}, "bad path"};
    }
    if (size_t q = target.find('?'); q != std::string::npos) {
      std::string rest = target.substr(q + 1);
      size_t pos = 0;
      while (pos <= rest.size()) {
        size_t amp = rest.find('&', pos);
        std::string kv = rest.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
        size_t eq = kv.find('=');
        std::string k, v;
        net::UrlDecode(kv.substr(0, eq), &k, true);
        if (eq != std::string::npos) {
          net::UrlDecode(kv.substr(eq + 1), &v, true);
        }
        if (!k.empty()) {
          r.query[k] = v;
        }
        if (amp == std::string::npos) {
          break;
        }
        pos = amp + 1;
      }
    }
    for (const auto& [k, v] : req.headers) {
      std::string lower = k;
      for (char& c : lower) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      r.headers[lower] = v;
    }
    r.body = req.body;
    auto match = router_->Find(r.method, r.path);
    net::Response resp;
    if (!match) {
      resp = net::ErrorResponse(match.error());
    } else {
      r.params = match->params;
      r.route = match->pattern;
      (*match->handler)(r, [&resp](net::Response out) { resp = std::move(out); });
    }
    net::ClientResponse out;
    out.status = resp.status;
    out.headers["content-type"] = resp.content_type;
    out.body = resp.body;
    return out;
  }

  std::shared_ptr<net::Router> router_;
  std::unique_ptr<net::HttpServer> server_;
  mutable std::mutex mu_;
  std::vector<RecordedRequest> requests_;
  bool unreachable_ = false;
  bool revoked_ = false;
  int64_t expires_in_ = 3600;
};

}  // namespace canopy::cli::fake
