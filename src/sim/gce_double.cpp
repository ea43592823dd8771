#include "sim/gce_double.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/pem.h>

#include <algorithm>
#include <regex>
#include <thread>

#include "common/ids.h"
#include "common/log.h"
#include "sim/detail/gce_impl.h"

namespace canopy::sim {

namespace gce {

GoogleError NotFound(const std::string& message, bool with_status) {
  GoogleError e;
  e.code = 404;
  e.status = with_status ? "NOT_FOUND" : "";
  e.reason = "notFound";
  e.message = message;
  return e;
}

GoogleError AlreadyExists(const std::string& message, bool with_status) {
  GoogleError e;
  e.code = 409;
  e.status = with_status ? "ALREADY_EXISTS" : "";
  e.reason = "alreadyExists";
  e.message = message;
  return e;
}

GoogleError Forbidden(const std::string& message, bool with_status) {
  GoogleError e;
  e.code = 403;
  e.status = with_status ? "PERMISSION_DENIED" : "";
  e.reason = "forbidden";
  e.message = message;
  return e;
}

GoogleError Invalid(const std::string& message) {
  GoogleError e;
  e.code = 400;
  e.status = "";
  e.reason = "invalid";
  e.message = message;
  return e;
}

GoogleError NotImplemented(const std::string& method_id) {
  GoogleError e;
  e.code = 501;
  e.status = "UNIMPLEMENTED";
  e.reason = "notImplemented";
  e.message = "canopy-sim: " + method_id + " is not simulated (docs/providers/gcp-sim.md)";
  return e;
}

std::string NewNumericId() {
  std::string hex = RandomHex(8);
  uint64_t v = std::stoull(hex, nullptr, 16);
  return std::to_string(1000000000000000000ULL + v % 8000000000000000000ULL);
}

std::string NowRfc3339(const Clock& clock) { return FormatRfc3339(clock.Now()); }

Json Faults::ToJson() const {
  Json j = Json::object();
  j["rate_limited"] = rate_limited;
  j["unavailable"] = unavailable;
  j["stockout"] = stockout;
  j["quota"] = quota;
  j["slow_operations"] = {{"polls", slow_polls}, {"ms", slow_min.count()}};
  return j;
}

}  // namespace gce

namespace {

using gce::Reply;

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

// A fresh RSA 2048 key and its PKCS#8 PEM, as Google's service-account keys are.
Result<std::pair<gce::PkeyPtr, std::string>> GenerateRsaKey() {
  gce::PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)),
                   gce::PkeyFree());
  if (!key) return Error::Internal("cannot generate an RSA key");
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PKCS8PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr,
                                            nullptr) != 1) {
    return Error::Internal("cannot encode an RSA key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || data == nullptr) return Error::Internal("cannot encode an RSA key");
  return std::make_pair(key, std::string(data, static_cast<size_t>(len)));
}

bool VerifyRs256(EVP_PKEY* key, std::string_view input, std::string_view sig) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
}

net::Response FromError(const GoogleError& e) {
  return net::Response::FromJson(e.code, e.ToJson());
}

net::Response OAuthError(const std::string& error, const std::string& description) {
  return net::Response::FromJson(400, Json{{"error", error}, {"error_description", description}});
}

GoogleError Unauthenticated(bool missing) {
  GoogleError e;
  e.code = 401;
  e.status = "UNAUTHENTICATED";
  if (missing) {
    e.reason = "required";
    e.message =
        "Request is missing required authentication credential. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.";
    e.location = "Authorization";
    e.location_type = "header";
    return e;
  }
  e.reason = "authError";
  e.message =
      "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
      "cookie or other valid authentication credential. See "
      "https://developers.google.com/identity/sign-in/web/devconsole-project.";
  e.location = "Authorization";
  e.location_type = "header";
  return e;
}

// The IAM permission a method needs, as Google names it in 403s.
std::string Permission(const std::string& method_id) {
  std::vector<std::string> p;
  size_t pos = 0;
  while (true) {
    size_t dot = method_id.find('.', pos);
    p.push_back(method_id.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos));
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  if (p.size() < 3) return method_id;
  std::string verb = p.back();
  std::string res = p[p.size() - 2];
  if (p[0] == "compute") {
    if (verb == "insert") verb = "create";
    if (verb == "patch") verb = "update";
    if (verb == "getFromFamily") verb = "get";
    if (verb == "getSerialPortOutput") verb = "getSerialPortOutput";
    return "compute." + res + "." + verb;
  }
  if (p[0] == "iam") {
    return res == "keys" ? "iam.serviceAccountKeys." + verb : "iam.serviceAccounts." + verb;
  }
  if (p[0] == "cloudresourcemanager") return "resourcemanager.projects." + verb;
  if (p[0] == "secretmanager") {
    if (verb == "addVersion") return "secretmanager.versions.add";
    return "secretmanager." + res + "." + verb;
  }
  return method_id;
}

// What a role lets its members call (the double's own, small table: docs/providers/gcp-sim.md).
bool RoleAllows(const std::string& role, const std::string& method_id) {
  if (role == "roles/owner" || role == "roles/editor") return true;
  if (role == "roles/compute.admin") return method_id.rfind("compute.", 0) == 0;
  if (role == "roles/compute.securityAdmin") {
    static const std::set<std::string> kAllowed = {
        "compute.instances.get",        "compute.instances.list",
        "compute.instances.setTags",    "compute.instances.getGuestAttributes",
        "compute.zoneOperations.get",   "compute.zoneOperations.wait",
        "compute.globalOperations.get", "compute.globalOperations.wait"};
    return method_id.rfind("compute.firewalls.", 0) == 0 || kAllowed.count(method_id) > 0;
  }
  return false;
}

// "projects/P/serviceAccounts/X" -> {P, X}; nullopt for another shape.
std::optional<std::pair<std::string, std::string>> SplitAccountName(const std::string& name) {
  static const std::regex re("projects/([^/]+)/serviceAccounts/([^/]+)");
  std::smatch m;
  if (!std::regex_match(name, m, re)) return std::nullopt;
  return std::make_pair(m[1].str(), m[2].str());
}

// CRC32C (Castagnoli), as Secret Manager reports dataCrc32c.
uint32_t Crc32c(std::string_view data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : data) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return crc ^ 0xFFFFFFFFu;
}

std::string Etag() { return "BwY" + RandomToken(6); }

}  // namespace

// --- options ------------------------------------------------------------------------------------

Result<GceDoubleOptions> ParseGceDoubleOptions(const Json& c) {
  if (!c.is_object()) return Error::InvalidArgument("the sim config must be a JSON object");
  GceDoubleOptions o;
  CANOPY_ASSIGN_OR_RETURN(o.discovery_dir, GetString(c, "discovery_dir", 1024));
  if (c.contains("listen")) {
    CANOPY_ASSIGN_OR_RETURN(o.listen, GetString(c, "listen", 64));
  }
  if (c.contains("project")) {
    CANOPY_ASSIGN_OR_RETURN(o.project, GetString(c, "project", 30));
  }
  CANOPY_ASSIGN_OR_RETURN(o.machines, GetOptBool(c, "machines", true));
  if (c.contains("state_dir")) {
    CANOPY_ASSIGN_OR_RETURN(o.local.state_dir, GetString(c, "state_dir", 1024));
  } else if (o.machines) {
    return Error::InvalidArgument("state_dir is required (the machines' state)");
  }
  if (c.contains("bridge")) {
    CANOPY_ASSIGN_OR_RETURN(o.local.bridge, GetString(c, "bridge", 15));
  }
  if (c.contains("subnet")) {
    CANOPY_ASSIGN_OR_RETURN(o.local.subnet, GetString(c, "subnet", 32));
  }
  if (c.contains("images_dir")) {
    CANOPY_ASSIGN_OR_RETURN(o.local.images_dir, GetString(c, "images_dir", 1024));
  }
  if (c.contains("boot_delay_ms")) {
    CANOPY_ASSIGN_OR_RETURN(int64_t ms, GetInt(c, "boot_delay_ms", 0, 600000));
    o.local.boot_delay = std::chrono::milliseconds(ms);
  }
  if (c.contains("instance_range")) {
    CANOPY_ASSIGN_OR_RETURN(o.instance_range, GetString(c, "instance_range", 32));
  }
  if (c.contains("operation_polls")) {
    CANOPY_ASSIGN_OR_RETURN(int64_t n, GetInt(c, "operation_polls", 1, 1000));
    o.operation_polls = static_cast<int>(n);
  }
  if (c.contains("operation_min_ms")) {
    CANOPY_ASSIGN_OR_RETURN(int64_t ms, GetInt(c, "operation_min_ms", 0, 600000));
    o.operation_min = std::chrono::milliseconds(ms);
  }
  if (c.contains("token_lifetime_s")) {
    CANOPY_ASSIGN_OR_RETURN(int64_t s, GetInt(c, "token_lifetime_s", 1, 3600));
    o.token_lifetime = std::chrono::seconds(s);
  }
  static const std::regex project_re("[a-z][-a-z0-9]{4,28}[a-z0-9]");
  if (!std::regex_match(o.project, project_re)) {
    return Error::InvalidArgument("project must be a project id (6-30 of [a-z0-9-])");
  }
  return o;
}

// --- lifecycle ----------------------------------------------------------------------------------

GceDouble::GceDouble() = default;

GceDouble::~GceDouble() { Stop(); }

Result<std::unique_ptr<GceDouble>> GceDouble::Start(GceDoubleOptions options) {
  if (!options.clock) options.clock = std::make_shared<SystemClock>();
  std::unique_ptr<GceDouble> d(new GceDouble());
  d->impl_ = std::make_shared<Impl>(std::move(options));
  CANOPY_TRY(d->impl_->Init());
  return d;
}

std::string GceDouble::url() const { return impl_->base_url; }
const std::string& GceDouble::project() const { return impl_->opts.project; }
Json GceDouble::OwnerKey() const { return impl_->owner_key; }

void GceDouble::Stop() {
  if (impl_) impl_->StopAll();
}

void GceDouble::ClearFaults() { impl_->ClearFaults(); }
Status GceDouble::AddFault(const Json& f) { return impl_->AddFault(f); }
Json GceDouble::Instances() const { return impl_->InstancesJson(); }

void GceDouble::Impl::ClearFaults() {
  std::lock_guard lock(mu);
  faults = gce::Faults{};
}

void GceDouble::WaitIdle() {
  std::unique_lock lock(impl_->mu);
  impl_->changed.wait_for(lock, std::chrono::seconds(300), [&] {
    for (const auto& [k, in] : impl_->instances) {
      if (in->busy) return false;
    }
    return true;
  });
}

Json GceDouble::Impl::InstancesJson() const {
  std::lock_guard lock(mu);
  Json out = Json::array();
  for (const auto& [k, in] : instances) {
    out.push_back({{"zone", in->zone},
                   {"name", in->name},
                   {"id", in->id},
                   {"status", in->status},
                   {"network_ip", in->network_ip},
                   {"nat_ip", in->nat_ip},
                   {"tags", in->tags},
                   {"machine", in->machine_id},
                   {"machine_running", in->machine_running},
                   {"host_key", in->host_key},
                   {"host_key_sha256", in->host_key_sha256},
                   {"firewall_rules", in->firewall_key},
                   {"busy", in->busy}});
  }
  return out;
}

Status GceDouble::Impl::AddFault(const Json& f) {
  if (f.is_object() && f.contains("faults") && f["faults"].is_array()) {
    for (const auto& one : f["faults"]) CANOPY_TRY(AddFault(one));
    return OkStatus();
  }
  if (!f.is_object()) return Error::InvalidArgument("a fault is a JSON object");
  CANOPY_ASSIGN_OR_RETURN(std::string kind, GetString(f, "fault", 64));
  CANOPY_ASSIGN_OR_RETURN(auto count, GetOptInt(f, "count", -1, 1000000));
  int n = count ? static_cast<int>(*count) : -1;
  if (n == 0) return Error::InvalidArgument("count must be >= 1 (or -1: until cleared)");
  std::lock_guard lock(mu);
  if (kind == "stockout") {
    CANOPY_ASSIGN_OR_RETURN(std::string zone, GetString(f, "zone", 64));
    faults.stockout[zone] = n;
  } else if (kind == "quota") {
    CANOPY_ASSIGN_OR_RETURN(auto region, GetOptString(f, "region", 64));
    faults.quota[region.value_or("")] = n;
  } else if (kind == "rate_limit" || kind == "unavailable") {
    int& left = kind == "rate_limit" ? faults.rate_limited : faults.unavailable;
    left = n < 0 ? 1000000 : left + n;
  } else if (kind == "slow_operations") {
    CANOPY_ASSIGN_OR_RETURN(auto polls, GetOptInt(f, "polls", 0, 1000));
    CANOPY_ASSIGN_OR_RETURN(auto ms, GetOptInt(f, "ms", 0, 600000));
    faults.slow_polls = static_cast<int>(polls.value_or(0));
    faults.slow_min = std::chrono::milliseconds(ms.value_or(0));
  } else if (kind == "expire_tokens") {
    const TimePoint past = opts.clock->Now() - std::chrono::seconds(1);
    for (auto& [t, tok] : tokens) tok.expiry = past;
  } else {
    return Error::InvalidArgument(
        "unknown fault '" + kind +
        "' (stockout, quota, rate_limit, unavailable, slow_operations, expire_tokens)");
  }
  SPDLOG_INFO("Fault injected fault={}", DumpJson(f));
  return OkStatus();
}

Status GceDouble::Impl::Init() {
  CANOPY_ASSIGN_OR_RETURN(discovery, Discovery::LoadGcp(opts.discovery_dir));
  // The instances' address range, inside the machines' subnet.
  auto parse_cidr = [](const std::string& cidr, uint32_t* base, int* bits) {
    size_t slash = cidr.find('/');
    if (slash == std::string::npos) return false;
    unsigned a, b, c, d;
    if (std::sscanf(cidr.substr(0, slash).c_str(), "%u.%u.%u.%u", &a, &b, &c, &d) != 4 || a > 255 ||
        b > 255 || c > 255 || d > 255) {
      return false;
    }
    *bits = std::atoi(cidr.c_str() + slash + 1);
    if (*bits < 8 || *bits > 30) return false;
    uint32_t mask = *bits == 0 ? 0 : ~0u << (32 - *bits);
    *base = ((a << 24) | (b << 16) | (c << 8) | d) & mask;
    return true;
  };
  uint32_t net_base = 0, range = 0;
  int net_bits = 0, range_bits = 0;
  if (!parse_cidr(opts.local.subnet, &net_base, &net_bits)) {
    return Error::InvalidArgument("subnet must be an IPv4 CIDR: " + opts.local.subnet);
  }
  if (!parse_cidr(opts.instance_range, &range, &range_bits)) {
    return Error::InvalidArgument("instance_range must be an IPv4 CIDR: " + opts.instance_range);
  }
  uint32_t net_mask = ~0u << (32 - net_bits);
  if (range_bits < net_bits || (range & net_mask) != net_base) {
    return Error::InvalidArgument("instance_range " + opts.instance_range + " must lie in subnet " +
                                  opts.local.subnet);
  }
  range_base = range;
  range_size = 1u << (32 - range_bits);
  gateway = net_base + 1;
  if (opts.machines) {
    CANOPY_ASSIGN_OR_RETURN(local, providers::local::LocalProvider::Create(opts.local));
  }

  // The project, its owner and the owner's key.
  project_number = std::to_string(100000000000ULL +
                                  std::stoull(Sha256Hex(opts.project).substr(0, 12), nullptr, 16) %
                                      900000000000ULL);
  owner_email = "canopy-sim-owner@" + opts.project + ".iam.gserviceaccount.com";
  gce::ServiceAccount owner;
  owner.account_id = "canopy-sim-owner";
  owner.email = owner_email;
  owner.unique_id = gce::NewNumericId().substr(0, 18) + "001";
  owner.display_name = "Canopy sim project owner";
  owner.etag = "MDEwMjE5MjA=";
  accounts[owner_email] = owner;
  policy_bindings = Json::array(
      {{{"role", "roles/owner"}, {"members", Json::array({"serviceAccount:" + owner_email})}}});
  policy_etag = Etag();

  // Every path goes to Serve, which finds the method in the discovery documents.
  auto router = std::make_shared<net::Router>();
  std::weak_ptr<Impl> weak = weak_from_this();
  auto serve = [weak](const net::Request& req) {
    auto self = weak.lock();
    if (!self) return net::Response::FromJson(503, Json{{"error", "stopping"}});
    return self->Serve(req);
  };
  for (const char* method : {"GET", "POST", "PATCH", "PUT", "DELETE"}) {
    std::string pattern;
    for (int i = 0; i < 12; ++i) {
      pattern += "/{s" + std::to_string(i) + "}";
      router->Add(method, pattern, serve);
    }
  }
  router->Add("POST", "/token", [weak](const net::Request& req) {
    auto self = weak.lock();
    if (!self) return net::Response::FromJson(503, Json{{"error", "stopping"}});
    return self->Token(req);
  });
  for (const char* method : {"GET", "POST", "DELETE"}) {
    for (const char* path : {"/_sim/faults", "/_sim/instances"}) {
      router->Add(method, path, [weak](const net::Request& req) {
        auto self = weak.lock();
        if (!self) return net::Response::FromJson(503, Json{{"error", "stopping"}});
        return self->Admin(req);
      });
    }
  }
  CANOPY_ASSIGN_OR_RETURN(auto hp, net::ParseHostPort(opts.listen));
  net::ServerOptions so;
  so.host = hp.first;
  so.port = hp.second;
  so.worker_threads = 32;  // operations.wait blocks a worker
  so.max_body_bytes = 4 << 20;
  auto errors = [](const Error& e) {
    GoogleError g = gce::NotFound("The requested URL was not found on this server.", true);
    if (e.code != ErrorCode::kNotFound) {
      g = InvalidRequest(e.message);
      if (e.code == ErrorCode::kPayloadTooLarge) g.code = 413;
    }
    return FromError(g);
  };
  CANOPY_ASSIGN_OR_RETURN(server, net::HttpServer::Start(so, router, errors, nullptr));
  base_url = "http://" + hp.first + ":" + std::to_string(server->port());
  {
    std::lock_guard lock(mu);
    auto key = CreateKey(owner_email);
    if (!key) return key.error();
    owner_key = *key;
  }
  SPDLOG_INFO("Compute Engine double serving url={} project={} machines={}", base_url, opts.project,
              opts.machines);
  return OkStatus();
}

void GceDouble::Impl::StopAll() {
  if (server) server->Stop();
  std::map<std::string, std::future<void>> pending;
  {
    std::lock_guard lock(mu);
    if (stopping && workers.empty()) return;
    stopping = true;
    pending.swap(workers);
  }
  for (auto& [id, f] : pending) f.wait();
  if (local) {
    auto all = local->FindInstancesByTag(LocalCtx(), "canopy-sim", "gce");
    if (all) {
      for (const auto& m : *all) {
        Status st = local->TerminateInstance(LocalCtx(), m.handle);
        if (!st) SPDLOG_WARN("Machine terminate failed machine={}", m.provider_id);
        for (const auto& fw : m.firewalls) (void)local->DeleteFirewall(LocalCtx(), fw);
      }
    }
    providers::local::LocalProvider::ReleaseAddresses(opts.local);
  }
  std::lock_guard lock(mu);
  instances.clear();
}

// --- HTTP ---------------------------------------------------------------------------------------

net::Response GceDouble::Impl::Serve(const net::Request& req) {
  ApiCall call;
  if (auto e = discovery->Validate(req.method, req.target, req.body, &call)) {
    SPDLOG_DEBUG("Request refused method={} path={} code={} message={}", req.method, req.path,
                 e->code, e->message);
    return FromError(*e);
  }
  std::string caller;
  {
    std::lock_guard lock(mu);
    std::string auth = req.Header("authorization");
    if (auth.rfind("Bearer ", 0) != 0) return FromError(Unauthenticated(true));
    auto it = tokens.find(auth.substr(7));
    if (it == tokens.end() || it->second.expiry <= opts.clock->Now() ||
        !accounts.count(it->second.email)) {
      return FromError(Unauthenticated(false));
    }
    caller = it->second.email;
  }
  if (auto e = Authorize(call, caller)) return FromError(*e);
  {
    std::lock_guard lock(mu);
    if (faults.rate_limited > 0) {
      --faults.rate_limited;
      GoogleError e;
      e.code = 429;
      e.status = "RESOURCE_EXHAUSTED";
      e.reason = "rateLimitExceeded";
      e.message = "Rate Limit Exceeded";
      GoogleError shown = e;
      Json j = shown.ToJson();
      j["error"]["errors"][0]["domain"] = "usageLimits";
      return net::Response::FromJson(429, j);
    }
    if (faults.unavailable > 0) {
      --faults.unavailable;
      GoogleError e;
      e.code = 503;
      e.status = "UNAVAILABLE";
      e.reason = "backendError";
      e.message = "Internal error. Please try again or contact Google Support. (Code: '" +
                  RandomHex(6) + "')";
      return FromError(e);
    }
  }
  Reply r;
  try {
    r = Dispatch(call, caller);
  } catch (const std::exception& e) {  // a bug of the double: Google's 500, and the log says why
    SPDLOG_ERROR("Request failed method={} error={}", call.method_id, e.what());
    GoogleError g;
    g.code = 500;
    g.status = "INTERNAL";
    g.reason = "backendError";
    g.message = "Internal error. Please try again or contact Google Support.";
    return FromError(g);
  }
  SPDLOG_DEBUG("Request method={} status={}", call.method_id, r.status);
  return net::Response::FromJson(r.status, r.body);
}

std::optional<GoogleError> GceDouble::Impl::Authorize(const ApiCall& call,
                                                      const std::string& caller) {
  std::lock_guard lock(mu);
  const std::string member = "serviceAccount:" + caller;
  for (const auto& b : policy_bindings) {
    const std::string role = b.value("role", "");
    for (const auto& m : b.value("members", Json::array())) {
      if (m.is_string() && m.get<std::string>() == member && RoleAllows(role, call.method_id)) {
        return std::nullopt;
      }
    }
  }
  const std::string perm = Permission(call.method_id);
  if (call.api == "compute") {
    std::string resource = "projects/" + call.Param("project");
    if (!call.Param("zone").empty()) resource += "/zones/" + call.Param("zone");
    for (const char* k : {"instance", "firewall", "operation"}) {
      if (!call.Param(k).empty()) {
        std::string kind = k;
        resource +=
            (kind == "firewall" || (kind == "operation" && call.Param("zone").empty()) ? "/global/"
                                                                                       : "/") +
            kind + "s/" + call.Param(k);
      }
    }
    if (call.method_id == "compute.instances.insert" && call.body.contains("name")) {
      resource += "/instances/" + call.body.value("name", "");
    }
    return gce::Forbidden(fmt::format("Required '{}' permission for '{}'", perm, resource), false);
  }
  if (call.api == "cloudresourcemanager") {
    return gce::Forbidden("The caller does not have permission");
  }
  return gce::Forbidden(
      fmt::format("Permission '{}' denied on resource (or it may not exist).", perm));
}

gce::Reply GceDouble::Impl::Dispatch(const ApiCall& call, const std::string& caller) {
  if (call.api == "compute") return Compute(call, caller);
  if (call.api == "cloudresourcemanager") return Crm(call);
  if (call.api == "iam") return Iam(call);
  if (call.api == "secretmanager") return SecretManager(call);
  return Reply::Err(gce::NotImplemented(call.method_id));
}

// --- OAuth token endpoint -----------------------------------------------------------------------

net::Response GceDouble::Impl::Token(const net::Request& req) {
  auto form = ParseQueryString(req.body);
  if (!form) return OAuthError("invalid_request", "Malformed form body.");
  std::map<std::string, std::string> f(form->begin(), form->end());
  if (f["grant_type"] != "urn:ietf:params:oauth:grant-type:jwt-bearer") {
    return OAuthError("unsupported_grant_type", "Invalid grant_type: " + f["grant_type"]);
  }
  const std::string jwt = f["assertion"];
  size_t d1 = jwt.find('.');
  size_t d2 = d1 == std::string::npos ? d1 : jwt.find('.', d1 + 1);
  if (d1 == std::string::npos || d2 == std::string::npos ||
      jwt.find('.', d2 + 1) != std::string::npos) {
    return OAuthError("invalid_grant", "Invalid JWT: the assertion is not a JWT.");
  }
  std::string header_text, claims_text, sig;
  if (!Base64UrlDecode(jwt.substr(0, d1), &header_text) ||
      !Base64UrlDecode(jwt.substr(d1 + 1, d2 - d1 - 1), &claims_text) ||
      !Base64UrlDecode(jwt.substr(d2 + 1), &sig)) {
    return OAuthError("invalid_grant", "Invalid JWT: bad base64url.");
  }
  auto header = ParseJsonObject(header_text);
  auto claims = ParseJsonObject(claims_text);
  if (!header || !claims) return OAuthError("invalid_grant", "Invalid JWT: not JSON.");
  if (header->value("alg", "") != "RS256") {
    return OAuthError("invalid_grant", "Invalid JWT Signature.");
  }
  const std::string iss = claims->value("iss", "");
  const std::string aud = claims->value("aud", "");
  const std::string scope = claims->value("scope", "");
  const std::string kid = header->value("kid", "");
  if (!(*claims)["iat"].is_number_integer() || !(*claims)["exp"].is_number_integer()) {
    return OAuthError("invalid_grant", "Invalid JWT: iat and exp must be numbers.");
  }
  const int64_t iat = (*claims)["iat"].get<int64_t>();
  const int64_t exp = (*claims)["exp"].get<int64_t>();
  const int64_t now = UnixSeconds(opts.clock->Now());
  std::lock_guard lock(mu);
  auto acct = accounts.find(iss);
  if (acct == accounts.end())
    return OAuthError("invalid_grant", "Invalid grant: account not found");
  if (aud != TokenUrl()) {
    return OAuthError("invalid_grant",
                      "Invalid JWT: Failed audience check. The right audience is " + TokenUrl());
  }
  if (exp <= now || exp - iat > 3600 || iat > now + 300 || exp <= iat) {
    return OAuthError("invalid_grant",
                      "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                      "reasonable timeframe. Check your iat and exp values in the JWT claim.");
  }
  bool verified = false;
  const std::string input = jwt.substr(0, d2);
  for (const auto& [id, key] : acct->second.keys) {
    if (!kid.empty() && id != kid) continue;
    if (VerifyRs256(key.get(), input, sig)) verified = true;
  }
  if (!verified) return OAuthError("invalid_grant", "Invalid JWT Signature.");
  if (scope.find("https://www.googleapis.com/auth/cloud-platform") == std::string::npos &&
      scope.find("https://www.googleapis.com/auth/compute") == std::string::npos) {
    return OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.");
  }
  std::string token = "ya29.c." + RandomToken(48);
  tokens[token] = gce::AccessToken{iss, opts.clock->Now() + opts.token_lifetime};
  SPDLOG_INFO("Access token issued account={}", iss);
  return net::Response::FromJson(200, Json{{"access_token", token},
                                           {"expires_in", opts.token_lifetime.count() - 1},
                                           {"token_type", "Bearer"}});
}

// --- admin API ----------------------------------------------------------------------------------

net::Response GceDouble::Impl::Admin(const net::Request& req) {
  if (req.path == "/_sim/instances") {
    if (req.method != "GET") return FromError(InvalidRequest("GET /_sim/instances only"));
    return net::Response::FromJson(200, Json{{"instances", InstancesJson()}});
  }
  if (req.method == "DELETE") {
    ClearFaults();
  } else if (req.method == "POST") {
    auto body = ParseJson(req.body);
    if (!body) return FromError(InvalidRequest(body.error().message));
    Status st = AddFault(*body);
    if (!st) return FromError(InvalidRequest(st.error().message));
  }
  std::lock_guard lock(mu);
  return net::Response::FromJson(200, Json{{"faults", faults.ToJson()}});
}

// --- operations ---------------------------------------------------------------------------------

gce::OperationPtr GceDouble::Impl::NewOperation(const std::string& zone, const std::string& type,
                                                const std::string& target_link,
                                                const std::string& target_id,
                                                const std::string& user) {
  auto op = std::make_shared<gce::Operation>();
  op->name = fmt::format("operation-{}-{}-{}-{}", UnixMillis(opts.clock->Now()),
                         RandomHex(7).substr(0, 13), RandomHex(4), RandomHex(4));
  op->id = gce::NewNumericId();
  op->zone = zone;
  op->type = type;
  op->target_link = target_link;
  op->target_id = target_id;
  op->user = user;
  op->insert_time = gce::NowRfc3339(*opts.clock);
  op->created = std::chrono::steady_clock::now();
  op->need_polls = faults.slow_polls > 0 ? faults.slow_polls : opts.operation_polls;
  op->min_duration = std::max(opts.operation_min, faults.slow_min);
  operations[op->name] = op;
  return op;
}

void GceDouble::Impl::Advance(gce::Operation& op) {
  if (op.status == "DONE") return;
  ++op.polls;
  if (op.status == "PENDING") {
    op.status = "RUNNING";
    op.start_time = gce::NowRfc3339(*opts.clock);
  }
  const bool ready =
      op.polls >= op.need_polls &&
      std::chrono::steady_clock::now() - op.created >= op.min_duration && op.work_done &&
      (op.firewall_version == 0 || !op.error.is_null() || FirewallsSettled(op.firewall_version));
  if (ready) {
    op.status = "DONE";
    op.progress = 100;
    op.end_time = gce::NowRfc3339(*opts.clock);
  }
}

std::string GceDouble::Impl::OperationLink(const gce::Operation& op) const {
  return op.zone.empty() ? fmt::format("{}projects/{}/global/operations/{}", gce::kApiBase,
                                       opts.project, op.name)
                         : fmt::format("{}projects/{}/zones/{}/operations/{}", gce::kApiBase,
                                       opts.project, op.zone, op.name);
}

Json GceDouble::Impl::RenderOperation(const gce::Operation& op) const {
  Json j{{"kind", "compute#operation"},
         {"id", op.id},
         {"name", op.name},
         {"operationType", op.type},
         {"targetLink", op.target_link},
         {"targetId", op.target_id},
         {"status", op.status},
         {"user", op.user},
         {"progress", op.progress},
         {"insertTime", op.insert_time},
         {"selfLink", OperationLink(op)}};
  if (!op.zone.empty()) j["zone"] = ZoneLink(op.zone);
  if (!op.start_time.empty()) j["startTime"] = op.start_time;
  if (op.status == "DONE") {
    j["endTime"] = op.end_time;
    if (!op.error.is_null()) {
      j["error"] = op.error;
      j["httpErrorStatusCode"] = op.http_error_status;
      j["httpErrorMessage"] = op.http_error_message;
    }
  }
  return j;
}

gce::Reply GceDouble::Impl::OperationGet(const ApiCall& call, bool wait) {
  const std::string zone = call.Param("zone");
  const std::string name = call.Param("operation");
  auto deadline = std::chrono::steady_clock::now() + opts.max_wait;
  std::unique_lock lock(mu);
  auto it = operations.find(name);
  if (it == operations.end() || it->second->zone != zone) {
    return Reply::Err(gce::NotFound(
        zone.empty()
            ? fmt::format("The resource 'projects/{}/global/operations/{}' was not found",
                          opts.project, name)
            : fmt::format("The resource 'projects/{}/zones/{}/operations/{}' was not found",
                          opts.project, zone, name)));
  }
  gce::OperationPtr op = it->second;
  Advance(*op);
  while (wait && op->status != "DONE" && std::chrono::steady_clock::now() < deadline && !stopping) {
    changed.wait_for(lock, std::chrono::milliseconds(200));
    Advance(*op);
  }
  return Reply::Ok(RenderOperation(*op));
}

// --- Resource Manager ---------------------------------------------------------------------------

gce::Reply GceDouble::Impl::Crm(const ApiCall& call) {
  const std::string p = call.method_id == "cloudresourcemanager.projects.get"
                            ? call.Param("projectId")
                            : call.Param("resource");
  if (!IsOwnProject(p)) return Reply::Err(gce::Forbidden("The caller does not have permission"));
  std::lock_guard lock(mu);
  auto policy = [&] {
    Json bindings = policy_bindings;
    std::sort(bindings.begin(), bindings.end(), [](const Json& a, const Json& b) {
      return a.value("role", "") < b.value("role", "");
    });
    return Json{{"version", 1}, {"etag", policy_etag}, {"bindings", bindings}};
  };
  if (call.method_id == "cloudresourcemanager.projects.get") {
    return Reply::Ok({{"projectNumber", project_number},
                      {"projectId", opts.project},
                      {"lifecycleState", "ACTIVE"},
                      {"name", "Canopy sim (" + opts.project + ")"},
                      {"createTime", "2024-01-01T00:00:00.000Z"}});
  }
  if (call.method_id == "cloudresourcemanager.projects.getIamPolicy") return Reply::Ok(policy());
  if (call.method_id != "cloudresourcemanager.projects.setIamPolicy") {
    return Reply::Err(gce::NotImplemented(call.method_id));
  }
  if (!call.body.contains("policy")) {
    return Reply::Err(InvalidRequest("Request contains an invalid argument: policy is required."));
  }
  const Json& pol = call.body["policy"];
  const std::string etag = pol.value("etag", "");
  if (!etag.empty() && etag != policy_etag) {
    GoogleError e;
    e.code = 409;
    e.status = "ABORTED";
    e.reason = "aborted";
    e.message =
        "There were concurrent policy changes. Please retry the whole read-modify-write with "
        "exponential backoff.";
    return Reply::Err(e);
  }
  Json bindings = pol.value("bindings", Json::array());
  for (const auto& b : bindings) {
    const std::string role = b.value("role", "");
    if (role.rfind("roles/", 0) != 0 && role.rfind("projects/", 0) != 0) {
      return Reply::Err(InvalidRequest("Role " + role + " is not supported for this resource."));
    }
    for (const auto& m : b.value("members", Json::array())) {
      const std::string member = m.is_string() ? m.get<std::string>() : "";
      if (member.rfind("serviceAccount:", 0) == 0 && !accounts.count(member.substr(15))) {
        return Reply::Err(
            InvalidRequest("Service account " + member.substr(15) + " does not exist."));
      }
    }
  }
  policy_bindings = bindings;
  ++policy_version;
  policy_etag = Etag();
  SPDLOG_INFO("Project IAM policy set bindings={}", bindings.size());
  return Reply::Ok(policy());
}

// --- IAM ----------------------------------------------------------------------------------------

Result<Json> GceDouble::Impl::CreateKey(const std::string& email) {
  auto it = accounts.find(email);
  if (it == accounts.end()) return Error::NotFound("Unknown service account");
  CANOPY_ASSIGN_OR_RETURN(auto key, GenerateRsaKey());
  const std::string kid = RandomHex(20);
  it->second.keys[kid] = key.first;
  it->second.key_created[kid] = FormatRfc3339(opts.clock->Now()).substr(0, 19) + "Z";
  std::string encoded_email;
  for (char c : email) {
    if (c == '@') {
      encoded_email += "%40";
    } else {
      encoded_email.push_back(c);
    }
  }
  return Json{{"type", "service_account"},
              {"project_id", opts.project},
              {"private_key_id", kid},
              {"private_key", key.second},
              {"client_email", email},
              {"client_id", it->second.unique_id},
              {"auth_uri", "https://accounts.google.com/o/oauth2/auth"},
              {"token_uri", TokenUrl()},
              {"auth_provider_x509_cert_url", "https://www.googleapis.com/oauth2/v1/certs"},
              {"client_x509_cert_url",
               "https://www.googleapis.com/robot/v1/metadata/x509/" + encoded_email},
              {"universe_domain", "googleapis.com"}};
}

gce::Reply GceDouble::Impl::Iam(const ApiCall& call) {
  const std::string& id = call.method_id;
  const std::string name = call.Param("name");
  auto render = [&](const gce::ServiceAccount& a) {
    Json j{{"name", "projects/" + opts.project + "/serviceAccounts/" + a.email},
           {"projectId", opts.project},
           {"uniqueId", a.unique_id},
           {"email", a.email},
           {"etag", a.etag},
           {"oauth2ClientId", a.unique_id}};
    if (!a.display_name.empty()) j["displayName"] = a.display_name;
    if (!a.description.empty()) j["description"] = a.description;
    return j;
  };
  std::lock_guard lock(mu);
  if (id == "iam.projects.serviceAccounts.create") {
    if (name != "projects/" + opts.project && name != "projects/" + project_number) {
      return Reply::Err(gce::NotFound("Project not found: " + name, true));
    }
    const std::string account_id = call.body.value("accountId", "");
    static const std::regex re("[a-z](?:[-a-z0-9]{4,28}[a-z0-9])");
    if (!std::regex_match(account_id, re)) {
      return Reply::Err(InvalidRequest(
          "Invalid value for field 'accountId': '" + account_id +
          "'. Must be 6-30 characters: lowercase letters, digits and dashes, starting with a "
          "letter."));
    }
    const std::string email = account_id + "@" + opts.project + ".iam.gserviceaccount.com";
    if (accounts.count(email)) {
      return Reply::Err(gce::AlreadyExists(
          fmt::format("Service account {} already exists within project projects/{}.", account_id,
                      opts.project),
          true));
    }
    gce::ServiceAccount a;
    a.account_id = account_id;
    a.email = email;
    a.unique_id = gce::NewNumericId().substr(0, 21);
    a.etag = "MDEwMjE5MjA=";
    const Json sa = call.body.value("serviceAccount", Json::object());
    a.display_name = sa.value("displayName", "");
    a.description = sa.value("description", "");
    accounts[email] = a;
    SPDLOG_INFO("Service account created email={}", email);
    return Reply::Ok(render(a));
  }
  auto parts = SplitAccountName(name);
  if (!parts || (parts->first != "-" && !IsOwnProject(parts->first))) {
    return Reply::Err(gce::NotFound("Unknown service account", true));
  }
  auto acct = accounts.find(parts->second);
  if (acct == accounts.end()) {
    acct = std::find_if(accounts.begin(), accounts.end(),
                        [&](const auto& kv) { return kv.second.unique_id == parts->second; });
  }
  if (acct == accounts.end()) return Reply::Err(gce::NotFound("Unknown service account", true));
  if (id == "iam.projects.serviceAccounts.get") return Reply::Ok(render(acct->second));
  if (id == "iam.projects.serviceAccounts.delete") {
    const std::string email = acct->first;
    // As Google does: the account's bindings stay, naming it as deleted.
    for (auto& b : policy_bindings) {
      for (auto& m : b["members"]) {
        if (m == "serviceAccount:" + email) {
          m = "deleted:serviceAccount:" + email + "?uid=" + acct->second.unique_id;
        }
      }
    }
    accounts.erase(acct);
    for (auto it = tokens.begin(); it != tokens.end();) {
      it = it->second.email == email ? tokens.erase(it) : std::next(it);
    }
    SPDLOG_INFO("Service account deleted email={}", email);
    return Reply::Ok(Json::object());
  }
  if (id == "iam.projects.serviceAccounts.keys.create") {
    const std::string type = call.body.value("privateKeyType", "TYPE_GOOGLE_CREDENTIALS_FILE");
    const std::string alg = call.body.value("keyAlgorithm", "KEY_ALG_RSA_2048");
    if (type != "TYPE_GOOGLE_CREDENTIALS_FILE" && type != "TYPE_UNSPECIFIED") {
      return Reply::Err(InvalidRequest("canopy-sim: only TYPE_GOOGLE_CREDENTIALS_FILE keys"));
    }
    if (alg != "KEY_ALG_RSA_2048" && alg != "KEY_ALG_UNSPECIFIED") {
      return Reply::Err(InvalidRequest("canopy-sim: only KEY_ALG_RSA_2048 keys"));
    }
    const std::string email = acct->first;
    auto key = CreateKey(email);
    if (!key) return Reply::Err(gce::NotFound("Unknown service account", true));
    const std::string kid = (*key)["private_key_id"];
    SPDLOG_INFO("Service account key created email={} key={}", email, kid);
    return Reply::Ok(
        {{"name", fmt::format("projects/{}/serviceAccounts/{}/keys/{}", opts.project, email, kid)},
         {"privateKeyType", "TYPE_GOOGLE_CREDENTIALS_FILE"},
         {"privateKeyData", Base64Encode(DumpJson(*key, 2))},
         {"validAfterTime", accounts[email].key_created[kid]},
         {"validBeforeTime", "9999-12-31T23:59:59Z"},
         {"keyAlgorithm", "KEY_ALG_RSA_2048"},
         {"keyOrigin", "GOOGLE_PROVIDED"},
         {"keyType", "USER_MANAGED"}});
  }
  return Reply::Err(gce::NotImplemented(id));
}

// --- Secret Manager -----------------------------------------------------------------------------

gce::Reply GceDouble::Impl::SecretManager(const ApiCall& call) {
  const std::string& id = call.method_id;
  static const std::regex name_re("projects/([^/]+)(?:/secrets/([^/]+)(?:/versions/([^/]+))?)?");
  const std::string name = id == "secretmanager.projects.secrets.create" ||
                                   id == "secretmanager.projects.secrets.addVersion"
                               ? call.Param("parent")
                               : call.Param("name");
  std::smatch m;
  if (!std::regex_match(name, m, name_re) || !IsOwnProject(m[1].str())) {
    return Reply::Err(gce::Forbidden(
        fmt::format("Permission '{}' denied on resource (or it may not exist).", Permission(id))));
  }
  const std::string prefix = "projects/" + project_number + "/secrets/";
  std::lock_guard lock(mu);
  auto render = [&](const gce::SecretEntry& s) {
    Json j{{"name", prefix + s.id},
           {"replication", s.replication},
           {"createTime", s.create_time},
           {"etag", s.etag}};
    if (!s.labels.is_null() && !s.labels.empty()) j["labels"] = s.labels;
    return j;
  };
  if (id == "secretmanager.projects.secrets.create") {
    const std::string secret_id = call.Param("secretId");
    static const std::regex id_re("[a-zA-Z0-9_-]{1,255}");
    if (!std::regex_match(secret_id, id_re)) {
      return Reply::Err(InvalidRequest("The provided Secret ID [" + secret_id +
                                       "] does not match the expected format [[a-zA-Z_0-9]+]"));
    }
    if (!call.body.contains("replication")) {
      return Reply::Err(InvalidRequest("Secret.replication is required."));
    }
    if (secrets.count(secret_id)) {
      return Reply::Err(
          gce::AlreadyExists("Secret [" + prefix + secret_id + "] already exists.", true));
    }
    gce::SecretEntry s;
    s.id = secret_id;
    s.create_time = gce::NowRfc3339(*opts.clock);
    s.etag = "\"" + RandomHex(7).substr(0, 13) + "\"";
    s.replication = call.body["replication"];
    s.labels = call.body.value("labels", Json::object());
    secrets[secret_id] = s;
    SPDLOG_INFO("Secret created secret={}", secret_id);
    return Reply::Ok(render(s));
  }
  const std::string secret_id = m[2].str();
  auto it = secrets.find(secret_id);
  if (it == secrets.end()) {
    return Reply::Err(gce::NotFound("Secret [" + prefix + secret_id + "] not found.", true));
  }
  gce::SecretEntry& s = it->second;
  if (id == "secretmanager.projects.secrets.get") return Reply::Ok(render(s));
  if (id == "secretmanager.projects.secrets.delete") {
    secrets.erase(it);
    SPDLOG_INFO("Secret deleted secret={}", secret_id);
    return Reply::Ok(Json::object());
  }
  if (id == "secretmanager.projects.secrets.addVersion") {
    const Json payload = call.body.value("payload", Json::object());
    if (!payload.contains("data") || !payload["data"].is_string()) {
      return Reply::Err(InvalidRequest("Payload.data is required."));
    }
    std::string raw;
    if (!Base64Decode(payload["data"].get<std::string>(), &raw)) {
      return Reply::Err(InvalidRequest("Payload.data must be base64."));
    }
    if (raw.size() > 65536) {
      return Reply::Err(InvalidRequest("Secret Version payload exceeds the 64 KiB limit."));
    }
    s.versions.push_back({payload["data"].get<std::string>(), gce::NowRfc3339(*opts.clock)});
    const std::string vname = prefix + secret_id + "/versions/" + std::to_string(s.versions.size());
    SPDLOG_INFO("Secret version added secret={} version={}", secret_id, s.versions.size());
    return Reply::Ok({{"name", vname},
                      {"createTime", s.versions.back().create_time},
                      {"state", "ENABLED"},
                      {"replicationStatus", {{"automatic", Json::object()}}},
                      {"etag", "\"" + RandomHex(7).substr(0, 13) + "\""}});
  }
  if (id == "secretmanager.projects.secrets.versions.access") {
    const std::string v = m[3].str();
    size_t index = 0;
    if (v == "latest") {
      for (size_t i = s.versions.size(); i > 0; --i) {
        if (s.versions[i - 1].state == "ENABLED") {
          index = i;
          break;
        }
      }
    } else if (!v.empty() && v.find_first_not_of("0123456789") == std::string::npos &&
               v.size() < 9) {
      index = std::stoul(v);
      if (index > s.versions.size()) index = 0;
    }
    if (index == 0) {
      return Reply::Err(gce::NotFound(
          "Secret Version [" + prefix + secret_id + "/versions/" + v + "] not found.", true));
    }
    const std::string data = s.versions[index - 1].data;
    std::string raw;
    Base64Decode(data, &raw);
    return Reply::Ok({{"name", prefix + secret_id + "/versions/" + std::to_string(index)},
                      {"payload", {{"data", data}, {"dataCrc32c", std::to_string(Crc32c(raw))}}}});
  }
  return Reply::Err(gce::NotImplemented(id));
}

}  // namespace canopy::sim
