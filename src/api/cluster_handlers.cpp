// Clusters: edge pairing tokens, pairing, the clusters' long-poll link (state reports, command
// delivery and acks), the OFFLINE check, list/get. Protocol: src/cluster/README.md.
#include <time.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/clusters.h"
#include "api/services.h"
#include "api/detail/context.h"
#include "common/ids.h"

namespace canopy::api {

// ---- the hub that parks long-poll link calls ----

class ClusterLinkHub {
 public:
  using Fire = std::function<void()>;
  using SteadyTime = std::chrono::steady_clock::time_point;

  ~ClusterLinkHub() {
    std::thread t;
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
      t = std::move(thread_);
    }
    cv_.notify_all();
    if (t.joinable()) t.join();
  }

  uint64_t Seq(const std::string& cluster) {
    std::lock_guard<std::mutex> l(mu_);
    return seq_[cluster];
  }

  // Parks `fire` until Notify(cluster), the deadline, or a newer Park for the same cluster. If a
  // Notify happened since Seq() returned `seen`, it fires at once. `fire` runs on the hub thread.
  void Park(const std::string& cluster, uint64_t seen, SteadyTime deadline, Fire fire) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
      EnsureThread();
      auto it = waiters_.find(cluster);
      if (it != waiters_.end()) {
        ready_.push_back(std::move(it->second.fire));  // the older call answers now
        waiters_.erase(it);
      }
      bool due = seq_[cluster] != seen;
      waiters_[cluster] = Waiter{deadline, std::move(fire), due};
    }
    cv_.notify_all();
  }

  void Notify(const std::string& cluster) {
    {
      std::lock_guard<std::mutex> l(mu_);
      ++seq_[cluster];
      auto it = waiters_.find(cluster);
      if (it != waiters_.end()) it->second.due = true;
    }
    cv_.notify_all();
  }

  // Runs `fn` every `every` on the hub thread (once; later calls are ignored).
  void StartPeriodic(std::chrono::milliseconds every, std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (periodic_ || stop_) return;
      periodic_ = std::move(fn);
      every_ = std::max(every, std::chrono::milliseconds(50));
      next_periodic_ = std::chrono::steady_clock::now() + every_;
      EnsureThread();
    }
    cv_.notify_all();
  }

 private:
  struct Waiter {
    SteadyTime deadline;
    Fire fire;
    bool due = false;
  };

  void EnsureThread() {
    if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
  }

  void Loop() {
    std::unique_lock<std::mutex> l(mu_);
    while (!stop_) {
      auto now = std::chrono::steady_clock::now();
      std::vector<Fire> fire = std::move(ready_);
      ready_.clear();
      for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (it->second.due || it->second.deadline <= now) {
          fire.push_back(std::move(it->second.fire));
          it = waiters_.erase(it);
        } else {
          ++it;
        }
      }
      bool run_periodic = periodic_ && now >= next_periodic_;
      if (run_periodic) next_periodic_ = now + every_;
      auto periodic = run_periodic ? periodic_ : std::function<void()>();
      if (!fire.empty() || periodic) {
        l.unlock();
        for (auto& f : fire) f();
        if (periodic) periodic();
        l.lock();
        continue;
      }
      SteadyTime wake = periodic_ ? next_periodic_ : now + std::chrono::hours(1);
      for (const auto& [id, w] : waiters_) wake = std::min(wake, w.deadline);
      cv_.wait_until(l, wake, [&] {
        if (stop_ || !ready_.empty()) return true;
        for (const auto& [id, w] : waiters_) {
          if (w.due) return true;
        }
        return false;
      });
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, uint64_t> seq_;
  std::map<std::string, Waiter> waiters_;
  std::vector<Fire> ready_;
  std::function<void()> periodic_;
  std::chrono::milliseconds every_{1000};
  SteadyTime next_periodic_{};
  bool stop_ = false;
  std::thread thread_;
};

std::shared_ptr<ClusterLinkHub> NewClusterLinkHub() { return std::make_shared<ClusterLinkHub>(); }

namespace {

using detail::Iso;
using detail::JsonResponse;
using detail::ParseBody;
using detail::Principal;

constexpr std::string_view kClusterTokenPrefix = "cct_";
constexpr std::string_view kClusterKeyPrefix = "ck_";
constexpr size_t kMaxNodesPerReport = 10000;
constexpr size_t kMaxCommandsPerReply = 50;

using detail::LoadCluster;
using detail::NotFoundOr;

// "2026-01-02T03:04:05(.123)Z" -> time point.
std::optional<TimePoint> ParseIso(const std::string& s) {
  struct tm tm {};
  int ms = 0;
  const char* end = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr) return std::nullopt;
  std::string_view rest(end);
  if (!rest.empty() && rest[0] == '.') {
    size_t digits = 0;
    rest.remove_prefix(1);
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
    if (digits == 0 || digits > 9) return std::nullopt;
    std::string_view frac = rest.substr(0, std::min<size_t>(digits, 3));
    std::from_chars(frac.data(), frac.data() + frac.size(), ms);
    for (size_t i = frac.size(); i < 3; ++i) ms *= 10;
    rest.remove_prefix(digits);
  }
  if (rest != "Z") return std::nullopt;
  time_t t = timegm(&tm);
  if (t < 0) return std::nullopt;
  return FromUnixMillis(static_cast<int64_t>(t) * 1000 + ms);
}

Json NodeToJson(const core::ClusterNodeInfo& n) {
  return {{"id", n.id},
          {"address", n.address},
          {"state", n.state},
          {"resources",
           {{"cpu_millis", n.cpu_millis},
            {"memory_mib", n.memory_mib},
            {"memory_available_mib", n.memory_available_mib},
            {"load1", n.load1}}},
          {"draining", n.draining},
          {"last_seen", n.last_seen ? Json(Iso(*n.last_seen)) : Json(nullptr)}};
}

template <class T>
Json Opt(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}

// ---- validation of a link report ----

Result<int64_t> NonNegInt(const Json& obj, std::string_view field) {
  CANOPY_ASSIGN_OR_RETURN(auto v, GetOptInt(obj, field, 0, int64_t{1} << 40));
  return v.value_or(0);
}

Result<Json> ParseResources(const Json& body, std::string_view field) {
  if (!body.contains(field) || body[field].is_null()) return Json::object();
  const Json& r = body[std::string(field)];
  if (!r.is_object()) return Error::InvalidArgument(fmt::format("field '{}' must be an object", field));
  Json out = Json::object();
  for (const char* k : {"cpu_millis", "memory_mib", "memory_available_mib"}) {
    CANOPY_ASSIGN_OR_RETURN(int64_t v, NonNegInt(r, k));
    out[k] = v;
  }
  if (r.contains("load1") && !r["load1"].is_null()) {
    if (!r["load1"].is_number() || r["load1"].get<double>() < 0 || r["load1"].get<double>() > 1e6) {
      return Error::InvalidArgument("field 'load1' must be a non-negative number");
    }
    out["load1"] = r["load1"].get<double>();
  }
  if (r.contains("nodes_online")) {
    CANOPY_ASSIGN_OR_RETURN(int64_t v, NonNegInt(r, "nodes_online"));
    out["nodes_online"] = v;
  }
  return out;
}

Result<std::vector<core::ClusterNodeInfo>> ParseNodes(const Json& body) {
  std::vector<core::ClusterNodeInfo> out;
  if (!body.contains("nodes") || body["nodes"].is_null()) return out;
  const Json& arr = body["nodes"];
  if (!arr.is_array()) return Error::InvalidArgument("field 'nodes' must be an array");
  if (arr.size() > kMaxNodesPerReport) return Error::InvalidArgument("field 'nodes' has too many items");
  for (const Json& j : arr) {
    if (!j.is_object()) return Error::InvalidArgument("every item of 'nodes' must be an object");
    core::ClusterNodeInfo n;
    CANOPY_ASSIGN_OR_RETURN(n.id, GetString(j, "id", 128));
    CANOPY_ASSIGN_OR_RETURN(auto addr, GetOptString(j, "address", 256));
    n.address = addr.value_or("");
    CANOPY_ASSIGN_OR_RETURN(auto state, GetOptString(j, "state", 32));
    n.state = state.value_or("online");
    CANOPY_ASSIGN_OR_RETURN(Json res, ParseResources(j, "resources"));
    n.cpu_millis = res.value("cpu_millis", int64_t{0});
    n.memory_mib = res.value("memory_mib", int64_t{0});
    n.memory_available_mib = res.value("memory_available_mib", int64_t{0});
    n.load1 = res.value("load1", 0.0);
    if (j.contains("draining")) {
      if (!j["draining"].is_boolean()) return Error::InvalidArgument("field 'draining' must be a boolean");
      n.draining = j["draining"].get<bool>();
    }
    CANOPY_ASSIGN_OR_RETURN(auto seen, GetOptString(j, "last_seen", 64));
    if (seen) {
      n.last_seen = ParseIso(*seen);
      if (!n.last_seen) return Error::InvalidArgument("field 'last_seen' must be an RFC 3339 UTC time");
    }
    out.push_back(std::move(n));
  }
  return out;
}

// ---- handlers ----

Result<net::Response> CreateEdgeToken(const ApiDeps& deps, const net::Request& req, const Principal& p) {
  CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
  CANOPY_ASSIGN_OR_RETURN(std::string name, GetString(body, "name", 64));
  if (!detail::IsValidName(name)) {
    return Error::InvalidArgument(
        "field 'name' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit");
  }
  CANOPY_ASSIGN_OR_RETURN(auto secs, GetOptInt(body, "ttl_seconds", 60, 7 * 24 * 3600));
  auto ttl = secs ? std::chrono::seconds(*secs) : deps.options.cluster_token_ttl;
  core::Cluster c = detail::NewClusterRow(deps, name, core::ClusterKind::kEdge,
                                          core::ClusterState::kPairing, p.user_id);
  Result<ClusterTokenGrant> grant = Error::Internal("not run");
  CANOPY_TRY(deps.store->Transaction([&](store::Store& tx) -> Status {
    CANOPY_TRY(tx.clusters().Create(c));
    grant = CreateClusterToken(deps, c.id, ttl, p.user_id);
    if (!grant) return grant.error();
    return OkStatus();
  }));
  SPDLOG_INFO("Created edge cluster cluster={} name={} by={}", c.id, c.name, p.user_id);
  return JsonResponse(201, {{"token", grant->token},
                            {"cluster_id", c.id},
                            {"expires_at", Iso(grant->expires_at)}});
}

Result<net::Response> Pair(const ApiDeps& deps, const net::Request& req, const Principal&) {
  CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
  CANOPY_ASSIGN_OR_RETURN(std::string token, GetString(body, "token", 256));
  CANOPY_ASSIGN_OR_RETURN(std::string url, GetString(body, "url", 512));
  if (!detail::IsValidHttpUrl(url)) return Error::InvalidArgument("field 'url' must be an http(s) URL");
  CANOPY_ASSIGN_OR_RETURN(auto version, GetOptString(body, "version", 64));
  std::string key;
  core::Cluster cluster;
  TimePoint now = deps.clock->Now();
  CANOPY_TRY(deps.store->Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(core::ClusterToken t, tx.cluster_tokens().Consume(Sha256Hex(token), now));
    auto c = tx.clusters().Get(t.cluster_id);
    if (!c) return NotFoundOr(std::move(c).error(), "cluster not found");
    if (c->state == core::ClusterState::kDeleting) {
      return Error::Conflict("cluster is DELETING and cannot pair");
    }
    if (!c->key_ciphertext.empty()) {
      // Paired before (e.g. its data dir was lost and it got a new token): same key and identity.
      CANOPY_ASSIGN_OR_RETURN(SecretString k, deps.secrets->Open(c->key_ciphertext, c->id));
      key = k.Reveal();
    } else {
      key = std::string(kClusterKeyPrefix) + RandomToken(32);
      CANOPY_ASSIGN_OR_RETURN(c->key_ciphertext, deps.secrets->Seal(SecretString(key), c->id));
    }
    c->state = core::ClusterState::kActive;
    c->cluster_url = url;
    c->software_version = version.value_or("");
    c->paired_at = now;
    c->last_seen = now;
    c->link_interval_seconds = deps.options.link_interval.count();
    c->updated_at = now;
    CANOPY_TRY(tx.clusters().Update(*c));
    cluster = std::move(*c);
    return OkStatus();
  }));
  SPDLOG_INFO("Cluster paired cluster={} name={} url={}", cluster.id, cluster.name, cluster.cluster_url);
  return JsonResponse(200, {{"cluster_id", cluster.id},
                            {"cluster_key", key},
                            {"link_interval_seconds", deps.options.link_interval.count()}});
}

// Checks the cluster key presented as a bearer token against the stored (encrypted) key.
Result<core::Cluster> AuthenticateCluster(const ApiDeps& deps, const net::Request& req) {
  std::string h = req.Header("authorization");
  if (h.rfind("Bearer ", 0) != 0 || h.size() <= 7) return Error::Unauthenticated("missing cluster key");
  CANOPY_ASSIGN_OR_RETURN(core::Cluster c, LoadCluster(deps, req.Param("id")));
  if (c.key_ciphertext.empty()) return Error::Unauthenticated("cluster has not paired");
  CANOPY_ASSIGN_OR_RETURN(SecretString key, deps.secrets->Open(c.key_ciphertext, c.id));
  if (!ConstantTimeEquals(h.substr(7), key.Reveal())) return Error::Unauthenticated("wrong cluster key");
  return c;
}

// Applies the acks of a link call: [{id, ok, result?, error?:{code,message}}].
Result<Json> ApplyAcks(const ApiDeps& deps, const std::string& cluster_id, const Json& body) {
  Json done = Json::array();
  if (!body.contains("acks") || body["acks"].is_null()) return done;
  const Json& acks = body["acks"];
  if (!acks.is_array() || acks.size() > 1000) return Error::InvalidArgument("field 'acks' must be an array");
  for (const Json& a : acks) {
    if (!a.is_object()) return Error::InvalidArgument("every item of 'acks' must be an object");
    CANOPY_ASSIGN_OR_RETURN(std::string id, GetString(a, "id", 128));
    CANOPY_ASSIGN_OR_RETURN(bool ok, GetOptBool(a, "ok", true));
    Json result = a.contains("result") && a["result"].is_object() ? a["result"] : Json::object();
    if (result.contains("token") && result["token"].is_string()) {
      // Tokens in results (create_node_token) are stored only encrypted, the command id as aad.
      auto sealed = deps.secrets->Seal(SecretString(result["token"].get<std::string>()), id);
      if (!sealed) return sealed.error();
      result.erase("token");
      result["token_sealed"] = Base64Encode(*sealed);
    }
    std::string code, message;
    if (!ok && a.contains("error") && a["error"].is_object()) {
      code = a["error"].value("code", "");
      message = a["error"].value("message", "");
      code = code.substr(0, 64);
      message = message.substr(0, 1024);
    }
    auto st = deps.store->cluster_commands().Complete(
        id, cluster_id, ok ? core::ClusterCommandState::kSucceeded : core::ClusterCommandState::kFailed,
        result, code, message, deps.clock->Now());
    if (!st) {
      if (st.error().code != ErrorCode::kNotFound) return st.error();
      SPDLOG_WARN("Cluster acknowledged an unknown command cluster={} command={}", cluster_id, id);
    } else {
      SPDLOG_INFO("Cluster command done cluster={} command={} ok={}", cluster_id, id, ok);
    }
    done.push_back(id);
  }
  return done;
}

Json CommandsJson(const std::vector<core::ClusterCommand>& cmds) {
  Json arr = Json::array();
  for (const auto& c : cmds) arr.push_back({{"id", c.id}, {"type", c.type}, {"args", c.args}});
  return arr;
}

// The answer of a link call: pending commands (counted as delivered), the acks applied.
net::Response LinkReply(store::Store* store, const Clock& clock, const std::string& cluster_id,
                        const Json& acked, int64_t interval) {
  auto pending = store->cluster_commands().ListPending(cluster_id, kMaxCommandsPerReply);
  if (!pending) return detail::RenderHandlerError("/api/v1/clusters/{id}/link", pending.error());
  std::vector<std::string> ids;
  for (const auto& c : *pending) ids.push_back(c.id);
  if (!ids.empty()) {
    auto st = store->cluster_commands().MarkDelivered(ids, clock.Now());
    if (!st) SPDLOG_WARN("Cannot count command delivery cluster={} error={}", cluster_id, st.error().ToString());
  }
  return net::Response::FromJson(200, {{"commands", CommandsJson(*pending)},
                                       {"acked", acked},
                                       {"link_interval_seconds", interval}});
}

void Link(const ApiDeps& deps, const net::Request& req, const Principal&, net::Responder respond) {
  const char* route = "/api/v1/clusters/{id}/link";
  auto c = AuthenticateCluster(deps, req);
  if (!c) return respond(detail::RenderHandlerError(route, c.error()));
  auto fail = [&](const Error& e) { respond(detail::RenderHandlerError(route, e)); };
  int64_t wait = 20;
  if (std::string w = req.Query("wait"); !w.empty()) {
    int64_t v = -1;
    auto [p, ec] = std::from_chars(w.data(), w.data() + w.size(), v);
    if (ec != std::errc() || p != w.data() + w.size() || v < 0) {
      return fail(Error::InvalidArgument("query parameter 'wait' must be a non-negative integer"));
    }
    wait = std::min<int64_t>(v, deps.options.max_link_wait.count());
  }
  Json body = Json::object();
  if (!req.body.empty()) {
    auto b = ParseBody(req);
    if (!b) return fail(b.error());
    body = std::move(*b);
  }
  store::ClusterLinkRecord rec;
  auto url = GetOptString(body, "url", 512);
  if (!url) return fail(url.error());
  rec.url = url->value_or(c->cluster_url);
  if (!detail::IsValidHttpUrl(rec.url) && !rec.url.empty()) {
    return fail(Error::InvalidArgument("field 'url' must be an http(s) URL"));
  }
  auto version = GetOptString(body, "version", 64);
  if (!version) return fail(version.error());
  rec.software_version = version->value_or(c->software_version);
  auto interval = GetOptInt(body, "link_interval_seconds", 1, 3600);
  if (!interval) return fail(interval.error());
  rec.link_interval_seconds = interval->value_or(c->link_interval_seconds > 0
                                                     ? c->link_interval_seconds
                                                     : deps.options.link_interval.count());
  auto nodes = ParseNodes(body);
  if (!nodes) return fail(nodes.error());
  rec.nodes = std::move(*nodes);
  auto resources = ParseResources(body, "resources");
  if (!resources) return fail(resources.error());
  rec.resources = std::move(*resources);
  auto acked = ApplyAcks(deps, c->id, body);
  if (!acked) return fail(acked.error());
  if (c->state == core::ClusterState::kDeleting) {
    return fail(Error::Conflict("cluster is DELETING"));
  }
  auto recorded = deps.store->clusters().RecordLink(c->id, rec, deps.clock->Now());
  if (!recorded) return fail(recorded.error());
  if (c->state == core::ClusterState::kOffline && recorded->state == core::ClusterState::kActive) {
    SPDLOG_INFO("Cluster back online cluster={}", c->id);
  }
  if (body.contains("jobs") && body["jobs"].is_array()) {
    // The cluster's full job list, for the service scheduler (api/services.h). Only the string
    // fields it needs are kept; malformed items are skipped.
    Json jobs = Json::array();
    for (const auto& j : body["jobs"]) {
      if (!j.is_object() || !j.contains("job_id") || !j["job_id"].is_string()) continue;
      Json keep = Json::object();
      for (const char* f : {"job_id", "service_id", "node_id", "address", "state"}) {
        if (j.contains(f) && j[f].is_string() && j[f].get<std::string>().size() <= 256) keep[f] = j[f];
      }
      jobs.push_back(std::move(keep));
      if (jobs.size() >= 10000) break;
    }
    deps.service_board->RecordJobs(c->id, std::move(jobs), deps.clock->Now());
  }

  uint64_t seen = deps.cluster_hub->Seq(c->id);
  auto pending = deps.store->cluster_commands().ListPending(c->id, 1);
  if (!pending) return fail(pending.error());
  int64_t iv = rec.link_interval_seconds;
  if (!pending->empty() || wait == 0) {
    return respond(LinkReply(deps.store, *deps.clock, c->id, *acked, iv));
  }
  store::Store* store = deps.store;
  ClockPtr clock = deps.clock;
  std::string id = c->id;
  deps.cluster_hub->Park(
      id, seen, std::chrono::steady_clock::now() + std::chrono::seconds(wait),
      [store, clock, id, acked = *acked, iv, respond = std::move(respond)]() {
        respond(LinkReply(store, *clock, id, acked, iv));
      });
}

Result<net::Response> ListClusters(const ApiDeps& deps, const net::Request&, const Principal&) {
  (void)MarkOfflineClusters(deps);
  CANOPY_ASSIGN_OR_RETURN(auto all, deps.store->clusters().List());
  Json out = Json::array();
  for (const auto& c : all) out.push_back(ClusterToJson(c));
  return JsonResponse(200, out);
}

Result<net::Response> GetCluster(const ApiDeps& deps, const net::Request& req, const Principal&) {
  (void)MarkOfflineClusters(deps);
  CANOPY_ASSIGN_OR_RETURN(core::Cluster c, LoadCluster(deps, req.Param("id")));
  return JsonResponse(200, ClusterToJson(c));
}

}  // namespace

// ---- in-process API (clusters.h) ----

Json ClusterToJson(const core::Cluster& c) {
  Json nodes = Json::array();
  for (const auto& n : c.nodes) nodes.push_back(NodeToJson(n));
  return {{"id", c.id},
          {"name", c.name},
          {"kind", core::ClusterKindName(c.kind)},
          {"state", core::ClusterStateName(c.state)},
          {"credential_id", Opt(c.credential_id)},
          {"provider", Opt(c.provider)},
          {"region", Opt(c.region)},
          {"instance_type", Opt(c.instance_type)},
          {"image", Opt(c.image)},
          {"disk_gb", Opt(c.disk_gb)},
          {"url", c.cluster_url},
          {"software_version", c.software_version},
          {"link_interval_seconds", c.link_interval_seconds},
          {"last_seen", c.last_seen ? Json(Iso(*c.last_seen)) : Json(nullptr)},
          {"paired_at", c.paired_at ? Json(Iso(*c.paired_at)) : Json(nullptr)},
          {"node_count", c.nodes.size()},
          {"nodes", nodes},
          {"resources", c.resources},
          {"address", c.cloud.contains("address") ? c.cloud["address"] : Json(nullptr)},
          {"provider_id", c.cloud.contains("provider_id") ? c.cloud["provider_id"] : Json(nullptr)},
          {"operation_id", c.cloud.contains("operation_id") ? c.cloud["operation_id"] : Json(nullptr)},
          {"created_at", Iso(c.created_at)},
          {"updated_at", Iso(c.updated_at)}};
}

Result<ClusterTokenGrant> CreateClusterToken(const ApiDeps& deps, const std::string& cluster_id,
                                             std::chrono::seconds ttl, const std::string& created_by) {
  if (ttl.count() <= 0) ttl = deps.options.cluster_token_ttl;
  ClusterTokenGrant g;
  g.token = std::string(kClusterTokenPrefix) + RandomToken(32);
  g.cluster_id = cluster_id;
  core::ClusterToken t;
  t.id = deps.ids->NewId("ctk");
  t.cluster_id = cluster_id;
  t.token_hash = Sha256Hex(g.token);
  t.created_at = deps.clock->Now();
  t.expires_at = g.expires_at = t.created_at + ttl;
  t.created_by = created_by;
  auto st = deps.store->cluster_tokens().Create(t);
  if (!st) return NotFoundOr(std::move(st).error(), "cluster not found");
  SPDLOG_INFO("Created cluster token cluster={} token_id={} by={}", cluster_id, t.id, created_by);
  return g;
}

Result<core::ClusterCommand> EnqueueClusterCommand(const ApiDeps& deps, const std::string& cluster_id,
                                                   const std::string& type, const Json& args) {
  bool ok = !type.empty() && type.size() <= 64;
  for (char ch : type) {
    ok = ok && ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.');
  }
  if (!ok) return Error::InvalidArgument("command type must be 1-64 of [a-z0-9_.-]");
  if (!args.is_object()) return Error::InvalidArgument("command args must be an object");
  core::ClusterCommand cmd;
  cmd.id = deps.ids->NewId("cmd");
  cmd.cluster_id = cluster_id;
  cmd.type = type;
  cmd.args = args;
  cmd.created_at = deps.clock->Now();
  auto st = deps.store->cluster_commands().Create(cmd);
  if (!st) return NotFoundOr(std::move(st).error(), "cluster not found");
  SPDLOG_INFO("Queued cluster command cluster={} command={} type={}", cluster_id, cmd.id, type);
  deps.cluster_hub->Notify(cluster_id);
  return cmd;
}

Result<core::ClusterCommand> GetClusterCommand(const ApiDeps& deps, const std::string& command_id) {
  CANOPY_ASSIGN_OR_RETURN(core::ClusterCommand c, deps.store->cluster_commands().Get(command_id));
  if (c.result.is_object() && c.result.contains("token_sealed") && c.result["token_sealed"].is_string()) {
    std::string sealed;
    if (!Base64Decode(c.result["token_sealed"].get<std::string>(), &sealed)) {
      return Error::Internal("stored command result is corrupt");
    }
    CANOPY_ASSIGN_OR_RETURN(SecretString token, deps.secrets->Open(sealed, c.id));
    c.result.erase("token_sealed");
    c.result["token"] = token.Reveal();
  }
  return c;
}

Result<core::ClusterCommand> WaitClusterCommand(const ApiDeps& deps, const std::string& command_id,
                                                std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (true) {
    CANOPY_ASSIGN_OR_RETURN(core::ClusterCommand c, GetClusterCommand(deps, command_id));
    if (c.state != core::ClusterCommandState::kPending) return c;
    if (std::chrono::steady_clock::now() >= end) {
      return Error::DeadlineExceeded("the cluster has not completed the command yet");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Result<std::vector<std::string>> MarkOfflineClusters(const ApiDeps& deps) {
  CANOPY_ASSIGN_OR_RETURN(auto ids, deps.store->clusters().MarkStaleOffline(
                                        deps.clock->Now(), deps.options.missed_links_for_offline));
  for (const auto& id : ids) SPDLOG_WARN("Cluster offline: no link call cluster={}", id);
  return ids;
}

namespace detail {

Error NotFoundOr(Error e, const char* message) {
  if (e.code == ErrorCode::kNotFound) return Error::NotFound(message);
  return e;
}

Result<core::Cluster> LoadCluster(const ApiDeps& deps, const std::string& id) {
  auto c = deps.store->clusters().Get(id);
  if (!c) return NotFoundOr(std::move(c).error(), "cluster not found");
  return std::move(*c);
}

core::Cluster NewClusterRow(const ApiDeps& deps, const std::string& name, core::ClusterKind kind,
                            core::ClusterState state, const std::string& user_id) {
  core::Cluster c;
  c.id = deps.ids->NewId("cls");
  c.name = name;
  c.kind = kind;
  c.state = state;
  c.created_by = user_id;
  c.created_at = c.updated_at = deps.clock->Now();
  return c;
}

void StartClusterChecks(const ApiDeps& deps) {
  // Captures no ApiDeps (it holds the hub: a cycle); the store outlives the router in RunRoot.
  store::Store* store = deps.store;
  ClockPtr clock = deps.clock;
  int64_t missed = deps.options.missed_links_for_offline;
  if (store == nullptr || !clock || !deps.cluster_hub) return;
  deps.cluster_hub->StartPeriodic(deps.options.offline_check_every, [store, clock, missed] {
    auto ids = store->clusters().MarkStaleOffline(clock->Now(), missed);
    if (!ids) {
      SPDLOG_WARN("Cluster offline check failed error={}", ids.error().ToString());
      return;
    }
    for (const auto& id : *ids) SPDLOG_WARN("Cluster offline: no link call cluster={}", id);
  });
}

std::vector<RouteDef> ClusterRoutes() {
  return {
      {"POST", "/api/v1/cluster-tokens", Access::kInfra, CreateEdgeToken},
      {"POST", "/api/v1/clusters/pair", Access::kPublic, Pair, false, nullptr, true},
      {"POST", "/api/v1/clusters/{id}/link", Access::kAdapter, nullptr, false, Link, true},
      {"GET", "/api/v1/clusters", Access::kInfraOrApp, ListClusters},
      {"GET", "/api/v1/clusters/{id}", Access::kInfraOrApp, GetCluster},
  };
}

}  // namespace detail
}  // namespace canopy::api
