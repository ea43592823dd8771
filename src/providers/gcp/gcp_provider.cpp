#include "providers/gcp/gcp_provider.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "common/backoff.h"
#include "common/ids.h"
#include "providers/ssh_keys.h"

namespace canopy::providers::gcp {
namespace {
// How often WaitUntilRunning reads the instance (and its host key): a boot is seconds; Compute's
// read quota (thousands per minute) carries 2 reads a second per booting instance.
constexpr std::chrono::milliseconds kRunningPoll{500};
}  // namespace

namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr const char* kSshUserLabel = "canopy-ssh-user";
constexpr const char* kKeyPairLabel = "canopy-keypair";
constexpr const char* kClusterRole = "roles/compute.securityAdmin";
constexpr std::string_view kLowerDigits = "abcdefghijklmnopqrstuvwxyz0123456789";

Error Invalid(std::string m) {
  return MakeProviderError(ProviderErrorKind::kInvalidRequest, std::move(m));
}
Error Auth(std::string m) { return MakeProviderError(ProviderErrorKind::kAuth, std::move(m)); }
Error NotFound(std::string m) {
  return MakeProviderError(ProviderErrorKind::kNotFound, std::move(m));
}
Error Transient(std::string m) {
  return MakeProviderError(ProviderErrorKind::kTransient, std::move(m));
}
bool IsNotFound(const Error& e) { return KindOf(e) == ProviderErrorKind::kNotFound; }

// Type-safe readers of answers (nlohmann's value() throws on a field of another type).
std::string Str(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}
const Json& Field(const Json& j, const char* key) {
  static const Json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it != j.end() ? *it : kNull;
}
int64_t Int(const Json& j, const char* key) {
  const Json& v = Field(j, key);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_string()) {
    try {
      return std::stoll(v.get<std::string>());
    } catch (const std::exception&) {
    }
  }
  return 0;
}
std::vector<std::string> Strings(const Json& arr) {
  std::vector<std::string> out;
  if (!arr.is_array()) return out;
  for (const Json& v : arr) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

// An RFC 1035 name as Compute wants it: [a-z]([-a-z0-9]*[a-z0-9])?, at most 63 characters.
bool GceName(std::string_view s, size_t max = 63) {
  return !s.empty() && s.size() <= max &&
         s.find_first_not_of(std::string(kLowerDigits) + "-") == std::string_view::npos &&
         s.front() >= 'a' && s.front() <= 'z' && s.back() != '-';
}

std::string UuidFromHex(const std::string& hex, char version) {
  std::string h = hex.substr(0, 32);
  h[12] = version;
  static constexpr char kVariant[] = "89ab";
  h[16] = kVariant[std::stoi(h.substr(16, 1), nullptr, 16) & 3];
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20, 12);
}
std::string RandomRequestId() { return UuidFromHex(RandomHex(16), '4'); }

std::string SshUserForImage(const std::string& image) {
  std::string n = image;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (n.find("ubuntu") != std::string::npos) return "ubuntu";
  return "admin";  // Debian's cloud images; the guest agent makes any user named in ssh-keys
}

// What follows `prefix` in a description ("" when it does not start with it): instances carry
// "canopy-id=<id>", service accounts "canopy-cluster=<id>".
std::string AfterPrefix(const std::string& description, std::string_view prefix) {
  return description.rfind(prefix, 0) == 0 ? description.substr(prefix.size()) : "";
}

// A firewall rule's description "canopy-id=<id>; cluster=<cluster>". Neither part may hold ';'
// (checked when the rule is made), so the last "; cluster=" splits them unambiguously.
struct FirewallOwner {
  std::string canopy_id;
  std::string cluster;
};
FirewallOwner OwnerOf(const std::string& description) {
  std::string rest = AfterPrefix(description, "canopy-id=");
  auto sep = rest.rfind("; cluster=");
  if (sep == std::string::npos) return {rest, ""};
  return {rest.substr(0, sep), rest.substr(sep + 10)};
}

// A credential's cluster id ("" for a full credential).
Status RequireFull(const ServiceAccountKey& c, std::string_view what) {
  if (c.cluster_id.empty()) return OkStatus();
  return Auth(
      fmt::format("the cluster identity of {} may not {}: it manages only its cluster's firewalls",
                  c.cluster_id, what));
}

// A cluster identity may act only on objects of its cluster (`object_cluster` as stored).
Status Confine(const ServiceAccountKey& c, const std::string& object_cluster,
               std::string_view what) {
  if (c.cluster_id.empty()) return OkStatus();
  if (!object_cluster.empty() && object_cluster == c.cluster_id) return OkStatus();
  return Auth(fmt::format("the cluster identity of {} may not {}: it belongs to another cluster",
                          c.cluster_id, what));
}

// Instances carry their cluster as a label (LabelValue of the cluster id).
Status ConfineInstance(const ServiceAccountKey& c, const Json& gce, std::string_view what) {
  if (c.cluster_id.empty()) return OkStatus();
  std::string label = Str(Field(gce, "labels"), kClusterTag);
  if (!label.empty() && label == GcpProvider::LabelValue(c.cluster_id)) return OkStatus();
  return Auth(fmt::format("the cluster identity of {} may not {}: it belongs to another cluster",
                          c.cluster_id, what));
}

struct PriceEntry {
  std::optional<double> price;
  std::string note;
};

struct RegionInfo {
  std::string name;
  std::string status;
  std::vector<std::string> zones;  // names, sorted
};

// "projects/debian-cloud/global/images/NAME" from an image's selfLink or a given id; "" when the
// text is not an image path.
std::string ImagePath(const std::string& image) {
  std::string p = image;
  if (auto at = p.find("/compute/v1/"); at != std::string::npos) p = p.substr(at + 12);
  if (p.rfind("projects/", 0) != 0) return "";
  if (p.find("/global/images/") == std::string::npos) return "";
  if (p.find_first_not_of(std::string(kLowerDigits) + "-/.:") != std::string::npos ||
      p.find("..") != std::string::npos || p.find("//") != std::string::npos || p.size() > 256) {
    return "";
  }
  return p;
}

std::string FamilyProject(const std::string& family) {
  if (family.rfind("ubuntu-", 0) == 0) return "ubuntu-os-cloud";
  return "debian-cloud";
}

}  // namespace

struct GcpProvider::Impl {
  GcpOptions opts;
  GcpClient client;
  std::map<std::pair<std::string, std::string>, double> catalog;  // (region, type) -> USD/h

  struct OfferCache {
    SteadyClock::time_point at;
    Offers offers;
  };
  struct RegionsCache {
    SteadyClock::time_point at;
    std::vector<RegionInfo> regions;
  };
  mutable std::mutex mu;                        // guards the caches and the lock table
  std::map<std::string, OfferCache> offers;     // key: project/region
  std::map<std::string, RegionsCache> regions;  // key: project
  std::map<std::string, std::shared_ptr<std::mutex>> locks;

  explicit Impl(GcpOptions o)
      : opts(std::move(o)), client(opts.endpoints, opts.retry, opts.operations, opts.clock) {}

  std::shared_ptr<std::mutex> LockFor(const std::string& key) {
    std::lock_guard lock(mu);
    auto& m = locks[key];
    if (!m) m = std::make_shared<std::mutex>();
    return m;
  }

  Result<std::string> Region(const CallContext& ctx) const {
    std::string r = ctx.region.empty() ? opts.default_region : ctx.region;
    if (!GceName(r)) return Invalid(fmt::format("'{}' is not a GCP region name", r.substr(0, 40)));
    return r;
  }

  std::string Compute(const ServiceAccountKey& k, const std::string& rest) const {
    return ComputePath(k.project_id, rest);
  }

  // Calls.
  Result<Json> Get(const ServiceAccountKey& k, const std::string& service, const std::string& path,
                   const std::string& what) const {
    return client.Call(k, "GET", service, path, nullptr, true, what);
  }
  Result<Reply> GetReply(const ServiceAccountKey& k, const std::string& service,
                         const std::string& path, const std::string& what) const {
    return client.Send(k, "GET", service, path, nullptr, true, what);
  }

  // Every page of a Compute list (`items`), maxResults=500.
  Result<std::vector<Json>> List(const ServiceAccountKey& k, const std::string& path,
                                 const std::string& what) const {
    std::vector<Json> out;
    std::string token;
    const char sep = path.find('?') == std::string::npos ? '?' : '&';
    for (int page = 0; page < 200; ++page) {
      std::string p = path + sep + "maxResults=500";
      if (!token.empty()) p += "&pageToken=" + QueryEscape(token);
      CANOPY_ASSIGN_OR_RETURN(Json j, Get(k, "compute", p, what));
      if (const Json& items = Field(j, "items"); items.is_array()) {
        for (const Json& i : items) out.push_back(i);
      }
      token = Str(j, "nextPageToken");
      if (token.empty()) break;
    }
    return out;
  }

  // Regions and zones (cached like offers).
  Result<std::vector<RegionInfo>> Regions(const ServiceAccountKey& k) {
    {
      std::lock_guard lock(mu);
      auto it = regions.find(k.project_id);
      if (it != regions.end() && SteadyClock::now() - it->second.at < opts.offers_ttl)
        return it->second.regions;
    }
    CANOPY_ASSIGN_OR_RETURN(auto items, List(k, Compute(k, "regions"), "Compute regions.list"));
    std::vector<RegionInfo> out;
    for (const Json& r : items) {
      RegionInfo ri;
      ri.name = Str(r, "name");
      ri.status = Str(r, "status");
      for (const auto& z : Strings(Field(r, "zones"))) {
        std::string zone = LastSegment(z);
        if (GceName(zone)) ri.zones.push_back(zone);
      }
      std::sort(ri.zones.begin(), ri.zones.end());
      if (GceName(ri.name)) out.push_back(std::move(ri));
    }
    std::sort(out.begin(), out.end(),
              [](const RegionInfo& a, const RegionInfo& b) { return a.name < b.name; });
    std::lock_guard lock(mu);
    regions[k.project_id] = RegionsCache{SteadyClock::now(), out};
    return out;
  }

  Result<std::vector<std::string>> ZonesOf(const ServiceAccountKey& k, const std::string& region) {
    CANOPY_ASSIGN_OR_RETURN(auto all, Regions(k));
    for (const auto& r : all) {
      if (r.name == region) return r.zones;
    }
    return Invalid(fmt::format("GCP region {} does not exist", region));
  }

  // The zone of a region's instances: config `zones`, else the region's first zone by name.
  Result<std::string> ZoneOf(const ServiceAccountKey& k, const std::string& region) {
    if (auto it = opts.zones.find(region); it != opts.zones.end()) return it->second;
    CANOPY_ASSIGN_OR_RETURN(auto zones, ZonesOf(k, region));
    if (zones.empty()) return Invalid(fmt::format("GCP region {} lists no zones", region));
    return zones.front();
  }

  // Instances.
  struct Where {
    std::string name;
    std::string zone;
  };
  Result<Where> HandleOf(const ProviderHandle& h) const {
    std::string name = h.data.is_object() ? Str(h.data, "name") : "";
    std::string zone = h.data.is_object() ? Str(h.data, "zone") : "";
    if (!GceName(name) || !GceName(zone)) return Invalid("not a GCE instance handle");
    return Where{name, zone};
  }

  Result<Json> GetInstance(const ServiceAccountKey& k, const Where& w) const {
    return Get(k, "compute", Compute(k, "zones/" + w.zone + "/instances/" + w.name),
               "Compute instances.get");
  }

  Result<std::vector<Instance>> FindInZone(const GcpProvider& self, const ServiceAccountKey& k,
                                           const std::string& zone, const std::string& label_key,
                                           const std::string& label_value) const {
    std::string filter = "labels." + label_key + "=\"" + label_value + "\"";
    CANOPY_ASSIGN_OR_RETURN(
        auto items,
        List(k, Compute(k, "zones/" + zone + "/instances?filter=" + QueryEscape(filter)),
             "Compute instances.list"));
    std::vector<Instance> out;
    for (const Json& i : items) out.push_back(self.FromGce(i));
    return out;
  }

  // Key pairs.
  std::string SecretPath(const ServiceAccountKey& k, const std::string& name) const {
    return "/v1/projects/" + k.project_id + "/secrets/" + KeyPairSecretId(name);
  }

  Result<KeyPair> StoredKey(const ServiceAccountKey& k, const std::string& name) const {
    auto r = Get(k, "secretmanager", SecretPath(k, name) + "/versions/latest:access",
                 "SecretManager versions.access");
    if (!r) {
      if (IsNotFound(r.error())) return NotFound(fmt::format("key pair {} not found", name));
      return r.error();
    }
    std::string data = Str(Field(*r, "payload"), "data");
    std::string text;
    if (data.empty() || !Base64Decode(data, &text)) {
      return Error::Provider(fmt::format("the secret of key pair {} holds no key", name));
    }
    KeyPair kp;
    kp.name = name;
    kp.private_key = SecretString(text);
    OPENSSL_cleanse(text.data(), text.size());
    auto pub = PublicKeyFromPrivateKey(kp.private_key);
    if (!pub) {
      return Error::Provider(
          fmt::format("the secret of key pair {}: {}", name, pub.error().message));
    }
    kp.public_key = pub->public_key;
    kp.fingerprint = pub->fingerprint;
    return kp;
  }

  // Firewalls: the rule (a Firewall resource) by name; kNotFound when absent.
  Result<Json> GetFirewall(const ServiceAccountKey& k, const std::string& name) const {
    return Get(k, "compute", Compute(k, "global/firewalls/" + name), "Compute firewalls.get");
  }

  // IAM policy of the project: applies `change` (false: nothing to do) and writes it back,
  // re-reading when the etag raced.
  Status ChangePolicy(const ServiceAccountKey& k, const std::function<bool(Json&)>& change) const {
    const std::string base = "/v1/projects/" + k.project_id;
    const Json get_body{{"options", {{"requestedPolicyVersion", 3}}}};
    for (int attempt = 0;; ++attempt) {
      CANOPY_ASSIGN_OR_RETURN(Json policy,
                              client.Call(k, "POST", "crm", base + ":getIamPolicy", &get_body, true,
                                          "ResourceManager projects.getIamPolicy"));
      if (!policy.is_object()) return Error::Provider("getIamPolicy answered no policy");
      if (!change(policy)) return OkStatus();
      Json body{{"policy", policy}};
      CANOPY_ASSIGN_OR_RETURN(Reply r, client.Send(k, "POST", "crm", base + ":setIamPolicy", &body,
                                                   true, "ResourceManager projects.setIamPolicy"));
      if (r.ok()) return OkStatus();
      // 409 ABORTED / 412: the policy changed since it was read. 400 "does not exist": a new
      // service account IAM does not see yet (eventual consistency).
      bool raced = r.status == 409 || r.status == 412;
      bool unseen = r.status == 400 && r.error.message.find("does not exist") != std::string::npos;
      if ((raced || unseen) && attempt + 1 < std::max(3, opts.retry.max_attempts)) {
        std::this_thread::sleep_for(Backoff(attempt, opts.retry.base, opts.retry.max));
        continue;
      }
      return MapGoogleError(r.error, "ResourceManager projects.setIamPolicy");
    }
  }

  // Prices.
  PriceEntry PriceOf(const std::string& region, const std::string& type) const {
    if (auto it = catalog.find({region, type}); it != catalog.end()) {
      return {it->second, "offline catalog (on-demand list price)"};
    }
    if (opts.price_catalog.empty()) {
      return {std::nullopt, "price unknown: no price catalog configured (price_catalog)"};
    }
    return {std::nullopt, "price unknown: not in the offline catalog for this region"};
  }

  Result<Offers> LoadOffers(const ServiceAccountKey& k, const std::string& region) {
    const std::string key = k.project_id + "/" + region;
    {
      std::lock_guard lock(mu);
      auto it = offers.find(key);
      if (it != offers.end() && SteadyClock::now() - it->second.at < opts.offers_ttl)
        return it->second.offers;
    }
    Offers o;
    CANOPY_ASSIGN_OR_RETURN(auto all, Regions(k));
    for (const auto& r : all) o.regions.push_back(r.name);
    CANOPY_ASSIGN_OR_RETURN(std::string zone, ZoneOf(k, region));
    CANOPY_ASSIGN_OR_RETURN(auto types, List(k, Compute(k, "zones/" + zone + "/machineTypes"),
                                             "Compute machineTypes.list"));
    for (const Json& t : types) {
      const std::string state = Str(Field(t, "deprecated"), "state");
      if (state == "OBSOLETE" || state == "DELETED") continue;
      InstanceType it;
      it.name = Str(t, "name");
      it.vcpus = static_cast<int>(Int(t, "guestCpus"));
      it.memory_mib = Int(t, "memoryMb");
      if (const Json& acc = Field(t, "accelerators"); acc.is_array()) {
        for (const Json& a : acc) it.gpus += static_cast<int>(Int(a, "guestAcceleratorCount"));
      }
      if (it.name.empty() || it.vcpus <= 0 || it.memory_mib <= 0) continue;
      PriceEntry p = PriceOf(region, it.name);
      it.price_hour = p.price;
      it.price_note = p.note;
      o.instance_types.push_back(std::move(it));
    }
    std::sort(o.instance_types.begin(), o.instance_types.end(),
              [](const InstanceType& a, const InstanceType& b) { return a.name < b.name; });
    o.instance_types.erase(
        std::unique(o.instance_types.begin(), o.instance_types.end(),
                    [](const InstanceType& a, const InstanceType& b) { return a.name == b.name; }),
        o.instance_types.end());
    for (const std::string& f : opts.image_families) {
      auto slash = f.find('/');
      std::string project = slash == std::string::npos ? FamilyProject(f) : f.substr(0, slash);
      std::string family = slash == std::string::npos ? f : f.substr(slash + 1);
      auto img = Get(k, "compute", ComputePath(project, "global/images/family/" + family),
                     "Compute images.getFromFamily");
      if (!img) {
        if (IsNotFound(img.error())) {
          SPDLOG_WARN("GCP image family not found project={} family={}", project, family);
          continue;
        }
        return img.error();
      }
      std::string name = Str(*img, "name");
      std::string id = ImagePath(Str(*img, "selfLink"));
      if (id.empty() && GceName(name)) id = "projects/" + project + "/global/images/" + name;
      if (id.empty()) continue;
      o.images.push_back(Image{id, name});
    }
    std::lock_guard lock(mu);
    offers[key] = OfferCache{SteadyClock::now(), o};
    return o;
  }
};

GcpProvider::GcpProvider(GcpOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  if (!impl_->opts.price_catalog.empty()) {
    std::ifstream in(impl_->opts.price_catalog);
    std::string line;
    std::getline(in, line);  // header: MachineType,...,Region,PriceHour,...
    auto split = [](const std::string& l) {
      std::vector<std::string> cols;
      std::stringstream ss(l);
      std::string c;
      while (std::getline(ss, c, ',')) {
        while (!c.empty() && (c.back() == '\r' || c.back() == ' ')) c.pop_back();
        cols.push_back(c);
      }
      return cols;
    };
    auto header = split(line);
    auto col = [&](const char* name) -> size_t {
      auto it = std::find(header.begin(), header.end(), name);
      return it == header.end() ? std::string::npos : static_cast<size_t>(it - header.begin());
    };
    const size_t type_col = col("MachineType"), region_col = col("Region"),
                 price_col = col("PriceHour");
    if (type_col == std::string::npos || region_col == std::string::npos ||
        price_col == std::string::npos) {
      SPDLOG_WARN("GCP price catalog has no MachineType, Region and PriceHour columns path={}",
                  impl_->opts.price_catalog);
    } else {
      while (std::getline(in, line)) {
        auto cols = split(line);
        if (cols.size() <= std::max({type_col, region_col, price_col})) continue;
        try {
          double v = std::stod(cols[price_col]);
          if (v >= 0) impl_->catalog[{cols[region_col], cols[type_col]}] = v;
        } catch (const std::exception&) {
        }
      }
    }
    SPDLOG_INFO("GCP price catalog loaded path={} entries={}", impl_->opts.price_catalog,
                impl_->catalog.size());
  }
}
GcpProvider::~GcpProvider() = default;

// Naming and request shapes.

std::string GcpProvider::ResourceName(const std::string& canopy_id) {
  return "canopy-" + Sha256Hex(canopy_id).substr(0, 12);
}

std::string GcpProvider::LabelValue(const std::string& value) {
  if (value.size() <= 63 &&
      value.find_first_not_of(std::string(kLowerDigits) + "_-") == std::string::npos) {
    return value;
  }
  return "h-" + Sha256Hex(value).substr(0, 40);
}

std::string GcpProvider::LabelKey(const std::string& key) {
  std::string out;
  for (char ch : key) {
    auto c = static_cast<unsigned char>(std::tolower(static_cast<unsigned char>(ch)));
    out.push_back(kLowerDigits.find(static_cast<char>(c)) != std::string_view::npos || c == '_' ||
                          c == '-'
                      ? static_cast<char>(c)
                      : '_');
  }
  if (out.empty() || out.front() < 'a' || out.front() > 'z') out = "k" + out;
  if (out.size() > 63) out.resize(63);
  return out;
}

std::string GcpProvider::RequestId(const std::string& canopy_id,
                                   const std::string& idempotency_key) {
  return UuidFromHex(Sha256Hex(canopy_id + "/" + idempotency_key), '5');
}

std::string GcpProvider::KeyPairSecretId(const std::string& name) {
  return "canopy-keypair-" + name;
}

std::string GcpProvider::ClusterAccountId(const std::string& cluster_id) {
  return "canopy-c-" + Sha256Hex(cluster_id).substr(0, 10);
}

Json GcpProvider::InstanceBody(const InstanceSpec& spec, const std::string& region,
                               const std::string& zone, const std::string& ssh_user,
                               const std::string& public_key) const {
  const GcpOptions& o = impl_->opts;
  Json labels = Json::object();
  for (const auto& [k, v] : spec.tags) labels[LabelKey(k)] = LabelValue(v);
  labels[kCanopyIdTag] = LabelValue(spec.canopy_id);
  labels[kSshUserLabel] = LabelValue(ssh_user);
  Json nic{{"network", o.network}};
  if (auto sn = o.subnetworks.find(region); sn != o.subnetworks.end()) {
    nic["subnetwork"] = "regions/" + region + "/subnetworks/" + sn->second;
  }
  if (!o.private_addresses) {
    nic["accessConfigs"] = Json::array({{{"type", "ONE_TO_ONE_NAT"}, {"name", "External NAT"}}});
  }
  Json items = Json::array();
  if (!public_key.empty()) {
    items.push_back({{"key", "ssh-keys"}, {"value", ssh_user + ":" + public_key + " " + ssh_user}});
  }
  items.push_back({{"key", "enable-guest-attributes"}, {"value", "TRUE"}});
  Json tags = Json::array();
  for (const auto& f : spec.firewalls) {
    if (!f.empty() && std::find(tags.begin(), tags.end(), Json(f)) == tags.end()) tags.push_back(f);
  }
  // Public images are 10 GB; a smaller boot disk is refused.
  const int disk = std::max(spec.disk_gb, 10);
  return Json{
      {"name", ResourceName(spec.canopy_id)},
      {"description", "canopy-id=" + spec.canopy_id},
      {"machineType", "zones/" + zone + "/machineTypes/" + spec.instance_type},
      {"disks", Json::array({{{"boot", true},
                              {"autoDelete", true},
                              {"initializeParams",
                               {{"sourceImage", ImagePath(spec.image)},
                                {"diskSizeGb", std::to_string(disk)}}}}})},
      {"networkInterfaces", Json::array({nic})},
      {"metadata", {{"items", items}}},
      {"labels", labels},
      {"tags", {{"items", tags}}},
  };
}

Result<std::vector<Json>> GcpProvider::FirewallBodies(const FirewallSpec& spec,
                                                      const std::string& cluster_id) const {
  if (spec.rules.empty()) return Invalid("a GCP firewall rule needs at least one port");
  // One VPC rule has one source list for all its ports: rules with other sources get a rule of
  // their own ("<name>-s<i>"), every one targeting the firewall's network tag <name>.
  std::map<std::set<std::string>, Json> groups;
  for (const auto& r : spec.rules) {
    if (r.port == 0) return Invalid("firewall rule port must be 1-65535");
    if (r.protocol != "tcp" && r.protocol != "udp")
      return Invalid("firewall rule protocol must be tcp or udp");
    std::set<std::string> mine(r.source_cidrs.begin(), r.source_cidrs.end());
    if (mine.empty()) mine.insert("0.0.0.0/0");
    for (const auto& cidr : mine) {
      if (cidr.empty() || cidr.size() > 43 ||
          cidr.find_first_not_of("0123456789abcdefABCDEF.:/") != std::string::npos) {
        return Invalid(fmt::format("'{}' is not a CIDR range", cidr.substr(0, 50)));
      }
    }
    auto& allowed = groups[mine];
    if (allowed.is_null()) allowed = Json::array();
    allowed.push_back({{"IPProtocol", r.protocol}, {"ports", {std::to_string(r.port)}}});
  }
  if (groups.size() > kMaxFirewallParts) {
    return Invalid(
        fmt::format("a firewall may have at most {} different source lists", kMaxFirewallParts));
  }
  const std::string name = ResourceName(spec.canopy_id);
  std::vector<Json> out;
  for (const auto& [ranges, allowed] : groups) {
    out.push_back(
        Json{{"name", FirewallPartName(name, out.size())},
             {"network", impl_->opts.network},
             {"direction", "INGRESS"},
             {"priority", 1000},
             {"allowed", allowed},
             {"sourceRanges", Json(std::vector<std::string>(ranges.begin(), ranges.end()))},
             {"targetTags", {name}},
             {"description", "canopy-id=" + spec.canopy_id + "; cluster=" + cluster_id}});
  }
  return out;
}

std::string GcpProvider::FirewallPartName(const std::string& firewall_id, size_t part) {
  return part == 0 ? firewall_id : firewall_id + "-s" + std::to_string(part);
}

Json GcpProvider::SetTagsBody(const std::vector<std::string>& items,
                              const std::string& fingerprint) {
  return Json{{"items", items}, {"fingerprint", fingerprint}};
}

InstanceState GcpProvider::StateOf(const std::string& s) {
  if (s == "RUNNING") return InstanceState::kRunning;
  if (s == "STOPPING" || s == "SUSPENDING") return InstanceState::kStopping;
  if (s == "TERMINATED" || s == "SUSPENDED" || s == "STOPPED") return InstanceState::kStopped;
  return InstanceState::kPending;  // PROVISIONING, STAGING, REPAIRING
}

std::string GcpProvider::HostKeyFromGuestAttributes(const Json& ga) {
  std::map<std::string, std::string> by_type;
  const Json& items = Field(Field(ga, "queryValue"), "items");
  if (!items.is_array()) return "";
  for (const Json& e : items) {
    if (Str(e, "namespace") != "hostkeys") continue;
    auto fp = FingerprintOfPublicKey(Str(e, "value"));
    if (fp) by_type[Str(e, "key")] = *fp;
  }
  for (const char* t : {"ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"}) {
    if (auto it = by_type.find(t); it != by_type.end()) return it->second;
  }
  return "";
}

Instance GcpProvider::FromGce(const Json& g) const {
  Instance i;
  const std::string name = Str(g, "name");
  const std::string zone = LastSegment(Str(g, "zone"));
  i.provider_id = name;
  i.state = StateOf(Str(g, "status"));
  if (const Json& nics = Field(g, "networkInterfaces"); nics.is_array() && !nics.empty()) {
    i.private_address = Str(nics[0], "networkIP");
    if (const Json& ac = Field(nics[0], "accessConfigs"); ac.is_array() && !ac.empty())
      i.address = Str(ac[0], "natIP");
  }
  if (i.address.empty() || impl_->opts.private_addresses) i.address = i.private_address;
  if (const Json& labels = Field(g, "labels"); labels.is_object()) {
    for (const auto& [k, v] : labels.items()) {
      if (v.is_string()) i.tags[k] = v.get<std::string>();
    }
  }
  // The exact canopy id (a label holds a hash of one that does not fit).
  std::string cid = AfterPrefix(Str(g, "description"), "canopy-id=");
  if (!cid.empty() && LabelValue(cid) == i.tags[kCanopyIdTag]) i.tags[kCanopyIdTag] = cid;
  i.canopy_id = i.tags[kCanopyIdTag];
  if (i.canopy_id.empty()) i.tags.erase(kCanopyIdTag);
  i.ssh_user = i.tags.count(kSshUserLabel) ? i.tags[kSshUserLabel] : "";
  if (i.ssh_user.empty()) {
    for (const Json& m : [&] {
           const Json& items = Field(Field(g, "metadata"), "items");
           return items.is_array() ? items : Json::array();
         }()) {
      if (Str(m, "key") != "ssh-keys") continue;
      std::string v = Str(m, "value");
      i.ssh_user = v.substr(0, v.find(':'));
      break;
    }
  }
  if (i.ssh_user.empty()) i.ssh_user = "admin";
  i.firewalls = Strings(Field(Field(g, "tags"), "items"));
  i.handle.data = {{"name", name}, {"zone", zone}};
  return i;
}

// Calls.

ProviderInfo GcpProvider::Info() const {
  return ProviderInfo{"gcp", "0.1.0", {kContractVersion}, {"cluster_identity", "gpu"}};
}

std::string GcpProvider::DefaultSshUser(const std::string& image) const {
  return SshUserForImage(image);
}

Status GcpProvider::ValidateCredential(const CallContext& ctx) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_ASSIGN_OR_RETURN(
      Reply r, impl_->client.Send(k, "GET", "crm", "/v1/projects/" + k.project_id, nullptr, true,
                                  "ResourceManager projects.get"));
  if (r.status == 403 || r.status == 404) {
    return Auth(fmt::format("GCP project {} is not accessible to {} (HTTP {}{})", k.project_id,
                            k.client_email, r.status,
                            r.error.reason.empty() ? "" : " " + r.error.reason));
  }
  if (!r.ok()) return MapGoogleError(r.error, "ResourceManager projects.get");
  std::string state = Str(r.body, "lifecycleState");
  if (!state.empty() && state != "ACTIVE") {
    return Auth(fmt::format("GCP project {} is {}", k.project_id, state));
  }
  SPDLOG_INFO("GCP credential valid project={} account={}", k.project_id, k.client_email);
  return OkStatus();
}

Result<Offers> GcpProvider::ListOffers(const CallContext& ctx) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_TRY(RequireFull(k, "list offers"));
  CANOPY_ASSIGN_OR_RETURN(std::string region, impl_->Region(ctx));
  return impl_->LoadOffers(k, region);
}

Result<Quote> GcpProvider::GetQuote(const CallContext& ctx, const std::string& instance_type,
                                    int count) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_TRY(RequireFull(k, "quote prices"));
  if (count < 1 || count > 10000) return Invalid("count must be between 1 and 10000");
  CANOPY_ASSIGN_OR_RETURN(std::string region, impl_->Region(ctx));
  CANOPY_ASSIGN_OR_RETURN(Offers o, impl_->LoadOffers(k, region));
  auto it = std::find_if(o.instance_types.begin(), o.instance_types.end(),
                         [&](const InstanceType& t) { return t.name == instance_type; });
  if (it == o.instance_types.end()) {
    return Invalid(fmt::format("machine type '{}' is not offered in {}", instance_type, region));
  }
  Quote q;
  q.instance_type = instance_type;
  q.count = count;
  q.price_hour_each = it->price_hour;
  if (it->price_hour) q.price_hour_total = *it->price_hour * count;
  q.note = it->price_note;
  return q;
}

Result<Instance> GcpProvider::CreateInstance(const CallContext& ctx, const InstanceSpec& spec) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_TRY(RequireFull(k, "create instances"));
  if (spec.canopy_id.empty() || spec.canopy_id.size() > 200)
    return Invalid("canopy_id must be 1 to 200 characters");
  if (!GceName(spec.instance_type))
    return Invalid(fmt::format("'{}' is not a machine type", spec.instance_type.substr(0, 64)));
  if (ImagePath(spec.image).empty()) {
    return Invalid(fmt::format("'{}' is not a GCE image (projects/P/global/images/NAME)",
                               spec.image.substr(0, 200)));
  }
  for (const auto& f : spec.firewalls) {
    if (!f.empty() && !GceName(f)) return Invalid(fmt::format("'{}' is not a GCP firewall id", f));
  }
  CANOPY_ASSIGN_OR_RETURN(std::string region, impl_->Region(ctx));
  CANOPY_ASSIGN_OR_RETURN(std::string zone, impl_->ZoneOf(k, region));
  auto guard = impl_->LockFor("instance/" + k.project_id + "/" + spec.canopy_id);
  std::lock_guard lock(*guard);
  CANOPY_ASSIGN_OR_RETURN(
      auto found, impl_->FindInZone(*this, k, zone, kCanopyIdTag, LabelValue(spec.canopy_id)));
  if (!found.empty()) {
    SPDLOG_INFO("GCE instance found by label canopy_id={} instance={} zone={}", spec.canopy_id,
                found.front().provider_id, zone);
    return found.front();
  }
  const std::string ssh_user = SshUserForImage(spec.image);
  std::string public_key;
  if (!spec.key_pair.empty()) {
    auto kp = impl_->StoredKey(k, spec.key_pair);
    if (!kp) {
      if (IsNotFound(kp.error()))
        return Invalid(fmt::format("key pair {} does not exist", spec.key_pair));
      return kp.error();
    }
    public_key = kp->public_key;
  }
  const std::string name = ResourceName(spec.canopy_id);
  const Impl::Where where{name, zone};
  Json body = InstanceBody(spec, region, zone, ssh_user, public_key);
  const std::string what = "Compute instances.insert";
  auto adopt = [&]() -> Result<Instance> {
    CANOPY_ASSIGN_OR_RETURN(Json g, impl_->GetInstance(k, where));
    Instance i = FromGce(g);
    if (Str(Field(g, "labels"), kCanopyIdTag) != LabelValue(spec.canopy_id)) {
      return Invalid(
          fmt::format("a GCE instance named {} exists without canopy-id {}", name, spec.canopy_id));
    }
    SPDLOG_INFO("GCE instance adopted canopy_id={} instance={} zone={}", spec.canopy_id, name,
                zone);
    return i;
  };
  CANOPY_ASSIGN_OR_RETURN(
      Reply r,
      impl_->client.Send(k, "POST", "compute",
                         impl_->Compute(k, "zones/" + zone + "/instances?requestId=" +
                                               RequestId(spec.canopy_id, spec.idempotency_key)),
                         &body, /*idempotent=*/true, what));
  if (!r.ok()) {
    if (r.status == 409) return adopt();
    return MapGoogleError(r.error, what);
  }
  auto done = impl_->client.Wait(k, r.body, what);
  if (!done) {
    if (HasGoogleCode(done.error(), "RESOURCE_ALREADY_EXISTS") ||
        HasGoogleCode(done.error(), "ALREADY_EXISTS")) {
      return adopt();
    }
    return done.error();
  }
  auto g = impl_->GetInstance(k, where);
  if (!g) {
    if (IsNotFound(g.error())) {
      return Transient(
          fmt::format("GCE instance {} is gone right after its insert completed", name));
    }
    return g.error();
  }
  Instance inst = FromGce(*g);
  SPDLOG_INFO("GCE instance created canopy_id={} instance={} type={} zone={}", spec.canopy_id, name,
              spec.instance_type, zone);
  return inst;
}

Result<std::vector<Instance>> GcpProvider::FindInstancesByTag(const CallContext& ctx,
                                                              const std::string& key,
                                                              const std::string& value) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  if (key.empty()) return Invalid("tag key is required");
  CANOPY_ASSIGN_OR_RETURN(std::string region, impl_->Region(ctx));
  CANOPY_ASSIGN_OR_RETURN(auto zones, impl_->ZonesOf(k, region));
  if (auto it = impl_->opts.zones.find(region);
      it != impl_->opts.zones.end() &&
      std::find(zones.begin(), zones.end(), it->second) == zones.end()) {
    zones.push_back(it->second);
  }
  std::vector<Instance> out;
  for (const auto& zone : zones) {
    CANOPY_ASSIGN_OR_RETURN(auto list,
                            impl_->FindInZone(*this, k, zone, LabelKey(key), LabelValue(value)));
    for (auto& i : list) {
      std::string cluster = i.tags.count(kClusterTag) ? i.tags[kClusterTag] : "";
      if (k.cluster_id.empty() || cluster == LabelValue(k.cluster_id)) out.push_back(std::move(i));
    }
  }
  return out;
}

Result<Instance> GcpProvider::DescribeInstance(const CallContext& ctx, const ProviderHandle& h) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_ASSIGN_OR_RETURN(auto w, impl_->HandleOf(h));
  auto g = impl_->GetInstance(k, w);
  if (!g) {
    if (IsNotFound(g.error()))
      return NotFound(fmt::format("GCE instance {} not found in {}", w.name, w.zone));
    return g.error();
  }
  CANOPY_TRY(ConfineInstance(k, *g, "describe instance " + w.name));
  return FromGce(*g);
}

Result<Instance> GcpProvider::WaitUntilRunning(const CallContext& ctx, const ProviderHandle& h,
                                               std::chrono::seconds timeout) {
  auto deadline = SteadyClock::now() + timeout;
  for (;;) {
    CANOPY_ASSIGN_OR_RETURN(Instance i, DescribeInstance(ctx, h));
    if (i.state == InstanceState::kRunning && !i.address.empty()) {
      CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
      CANOPY_ASSIGN_OR_RETURN(auto w, impl_->HandleOf(h));
      const std::string base = "zones/" + w.zone + "/instances/" + w.name;
      if (impl_->opts.host_key_source == HostKeySource::kSerial) {
        CANOPY_ASSIGN_OR_RETURN(
            Json out, impl_->Get(k, "compute", impl_->Compute(k, base + "/serialPort?port=1"),
                                 "Compute instances.getSerialPortOutput"));
        i.host_key_sha256 = providers::HostKeyFromConsole(Str(out, "contents"));
      } else {
        CANOPY_ASSIGN_OR_RETURN(
            Reply r,
            impl_->GetReply(k, "compute",
                            impl_->Compute(k, base + "/getGuestAttributes?queryPath=hostkeys%2F"),
                            "Compute instances.getGuestAttributes"));
        // 404 until the guest agent has written its host keys.
        if (!r.ok() && r.status != 404)
          return MapGoogleError(r.error, "Compute instances.getGuestAttributes");
        if (r.ok()) i.host_key_sha256 = HostKeyFromGuestAttributes(r.body);
      }
      if (!i.host_key_sha256.empty()) return i;
      if (SteadyClock::now() >= deadline) {
        return Error::DeadlineExceeded(fmt::format(
            "GCE instance {} runs, but reports no SSH host key yet ({})", i.provider_id,
            impl_->opts.host_key_source == HostKeySource::kSerial ? "serial console"
                                                                  : "guest attributes hostkeys/"));
      }
      std::this_thread::sleep_for(
          std::min<SteadyClock::duration>(deadline - SteadyClock::now(), kRunningPoll));
      continue;
    }
    auto left = deadline - SteadyClock::now();
    if (left <= SteadyClock::duration::zero()) {
      return Error::DeadlineExceeded(fmt::format("GCE instance {} is {} after {} s", i.provider_id,
                                                 InstanceStateName(i.state), timeout.count()));
    }
    std::this_thread::sleep_for(std::min<SteadyClock::duration>(left, kRunningPoll));
  }
}

namespace {
// stop/start (POST) or delete (DELETE) of an instance, polled to DONE.
Status InstanceAction(GcpClient& client, const ServiceAccountKey& k, const std::string& name,
                      const std::string& zone, const char* action, bool gone_ok) {
  const bool del = std::string_view(action) == "delete";
  std::string path = ComputePath(k.project_id, "zones/" + zone + "/instances/" + name) +
                     (del ? "" : std::string("/") + action) + "?requestId=" + RandomRequestId();
  const std::string what = std::string("Compute instances.") + action;
  CANOPY_ASSIGN_OR_RETURN(
      Reply r, client.Send(k, del ? "DELETE" : "POST", "compute", path, nullptr, true, what));
  if (!r.ok()) {
    if (gone_ok && r.status == 404) return OkStatus();
    if (r.status == 404)
      return NotFound(fmt::format("GCE instance {} not found in {}", name, zone));
    return MapGoogleError(r.error, what);
  }
  auto done = client.Wait(k, r.body, what);
  if (!done && !(gone_ok && IsNotFound(done.error()))) return done.error();
  SPDLOG_INFO("GCE instance {} done instance={} zone={}", action, name, zone);
  return OkStatus();
}
}  // namespace

Status GcpProvider::StopInstance(const CallContext& ctx, const ProviderHandle& h) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_TRY(RequireFull(k, "stop instances"));
  CANOPY_ASSIGN_OR_RETURN(auto w, impl_->HandleOf(h));
  return InstanceAction(impl_->client, k, w.name, w.zone, "stop", false);
}

Status GcpProvider::StartInstance(const CallContext& ctx, const ProviderHandle& h) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_TRY(RequireFull(k, "start instances"));
  CANOPY_ASSIGN_OR_RETURN(auto w, impl_->HandleOf(h));
  return InstanceAction(impl_->client, k, w.name, w.zone, "start", false);
}

Status GcpProvider::TerminateInstance(const CallContext& ctx, const ProviderHandle& h) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_TRY(RequireFull(k, "terminate instances"));
  CANOPY_ASSIGN_OR_RETURN(auto w, impl_->HandleOf(h));
  return InstanceAction(impl_->client, k, w.name, w.zone, "delete", true);
}

namespace {
Status ValidKeyPairName(const std::string& name) {
  if (name.empty() || name.size() > 200 ||
      name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
          std::string::npos) {
    return Invalid("key pair name must be 1 to 200 characters of A-Z a-z 0-9 _ -");
  }
  return OkStatus();
}
}  // namespace

Result<KeyPair> GcpProvider::CreateKeyPair(const CallContext& ctx, const std::string& name) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_TRY(RequireFull(k, "create key pairs"));
  CANOPY_TRY(ValidKeyPairName(name));
  auto guard = impl_->LockFor("key/" + k.project_id + "/" + name);
  std::lock_guard lock(*guard);
  auto stored = impl_->StoredKey(k, name);
  if (stored) return stored;
  if (!IsNotFound(stored.error())) return stored.error();
  // The secret, then its first version. A secret left without a version (a crash in between) is
  // given one now.
  const std::string base = "/v1/projects/" + k.project_id + "/secrets";
  Json secret{{"replication", {{"automatic", Json::object()}}},
              {"labels", {{kKeyPairLabel, LabelValue(name)}}}};
  CANOPY_ASSIGN_OR_RETURN(
      Reply made,
      impl_->client.Send(k, "POST", "secretmanager", base + "?secretId=" + KeyPairSecretId(name),
                         &secret, false, "SecretManager secrets.create"));
  if (!made.ok() && made.status != 409) {
    return MapGoogleError(made.error, "SecretManager secrets.create");
  }
  if (made.status == 409) {
    // Made by another adapter meanwhile, or left without a version by a crash.
    stored = impl_->StoredKey(k, name);
    if (stored) return stored;
    if (!IsNotFound(stored.error())) return stored.error();
  }
  CANOPY_ASSIGN_OR_RETURN(GeneratedKey g, GenerateEd25519("canopy-" + name));
  Json version{{"payload", {{"data", Base64Encode(g.private_key.Reveal())}}}};
  auto added =
      impl_->client.Call(k, "POST", "secretmanager", impl_->SecretPath(k, name) + ":addVersion",
                         &version, false, "SecretManager secrets.addVersion");
  std::string& data = version["payload"]["data"].get_ref<std::string&>();
  OPENSSL_cleanse(data.data(), data.size());
  if (!added) return added.error();
  SPDLOG_INFO("GCP key pair created and stored in Secret Manager name={} secret={}", name,
              KeyPairSecretId(name));
  // What GetKeyPair will return from now on (the latest version).
  return impl_->StoredKey(k, name);
}

Result<KeyPair> GcpProvider::GetKeyPair(const CallContext& ctx, const std::string& name) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_TRY(RequireFull(k, "read key pairs"));
  CANOPY_TRY(ValidKeyPairName(name));
  return impl_->StoredKey(k, name);
}

namespace {
// (protocol, port) pairs of a Firewall's `allowed` ("tcp" without ports: every port as "").
std::set<std::pair<std::string, std::string>> AllowedSet(const Json& allowed) {
  std::set<std::pair<std::string, std::string>> out;
  if (!allowed.is_array()) return out;
  for (const Json& a : allowed) {
    std::string proto = Str(a, "IPProtocol");
    auto ports = Strings(Field(a, "ports"));
    if (ports.empty()) out.insert({proto, ""});
    for (const auto& p : ports) out.insert({proto, p});
  }
  return out;
}
std::set<std::string> StringSet(const Json& arr) {
  auto v = Strings(arr);
  return std::set<std::string>(v.begin(), v.end());
}
Status ValidFirewallId(const std::string& id) {
  if (!GceName(id)) return Invalid(fmt::format("'{}' is not a GCP firewall id", id.substr(0, 64)));
  return OkStatus();
}
}  // namespace

Result<Firewall> GcpProvider::CreateFirewall(const CallContext& ctx, const FirewallSpec& spec) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  if (spec.canopy_id.empty() || spec.canopy_id.size() > 200 ||
      spec.canopy_id.find_first_of(";\r\n") != std::string::npos) {
    return Invalid("canopy_id must be 1 to 200 characters without ';'");
  }
  std::string cluster = spec.tags.count(kClusterTag) ? spec.tags.at(kClusterTag) : "";
  if (!k.cluster_id.empty()) {
    if (!cluster.empty() && cluster != k.cluster_id) {
      return Auth("a cluster identity may only create its own cluster's firewalls");
    }
    cluster = k.cluster_id;
  }
  if (cluster.find_first_of(";\r\n") != std::string::npos || cluster.size() > 200)
    return Invalid("the cluster tag must be at most 200 characters without ';'");
  CANOPY_ASSIGN_OR_RETURN(std::vector<Json> bodies, FirewallBodies(spec, cluster));
  const std::string name = ResourceName(spec.canopy_id);
  auto guard = impl_->LockFor("fw/" + k.project_id + "/" + name);
  std::lock_guard lock(*guard);
  Firewall fw;
  fw.id = name;
  fw.name = name;
  fw.canopy_id = spec.canopy_id;
  fw.rules = spec.rules;
  for (const Json& body : bodies) CANOPY_TRY(EnsureFirewallRule(k, body, spec.canopy_id));
  // Parts of an earlier spec with more source lists go.
  CANOPY_TRY(DeleteFirewallParts(k, name, bodies.size()));
  return fw;
}

Status GcpProvider::EnsureFirewallRule(const ServiceAccountKey& k, const Json& body,
                                       const std::string& canopy_id) {
  const std::string name = body["name"];
  for (int round = 0; round < 2; ++round) {
    CANOPY_ASSIGN_OR_RETURN(
        Reply got, impl_->GetReply(k, "compute", impl_->Compute(k, "global/firewalls/" + name),
                                   "Compute firewalls.get"));
    if (got.ok()) {
      const std::string desc = Str(got.body, "description");
      if (OwnerOf(desc).canopy_id != canopy_id) {
        return Invalid(fmt::format("a firewall rule named {} exists for another canopy-id", name));
      }
      CANOPY_TRY(Confine(k, OwnerOf(desc).cluster, "use firewall " + name));
      // Converge on the spec.
      if (AllowedSet(got.body["allowed"]) == AllowedSet(body["allowed"]) &&
          StringSet(got.body["sourceRanges"]) == StringSet(body["sourceRanges"])) {
        return OkStatus();
      }
      Json patch{
          {"name", name}, {"allowed", body["allowed"]}, {"sourceRanges", body["sourceRanges"]}};
      const std::string what = "Compute firewalls.patch";
      CANOPY_ASSIGN_OR_RETURN(
          Json op, impl_->client.Call(k, "PATCH", "compute",
                                      impl_->Compute(k, "global/firewalls/" + name +
                                                            "?requestId=" + RandomRequestId()),
                                      &patch, true, what));
      CANOPY_TRY(impl_->client.Wait(k, op, what));
      SPDLOG_INFO("GCP firewall rule updated canopy_id={} firewall={}", canopy_id, name);
      return OkStatus();
    }
    if (got.status != 404) return MapGoogleError(got.error, "Compute firewalls.get");
    const std::string what = "Compute firewalls.insert";
    CANOPY_ASSIGN_OR_RETURN(
        Reply r,
        impl_->client.Send(k, "POST", "compute",
                           impl_->Compute(k, "global/firewalls?requestId=" + RandomRequestId()),
                           &body, true, what));
    if (r.status == 409) continue;  // made meanwhile: converge on it
    if (!r.ok()) return MapGoogleError(r.error, what);
    auto done = impl_->client.Wait(k, r.body, what);
    if (!done) {
      if (HasGoogleCode(done.error(), "RESOURCE_ALREADY_EXISTS") ||
          HasGoogleCode(done.error(), "ALREADY_EXISTS")) {
        continue;
      }
      return done.error();
    }
    SPDLOG_INFO("GCP firewall rule created canopy_id={} firewall={}", canopy_id, name);
    return OkStatus();
  }
  return Transient(fmt::format("firewall rule {} keeps changing; try again", name));
}

// Deletes the rules "<id>-s<from>", "<id>-s<from+1>", ... up to the first that does not exist.
Status GcpProvider::DeleteFirewallParts(const ServiceAccountKey& k, const std::string& id,
                                        size_t from) {
  for (size_t part = std::max<size_t>(from, 1); part < kMaxFirewallParts; ++part) {
    const std::string name = FirewallPartName(id, part);
    auto g = impl_->GetFirewall(k, name);
    if (!g) {
      if (IsNotFound(g.error())) return OkStatus();
      return g.error();
    }
    CANOPY_TRY(Confine(k, OwnerOf(Str(*g, "description")).cluster, "delete firewall " + name));
    CANOPY_TRY(DeleteFirewallRule(k, name));
  }
  return OkStatus();
}

Status GcpProvider::DeleteFirewallRule(const ServiceAccountKey& k, const std::string& name) {
  const std::string what = "Compute firewalls.delete";
  CANOPY_ASSIGN_OR_RETURN(
      Reply r, impl_->client.Send(k, "DELETE", "compute",
                                  impl_->Compute(k, "global/firewalls/" + name +
                                                        "?requestId=" + RandomRequestId()),
                                  nullptr, true, what));
  if (!r.ok()) {
    if (r.status == 404) return OkStatus();
    return MapGoogleError(r.error, what);
  }
  auto done = impl_->client.Wait(k, r.body, what);
  if (!done && !IsNotFound(done.error())) return done.error();
  SPDLOG_INFO("GCP firewall rule deleted firewall={}", name);
  return OkStatus();
}

Result<bool> GcpProvider::FirewallExists(const CallContext& ctx, const std::string& firewall_id) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_TRY(ValidFirewallId(firewall_id));
  auto g = impl_->GetFirewall(k, firewall_id);
  if (!g) {
    if (IsNotFound(g.error())) return false;
    return g.error();
  }
  CANOPY_TRY(Confine(k, OwnerOf(Str(*g, "description")).cluster, "see firewall " + firewall_id));
  return true;
}

Status GcpProvider::AttachFirewall(const CallContext& ctx, const ProviderHandle& instance,
                                   const std::string& firewall_id) {
  return ChangeTags(ctx, instance, firewall_id, true);
}

Status GcpProvider::DetachFirewall(const CallContext& ctx, const ProviderHandle& instance,
                                   const std::string& firewall_id) {
  return ChangeTags(ctx, instance, firewall_id, false);
}

// Read-modify-write of the instance's network tags with its fingerprint; a raced fingerprint
// (412 conditionNotMet) reads again. Serialised per instance in this adapter.
Status GcpProvider::ChangeTags(const CallContext& ctx, const ProviderHandle& instance,
                               const std::string& firewall_id, bool attach) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_TRY(ValidFirewallId(firewall_id));
  CANOPY_ASSIGN_OR_RETURN(auto w, impl_->HandleOf(instance));
  auto guard = impl_->LockFor("tags/" + k.project_id + "/" + w.zone + "/" + w.name);
  std::lock_guard lock(*guard);
  const std::string verb = attach ? "attach firewall " : "detach firewall ";
  bool checked_firewall = false;
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto g = impl_->GetInstance(k, w);
    if (!g) {
      if (IsNotFound(g.error()))
        return NotFound(fmt::format("GCE instance {} not found in {}", w.name, w.zone));
      return g.error();
    }
    CANOPY_TRY(ConfineInstance(k, *g, "change the network tags of instance " + w.name));
    if (!checked_firewall) {
      auto f = impl_->GetFirewall(k, firewall_id);
      if (f) {
        CANOPY_TRY(Confine(k, OwnerOf(Str(*f, "description")).cluster, verb + firewall_id));
      } else if (attach || !IsNotFound(f.error())) {
        return f.error();  // a deleted rule's tag may still be removed
      }
      checked_firewall = true;
    }
    const Json& tags = Field(*g, "tags");
    auto items = Strings(Field(tags, "items"));
    const std::string fingerprint = Str(tags, "fingerprint");
    bool has = std::find(items.begin(), items.end(), firewall_id) != items.end();
    if (attach == has) return OkStatus();
    if (attach) {
      items.push_back(firewall_id);
    } else {
      items.erase(std::remove(items.begin(), items.end(), firewall_id), items.end());
    }
    Json body = SetTagsBody(items, fingerprint);
    const std::string what = "Compute instances.setTags";
    CANOPY_ASSIGN_OR_RETURN(
        Reply r,
        impl_->client.Send(k, "POST", "compute",
                           impl_->Compute(k, "zones/" + w.zone + "/instances/" + w.name +
                                                 "/setTags?requestId=" + RandomRequestId()),
                           &body, true, what));
    if (r.status == 412 || r.error.reason == "conditionNotMet") {
      SPDLOG_DEBUG("GCE setTags raced, reading again instance={} attempt={}", w.name, attempt + 1);
      continue;
    }
    if (!r.ok()) return MapGoogleError(r.error, what);
    auto done = impl_->client.Wait(k, r.body, what);
    if (!done) {
      if (HasGoogleCode(done.error(), "CONDITION_NOT_MET")) continue;
      return done.error();
    }
    SPDLOG_INFO("GCE firewall {} instance={} firewall={}", attach ? "attached" : "detached", w.name,
                firewall_id);
    return OkStatus();
  }
  return Transient(fmt::format("the network tags of GCE instance {} keep changing", w.name));
}

Status GcpProvider::DeleteFirewall(const CallContext& ctx, const std::string& firewall_id) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_TRY(ValidFirewallId(firewall_id));
  auto g = impl_->GetFirewall(k, firewall_id);
  if (!g) {
    if (IsNotFound(g.error())) return OkStatus();
    return g.error();
  }
  CANOPY_TRY(Confine(k, OwnerOf(Str(*g, "description")).cluster, "delete firewall " + firewall_id));
  CANOPY_TRY(DeleteFirewallParts(k, firewall_id, 1));
  return DeleteFirewallRule(k, firewall_id);
}

Result<ClusterIdentity> GcpProvider::CreateClusterIdentity(const CallContext& ctx,
                                                           const std::string& cluster_id) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_TRY(RequireFull(k, "create identities"));
  if (cluster_id.empty() || cluster_id.size() > 64 ||
      cluster_id.find_first_not_of(
          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
          std::string::npos) {
    return Invalid("cluster id must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
  }
  const std::string account = ClusterAccountId(cluster_id);
  const std::string base = "/v1/projects/" + k.project_id + "/serviceAccounts";
  Json create{{"accountId", account},
              {"serviceAccount",
               {{"displayName", "Canopy cluster " + cluster_id},
                {"description", "canopy-cluster=" + cluster_id}}}};
  CANOPY_ASSIGN_OR_RETURN(Reply made, impl_->client.Send(k, "POST", "iam", base, &create, false,
                                                         "IAM serviceAccounts.create"));
  Json sa;
  if (made.ok()) {
    sa = std::move(made.body);
  } else if (made.status == 409) {
    CANOPY_ASSIGN_OR_RETURN(
        sa,
        impl_->Get(k, "iam", base + "/" + account + "@" + k.project_id + ".iam.gserviceaccount.com",
                   "IAM serviceAccounts.get"));
    std::string owner = AfterPrefix(Str(sa, "description"), "canopy-cluster=");
    if (!owner.empty() && owner != cluster_id) {
      return Invalid(fmt::format("service account {} belongs to cluster {}", account, owner));
    }
  } else {
    return MapGoogleError(made.error, "IAM serviceAccounts.create");
  }
  const std::string email = Str(sa, "email");
  if (email.empty() || email.find('/') != std::string::npos || email.find('?') != std::string::npos)
    return Error::Provider("IAM serviceAccounts.create answered no email");
  const std::string member = "serviceAccount:" + email;
  CANOPY_TRY(impl_->ChangePolicy(k, [&](Json& policy) {
    Json& bindings = policy["bindings"];
    if (!bindings.is_array()) bindings = Json::array();
    for (Json& b : bindings) {
      if (Str(b, "role") != kClusterRole || Field(b, "condition").is_object()) continue;
      Json& members = b["members"];
      if (!members.is_array()) members = Json::array();
      if (std::find(members.begin(), members.end(), Json(member)) != members.end()) return false;
      members.push_back(member);
      return true;
    }
    bindings.push_back({{"role", kClusterRole}, {"members", {member}}});
    return true;
  }));
  Json key_req{{"privateKeyType", "TYPE_GOOGLE_CREDENTIALS_FILE"},
               {"keyAlgorithm", "KEY_ALG_RSA_2048"}};
  CANOPY_ASSIGN_OR_RETURN(
      Json key, impl_->client.Call(k, "POST", "iam", base + "/" + email + "/keys", &key_req, false,
                                   "IAM serviceAccounts.keys.create"));
  std::string file;
  const std::string data = Str(key, "privateKeyData");
  if (data.empty() || !Base64Decode(data, &file))
    return Error::Provider("IAM serviceAccounts.keys.create answered no key file");
  auto cred = ParseJsonObject(file);
  OPENSSL_cleanse(file.data(), file.size());
  if (!cred) return Error::Provider("IAM serviceAccounts.keys.create: the key file is not JSON");
  (*cred)[kClusterField] = cluster_id;
  auto parsed = ParseServiceAccountKey(*cred);
  if (!parsed) {
    return Error::Provider("IAM serviceAccounts.keys.create: unusable key file: " +
                           parsed.error().message);
  }
  ClusterIdentity id;
  id.id = email;
  id.credential = CredentialSecret(std::move(*cred));
  SPDLOG_INFO("GCP cluster identity created cluster={} account={}", cluster_id, email);
  return id;
}

Status GcpProvider::DeleteClusterIdentity(const CallContext& ctx, const std::string& identity_id) {
  CANOPY_ASSIGN_OR_RETURN(ServiceAccountKey k, ParseServiceAccountKey(ctx.credential.Reveal()));
  CANOPY_TRY(RequireFull(k, "delete identities"));
  auto at = identity_id.find('@');
  if (identity_id.size() > 254 || at == std::string::npos || at == 0 ||
      identity_id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-.@_") !=
          std::string::npos) {
    return Invalid("identity id must be a service account email");
  }
  const std::string member = "serviceAccount:" + identity_id;
  CANOPY_TRY(impl_->ChangePolicy(k, [&](Json& policy) {
    Json& bindings = policy["bindings"];
    if (!bindings.is_array()) return false;
    bool changed = false;
    for (Json& b : bindings) {
      Json& members = b["members"];
      if (!members.is_array()) continue;
      auto it = std::remove(members.begin(), members.end(), Json(member));
      if (it != members.end()) {
        members.erase(it, members.end());
        changed = true;
      }
    }
    bindings.erase(std::remove_if(bindings.begin(), bindings.end(),
                                  [](const Json& b) {
                                    const Json& m = Field(b, "members");
                                    return !m.is_array() || m.empty();
                                  }),
                   bindings.end());
    return changed;
  }));
  const std::string what = "IAM serviceAccounts.delete";
  CANOPY_ASSIGN_OR_RETURN(Reply r, impl_->client.Send(k, "DELETE", "iam",
                                                      "/v1/projects/" + k.project_id +
                                                          "/serviceAccounts/" + identity_id,
                                                      nullptr, true, what));
  if (!r.ok() && r.status != 404) return MapGoogleError(r.error, what);
  impl_->client.DropTokens(identity_id);
  SPDLOG_INFO("GCP cluster identity deleted account={}", identity_id);
  return OkStatus();
}

}  // namespace canopy::providers::gcp
