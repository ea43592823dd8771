// A tiny fake of the root's REST API for CLI tests: canned users, providers, credentials, offers,
// clusters, workers, services and operations behind bearer-token auth. Clusters, workers and
// services are a little stateful (create, delete and actions change what later GETs return);
// operations follow a script, one state further per GET, and so does GET of a service after
// deploy, undeploy and scale. Reachable in memory (InMemoryTransport, no sockets) or over
// HTTP (StartServer: net::HttpServer on 127.0.0.1, port 0). Records every request. Thread-safe.
#pragma once

#include <algorithm>
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

  // Serves the API on 127.0.0.1:<free port>, over TLS when `tls` is given.
  Status StartServer(net::TlsServerConfigPtr tls = nullptr) {
    net::ServerOptions opts;
    opts.port = 0;
    opts.io_threads = 1;
    opts.worker_threads = 2;
    opts.tls = tls;
    https_ = tls != nullptr;
    CANOPY_ASSIGN_OR_RETURN(server_,
                            net::HttpServer::Start(opts, router_, net::ErrorResponse, nullptr));
    return OkStatus();
  }
  std::string url() const {
    return std::string(https_ ? "https" : "http") +
           "://127.0.0.1:" + std::to_string(server_ ? server_->port() : 0);
  }
  // Serves `pem` at GET /ca.crt (public), as every Canopy root does. Call before StartServer.
  void ServeCa(std::string pem) {
    router_->Add("GET", "/ca.crt", [pem = std::move(pem)](const net::Request&) {
      return net::Response::Text(200, pem, "application/x-pem-file");
    });
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

  // Operation ids the cluster and worker routes answer with.
  static constexpr const char* kOpCreate = "op_create";
  static constexpr const char* kOpDelete = "op_delete";
  static constexpr const char* kOpWorkers = "op_workers";
  static constexpr const char* kOpWorker = "op_worker";

  // The states GET /api/v1/operations/{id} returns, one further per GET (the last one repeats).
  void ScriptOperation(const std::string& id, std::vector<Json> states) {
    std::lock_guard<std::mutex> l(mu_);
    scripts_[id] = Script{std::move(states), 0};
  }
  // How many times GET /api/v1/operations/{id} was asked.
  size_t polls(const std::string& id) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = scripts_.find(id);
    return it == scripts_.end() ? 0 : it->second.next;
  }

  // The services GET /api/v1/services/{id} returns, one further per GET (the last one repeats).
  // Without one, deploy, undeploy and scale script a short default (see AddServiceRoutes).
  void ScriptService(const std::string& id, std::vector<Json> states) {
    std::lock_guard<std::mutex> l(mu_);
    service_scripts_[id] = Script{std::move(states), 0, true};
  }
  // How many times GET /api/v1/services/{id} was asked.
  size_t service_polls(const std::string& id) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = service_polls_.find(id);
    return it == service_polls_.end() ? 0 : it->second;
  }

  // A service as the API returns it. Seeded: svc-1 "web" (undeployed, 2 replicas), svc-2 "api"
  // (deployed, 2 instances running) and svc-3 named "svc-1" (an id wins over a name).
  static Json Service(const std::string& id, const std::string& name, int64_t replicas,
                      bool deployed, const std::string& state, Json instances = Json::array()) {
    return Json{{"id", id},
                {"name", name},
                {"command", {"python3", "-m", "http.server", "8080"}},
                {"ports", Json::array({Json{{"port", 8080}, {"protocol", "tcp"}}})},
                {"cpu_millis", 500},
                {"memory_mib", 256},
                {"replicas", replicas},
                {"cluster_id", nullptr},
                {"env", {{"MODE", "prod"}}},
                {"restart", "always"},
                {"deployed", deployed},
                {"state", state},
                {"reason", nullptr},
                {"instances", std::move(instances)},
                {"created_at", kCreated},
                {"updated_at", kCreated}};
  }
  // Replica `replica` (1-based) of service `id` in `state`; placed on cls_1 unless pending.
  static Json Instance(const std::string& id, int64_t replica, const std::string& state,
                       const std::string& reason = "") {
    bool placed = state != "pending";
    std::string n = std::to_string(replica);
    return Json{{"job_id", id + "-r" + n},
                {"replica", replica},
                {"cluster_id", placed ? Json("cls_1") : Json()},
                {"node_id", placed ? Json("node-" + n) : Json()},
                {"worker_id", placed ? Json("wrk_" + n) : Json()},
                {"address", state == "running" ? Json("198.18.0.1" + n) : Json()},
                {"state", state},
                {"reason", reason.empty() ? Json() : Json(reason)}};
  }
  // `svc` with `states.size()` instances in those states, its state and reason set.
  static Json WithInstances(Json svc, const std::vector<std::string>& states,
                            const std::string& service_state, const std::string& reason = "") {
    Json instances = Json::array();
    for (size_t i = 0; i < states.size(); ++i) {
      instances.push_back(Instance(svc["id"].get<std::string>(), static_cast<int64_t>(i + 1),
                                   states[i], states[i] == "pending" ? reason : ""));
    }
    svc["instances"] = std::move(instances);
    svc["state"] = service_state;
    svc["reason"] = reason.empty() ? Json() : Json(reason);
    return svc;
  }

  // A script: "pending", then "running" at each step in turn, then "succeeded" (fail_at < 0) or
  // "failed" at step fail_at with `message`.
  static std::vector<Json> OperationStates(const std::string& id, const std::string& kind,
                                           const std::string& target,
                                           const std::vector<std::string>& steps, int fail_at = -1,
                                           const std::string& message = "") {
    auto op = [&](const std::string& state, size_t index) {
      Json st = Json::array();
      for (size_t i = 0; i < steps.size(); ++i) {
        std::string s = i < index ? "succeeded" : "pending";
        if (i == index && state == "running") s = "running";
        if (i == index && state == "failed") s = "failed";
        st.push_back(Json{{"name", steps[i]},
                          {"state", s},
                          {"started_at", i <= index ? Json("2026-11-28T12:00:00.000Z") : Json()},
                          {"finished_at", i < index ? Json("2026-11-28T12:00:01.000Z") : Json()}});
      }
      Json j{{"id", id},
             {"kind", kind},
             {"target_id", target},
             {"state", state},
             {"step", index < steps.size() && state != "pending" ? Json(steps[index]) : Json()},
             {"step_index", state == "pending" ? 0 : static_cast<int64_t>(index)},
             {"steps", st},
             {"attempt", 1},
             {"created_at", "2026-11-28T12:00:00.000Z"},
             {"updated_at", "2026-11-28T12:00:00.000Z"}};
      if (state == "failed") {
        j["error"] = Json{{"code", "provider_error"}, {"message", message}};
      }
      return j;
    };
    std::vector<Json> out{op("pending", 0)};
    for (size_t i = 0; i < steps.size(); ++i) {
      if (fail_at >= 0 && static_cast<size_t>(fail_at) == i) {
        out.push_back(op("failed", i));
        return out;
      }
      out.push_back(op("running", i));
    }
    out.push_back(op("succeeded", steps.size()));
    return out;
  }

 private:
  static net::Response ApiError(int status, const char* code, const std::string& message) {
    return net::Response::FromJson(status, Json{{"error", {{"code", code}, {"message", message}}}});
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

  static Json Cluster(const std::string& id, const std::string& name, const std::string& state,
                      int64_t workers) {
    return Json{{"id", id},
                {"name", name},
                {"kind", "cloud"},
                {"state", state},
                {"credential_id", "crd-1"},
                {"provider", "local"},
                {"region", "local"},
                {"instance_type", "small-a"},
                {"image", "img-debian"},
                {"disk_gb", 10},
                {"url", nullptr},
                {"address", "198.18.0.10"},
                {"software_version", "0.1.0"},
                {"link_interval_seconds", 10},
                {"last_seen", nullptr},
                {"paired_at", nullptr},
                {"node_count", 1},
                {"nodes", Json::array()},
                {"resources", Json::object()},
                {"worker_count", workers},
                {"created_at", kCreated},
                {"updated_at", kCreated}};
  }

  static Json Worker(const std::string& id, const std::string& cluster, const std::string& name,
                     const std::string& state) {
    return Json{{"id", id},
                {"cluster_id", cluster},
                {"name", name},
                {"state", state},
                {"instance_type", "small-a"},
                {"image", "img-debian"},
                {"disk_gb", 10},
                {"address", nullptr},
                {"provider_id", "i-" + id},
                {"node_id", nullptr},
                {"last_error", nullptr},
                {"created_at", kCreated},
                {"updated_at", kCreated}};
  }

  // Canned clusters: cls_1 "demo" with two workers, cls_2 "empty" without, and cls_3 named
  // "cls_1" (an id wins over a name).
  void SeedClusters() {
    clusters_ = {Cluster("cls_1", "demo", "ACTIVE", 2), Cluster("cls_2", "empty", "ACTIVE", 0),
                 Cluster("cls_3", "cls_1", "ACTIVE", 0)};
    workers_["cls_1"] = {Worker("wrk_1", "cls_1", "demo-w1", "ACTIVE"),
                         Worker("wrk_2", "cls_1", "demo-w2", "STOPPED")};
    workers_["cls_1"][0]["system"] = {{"os", "Debian GNU/Linux 11 (bullseye)"},
                                      {"kernel", "5.10.0-28-amd64"},
                                      {"arch", "x86_64"},
                                      {"cpus", 2},
                                      {"memory_mib", 3942}};
    scripts_[kOpCreate] =
        Script{OperationStates(kOpCreate, "cluster.create", "cls_new",
                               {"instance", "firewalls", "install", "pair", "workers"}),
               0};
    scripts_[kOpDelete] = Script{OperationStates(kOpDelete, "cluster.delete", "cls_2",
                                                 {"instance", "firewalls", "identity", "rows"}),
                                 0};
    scripts_[kOpWorkers] =
        Script{OperationStates(kOpWorkers, "workers.provision", "cls_1", {"instances", "join"}), 0};
    scripts_[kOpWorker] =
        Script{OperationStates(kOpWorker, "worker.shutdown", "wrk_1", {"instance"}), 0};
  }

  // Index of cluster `id` in clusters_ or -1 (mu_ held).
  int FindCluster(const std::string& id) const {
    for (size_t i = 0; i < clusters_.size(); ++i) {
      if (clusters_[i]["id"] == id) return static_cast<int>(i);
    }
    return -1;
  }

  void AddClusterRoutes() {
    router_->Add(
        "GET", "/api/v1/offers", Auth([](const net::Request& r) {
          if (r.Query("credential_id") != "crd-1") {
            return ApiError(404, "not_found",
                            "credential " + r.Query("credential_id") + " not found");
          }
          if (!r.Query("provider").empty() && r.Query("provider") != "local") {
            return ApiError(400, "invalid_argument",
                            "credential crd-1 is for provider local, not " + r.Query("provider"));
          }
          return net::Response::FromJson(
              200, Json{{"provider", "local"},
                        {"regions", {"local", "local-2"}},
                        {"instance_types", Json::array({Json{{"name", "big"},
                                                             {"vcpus", 4},
                                                             {"memory_mib", 8192},
                                                             {"gpus", 0},
                                                             {"price_hour", 0.2}},
                                                        Json{{"name", "small-b"},
                                                             {"vcpus", 1},
                                                             {"memory_mib", 1024},
                                                             {"gpus", 0},
                                                             {"price_hour", 0.02}},
                                                        Json{{"name", "roomy"},
                                                             {"vcpus", 1},
                                                             {"memory_mib", 2048},
                                                             {"gpus", 0},
                                                             {"price_hour", 0.01}},
                                                        Json{{"name", "pricey"},
                                                             {"vcpus", 1},
                                                             {"memory_mib", 1024},
                                                             {"gpus", 0},
                                                             {"price_hour", 0.05}},
                                                        Json{{"name", "small-a"},
                                                             {"vcpus", 1},
                                                             {"memory_mib", 1024},
                                                             {"gpus", 0},
                                                             {"price_hour", 0.02}}})},
                        {"images",
                         Json::array({Json{{"id", "img-debian"}, {"name", "Debian 12"}},
                                      Json{{"id", "img-ubuntu"}, {"name", "Ubuntu 24.04"}}})}});
        }));

    router_->Add("GET", "/api/v1/clusters", Auth([this](const net::Request&) {
                   std::lock_guard<std::mutex> l(mu_);
                   return net::Response::FromJson(200, Json(clusters_));
                 }));
    router_->Add("GET", "/api/v1/clusters/{id}", Auth([this](const net::Request& r) {
                   std::lock_guard<std::mutex> l(mu_);
                   int i = FindCluster(r.Param("id"));
                   if (i < 0)
                     return ApiError(404, "not_found", "cluster " + r.Param("id") + " not found");
                   return net::Response::FromJson(200, clusters_[static_cast<size_t>(i)]);
                 }));
    router_->Add(
        "POST", "/api/v1/clusters", Auth([this](const net::Request& r) {
          auto body = ParseJsonObject(r.body);
          if (!body) return ApiError(400, "invalid_argument", "body must be a JSON object");
          std::string name = body->value("name", "");
          if (name == "demo") {
            return ApiError(409, "already_exists", "a cluster named demo already exists");
          }
          int64_t workers = 0;
          if (body->contains("workers")) workers = (*body)["workers"].value("count", int64_t{0});
          Json c = Cluster("cls_new", name, "PROVISIONING", 0);
          c["region"] = body->value("region", "");
          c["instance_type"] = body->value("instance_type", "");
          c["image"] = body->value("image", "");
          c["disk_gb"] = body->value("disk_gb", int64_t{0});
          c["address"] = nullptr;
          std::lock_guard<std::mutex> l(mu_);
          // What later GETs see: the operation has made it ACTIVE with its workers.
          Json done = c;
          done["state"] = "ACTIVE";
          done["address"] = "198.18.0.20";
          done["worker_count"] = workers;
          clusters_.push_back(done);
          for (int64_t i = 1; i <= workers; ++i) {
            workers_["cls_new"].push_back(Worker("wrk_n" + std::to_string(i), "cls_new",
                                                 name + "-w" + std::to_string(i), "ACTIVE"));
          }
          return net::Response::FromJson(202, Json{{"cluster", c}, {"operation_id", kOpCreate}});
        }));
    router_->Add(
        "DELETE", "/api/v1/clusters/{id}", Auth([this](const net::Request& r) {
          std::lock_guard<std::mutex> l(mu_);
          int i = FindCluster(r.Param("id"));
          if (i < 0) return ApiError(404, "not_found", "cluster " + r.Param("id") + " not found");
          size_t billed = workers_[r.Param("id")].size();
          if (billed > 0) {
            return ApiError(409, "failed_precondition",
                            "cluster " + r.Param("id") + " has " + std::to_string(billed) +
                                " billed workers; terminate them first");
          }
          Json c = clusters_[static_cast<size_t>(i)];
          c["state"] = "DELETING";
          clusters_.erase(clusters_.begin() + i);
          return net::Response::FromJson(202, Json{{"cluster", c}, {"operation_id", kOpDelete}});
        }));

    router_->Add("GET", "/api/v1/clusters/{id}/workers", Auth([this](const net::Request& r) {
                   std::lock_guard<std::mutex> l(mu_);
                   if (FindCluster(r.Param("id")) < 0) {
                     return ApiError(404, "not_found", "cluster " + r.Param("id") + " not found");
                   }
                   auto it = workers_.find(r.Param("id"));
                   return net::Response::FromJson(
                       200, it == workers_.end() ? Json::array() : Json(it->second));
                 }));
    router_->Add("GET", "/api/v1/clusters/{id}/workers/{wid}", Auth([this](const net::Request& r) {
                   std::lock_guard<std::mutex> l(mu_);
                   for (const Json& w : workers_[r.Param("id")]) {
                     if (w.value("id", "") == r.Param("wid")) {
                       return net::Response::FromJson(200, w);
                     }
                   }
                   return ApiError(404, "not_found", "worker not found");
                 }));
    router_->Add("POST", "/api/v1/clusters/{id}/workers", Auth([this](const net::Request& r) {
                   auto body = ParseJsonObject(r.body);
                   if (!body || body->value("count", int64_t{0}) < 1) {
                     return ApiError(400, "invalid_argument", "count must be at least 1");
                   }
                   std::lock_guard<std::mutex> l(mu_);
                   std::string cid = r.Param("id");
                   if (FindCluster(cid) < 0) return ApiError(404, "not_found", "cluster not found");
                   Json added = Json::array();
                   auto& list = workers_[cid];
                   for (int64_t i = 0; i < body->value("count", int64_t{0}); ++i) {
                     std::string n = std::to_string(list.size() + 1);
                     Json w = Worker("wrk_a" + n, cid, "added-" + n, "BOOTING");
                     if (body->contains("instance_type"))
                       w["instance_type"] = (*body)["instance_type"];
                     added.push_back(w);
                     w["state"] = "ACTIVE";
                     list.push_back(w);
                   }
                   return net::Response::FromJson(
                       202, Json{{"workers", added}, {"operation_id", kOpWorkers}});
                 }));
    auto act = [this](const net::Request& r, const std::string& action) {
      std::lock_guard<std::mutex> l(mu_);
      auto& list = workers_[r.Param("id")];
      auto it = std::find_if(list.begin(), list.end(),
                             [&](const Json& w) { return w["id"] == r.Param("wid"); });
      if (it == list.end()) return ApiError(404, "not_found", "worker not found");
      std::string state = (*it)["state"];
      static const std::map<std::string, std::pair<std::string, std::string>> kMoves = {
          // action -> (required state, state after the operation)
          {"stop", {"ACTIVE", "STOPPED"}},
          {"restart", {"STOPPED", "ACTIVE"}},
          {"terminate", {"", "TERMINATED"}},
          {"recreate", {"", "ACTIVE"}},
          {"delete", {"", ""}}};
      auto move = kMoves.find(action);
      if (move == kMoves.end()) return ApiError(404, "not_found", "no such action");
      if (!move->second.first.empty() && state != move->second.first) {
        return ApiError(409, "conflict",
                        "worker " + r.Param("wid") + " is " + state + "; cannot " + action + " it");
      }
      Json before = *it;
      if (action == "delete") {
        before["state"] = "TERMINATING";
        list.erase(it);
      } else {
        (*it)["state"] = move->second.second;
      }
      return net::Response::FromJson(202, Json{{"worker", before}, {"operation_id", kOpWorker}});
    };
    router_->Add("POST", "/api/v1/clusters/{id}/workers/{wid}/{action}",
                 Auth([act](const net::Request& r) {
                   if (r.Param("action") == "delete") {
                     return ApiError(404, "not_found", "no such action");
                   }
                   return act(r, r.Param("action"));
                 }));
    router_->Add("DELETE", "/api/v1/clusters/{id}/workers/{wid}",
                 Auth([act](const net::Request& r) { return act(r, "delete"); }));
  }

  // Index of service `id` in services_ or -1 (mu_ held).
  int FindService(const std::string& id) const {
    for (size_t i = 0; i < services_.size(); ++i) {
      if (services_[i]["id"] == id) return static_cast<int>(i);
    }
    return -1;
  }

  // Scripts GETs of service `id` (mu_ held) unless a test has.
  void DefaultServiceScript(const std::string& id, std::vector<Json> states) {
    auto it = service_scripts_.find(id);
    if (it != service_scripts_.end() && it->second.pinned) return;
    service_scripts_[id] = Script{std::move(states), 0, false};
  }

  void AddServiceRoutes() {
    services_ = {Service("svc-1", "web", 2, false, "undeployed"),
                 WithInstances(Service("svc-2", "api", 2, true, "running"), {"running", "running"},
                               "running"),
                 Service("svc-3", "svc-1", 1, false, "undeployed")};
    services_[1]["cluster_id"] = "cls_1";
    services_[1]["ports"] =
        Json::array({Json{{"port", 80}, {"protocol", "tcp"}, {"source_cidrs", {"10.0.0.0/8"}}},
                     Json{{"port", 53}, {"protocol", "udp"}}});

    router_->Add("GET", "/api/v1/services", Auth([this](const net::Request&) {
                   std::lock_guard<std::mutex> l(mu_);
                   return net::Response::FromJson(200, Json(services_));
                 }));
    router_->Add("GET", "/api/v1/services/{id}", Auth([this](const net::Request& r) {
                   std::lock_guard<std::mutex> l(mu_);
                   std::string id = r.Param("id");
                   auto sc = service_scripts_.find(id);
                   if (sc != service_scripts_.end() && !sc->second.states.empty()) {
                     ++service_polls_[id];
                     size_t i = std::min(sc->second.next, sc->second.states.size() - 1);
                     ++sc->second.next;
                     return net::Response::FromJson(200, sc->second.states[i]);
                   }
                   int i = FindService(id);
                   if (i < 0) return ApiError(404, "not_found", "service " + id + " not found");
                   ++service_polls_[id];
                   return net::Response::FromJson(200, services_[static_cast<size_t>(i)]);
                 }));
    router_->Add(
        "POST", "/api/v1/services", Auth([this](const net::Request& r) {
          auto body = ParseJsonObject(r.body);
          if (!body) return ApiError(400, "invalid_argument", "body must be a JSON object");
          std::string name = body->value("name", "");
          if (name.empty()) return ApiError(400, "invalid_argument", "name is required");
          if (!body->contains("command") || !(*body)["command"].is_array() ||
              (*body)["command"].empty()) {
            return ApiError(400, "invalid_argument", "command must be a non-empty array");
          }
          std::lock_guard<std::mutex> l(mu_);
          for (const Json& svc : services_) {
            if (svc["name"] == name) {
              return ApiError(409, "already_exists", "a service named " + name + " already exists");
            }
          }
          Json svc =
              Service("svc-new", name, body->value("replicas", int64_t{1}), false, "undeployed");
          for (const char* k :
               {"command", "ports", "cpu_millis", "memory_mib", "cluster_id", "env", "restart"}) {
            if (body->contains(k)) svc[k] = (*body)[k];
          }
          if (!body->contains("env")) svc["env"] = Json::object();
          services_.push_back(svc);
          return net::Response::FromJson(201, svc);
        }));
    router_->Add(
        "POST", "/api/v1/services/import", Auth([this](const net::Request& r) {
          auto body = ParseJsonObject(r.body);
          if (!body || !body->contains("applications") || !(*body)["applications"].is_array()) {
            return ApiError(400, "invalid_argument", "the SLA has no applications");
          }
          std::lock_guard<std::mutex> l(mu_);
          Json created = Json::array();
          for (const Json& app : (*body)["applications"]) {
            for (const Json& ms : app.value("microservices", Json::array())) {
              std::string id = "svc-imp" + std::to_string(created.size() + 1);
              Json svc = Service(id, ms.value("microservice_name", id), 1, false, "undeployed");
              if (ms.contains("cmd")) svc["command"] = ms["cmd"];
              services_.push_back(svc);
              created.push_back(svc);
            }
          }
          return net::Response::FromJson(201, Json{{"services", created}});
        }));
    router_->Add("DELETE", "/api/v1/services/{id}", Auth([this](const net::Request& r) {
                   std::lock_guard<std::mutex> l(mu_);
                   std::string id = r.Param("id");
                   int i = FindService(id);
                   if (i < 0) return ApiError(404, "not_found", "service " + id + " not found");
                   if (services_[static_cast<size_t>(i)]["deployed"] == true) {
                     return ApiError(409, "conflict",
                                     "service " + id + " is deployed; undeploy it first");
                   }
                   services_.erase(services_.begin() + i);
                   return net::Response::Text(204, "", "application/json");
                 }));
    // deploy: pending, then starting, then running (each GET one further); undeploy: removing,
    // then gone; scale: the new replicas pending, then all running.
    router_->Add(
        "POST", "/api/v1/services/{id}/{action}", Auth([this](const net::Request& r) {
          std::string id = r.Param("id");
          std::string action = r.Param("action");
          Json body = Json::object();
          if (!r.body.empty()) {
            auto parsed = ParseJsonObject(r.body);
            if (!parsed) return ApiError(400, "invalid_argument", "body must be a JSON object");
            body = *parsed;
          }
          std::lock_guard<std::mutex> l(mu_);
          int i = FindService(id);
          if (i < 0) return ApiError(404, "not_found", "service " + id + " not found");
          Json& svc = services_[static_cast<size_t>(i)];
          auto replicas_of = [&body](int64_t dflt) -> int64_t {
            if (!body.contains("replicas")) return dflt;
            return body["replicas"].is_number_integer() ? body["replicas"].get<int64_t>() : -1;
          };
          auto all = [](int64_t n, const std::string& state) {
            return std::vector<std::string>(static_cast<size_t>(n), state);
          };
          if (action == "deploy") {
            int64_t n = replicas_of(svc["replicas"].get<int64_t>());
            if (n < 1) return ApiError(400, "invalid_argument", "replicas must be at least 1");
            svc["replicas"] = n;
            svc["deployed"] = true;
            Json pending = WithInstances(svc, all(n, "pending"), "pending");
            DefaultServiceScript(id, {pending, WithInstances(svc, all(n, "starting"), "deploying"),
                                      WithInstances(svc, all(n, "running"), "running")});
            svc = WithInstances(svc, all(n, "running"), "running");
            return net::Response::FromJson(202, pending);
          }
          if (action == "undeploy") {
            svc["deployed"] = false;
            Json removing = WithInstances(
                svc, all(static_cast<int64_t>(svc["instances"].size()), "removing"), "undeployed");
            svc = WithInstances(svc, {}, "undeployed");
            DefaultServiceScript(id, {removing, svc});
            return net::Response::FromJson(202, removing);
          }
          if (action == "scale") {
            int64_t n = replicas_of(-1);
            if (n < 0) return ApiError(400, "invalid_argument", "replicas must be 0 or more");
            svc["replicas"] = n;
            if (svc["deployed"] != true) return net::Response::FromJson(202, svc);
            std::vector<std::string> states = all(n, "pending");
            for (size_t k = 0; k < states.size() && k < svc["instances"].size(); ++k) {
              states[k] = svc["instances"][k]["state"].get<std::string>();
            }
            Json scaled = WithInstances(svc, states, "deploying");
            svc = WithInstances(svc, all(n, "running"), "running");
            DefaultServiceScript(id, {scaled, svc});
            return net::Response::FromJson(202, scaled);
          }
          return ApiError(404, "not_found", "no such action");
        }));
  }

  void AddRoutes() {
    SeedClusters();
    AddClusterRoutes();
    AddServiceRoutes();
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
                   return net::Response::FromJson(201,
                                                  Json{{"id", "usr-new"},
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
                       201,
                       Json{{"token", kProviderToken}, {"expires_at", "2026-11-28T13:00:00.000Z"}});
                 }));
    router_->Add("GET", "/api/v1/providers", Auth([](const net::Request&) {
                   return net::Response::FromJson(
                       200, Json::array({Json{{"id", "prv-1"},
                                              {"type", "local"},
                                              {"url", "http://127.0.0.1:7001"},
                                              {"status", "live"},
                                              {"approved", true},
                                              {"last_seen", "2026-11-28T12:59:58.000Z"}},
                                         Json{{"id", "prv-2222"},
                                              {"type", "aws"},
                                              {"url", "http://10.0.0.5:7002"},
                                              {"status", "down"},
                                              {"approved", false},
                                              {"last_seen", "2026-11-28T11:00:00.000Z"}}}));
                 }));
    router_->Add("DELETE", "/api/v1/providers/{id}", Auth([](const net::Request&) {
                   return net::Response::Text(204, "", "application/json");
                 }));
    router_->Add("POST", "/api/v1/providers/{id}/approve", Auth([](const net::Request& r) {
                   if (r.Param("id") != "prv-2222") {
                     return ApiError(404, "not_found", "provider adapter not found");
                   }
                   return net::Response::FromJson(
                       200, Json{{"id", "prv-2222"}, {"type", "aws"}, {"approved", true}});
                 }));
    router_->Add("POST", "/api/v1/auth/password", Auth([](const net::Request& r) {
                   auto body = ParseJsonObject(r.body);
                   if (!body || body->value("current_password", "") != kPassword) {
                     return ApiError(401, "unauthenticated", "current password is wrong");
                   }
                   return net::Response::Text(204, "", "application/json");
                 }));
    router_->Add("PUT", "/api/v1/users/{id}/password", Auth([](const net::Request& r) {
                   if (r.Param("id") != "usr-2") {
                     return ApiError(404, "not_found", "user 'x' not found");
                   }
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
                   return net::Response::FromJson(201,
                                                  Json{{"id", "crd-1"},
                                                       {"name", body->value("name", "")},
                                                       {"provider", body->value("provider", "")},
                                                       {"created_at", "2026-11-28T13:00:00.000Z"}});
                 }));
    router_->Add("GET", "/api/v1/credentials", Auth([](const net::Request&) {
                   return net::Response::FromJson(200,
                                                  Json::array({Json{{"id", "crd-1"},
                                                                    {"name", "local"},
                                                                    {"provider", "local"},
                                                                    {"adapter_id", "prv-1"},
                                                                    {"created_at", kCreated}}}));
                 }));
    router_->Add("GET", "/api/v1/credentials/{id}", Auth([](const net::Request& r) {
                   if (r.Param("id") != "crd-1") {
                     return ApiError(404, "not_found", "credential not found");
                   }
                   return net::Response::FromJson(200,
                                                  Json{{"id", "crd-1"},
                                                       {"name", "local"},
                                                       {"provider", "local"},
                                                       {"adapter_id", "prv-1"},
                                                       {"created_at", "2026-11-28T13:00:00Z"}});
                 }));
    router_->Add("DELETE", "/api/v1/credentials/{id}", Auth([](const net::Request& r) {
                   if (r.Param("id") == "crd-busy") {
                     return ApiError(409, "conflict",
                                     "credential crd-busy is used by 2 billed workers");
                   }
                   return net::Response::Text(204, "", "application/json");
                 }));

    router_->Add("GET", "/api/v1/operations/{id}", Auth([this](const net::Request& r) {
                   {
                     std::lock_guard<std::mutex> l(mu_);
                     auto it = scripts_.find(r.Param("id"));
                     if (it != scripts_.end() && !it->second.states.empty()) {
                       Script& sc = it->second;
                       size_t i = std::min(sc.next, sc.states.size() - 1);
                       ++sc.next;
                       return net::Response::FromJson(200, sc.states[i]);
                     }
                   }
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
                {"steps", Json::array({Json{{"name", "create_vm"},
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
  bool https_ = false;
  mutable std::mutex mu_;
  std::vector<RecordedRequest> requests_;
  struct Script {
    std::vector<Json> states;
    size_t next = 0;      // GETs so far
    bool pinned = false;  // set by the test (actions keep it)
  };
  std::vector<Json> clusters_;
  std::map<std::string, std::vector<Json>> workers_;  // by cluster id
  std::map<std::string, Script> scripts_;             // by operation id
  std::vector<Json> services_;
  std::map<std::string, Script> service_scripts_;  // by service id
  std::map<std::string, size_t> service_polls_;    // GETs of /api/v1/services/{id}, by id
  bool unreachable_ = false;
  bool revoked_ = false;
  int64_t expires_in_ = 3600;
};

}  // namespace canopy::cli::fake
