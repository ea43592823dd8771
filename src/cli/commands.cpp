#include "cli/commands.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <istream>
#include <limits>
#include <optional>
#include <ostream>
#include <set>
#include <tuple>
#include <utility>

#include "cli/service_spec.h"
#include "cli/trust.h"
#include "common/files.h"
#include "common/json.h"

namespace canopy::cli {

namespace {

// Secrets larger than this are refused rather than read into memory.
constexpr size_t kMaxSecretBytes = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Resources: how each kind of API object is listed and shown. Adding a resource is adding one of
// these and the few command functions that use the generic helpers below.

struct Resource {
  std::string_view noun;            // "user", used in messages
  std::string_view path;            // collection path, "/api/v1/users"
  std::vector<Column> list;         // columns of `list`
  std::vector<Column> details;      // key/value lines of `show` (and of create results)
  std::vector<std::string> hidden;  // members removed before printing (defence in depth)
};

const Resource& Users() {
  static const Resource r{
      "user",
      "/api/v1/users",
      {{"ID", "id"}, {"USERNAME", "username"}, {"ROLES", "roles"}, {"CREATED", "created_at"}},
      {{"ID", "id"}, {"Username", "username"}, {"Roles", "roles"}, {"Created", "created_at"}},
      {"password", "password_hash"},
  };
  return r;
}

const Resource& Providers() {
  static const Resource r{
      "provider",
      "/api/v1/providers",
      {{"ID", "id"},
       {"TYPE", "type"},
       {"URL", "url"},
       {"STATUS", "status"},
       {"APPROVED", "approved"},
       {"LAST SEEN", "last_seen"}},
      {{"ID", "id"},
       {"Type", "type"},
       {"URL", "url"},
       {"Status", "status"},
       {"Approved", "approved"},
       {"Last seen", "last_seen"}},
      {},
  };
  return r;
}

const Resource& Credentials() {
  static const Resource r{
      "credential",
      "/api/v1/credentials",
      {{"ID", "id"},
       {"NAME", "name"},
       {"PROVIDER", "provider"},
       {"ADAPTER", "adapter_id"},
       {"CREATED", "created_at"}},
      {{"ID", "id"},
       {"Name", "name"},
       {"Provider", "provider"},
       {"Adapter", "adapter_id"},
       {"Created", "created_at"}},
      {"secret"},
  };
  return r;
}

std::string OperationTarget(const Json& op) {
  std::string t = FieldText(op, "target_id");
  return t == "-" ? FieldText(op, "target") : t;
}

// `error` is {"code","message"} in the contract; a plain string is shown as given.
std::string OperationError(const Json& op) {
  if (!op.is_object()) {
    return "-";
  }
  auto e = op.find("error");
  if (e == op.end() || e->is_null()) {
    return "-";
  }
  if (e->is_object() && e->contains("message")) {
    std::string msg = FieldText(*e, "message");
    std::string code = FieldText(*e, "code");
    return code == "-" ? msg : fmt::format("{} ({})", msg, code);
  }
  return CellText(*e);
}

const Resource& Operations() {
  static const Resource r{
      "operation",
      "/api/v1/operations",
      {{"ID", "id"},
       {"KIND", "kind"},
       {"TARGET", "", OperationTarget},
       {"STATE", "state"},
       {"STEP", "step"},
       {"CREATED", "created_at"}},
      {{"ID", "id"},
       {"Kind", "kind"},
       {"Target", "", OperationTarget},
       {"State", "state"},
       {"Step", "step"},
       {"Error", "", OperationError}},
      {},
  };
  return r;
}

// A string member of `obj`; empty when `obj` is not an object or the member is not a string.
std::string StringField(const Json& obj, std::string_view key) {
  if (!obj.is_object()) {
    return "";
  }
  auto it = obj.find(std::string(key));
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

const Resource& Clusters() {
  static const Resource r{
      "cluster",
      "/api/v1/clusters",
      {{"ID", "id"},
       {"NAME", "name"},
       {"KIND", "kind"},
       {"STATE", "state"},
       {"PROVIDER", "provider"},
       {"REGION", "region"},
       {"WORKERS", "worker_count"},
       {"CREATED", "created_at"}},
      {{"ID", "id"},
       {"Name", "name"},
       {"Kind", "kind"},
       {"State", "state"},
       {"Provider", "provider"},
       {"Region", "region"},
       {"Instance type", "instance_type"},
       {"Image", "image"},
       {"Disk GB", "disk_gb"},
       {"Credential", "credential_id"},
       {"Address", "address"},
       {"URL", "url"},
       {"Version", "software_version"},
       {"Nodes", "node_count"},
       {"Workers", "worker_count"},
       {"Last seen", "last_seen"},
       {"Paired", "paired_at"},
       {"Created", "created_at"}},
      {},
  };
  return r;
}

// `last_error` of a worker: a message, or {"code","message"}.
std::string WorkerError(const Json& w) {
  if (w.is_object() && w.contains("last_error") && w["last_error"].is_object()) {
    return OperationError(Json{{"error", w["last_error"]}});
  }
  return FieldText(w, "last_error");
}

// A field of the system the worker's node reported; "" until it did.
std::function<std::string(const Json&)> WorkerSystemField(const char* field) {
  return [field](const Json& w) {
    if (!w.is_object() || !w.contains("system") || !w["system"].is_object())
      return std::string("-");
    return FieldText(w["system"], field);
  };
}

std::string WorkerOs(const Json& w) { return WorkerSystemField("os")(w); }

// Workers live under their cluster: the paths come from WorkersPath / WorkerPath.
const Resource& Workers() {
  static const Resource r{
      "worker",
      "",
      {{"ID", "id"},
       {"NAME", "name"},
       {"STATE", "state"},
       {"INSTANCE TYPE", "instance_type"},
       {"IMAGE", "image"},
       {"ADDRESS", "address"},
       {"OS", "", WorkerOs},
       {"ERROR", "", WorkerError}},
      {{"ID", "id"},
       {"Name", "name"},
       {"Cluster", "cluster_id"},
       {"State", "state"},
       {"Instance type", "instance_type"},
       {"Image", "image"},
       {"Disk GB", "disk_gb"},
       {"Address", "address"},
       {"Provider ID", "provider_id"},
       {"Node", "node_id"},
       {"OS", "", WorkerOs},
       {"Kernel", "", WorkerSystemField("kernel")},
       {"Architecture", "", WorkerSystemField("arch")},
       {"CPUs", "", WorkerSystemField("cpus")},
       {"Memory MiB", "", WorkerSystemField("memory_mib")},
       {"Error", "", WorkerError},
       {"Created", "created_at"},
       {"Updated", "updated_at"}},
      {},
  };
  return r;
}

// "1/2": the service's instances that run, of its replicas.
std::string ServiceReplicas(const Json& svc) {
  if (!svc.is_object() || !svc.contains("replicas")) {
    return "-";
  }
  int64_t running = 0;
  if (svc.contains("instances") && svc["instances"].is_array()) {
    for (const Json& i : svc["instances"]) {
      running += StringField(i, "state") == "running" ? 1 : 0;
    }
  }
  return fmt::format("{}/{}", running, FieldText(svc, "replicas"));
}

std::string ServicePorts(const Json& svc) {
  return svc.is_object() ? PortsText(svc.value("ports", Json()), false) : "-";
}

const Resource& Services() {
  static const Resource r{
      "service",
      "/api/v1/services",
      {{"ID", "id"},
       {"NAME", "name"},
       {"STATE", "state"},
       {"REPLICAS", "", ServiceReplicas},
       {"PORTS", "", ServicePorts}},
      {{"ID", "id"},
       {"Name", "name"},
       {"State", "state"},
       {"Reason", "reason"},
       {"Deployed", "deployed"},
       {"Replicas", "", [](const Json& svc) { return ServiceReplicas(svc) + " running"; }},
       {"Command", "",
        [](const Json& svc) {
          return svc.is_object() ? ShellJoin(svc.value("command", Json())) : "-";
        }},
       {"Ports", "",
        [](const Json& svc) {
          return svc.is_object() ? PortsText(svc.value("ports", Json()), true) : "-";
        }},
       {"CPU millis", "cpu_millis"},
       {"Memory MiB", "memory_mib"},
       {"Cluster", "cluster_id"},
       {"Restart", "restart"},
       {"Env", "",
        [](const Json& svc) { return svc.is_object() ? EnvText(svc.value("env", Json())) : "-"; }},
       {"Created", "created_at"},
       {"Updated", "updated_at"}},
      {},
  };
  return r;
}

// The instances of a service (`service show` and the results of the other service commands).
const std::vector<Column>& InstanceColumns() {
  static const std::vector<Column> c{{"JOB", "job_id"},         {"REPLICA", "replica"},
                                     {"CLUSTER", "cluster_id"}, {"NODE", "node_id"},
                                     {"ADDRESS", "address"},    {"STATE", "state"},
                                     {"REASON", "reason"}};
  return c;
}

// ---------------------------------------------------------------------------------------------
// Session: the root URL, the stored login and an ApiClient for it.

std::string LoginCommand(std::string_view root, std::string_view username) {
  return fmt::format("canopy login --root {} --username {}", root.empty() ? "URL" : root,
                     username.empty() ? "U" : username);
}

// The root: --root, else CANOPY_ROOT, else the stored login's root.
Result<std::string> ResolveRoot(const Context& ctx, const Config& cfg) {
  if (ctx.global.root) {
    return NormalizeRootUrl(*ctx.global.root);
  }
  std::optional<std::string> env = ctx.env("CANOPY_ROOT");
  if (env && !env->empty()) {
    return NormalizeRootUrl(*env);
  }
  if (!cfg.root.empty()) {
    return NormalizeRootUrl(cfg.root);
  }
  return Error::InvalidArgument(
      fmt::format("no root URL given; run {} or pass --root URL", LoginCommand("", "")));
}

class Session {
 public:
  Session(ApiClient api, std::string username, std::string ca_fingerprint)
      : api_(std::move(api)),
        username_(std::move(username)),
        ca_fingerprint_(std::move(ca_fingerprint)) {}

  Result<Json> Get(std::string_view path) const { return Hint(api_.Get(path)); }
  Result<Json> Post(std::string_view path, const Json& body) const {
    return Hint(api_.Post(path, body));
  }
  Result<Json> Delete(std::string_view path) const { return Hint(api_.Delete(path)); }
  Result<Json> Send(std::string_view method, std::string_view path, const Json& body) const {
    return Hint(api_.Send(method, path, &body));
  }

 private:
  // A 401 means the token is no longer accepted (expired, revoked, root re-keyed).
  Result<Json> Hint(Result<Json> r) const {
    if (!r && r.error().code == ErrorCode::kUnauthenticated) {
      Error e = std::move(r).error();
      e.message += fmt::format("; log in again with {}", LoginCommand(api_.root(), username_));
      return e;
    }
    // The root's certificate no longer chains to the CA trusted at login (never replaced here).
    if (!r && IsUntrustedCertificate(r.error())) {
      Error e = std::move(r).error();
      e.message += ca_fingerprint_.empty()
                       ? fmt::format(
                             "; the system does not trust the root's certificate: log in "
                             "again with {} --ca-fingerprint or --ca-file",
                             LoginCommand(api_.root(), username_))
                       : fmt::format(
                             "; the root's certificate does not verify against the "
                             "trusted CA {}: if the root's CA changed, log in again with "
                             "{} --ca-fingerprint",
                             ca_fingerprint_, LoginCommand(api_.root(), username_));
      return e;
    }
    return r;
  }

  ApiClient api_;
  std::string username_;
  std::string ca_fingerprint_;
};

Result<Session> Connect(const Context& ctx) {
  CANOPY_ASSIGN_OR_RETURN(auto path, ConfigPath(ctx.env));
  CANOPY_ASSIGN_OR_RETURN(Config cfg, LoadConfig(path));
  CANOPY_ASSIGN_OR_RETURN(std::string root, ResolveRoot(ctx, cfg));
  Result<std::string> stored_root = NormalizeRootUrl(cfg.root);
  // The token is only ever sent to the root that issued it.
  if (!cfg.HasToken() || !stored_root || *stored_root != root) {
    std::string user = (stored_root && *stored_root == root) ? cfg.username : "";
    return Error::Unauthenticated(fmt::format("not logged in; run {}", LoginCommand(root, user)));
  }
  if (!cfg.expires_at.empty()) {
    std::optional<TimePoint> exp = ParseRfc3339(cfg.expires_at);
    if (exp && ctx.clock->Now() >= *exp) {
      return Error::Unauthenticated(fmt::format("your login expired at {}; run {}", cfg.expires_at,
                                                LoginCommand(root, cfg.username)));
    }
  }
  CANOPY_ASSIGN_OR_RETURN(std::string ca_pem, CommandCa(ctx, cfg));
  return Session(ApiClient(root, cfg.token, TransportFor(ctx, ca_pem)), cfg.username,
                 CaFingerprint(ca_pem));
}

// ---------------------------------------------------------------------------------------------
// Output helpers.

int Finish(Context& ctx, const Status& st) {
  if (!st) {
    return ReportError(ctx, st.error().message);
  }
  return kExitOk;
}

Json WithoutHidden(Json j, const Resource& r) {
  auto strip = [&r](Json& obj) {
    if (obj.is_object()) {
      for (const auto& h : r.hidden) {
        obj.erase(h);
      }
    }
  };
  strip(j);
  if (j.is_array()) {
    for (Json& e : j) {
      strip(e);
    }
  } else if (j.is_object()) {
    for (auto& [key, value] : j.items()) {
      if (value.is_array()) {
        for (Json& e : value) {
          strip(e);
        }
      }
    }
  }
  return j;
}

std::vector<std::pair<std::string, std::string>> DetailRows(const std::vector<Column>& columns,
                                                            const Json& obj) {
  std::vector<std::pair<std::string, std::string>> rows;
  for (const Column& c : columns) {
    rows.emplace_back(c.header, c.render ? c.render(obj) : FieldText(obj, c.field));
  }
  return rows;
}

void RenderDetails(std::ostream& out, const std::vector<Column>& columns, const Json& obj) {
  RenderKeyValues(out, DetailRows(columns, obj));
}

std::string ItemPath(const Resource& r, std::string_view id) {
  return fmt::format("{}/{}", r.path, EscapeUrlComponent(id));
}

Status ListResource(Context& ctx, const Resource& r, std::string_view query = "") {
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json resp, s.Get(fmt::format("{}{}", r.path, query)));
  resp = WithoutHidden(std::move(resp), r);
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, resp);
  } else {
    RenderTable(ctx.out, r.list, ListItems(resp));
  }
  return OkStatus();
}

Status ShowResource(Context& ctx, const Resource& r, const std::string& id) {
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json resp, s.Get(ItemPath(r, id)));
  resp = WithoutHidden(std::move(resp), r);
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, resp);
  } else {
    RenderDetails(ctx.out, r.details, resp);
  }
  return OkStatus();
}

Status DeleteResource(Context& ctx, const Resource& r, const std::string& id,
                      std::string_view done_verb) {
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json resp, s.Delete(ItemPath(r, id)));
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, WithoutHidden(std::move(resp), r));
  } else {
    ctx.out << fmt::format("{} {} {}\n", done_verb, r.noun, id);
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Passwords and secrets.

// Overwrites every string inside `j` (request bodies holding passwords or secrets) before the
// memory is released.
void WipeStrings(Json& j) {
  if (j.is_string()) {
    auto& s = j.get_ref<std::string&>();
    OPENSSL_cleanse(s.data(), s.size());
  } else if (j.is_structured()) {
    for (auto& e : j) {
      WipeStrings(e);
    }
  }
}

// From the option, else the environment variable, else the terminal (asked twice if `confirm`).
Result<SecretString> ObtainPassword(Context& ctx, const std::optional<std::string>& option,
                                    const char* env_name, std::string_view prompt, bool confirm) {
  if (option) {
    if (option->empty()) {
      return Error::InvalidArgument("the password must not be empty");
    }
    return SecretString(*option);
  }
  std::optional<std::string> env = ctx.env(env_name);
  if (env && !env->empty()) {
    return SecretString(std::move(*env));
  }
  Result<SecretString> first = ctx.prompt(prompt);
  if (!first) {
    return Error::FailedPrecondition(
        fmt::format("no password given: use --password, set {}, or run in a terminal", env_name));
  }
  if (first->Reveal().empty()) {
    return Error::InvalidArgument("the password must not be empty");
  }
  if (confirm) {
    CANOPY_ASSIGN_OR_RETURN(SecretString again, ctx.prompt("Repeat the password: "));
    if (!(again == *first)) {
      return Error::InvalidArgument("the passwords do not match");
    }
  }
  return first;
}

Result<std::string> ReadLimited(int fd, std::string_view what) {
  std::string data;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      OPENSSL_cleanse(data.data(), data.size());
      return Error::FailedPrecondition(fmt::format("cannot read {}: {}", what, strerror(errno)));
    }
    if (n == 0) {
      break;
    }
    data.append(buf, static_cast<size_t>(n));
    OPENSSL_cleanse(buf, sizeof buf);
    if (data.size() > kMaxSecretBytes) {
      OPENSSL_cleanse(data.data(), data.size());
      return Error::InvalidArgument(
          fmt::format("{} is larger than {} bytes", what, kMaxSecretBytes));
    }
  }
  return data;
}

// The secret as a JSON object. Error messages say where the secret came from, never what it holds.
Result<Json> ObtainSecret(Context& ctx, const CredentialAddOptions& opts) {
  int sources =
      (opts.secret_file ? 1 : 0) + (opts.secret_stdin ? 1 : 0) + (opts.secret_json ? 1 : 0);
  if (sources != 1) {
    return Error::InvalidArgument(
        "give the secret exactly once: --secret-file FILE, --secret-stdin or --secret JSON");
  }
  std::string text;
  std::string what;
  if (opts.secret_json) {
    what = "the --secret value";
    text = *opts.secret_json;
  } else if (opts.secret_stdin) {
    what = "the secret on standard input";
    std::string data;
    char buf[4096];
    while (ctx.in.read(buf, sizeof buf) || ctx.in.gcount() > 0) {
      data.append(buf, static_cast<size_t>(ctx.in.gcount()));
      if (data.size() > kMaxSecretBytes) {
        OPENSSL_cleanse(data.data(), data.size());
        return Error::InvalidArgument(
            fmt::format("{} is larger than {} bytes", what, kMaxSecretBytes));
      }
    }
    OPENSSL_cleanse(buf, sizeof buf);
    text = std::move(data);
  } else {
    what = fmt::format("secret file {}", *opts.secret_file);
    int fd = open(opts.secret_file->c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return Error::FailedPrecondition(fmt::format("cannot read {}: {}", what, strerror(errno)));
    }
    Result<std::string> data = ReadLimited(fd, what);
    close(fd);
    if (!data) {
      return std::move(data).error();
    }
    text = std::move(*data);
  }
  Result<Json> parsed = ParseJson(text);
  OPENSSL_cleanse(text.data(), text.size());
  if (!parsed) {
    return Error::InvalidArgument(fmt::format("{} is not valid JSON", what));
  }
  if (!parsed->is_object()) {
    return Error::InvalidArgument(fmt::format("{} must be a JSON object", what));
  }
  return parsed;
}

// ---------------------------------------------------------------------------------------------
// Names, offers and operations shared by the cluster and worker commands.

// The element of `items` whose id is `key`, else the first whose name is `key`; nullptr if none.
const Json* FindByIdOrName(const Json& items, const std::string& key) {
  for (const Json& e : items) {
    if (StringField(e, "id") == key) {
      return &e;
    }
  }
  for (const Json& e : items) {
    if (StringField(e, "name") == key) {
      return &e;
    }
  }
  return nullptr;
}

// The credential with id or name `key` (kNotFound: "credential 'x' not found").
Result<Json> ResolveCredential(const Session& s, const std::string& key) {
  CANOPY_ASSIGN_OR_RETURN(Json creds, s.Get(Credentials().path));
  const Json items = ListItems(creds);
  const Json* c = FindByIdOrName(items, key);
  if (c == nullptr || StringField(*c, "id").empty()) {
    return Error::NotFound(fmt::format("credential '{}' not found", key));
  }
  return WithoutHidden(*c, Credentials());
}

Result<Json> GetOffers(const Session& s, const std::string& credential_id,
                       const std::optional<std::string>& provider,
                       const std::optional<std::string>& region) {
  std::string query = "?credential_id=" + EscapeUrlComponent(credential_id);
  if (provider) query += "&provider=" + EscapeUrlComponent(*provider);
  if (region) query += "&region=" + EscapeUrlComponent(*region);
  return s.Get("/api/v1/offers" + query);
}

std::string ClusterPath(std::string_view cluster_id) { return ItemPath(Clusters(), cluster_id); }
std::string WorkersPath(std::string_view cluster_id) {
  return ClusterPath(cluster_id) + "/workers";
}
std::string WorkerPath(std::string_view cluster_id, std::string_view worker_id) {
  return fmt::format("{}/{}", WorkersPath(cluster_id), EscapeUrlComponent(worker_id));
}

// The item of `r` (named `noun` in errors) with id or name `key`, from its list call.
Result<Json> ResolveByIdOrName(const Session& s, const Resource& r, std::string_view noun,
                               const std::string& key) {
  if (key.empty()) {
    return Error::InvalidArgument(fmt::format("give a {} name or id", noun));
  }
  CANOPY_ASSIGN_OR_RETURN(Json list, s.Get(r.path));
  const Json items = ListItems(list);
  const Json* item = FindByIdOrName(items, key);
  if (item == nullptr || StringField(*item, "id").empty()) {
    return Error::NotFound(fmt::format("{} '{}' not found", noun, key));
  }
  return *item;
}

// The cluster with id or name `key`, from GET /api/v1/clusters.
Result<Json> ResolveCluster(const Session& s, const std::string& key) {
  return ResolveByIdOrName(s, Clusters(), "cluster", key);
}

// The worker with id or name `key` in `cluster`, from GET /api/v1/clusters/{id}/workers.
Result<Json> ResolveWorker(const Session& s, const Json& cluster, const std::string& key) {
  if (key.empty()) {
    return Error::InvalidArgument("give a worker name or id");
  }
  CANOPY_ASSIGN_OR_RETURN(Json list, s.Get(WorkersPath(StringField(cluster, "id"))));
  const Json items = ListItems(list);
  const Json* w = FindByIdOrName(items, key);
  if (w == nullptr || StringField(*w, "id").empty()) {
    return Error::NotFound(
        fmt::format("worker '{}' not found in cluster '{}'", key, StringField(cluster, "name")));
  }
  return *w;
}

// A region or image entry: a string, or an object with an id (else a name).
std::string OfferName(const Json& e, bool id_first) {
  if (e.is_string()) {
    return e.get<std::string>();
  }
  std::string a = StringField(e, id_first ? "id" : "name");
  return a.empty() ? StringField(e, id_first ? "name" : "id") : a;
}

// The first usable entry of offers[member].
std::optional<std::string> FirstOffer(const Json& offers, const char* member, bool id_first) {
  if (!offers.is_object() || !offers.contains(member) || !offers[member].is_array()) {
    return std::nullopt;
  }
  for (const Json& e : offers[member]) {
    std::string v = OfferName(e, id_first);
    if (!v.empty()) {
      return v;
    }
  }
  return std::nullopt;
}

// The smallest instance type: fewest vcpus, then least memory_mib, then lowest price_hour, then
// name. Missing numbers sort last.
std::optional<std::string> SmallestInstanceType(const Json& offers) {
  if (!offers.is_object() || !offers.contains("instance_types") ||
      !offers["instance_types"].is_array()) {
    return std::nullopt;
  }
  auto num = [](const Json& t, const char* key) {
    auto it = t.find(key);
    return it != t.end() && it->is_number() ? it->get<double>()
                                            : std::numeric_limits<double>::infinity();
  };
  std::optional<std::tuple<double, double, double, std::string>> best;
  for (const Json& t : offers["instance_types"]) {
    std::string name = StringField(t, "name");
    if (name.empty()) {
      continue;
    }
    auto key = std::make_tuple(num(t, "vcpus"), num(t, "memory_mib"), num(t, "price_hour"), name);
    if (!best || key < *best) {
      best = std::move(key);
    }
  }
  if (!best) {
    return std::nullopt;
  }
  return std::get<3>(*best);
}

Status CheckWait(const WaitOptions& w) {
  if (w.wait && w.timeout_seconds <= 0) {
    return Error::InvalidArgument("--timeout must be a positive number of seconds");
  }
  return OkStatus();
}

// Follows the operation named by a 202 body's operation_id until it ends (see WaitForOperation).
Result<Json> Follow(Context& ctx, const Session& s, const Json& accepted, const WaitOptions& w) {
  std::string op_id = StringField(accepted, "operation_id");
  if (op_id.empty()) {
    return Error::Internal("the root's response names no operation_id to wait for");
  }
  WaitSettings settings;
  settings.timeout = std::chrono::seconds(w.timeout_seconds);
  OperationFetcher fetch = [&s](const std::string& id) {
    return s.Get(ItemPath(Operations(), id));
  };
  SleepFn sleep = ctx.sleep ? ctx.sleep : SleepFn(RealSleep);
  return WaitForOperation(op_id, fetch, *ctx.clock, sleep, ctx.err, ctx.err_is_terminal, settings);
}

// A 202 body {"<member>":{...},"operation_id"}: the JSON as is, or the object's key/values and
// the operation id.
void PrintAccepted(Context& ctx, const Json& accepted, const char* member,
                   const std::vector<Column>& details) {
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, accepted);
    return;
  }
  const Json& obj = accepted.is_object() && accepted.contains(member) ? accepted[member] : Json();
  auto rows = DetailRows(details, obj);
  rows.emplace_back("Operation", FieldText(accepted, "operation_id"));
  RenderKeyValues(ctx.out, rows);
}

// The cluster re-fetched with its workers: key/values and a workers table, or with -o json the
// cluster object with a "workers" member.
Status PrintCluster(Context& ctx, const Session& s, const std::string& cluster_id) {
  CANOPY_ASSIGN_OR_RETURN(Json cluster, s.Get(ClusterPath(cluster_id)));
  CANOPY_ASSIGN_OR_RETURN(Json workers, s.Get(WorkersPath(cluster_id)));
  Json items = ListItems(workers);
  if (ctx.global.output == OutputFormat::kJson) {
    if (cluster.is_object()) {
      cluster["workers"] = std::move(items);
    }
    PrintJson(ctx.out, cluster);
    return OkStatus();
  }
  RenderDetails(ctx.out, Clusters().details, cluster);
  if (!items.empty()) {
    ctx.out << '\n';
    RenderTable(ctx.out, Workers().list, items);
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Services.

std::string ServicePath(std::string_view service_id) { return ItemPath(Services(), service_id); }

// The service with id or name `key`, from GET /api/v1/services.
Result<Json> ResolveService(const Session& s, const std::string& key) {
  return ResolveByIdOrName(s, Services(), "service", key);
}

// A service's key/values and, when it has any, its instances; with -o json the Service as is.
void PrintService(Context& ctx, const Json& svc) {
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, svc);
    return;
  }
  RenderDetails(ctx.out, Services().details, svc);
  if (svc.is_object() && svc.contains("instances") && svc["instances"].is_array() &&
      !svc["instances"].empty()) {
    ctx.out << '\n';
    RenderTable(ctx.out, InstanceColumns(), svc["instances"]);
  }
}

// Services as a list; with -o json {"services":[...]} (the import's answer).
void PrintServices(Context& ctx, const Json& services) {
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, Json{{"services", services}});
  } else {
    RenderTable(ctx.out, Services().list, services);
  }
}

// Follows service `id` until `goal` (see WaitForService), giving up after `timeout`.
Result<Json> FollowService(Context& ctx, const Session& s, const std::string& id, ServiceGoal goal,
                           std::chrono::seconds timeout) {
  WaitSettings settings;
  settings.timeout = timeout;
  ServiceFetcher fetch = [&s](const std::string& service_id) {
    return s.Get(ServicePath(service_id));
  };
  SleepFn sleep = ctx.sleep ? ctx.sleep : SleepFn(RealSleep);
  return WaitForService(id, goal, fetch, *ctx.clock, sleep, ctx.err, ctx.err_is_terminal, settings);
}

// The body of POST /api/v1/services from the options; every value is checked before anything is
// sent.
Result<Json> ServiceBody(const ServiceCreateOptions& o) {
  const char* usage = "canopy service create NAME [options] -- CMD [ARGS...]";
  if (o.name.empty()) {
    return Error::InvalidArgument(fmt::format("the service needs a NAME: {}", usage));
  }
  if (o.command.empty()) {
    return Error::InvalidArgument(fmt::format("give the command to run after --: {}", usage));
  }
  int64_t cpu = o.cpu_millis.value_or(kServiceCpuMillis);
  int64_t memory = o.memory_mib.value_or(kServiceMemoryMib);
  int64_t replicas = o.replicas.value_or(1);
  if (cpu <= 0) {
    return Error::InvalidArgument("--cpu must be a positive number of millicores");
  }
  if (memory <= 0) {
    return Error::InvalidArgument("--memory must be a positive number of MiB");
  }
  if (replicas < 1) {
    return Error::InvalidArgument("--replicas must be at least 1");
  }
  if (o.restart && *o.restart != "always" && *o.restart != "on-failure" && *o.restart != "never") {
    return Error::InvalidArgument(fmt::format(
        "invalid --restart '{}': use always, on-failure or never", CellText(Json(*o.restart))));
  }
  if (o.cluster && o.cluster->empty()) {
    return Error::InvalidArgument("--cluster needs a cluster id");
  }
  Json ports = Json::array();
  std::set<std::pair<int64_t, std::string>> seen;
  for (const std::string& spec : o.ports) {
    CANOPY_ASSIGN_OR_RETURN(Json port, ParsePortSpec(spec));
    if (!seen.emplace(port["port"].get<int64_t>(), port["protocol"].get<std::string>()).second) {
      return Error::InvalidArgument(fmt::format(
          "--port {}/{} is given twice", FieldText(port, "port"), FieldText(port, "protocol")));
    }
    ports.push_back(std::move(port));
  }
  Json body = {{"name", o.name},    {"command", o.command}, {"ports", std::move(ports)},
               {"cpu_millis", cpu}, {"memory_mib", memory}, {"replicas", replicas}};
  if (o.cluster) {
    body["cluster_id"] = *o.cluster;
  }
  if (!o.env.empty()) {
    Json env = Json::object();
    for (const std::string& assignment : o.env) {
      CANOPY_ASSIGN_OR_RETURN(auto kv, ParseEnvAssignment(assignment));
      if (env.contains(kv.first)) {
        return Error::InvalidArgument(fmt::format("--env {} is given twice", kv.first));
      }
      env[kv.first] = std::move(kv.second);
    }
    body["env"] = std::move(env);
  }
  if (!o.secret_env.empty()) {
    Json secret = Json::object();
    for (const std::string& assignment : o.secret_env) {
      CANOPY_ASSIGN_OR_RETURN(auto kv, ParseEnvAssignment(assignment));
      if (secret.contains(kv.first) || (body.contains("env") && body["env"].contains(kv.first))) {
        return Error::InvalidArgument(fmt::format("{} is given twice", kv.first));
      }
      if (kv.second.starts_with("@")) {
        auto content = ReadFileString(kv.second.substr(1));
        if (!content) {
          return Error::InvalidArgument(
              fmt::format("--secret-env {}: cannot read {}", kv.first, kv.second.substr(1)));
        }
        kv.second = std::move(*content);
        while (!kv.second.empty() && kv.second.back() == '\n') kv.second.pop_back();
      }
      secret[kv.first] = std::move(kv.second);
    }
    body["secret_env"] = std::move(secret);
  }
  if (o.restart) {
    body["restart"] = *o.restart;
  }
  return body;
}

// The SLA file as a JSON object (bounded in size, like a secret file).
Result<Json> ReadSlaFile(const std::string& file) {
  std::string what = fmt::format("SLA file {}", file);
  int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Error::FailedPrecondition(fmt::format("cannot read {}: {}", what, strerror(errno)));
  }
  Result<std::string> data = ReadLimited(fd, what);
  close(fd);
  if (!data) {
    return std::move(data).error();
  }
  Result<Json> parsed = ParseJson(*data);
  if (!parsed) {
    return Error::InvalidArgument(fmt::format("{} is not valid JSON", what));
  }
  if (!parsed->is_object()) {
    return Error::InvalidArgument(fmt::format("{} must be a JSON object", what));
  }
  return parsed;
}

// Deploys the services just created (and with --wait follows them in turn within one timeout);
// returns them as the root last answered.
Result<Json> DeployCreated(Context& ctx, const Session& s, const Json& created,
                           const WaitOptions& wait) {
  Json deployed = Json::array();
  for (const Json& svc : created) {
    std::string id = StringField(svc, "id");
    Result<Json> sent = s.Post(ServicePath(id) + "/deploy", Json::object());
    if (!sent) {
      Error e = std::move(sent).error();
      e.message = fmt::format("created service {} ({}) but could not deploy it: {}",
                              FieldText(svc, "name"), FieldText(svc, "id"), e.message);
      return e;
    }
    deployed.push_back(std::move(*sent));
  }
  if (!wait.wait) {
    return deployed;
  }
  const TimePoint deadline = ctx.clock->Now() + std::chrono::seconds(wait.timeout_seconds);
  for (Json& svc : deployed) {
    auto left = std::chrono::ceil<std::chrono::seconds>(deadline - ctx.clock->Now());
    CANOPY_ASSIGN_OR_RETURN(svc,
                            FollowService(ctx, s, StringField(svc, "id"), ServiceGoal::kRunning,
                                          std::max(left, std::chrono::seconds(0))));
  }
  return deployed;
}

// ---------------------------------------------------------------------------------------------
// Commands.

Status DoLogin(Context& ctx, const LoginOptions& opts) {
  CANOPY_ASSIGN_OR_RETURN(auto path, ConfigPath(ctx.env));
  CANOPY_ASSIGN_OR_RETURN(Config cfg, LoadConfig(path));
  CANOPY_ASSIGN_OR_RETURN(std::string root, ResolveRoot(ctx, cfg));
  const bool same_root = NormalizeRootUrl(cfg.root).value_or("") == root;
  std::string username;
  if (opts.username && !opts.username->empty()) {
    username = *opts.username;
  } else if (same_root) {
    username = cfg.username;
  }
  if (username.empty()) {
    return Error::InvalidArgument(fmt::format("no username given; run {}", LoginCommand(root, "")));
  }
  // Trust first (as ssh asks about the host key before the password): the password only goes to
  // a root whose certificate verified.
  CANOPY_ASSIGN_OR_RETURN(std::string ca_pem,
                          LoginTrust(ctx, root, username, same_root ? cfg.ca_pem : "", opts));
  CANOPY_ASSIGN_OR_RETURN(
      SecretString password,
      ObtainPassword(ctx, opts.password, "CANOPY_PASSWORD",
                     fmt::format("Password for {} at {}: ", username, root), false));

  ApiClient api(root, SecretString(), TransportFor(ctx, ca_pem));
  Json body = {{"username", username}, {"password", password.Reveal()}};
  Result<Json> resp = api.Post("/api/v1/auth/login", body);
  WipeStrings(body);
  if (!resp) {
    return std::move(resp).error();
  }
  Json& r = *resp;
  auto token = r.is_object() ? r.find("access_token") : r.end();
  if (!r.is_object() || token == r.end() || !token->is_string() ||
      token->get_ref<const std::string&>().empty()) {
    return Error::Internal("the root's login response has no access_token");
  }
  Config updated;
  updated.root = root;
  updated.username = username;
  updated.ca_pem = ca_pem;
  updated.token = SecretString(token->get<std::string>());
  WipeStrings(*token);
  r.erase("access_token");
  auto expires_in = r.find("expires_in");
  if (expires_in != r.end() && expires_in->is_number_integer()) {
    updated.expires_at =
        FormatRfc3339(ctx.clock->Now() + std::chrono::seconds(expires_in->get<int64_t>()));
  }
  CANOPY_TRY(SaveConfig(path, updated));

  std::string fingerprint = CaFingerprint(ca_pem);
  if (ctx.global.output == OutputFormat::kJson) {
    // The token itself stays in the config file: stdout often ends up in logs.
    r["root"] = root;
    r["username"] = username;
    r["expires_at"] = updated.expires_at.empty() ? Json(nullptr) : Json(updated.expires_at);
    r["ca_fingerprint"] = fingerprint.empty() ? Json(nullptr) : Json(fingerprint);
    PrintJson(ctx.out, r);
    return OkStatus();
  }
  if (updated.expires_at.empty()) {
    ctx.out << fmt::format("Logged in to {} as {}\n", root, username);
  } else {
    ctx.out << fmt::format("Logged in to {} as {} (until {})\n", root, username,
                           updated.expires_at);
  }
  if (!fingerprint.empty()) {
    ctx.out << fmt::format("Trusting the root's CA {}\n", fingerprint);
  }
  return OkStatus();
}

Status DoLogout(Context& ctx) {
  CANOPY_ASSIGN_OR_RETURN(auto path, ConfigPath(ctx.env));
  CANOPY_ASSIGN_OR_RETURN(Config cfg, LoadConfig(path));
  bool had_token = cfg.HasToken();
  if (had_token) {
    cfg.token = SecretString();
    cfg.expires_at.clear();
    CANOPY_TRY(SaveConfig(path, cfg));
  }
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, Json{{"logged_out", had_token}});
  } else if (had_token) {
    ctx.out << fmt::format("Logged out of {}\n", cfg.root);
  } else {
    ctx.out << "Not logged in\n";
  }
  return OkStatus();
}

Status DoUserCreate(Context& ctx, const UserCreateOptions& opts) {
  if (opts.username.empty()) {
    return Error::InvalidArgument("the username must not be empty");
  }
  if (opts.roles.empty()) {
    return Error::InvalidArgument("give at least one --role (admin, infra or app)");
  }
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(
      SecretString password,
      ObtainPassword(ctx, opts.password, "CANOPY_NEW_PASSWORD",
                     fmt::format("Password for the new user {}: ", opts.username), true));
  Json body = {{"username", opts.username}, {"password", password.Reveal()}, {"roles", opts.roles}};
  Result<Json> resp = s.Post(Users().path, body);
  WipeStrings(body);
  if (!resp) {
    return std::move(resp).error();
  }
  Json user = WithoutHidden(std::move(*resp), Users());
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, user);
  } else {
    RenderDetails(ctx.out, Users().details, user);
  }
  return OkStatus();
}

Status DoPassword(Context& ctx, const PasswordOptions& opts) {
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  if (opts.user) {
    CANOPY_ASSIGN_OR_RETURN(SecretString next,
                            ObtainPassword(ctx, opts.next, "CANOPY_NEW_PASSWORD",
                                           fmt::format("New password for {}: ", *opts.user), true));
    Json body = {{"password", next.Reveal()}};
    Result<Json> r = s.Send(
        "PUT", std::string(Users().path) + "/" + EscapeUrlComponent(*opts.user) + "/password",
        body);
    WipeStrings(body);
    CANOPY_TRY(r);
    ctx.out << "Password set; the user's tokens are revoked\n";
    return OkStatus();
  }
  CANOPY_ASSIGN_OR_RETURN(SecretString current, ObtainPassword(ctx, opts.current, "CANOPY_PASSWORD",
                                                               "Current password: ", false));
  CANOPY_ASSIGN_OR_RETURN(SecretString next, ObtainPassword(ctx, opts.next, "CANOPY_NEW_PASSWORD",
                                                            "New password: ", true));
  Json body = {{"current_password", current.Reveal()}, {"new_password", next.Reveal()}};
  Result<Json> r = s.Post("/api/v1/auth/password", body);
  WipeStrings(body);
  CANOPY_TRY(r);
  ctx.out << "Password changed; every token issued before is revoked: log in again\n";
  return OkStatus();
}

Status DoProviderApprove(Context& ctx, const std::string& id) {
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(
      Json p, s.Post(std::string(Providers().path) + "/" + EscapeUrlComponent(id) + "/approve",
                     Json::object()));
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, p);
  } else {
    ctx.out << "Approved " << FieldText(p, "id") << "\n";
  }
  return OkStatus();
}

Status DoProviderToken(Context& ctx) {
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json resp, s.Post("/api/v1/provider-tokens", Json::object()));
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, resp);
  } else {
    RenderKeyValues(
        ctx.out, {{"Token", FieldText(resp, "token")}, {"Expires", FieldText(resp, "expires_at")}});
  }
  return OkStatus();
}

Status DoCredentialAdd(Context& ctx, const CredentialAddOptions& opts) {
  if (opts.name.empty() || opts.provider.empty()) {
    return Error::InvalidArgument("the credential needs a NAME and --provider");
  }
  CANOPY_ASSIGN_OR_RETURN(Json secret, ObtainSecret(ctx, opts));
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  Json body = {{"name", opts.name}, {"provider", opts.provider}, {"secret", std::move(secret)}};
  if (opts.adapter) body["adapter"] = *opts.adapter;
  Result<Json> sent = s.Post(Credentials().path, body);
  WipeStrings(body);
  CANOPY_ASSIGN_OR_RETURN(Json resp, std::move(sent));
  resp = WithoutHidden(std::move(resp), Credentials());
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, resp);
  } else {
    RenderDetails(ctx.out, Credentials().details, resp);
  }
  return OkStatus();
}

Status DoOffers(Context& ctx, const OffersOptions& opts) {
  if (opts.credential.empty()) {
    return Error::InvalidArgument("offers need --credential NAME or ID");
  }
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  // A name is resolved to its id; anything else is used as given (the root checks it).
  std::string credential_id = opts.credential;
  Result<Json> cred = ResolveCredential(s, opts.credential);
  if (cred) {
    credential_id = StringField(*cred, "id");
  } else if (cred.error().code != ErrorCode::kNotFound) {
    return std::move(cred).error();
  }
  CANOPY_ASSIGN_OR_RETURN(Json offers, GetOffers(s, credential_id, opts.provider, opts.region));
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, offers);
    return OkStatus();
  }
  RenderKeyValues(ctx.out, {{"Provider", FieldText(offers, "provider")},
                            {"Regions", FieldText(offers, "regions")}});
  ctx.out << '\n';
  RenderTable(ctx.out,
              {{"INSTANCE TYPE", "name"},
               {"VCPUS", "vcpus"},
               {"MEMORY MIB", "memory_mib"},
               {"GPUS", "gpus"},
               {"USD/HOUR", "price_hour"}},
              offers.value("instance_types", Json::array()));
  ctx.out << '\n';
  RenderTable(ctx.out, {{"IMAGE", "id"}, {"NAME", "name"}}, offers.value("images", Json::array()));
  return OkStatus();
}

Status DoOperationShow(Context& ctx, const std::string& id) {
  const Resource& r = Operations();
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json op, s.Get(ItemPath(r, id)));
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, op);
    return OkStatus();
  }
  RenderDetails(ctx.out, r.details, op);
  if (op.is_object() && op.contains("steps") && op["steps"].is_array() && !op["steps"].empty()) {
    ctx.out << '\n';
    RenderTable(ctx.out,
                {{"STEP", "name"},
                 {"STATE", "state"},
                 {"STARTED", "started_at"},
                 {"FINISHED", "finished_at"}},
                op["steps"]);
  }
  return OkStatus();
}

Status DoClusterCreate(Context& ctx, const ClusterCreateOptions& o) {
  if (o.name.empty()) {
    return Error::InvalidArgument("the cluster needs a NAME");
  }
  if (o.credential.empty()) {
    return Error::InvalidArgument("cluster create needs --credential NAME or ID");
  }
  if (o.disk_gb <= 0) {
    return Error::InvalidArgument("--disk-gb must be a positive number of GB");
  }
  if (o.workers < 0) {
    return Error::InvalidArgument("--workers must not be negative");
  }
  if (o.workers == 0 && o.worker_instance_type) {
    return Error::InvalidArgument("--worker-instance-type needs --workers N (N > 0)");
  }
  CANOPY_TRY(CheckWait(o.wait));
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json cred, ResolveCredential(s, o.credential));
  std::string credential_id = StringField(cred, "id");
  std::string cred_provider = StringField(cred, "provider");
  if (o.provider && !cred_provider.empty() && *o.provider != cred_provider) {
    return Error::InvalidArgument(fmt::format("credential '{}' is for provider '{}', not '{}'",
                                              o.credential, cred_provider, *o.provider));
  }

  std::string region = o.region.value_or("");
  std::string instance_type = o.instance_type.value_or("");
  std::string image = o.image.value_or("");
  if (region.empty() || instance_type.empty() || image.empty()) {
    CANOPY_ASSIGN_OR_RETURN(Json offers, GetOffers(s, credential_id, o.provider, o.region));
    auto missing = [&o](std::string_view what, std::string_view flag) {
      return Error::FailedPrecondition(fmt::format(
          "the offers of credential '{}' list no {}; pass {}", o.credential, what, flag));
    };
    if (region.empty()) {
      std::optional<std::string> r = FirstOffer(offers, "regions", false);
      if (!r) return missing("regions", "--region");
      region = *r;
    }
    if (instance_type.empty()) {
      std::optional<std::string> t = SmallestInstanceType(offers);
      if (!t) return missing("instance types", "--instance-type");
      instance_type = *t;
    }
    if (image.empty()) {
      std::optional<std::string> i = FirstOffer(offers, "images", true);
      if (!i) return missing("images", "--image");
      image = *i;
    }
  }

  Json body = {{"name", o.name},   {"credential_id", credential_id},
               {"region", region}, {"instance_type", instance_type},
               {"image", image},   {"disk_gb", o.disk_gb}};
  if (o.workers > 0) {
    body["workers"] = {{"count", o.workers},
                       {"instance_type", o.worker_instance_type.value_or(instance_type)},
                       {"image", image},
                       {"disk_gb", o.disk_gb}};
  }
  CANOPY_ASSIGN_OR_RETURN(Json accepted, s.Post(Clusters().path, body));
  if (!o.wait.wait) {
    PrintAccepted(ctx, accepted, "cluster", Clusters().details);
    return OkStatus();
  }
  std::string cluster_id =
      accepted.is_object() ? StringField(accepted.value("cluster", Json()), "id") : "";
  CANOPY_TRY(Follow(ctx, s, accepted, o.wait));
  if (cluster_id.empty()) {
    return Error::Internal("the root's response names no cluster id");
  }
  return PrintCluster(ctx, s, cluster_id);
}

Status DoClusterShow(Context& ctx, const std::string& key) {
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json cluster, ResolveCluster(s, key));
  return PrintCluster(ctx, s, StringField(cluster, "id"));
}

Status DoClusterDelete(Context& ctx, const std::string& key, const WaitOptions& wait) {
  CANOPY_TRY(CheckWait(wait));
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json cluster, ResolveCluster(s, key));
  std::string id = StringField(cluster, "id");
  CANOPY_ASSIGN_OR_RETURN(Json accepted, s.Delete(ClusterPath(id)));
  if (!wait.wait) {
    PrintAccepted(ctx, accepted, "cluster", {{"ID", "id"}, {"Name", "name"}, {"State", "state"}});
    return OkStatus();
  }
  CANOPY_ASSIGN_OR_RETURN(Json op, Follow(ctx, s, accepted, wait));
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, op);
  } else {
    ctx.out << fmt::format("Deleted cluster {} ({})\n", FieldText(cluster, "name"),
                           FieldText(cluster, "id"));
  }
  return OkStatus();
}

Status DoWorkerAdd(Context& ctx, const WorkerAddOptions& o) {
  if (o.count < 1) {
    return Error::InvalidArgument("--count must be at least 1");
  }
  if (o.disk_gb && *o.disk_gb <= 0) {
    return Error::InvalidArgument("--disk-gb must be a positive number of GB");
  }
  CANOPY_TRY(CheckWait(o.wait));
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json cluster, ResolveCluster(s, o.cluster));
  std::string cluster_id = StringField(cluster, "id");
  Json body = {{"count", o.count}};
  if (o.instance_type) body["instance_type"] = *o.instance_type;
  if (o.image) body["image"] = *o.image;
  if (o.disk_gb) body["disk_gb"] = *o.disk_gb;
  CANOPY_ASSIGN_OR_RETURN(Json accepted, s.Post(WorkersPath(cluster_id), body));
  Json added = accepted.is_object() ? accepted.value("workers", Json::array()) : Json::array();
  if (!o.wait.wait) {
    if (ctx.global.output == OutputFormat::kJson) {
      PrintJson(ctx.out, accepted);
    } else {
      RenderTable(ctx.out, Workers().list, added);
      ctx.out << '\n';
      RenderKeyValues(ctx.out, {{"Operation", FieldText(accepted, "operation_id")}});
    }
    return OkStatus();
  }
  CANOPY_TRY(Follow(ctx, s, accepted, o.wait));
  CANOPY_ASSIGN_OR_RETURN(Json now, s.Get(WorkersPath(cluster_id)));
  std::set<std::string> ids;
  if (added.is_array()) {
    for (const Json& w : added) {
      ids.insert(StringField(w, "id"));
    }
  }
  Json fresh = Json::array();
  for (const Json& w : ListItems(now)) {
    if (ids.count(StringField(w, "id")) != 0) {
      fresh.push_back(w);
    }
  }
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, fresh);
  } else {
    RenderTable(ctx.out, Workers().list, fresh);
  }
  return OkStatus();
}

Status DoWorkerList(Context& ctx, const std::string& key) {
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json cluster, ResolveCluster(s, key));
  CANOPY_ASSIGN_OR_RETURN(Json list, s.Get(WorkersPath(StringField(cluster, "id"))));
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, list);
  } else {
    RenderTable(ctx.out, Workers().list, ListItems(list));
  }
  return OkStatus();
}

Status DoWorkerShow(Context& ctx, const std::string& cluster_key, const std::string& worker_key) {
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json cluster, ResolveCluster(s, cluster_key));
  CANOPY_ASSIGN_OR_RETURN(Json found, ResolveWorker(s, cluster, worker_key));
  CANOPY_ASSIGN_OR_RETURN(Json worker,
                          s.Get(WorkerPath(StringField(cluster, "id"), StringField(found, "id"))));
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, worker);
  } else {
    RenderDetails(ctx.out, Workers().details, worker);
  }
  return OkStatus();
}

struct WorkerVerb {
  std::string_view path;  // POST .../workers/{wid}/<path>; empty: DELETE .../workers/{wid}
  std::string_view done;  // "Stopped"
};

WorkerVerb VerbOf(WorkerAction a) {
  switch (a) {
    case WorkerAction::kStop:
      return {"stop", "Stopped"};
    case WorkerAction::kRestart:
      return {"restart", "Restarted"};
    case WorkerAction::kTerminate:
      return {"terminate", "Terminated"};
    case WorkerAction::kRecreate:
      return {"recreate", "Recreated"};
    case WorkerAction::kDelete:
      break;
  }
  return {"", "Deleted"};
}

Status DoWorkerAct(Context& ctx, const WorkerActionOptions& o) {
  CANOPY_TRY(CheckWait(o.wait));
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json cluster, ResolveCluster(s, o.cluster));
  std::string cluster_id = StringField(cluster, "id");
  CANOPY_ASSIGN_OR_RETURN(Json worker, ResolveWorker(s, cluster, o.worker));
  std::string worker_id = StringField(worker, "id");
  WorkerVerb verb = VerbOf(o.action);
  std::string path = WorkerPath(cluster_id, worker_id);
  Result<Json> sent = verb.path.empty()
                          ? s.Delete(path)
                          : s.Post(fmt::format("{}/{}", path, verb.path), Json::object());
  CANOPY_ASSIGN_OR_RETURN(Json accepted, std::move(sent));
  if (!o.wait.wait) {
    PrintAccepted(ctx, accepted, "worker", Workers().details);
    return OkStatus();
  }
  CANOPY_ASSIGN_OR_RETURN(Json op, Follow(ctx, s, accepted, o.wait));
  const Json* fresh = nullptr;
  Json list;
  if (o.action != WorkerAction::kDelete) {
    CANOPY_ASSIGN_OR_RETURN(list, s.Get(WorkersPath(cluster_id)));
    list = ListItems(list);
    for (const Json& w : list) {
      if (StringField(w, "id") == worker_id) {
        fresh = &w;
      }
    }
  }
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, fresh != nullptr ? *fresh : op);
  } else if (fresh != nullptr) {
    RenderDetails(ctx.out, Workers().details, *fresh);
  } else {
    ctx.out << fmt::format("{} worker {} ({})\n", verb.done, FieldText(worker, "name"),
                           FieldText(worker, "id"));
  }
  return OkStatus();
}

Status DoServiceCreate(Context& ctx, const ServiceCreateOptions& o) {
  if (o.wait.wait && !o.deploy) {
    return Error::InvalidArgument("--wait needs --deploy");
  }
  CANOPY_TRY(CheckWait(o.wait));
  if (o.sla_file) {
    if (!o.name.empty() || !o.command.empty() || !o.ports.empty() || !o.env.empty() ||
        o.cpu_millis || o.memory_mib || o.replicas || o.cluster || o.restart) {
      return Error::InvalidArgument(
          "--sla takes the services from the file: give no NAME, command, --port, --env, --cpu, "
          "--memory, --replicas, --cluster or --restart with it");
    }
    CANOPY_ASSIGN_OR_RETURN(Json sla, ReadSlaFile(*o.sla_file));
    CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
    CANOPY_ASSIGN_OR_RETURN(Json imported, s.Post(fmt::format("{}/import", Services().path), sla));
    Json created = ListItems(imported);
    if (!o.deploy) {
      if (ctx.global.output == OutputFormat::kJson) {
        PrintJson(ctx.out, imported);
      } else {
        RenderTable(ctx.out, Services().list, created);
      }
      return OkStatus();
    }
    CANOPY_ASSIGN_OR_RETURN(Json deployed, DeployCreated(ctx, s, created, o.wait));
    PrintServices(ctx, deployed);
    return OkStatus();
  }
  CANOPY_ASSIGN_OR_RETURN(Json body, ServiceBody(o));
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json created, s.Post(Services().path, body));
  if (!o.deploy) {
    PrintService(ctx, created);
    return OkStatus();
  }
  CANOPY_ASSIGN_OR_RETURN(Json deployed, DeployCreated(ctx, s, Json::array({created}), o.wait));
  PrintService(ctx, deployed.empty() ? created : deployed[0]);
  return OkStatus();
}

Status DoServiceShow(Context& ctx, const std::string& key) {
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json svc, ResolveService(s, key));
  CANOPY_ASSIGN_OR_RETURN(Json fresh, s.Get(ServicePath(StringField(svc, "id"))));
  PrintService(ctx, fresh);
  return OkStatus();
}

// POST /api/v1/services/{id}/<action> with `body`, then with --wait follows the service to `goal`.
Status ServiceAction(Context& ctx, const std::string& key, std::string_view action,
                     const Json& body, const WaitOptions& wait, ServiceGoal goal) {
  CANOPY_TRY(CheckWait(wait));
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json svc, ResolveService(s, key));
  std::string id = StringField(svc, "id");
  CANOPY_ASSIGN_OR_RETURN(Json accepted,
                          s.Post(fmt::format("{}/{}", ServicePath(id), action), body));
  // Scaling a service that is not deployed changes only its replicas: nothing to wait for.
  bool undeployed = accepted.is_object() && accepted.contains("deployed") &&
                    accepted["deployed"].is_boolean() && !accepted["deployed"].get<bool>();
  if (!wait.wait || (goal == ServiceGoal::kRunning && undeployed)) {
    PrintService(ctx, accepted);
    return OkStatus();
  }
  CANOPY_ASSIGN_OR_RETURN(
      Json done, FollowService(ctx, s, id, goal, std::chrono::seconds(wait.timeout_seconds)));
  PrintService(ctx, done);
  return OkStatus();
}

Status DoServiceDeploy(Context& ctx, const ServiceDeployOptions& o) {
  if (o.replicas && *o.replicas < 1) {
    return Error::InvalidArgument("--replicas must be at least 1");
  }
  Json body = Json::object();
  if (o.replicas) {
    body["replicas"] = *o.replicas;
  }
  return ServiceAction(ctx, o.service, "deploy", body, o.wait, ServiceGoal::kRunning);
}

Status DoServiceScale(Context& ctx, const ServiceScaleOptions& o) {
  if (o.replicas < 0) {
    return Error::InvalidArgument("the number of replicas must not be negative");
  }
  return ServiceAction(ctx, o.service, "scale", Json{{"replicas", o.replicas}}, o.wait,
                       ServiceGoal::kRunning);
}

Status DoServiceDelete(Context& ctx, const std::string& key) {
  CANOPY_ASSIGN_OR_RETURN(Session s, Connect(ctx));
  CANOPY_ASSIGN_OR_RETURN(Json svc, ResolveService(s, key));
  CANOPY_ASSIGN_OR_RETURN(Json resp, s.Delete(ServicePath(StringField(svc, "id"))));
  if (ctx.global.output == OutputFormat::kJson) {
    PrintJson(ctx.out, resp);
  } else {
    ctx.out << fmt::format("Deleted service {} ({})\n", FieldText(svc, "name"),
                           FieldText(svc, "id"));
  }
  return OkStatus();
}

}  // namespace

int ReportError(Context& ctx, std::string_view message) {
  ctx.err << FormatErrorLine(message) << '\n';
  return kExitError;
}

int Login(Context& ctx, const LoginOptions& opts) { return Finish(ctx, DoLogin(ctx, opts)); }
int Logout(Context& ctx) { return Finish(ctx, DoLogout(ctx)); }

int UserCreate(Context& ctx, const UserCreateOptions& opts) {
  return Finish(ctx, DoUserCreate(ctx, opts));
}
int UserList(Context& ctx) { return Finish(ctx, ListResource(ctx, Users())); }
int UserDelete(Context& ctx, const std::string& id) {
  return Finish(ctx, DeleteResource(ctx, Users(), id, "Deleted"));
}

int ProviderToken(Context& ctx) { return Finish(ctx, DoProviderToken(ctx)); }
int ProviderList(Context& ctx) { return Finish(ctx, ListResource(ctx, Providers())); }
int ProviderDetach(Context& ctx, const std::string& id) {
  return Finish(ctx, DeleteResource(ctx, Providers(), id, "Detached"));
}
int ProviderApprove(Context& ctx, const std::string& id) {
  return Finish(ctx, DoProviderApprove(ctx, id));
}
int Password(Context& ctx, const PasswordOptions& opts) {
  return Finish(ctx, DoPassword(ctx, opts));
}

int CredentialAdd(Context& ctx, const CredentialAddOptions& opts) {
  return Finish(ctx, DoCredentialAdd(ctx, opts));
}
int CredentialList(Context& ctx) { return Finish(ctx, ListResource(ctx, Credentials())); }
int CredentialShow(Context& ctx, const std::string& id) {
  return Finish(ctx, ShowResource(ctx, Credentials(), id));
}
int CredentialDelete(Context& ctx, const std::string& id) {
  return Finish(ctx, DeleteResource(ctx, Credentials(), id, "Deleted"));
}

int Offers(Context& ctx, const OffersOptions& opts) { return Finish(ctx, DoOffers(ctx, opts)); }

int OperationShow(Context& ctx, const std::string& id) {
  return Finish(ctx, DoOperationShow(ctx, id));
}
int OperationList(Context& ctx, const OperationListOptions& opts) {
  std::string query;
  if (opts.target) {
    query = "?target=" + EscapeUrlComponent(*opts.target);
  }
  return Finish(ctx, ListResource(ctx, Operations(), query));
}

int ClusterCreate(Context& ctx, const ClusterCreateOptions& opts) {
  return Finish(ctx, DoClusterCreate(ctx, opts));
}
int ClusterList(Context& ctx) { return Finish(ctx, ListResource(ctx, Clusters())); }
int ClusterShow(Context& ctx, const std::string& cluster) {
  return Finish(ctx, DoClusterShow(ctx, cluster));
}
int ClusterDelete(Context& ctx, const std::string& cluster, const WaitOptions& wait) {
  return Finish(ctx, DoClusterDelete(ctx, cluster, wait));
}

int WorkerAdd(Context& ctx, const WorkerAddOptions& opts) {
  return Finish(ctx, DoWorkerAdd(ctx, opts));
}
int WorkerList(Context& ctx, const std::string& cluster) {
  return Finish(ctx, DoWorkerList(ctx, cluster));
}
int WorkerShow(Context& ctx, const std::string& cluster, const std::string& worker) {
  return Finish(ctx, DoWorkerShow(ctx, cluster, worker));
}
int WorkerAct(Context& ctx, const WorkerActionOptions& opts) {
  return Finish(ctx, DoWorkerAct(ctx, opts));
}

int ServiceCreate(Context& ctx, const ServiceCreateOptions& opts) {
  return Finish(ctx, DoServiceCreate(ctx, opts));
}
int ServiceList(Context& ctx) { return Finish(ctx, ListResource(ctx, Services())); }
int ServiceShow(Context& ctx, const std::string& service) {
  return Finish(ctx, DoServiceShow(ctx, service));
}
int ServiceDeploy(Context& ctx, const ServiceDeployOptions& opts) {
  return Finish(ctx, DoServiceDeploy(ctx, opts));
}
int ServiceUndeploy(Context& ctx, const std::string& service, const WaitOptions& wait) {
  return Finish(
      ctx, ServiceAction(ctx, service, "undeploy", Json::object(), wait, ServiceGoal::kStopped));
}
int ServiceScale(Context& ctx, const ServiceScaleOptions& opts) {
  return Finish(ctx, DoServiceScale(ctx, opts));
}
int ServiceDelete(Context& ctx, const std::string& service) {
  return Finish(ctx, DoServiceDelete(ctx, service));
}

}  // namespace canopy::cli
