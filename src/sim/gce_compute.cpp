// The Compute v1 API of the Compute Engine double: catalog (regions, zones, machine types,
// images), instances, firewalls, list filters and paging (see src/sim/detail/gce_impl.h).
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <regex>

#include "common/ids.h"
#include "common/log.h"
#include "sim/detail/gce_impl.h"

namespace canopy::sim {

using gce::Reply;

namespace {

struct RegionDef {
  std::string name;
  std::vector<std::string> zones;  // suffixes
};
const std::vector<RegionDef>& Regions() {
  static const std::vector<RegionDef> kRegions = {{"asia-east1", {"a", "b", "c"}},
                                                  {"europe-west1", {"b", "c", "d"}},
                                                  {"us-central1", {"a", "b", "c", "f"}}};
  return kRegions;
}

struct TypeDef {
  std::string name;
  int cpus;
  int memory_mb;
  bool shared;
  std::string description;
};
const std::vector<TypeDef>& Types() {
  static const std::vector<TypeDef> kTypes = {
      {"e2-micro", 2, 1024, true, "2 vCPU (1/4 shared physical core) and 1 GB RAM"},
      {"e2-small", 2, 2048, true, "2 vCPU (1/2 shared physical core) and 2 GB RAM"},
      {"e2-medium", 2, 4096, true, "2 vCPU (1 shared physical core) and 4 GB RAM"},
      {"e2-standard-2", 2, 8192, false, "Efficient Instance, 2 vCPUs, 8 GB RAM"},
      {"e2-standard-4", 4, 16384, false, "Efficient Instance, 4 vCPUs, 16 GB RAM"},
      {"n2-standard-2", 2, 8192, false, "2 vCPUs 8 GB RAM"},
      {"n2-standard-4", 4, 16384, false, "4 vCPUs 16 GB RAM"},
      {"n1-standard-4", 4, 15360, false, "4 vCPUs, 15 GB RAM"}};
  return kTypes;
}
// Zones where n1-standard-4 comes with an NVIDIA T4.
bool HasGpu(const std::string& zone) {
  return zone == "us-central1-a" || zone == "us-central1-b" || zone == "europe-west1-b" ||
         zone == "asia-east1-a";
}

struct ImageDef {
  std::string project, family, name, blank, description, license, created;
};
const std::vector<ImageDef>& Images() {
  static const std::vector<ImageDef> kImages = {
      {"debian-cloud", "debian-11", "debian-11-bullseye-v20240110", "debian-11-minbase",
       "Debian, Debian GNU/Linux, 11 (bullseye), amd64 built on 20240110", "debian-11-bullseye",
       "2024-01-10T10:00:00.000-08:00"},
      {"debian-cloud", "debian-12", "debian-12-bookworm-v20240110", "debian-12-minbase",
       "Debian, Debian GNU/Linux, 12 (bookworm), amd64 built on 20240110", "debian-12-bookworm",
       "2024-01-10T10:00:00.000-08:00"},
      {"ubuntu-os-cloud", "ubuntu-2204-lts", "ubuntu-2204-jammy-v20240126", "",
       "Canonical, Ubuntu, 22.04 LTS, amd64 jammy image built on 2024-01-26", "ubuntu-2204-lts",
       "2024-01-26T12:00:00.000-08:00"},
      {"ubuntu-os-cloud", "ubuntu-2404-lts-amd64", "ubuntu-2404-noble-amd64-v20240523", "",
       "Canonical, Ubuntu, 24.04 LTS, amd64 noble image built on 2024-05-23", "ubuntu-2404-lts",
       "2024-05-23T12:00:00.000-07:00"}};
  return kImages;
}

// A stable numeric id for catalog entries.
std::string StableId(const std::string& what) {
  return std::to_string(1000000000000000000ULL +
                        std::stoull(Sha256Hex(what).substr(0, 15), nullptr, 16) %
                            8000000000000000000ULL);
}

std::string RegionOf(const std::string& zone) {
  size_t dash = zone.rfind('-');
  return dash == std::string::npos ? zone : zone.substr(0, dash);
}

bool ZoneExists(const std::string& zone) {
  for (const auto& r : Regions()) {
    for (const auto& z : r.zones) {
      if (r.name + "-" + z == zone) return true;
    }
  }
  return false;
}

const TypeDef* FindType(const std::string& name) {
  for (const auto& t : Types()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

// Strips "https://.../compute/v1/" and "projects/P/" from a resource reference.
std::string Relative(std::string ref, const std::string& project, std::string* ref_project) {
  for (const char* prefix :
       {"https://www.googleapis.com/compute/v1/", "https://compute.googleapis.com/compute/v1/"}) {
    if (ref.rfind(prefix, 0) == 0) ref = ref.substr(std::string(prefix).size());
  }
  std::string p = project;
  if (ref.rfind("projects/", 0) == 0) {
    size_t slash = ref.find('/', 9);
    if (slash == std::string::npos) return "";
    p = ref.substr(9, slash - 9);
    ref = ref.substr(slash + 1);
  }
  if (ref_project != nullptr) *ref_project = p;
  return ref;
}

std::string IpText(uint32_t a) {
  return fmt::format("{}.{}.{}.{}", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

bool ParseIp(const std::string& s, uint32_t* out) {
  unsigned a, b, c, d;
  char extra;
  if (std::sscanf(s.c_str(), "%u.%u.%u.%u%c", &a, &b, &c, &d, &extra) != 4 || a > 255 || b > 255 ||
      c > 255 || d > 255) {
    return false;
  }
  *out = (a << 24) | (b << 16) | (c << 8) | d;
  return true;
}

bool ValidCidr(const std::string& s) {
  size_t slash = s.find('/');
  uint32_t ip = 0;
  if (!ParseIp(s.substr(0, slash), &ip)) return false;
  if (slash == std::string::npos) return true;
  const std::string bits = s.substr(slash + 1);
  if (bits.empty() || bits.size() > 2 || bits.find_first_not_of("0123456789") != std::string::npos)
    return false;
  return std::stoi(bits) <= 32;
}

// "22" / "1000-2000" -> {from, to}; nullopt when malformed.
std::optional<std::pair<int, int>> PortRange(const std::string& s) {
  static const std::regex re("([0-9]{1,5})(?:-([0-9]{1,5}))?");
  std::smatch m;
  if (!std::regex_match(s, m, re)) return std::nullopt;
  int from = std::stoi(m[1].str());
  int to = m[2].matched ? std::stoi(m[2].str()) : from;
  if (from > 65535 || to > 65535 || to < from) return std::nullopt;
  return std::make_pair(from, to);
}

std::string Fingerprint(const std::string& content) {
  if (content.empty()) return gce::kEmptyFingerprint;
  std::string hex = Sha256Hex(content).substr(0, 16);
  std::string raw;
  for (size_t i = 0; i < hex.size(); i += 2) {
    raw.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return Base64Encode(raw);
}

bool IsUuid(const std::string& s) {
  static const std::regex re(
      "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}");
  return std::regex_match(s, re) && s != "00000000-0000-0000-0000-000000000000";
}

// --- list filters (the subset of Compute's filter language the adapter and tests use) -------

struct FilterNode {
  enum Kind { kAnd, kOr, kNot, kCmp } kind = kCmp;
  std::vector<FilterNode> kids;
  std::string field, op, value;
};

class FilterParser {
 public:
  explicit FilterParser(std::string_view s) : s_(s) {}

  std::optional<FilterNode> Parse(std::string* error) {
    auto n = Or();
    Skip();
    if (!n || pos_ != s_.size()) {
      *error = error_.empty() ? "unexpected text at position " + std::to_string(pos_) : error_;
      return std::nullopt;
    }
    return n;
  }

 private:
  void Skip() {
    while (pos_ < s_.size() && s_[pos_] == ' ') ++pos_;
  }
  bool Keyword(std::string_view kw) {
    Skip();
    if (s_.substr(pos_, kw.size()) == kw &&
        (pos_ + kw.size() == s_.size() || s_[pos_ + kw.size()] == ' ' ||
         s_[pos_ + kw.size()] == '(')) {
      pos_ += kw.size();
      return true;
    }
    return false;
  }
  std::optional<FilterNode> Or() {
    auto first = And();
    if (!first) return std::nullopt;
    FilterNode n{FilterNode::kOr, {*first}, "", "", ""};
    while (Keyword("OR")) {
      auto next = And();
      if (!next) return std::nullopt;
      n.kids.push_back(*next);
    }
    return n.kids.size() == 1 ? n.kids.front() : n;
  }
  std::optional<FilterNode> And() {
    auto first = Unary();
    if (!first) return std::nullopt;
    FilterNode n{FilterNode::kAnd, {*first}, "", "", ""};
    for (;;) {
      Skip();
      if (pos_ >= s_.size() || s_[pos_] == ')') break;
      size_t save = pos_;
      if (Keyword("OR")) {
        pos_ = save;
        break;
      }
      Keyword("AND");
      auto next = Unary();
      if (!next) return std::nullopt;
      n.kids.push_back(*next);
    }
    return n.kids.size() == 1 ? n.kids.front() : n;
  }
  std::optional<FilterNode> Unary() {
    if (Keyword("NOT")) {
      auto k = Unary();
      if (!k) return std::nullopt;
      return FilterNode{FilterNode::kNot, {*k}, "", "", ""};
    }
    Skip();
    if (pos_ < s_.size() && s_[pos_] == '(') {
      ++pos_;
      auto n = Or();
      Skip();
      if (!n || pos_ >= s_.size() || s_[pos_] != ')') {
        error_ = "unbalanced parentheses";
        return std::nullopt;
      }
      ++pos_;
      return n;
    }
    return Comparison();
  }
  std::string Word() {
    Skip();
    size_t start = pos_;
    while (pos_ < s_.size() && std::string_view(" ()=!:<>\"'").find(s_[pos_]) == std::string::npos)
      ++pos_;
    return std::string(s_.substr(start, pos_ - start));
  }
  std::optional<FilterNode> Comparison() {
    FilterNode n;
    n.field = Word();
    if (n.field.empty()) {
      error_ = "a field name was expected at position " + std::to_string(pos_);
      return std::nullopt;
    }
    Skip();
    for (const char* op : {"!=", ">=", "<=", "=", ":", ">", "<"}) {
      if (s_.substr(pos_, std::string_view(op).size()) == op) {
        n.op = op;
        pos_ += n.op.size();
        break;
      }
    }
    if (n.op.empty()) {
      if (Keyword("eq")) {
        n.op = "eq";
      } else if (Keyword("ne")) {
        n.op = "ne";
      } else {
        error_ = "an operator was expected after " + n.field;
        return std::nullopt;
      }
    }
    Skip();
    if (pos_ < s_.size() && (s_[pos_] == '"' || s_[pos_] == '\'')) {
      char q = s_[pos_++];
      size_t end = s_.find(q, pos_);
      if (end == std::string_view::npos) {
        error_ = "unterminated string";
        return std::nullopt;
      }
      n.value = std::string(s_.substr(pos_, end - pos_));
      pos_ = end + 1;
    } else {
      n.value = Word();
      if (n.value.empty() && pos_ < s_.size() && s_[pos_] == '*') ++pos_;
    }
    return n;
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
};

std::vector<std::string> FieldValues(const Json& item, const std::string& field) {
  const Json* cur = &item;
  size_t pos = 0;
  while (pos <= field.size()) {
    size_t dot = field.find('.', pos);
    std::string key = field.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (!cur->is_object() || !cur->contains(key)) return {};
    cur = &(*cur)[key];
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  std::vector<std::string> out;
  auto text = [](const Json& v) { return v.is_string() ? v.get<std::string>() : DumpJson(v); };
  if (cur->is_array()) {
    for (const auto& v : *cur) out.push_back(text(v));
  } else {
    out.push_back(text(*cur));
  }
  return out;
}

bool Eval(const FilterNode& n, const Json& item) {
  switch (n.kind) {
    case FilterNode::kAnd:
      return std::all_of(n.kids.begin(), n.kids.end(),
                         [&](const auto& k) { return Eval(k, item); });
    case FilterNode::kOr:
      return std::any_of(n.kids.begin(), n.kids.end(),
                         [&](const auto& k) { return Eval(k, item); });
    case FilterNode::kNot:
      return !Eval(n.kids.front(), item);
    case FilterNode::kCmp:
      break;
  }
  const auto values = FieldValues(item, n.field);
  if (n.op == "!=" || n.op == "ne") {
    FilterNode eq = n;
    eq.op = n.op == "!=" ? "=" : "eq";
    return !Eval(eq, item);
  }
  for (const auto& v : values) {
    if (n.op == "=" && v == n.value) return true;
    if (n.op == ":" && (n.value.empty() || v.find(n.value) != std::string::npos)) return true;
    if (n.op == "eq") {
      try {
        if (std::regex_match(v, std::regex(n.value))) return true;
      } catch (const std::regex_error&) {
        return false;
      }
    }
    if (n.op == ">" || n.op == "<" || n.op == ">=" || n.op == "<=") {
      int c = v.compare(n.value);
      char* e1 = nullptr;
      char* e2 = nullptr;
      double a = std::strtod(v.c_str(), &e1), b = std::strtod(n.value.c_str(), &e2);
      if (*e1 == '\0' && *e2 == '\0' && !v.empty() && !n.value.empty()) c = a < b ? -1 : a > b;
      if ((n.op == ">" && c > 0) || (n.op == "<" && c < 0) || (n.op == ">=" && c >= 0) ||
          (n.op == "<=" && c <= 0)) {
        return true;
      }
    }
  }
  return false;
}

// A list answer with `filter`, `maxResults` and `pageToken` applied; `items` omitted when empty
// (as Compute does).
Reply ListReply(const ApiCall& call, const std::string& kind, const std::string& id,
                const std::string& self_link, std::vector<Json> items) {
  const std::string filter = call.Param("filter");
  if (!filter.empty()) {
    std::string error;
    auto node = FilterParser(filter).Parse(&error);
    if (!node) {
      return Reply::Err(gce::Invalid("Invalid list filter expression '" + filter + "': " + error));
    }
    items.erase(std::remove_if(items.begin(), items.end(),
                               [&](const Json& it) { return !Eval(*node, it); }),
                items.end());
  }
  size_t max = 500;
  if (!call.Param("maxResults").empty()) {
    max = std::stoul(call.Param("maxResults"));
    if (max == 0 || max > 500) max = 500;
  }
  size_t start = 0;
  const std::string token = call.Param("pageToken");
  if (!token.empty()) {
    std::string raw;
    if (!Base64UrlDecode(token, &raw) || raw.rfind("offset:", 0) != 0 || raw.size() > 20 ||
        raw.find_first_not_of("0123456789", 7) != std::string::npos || raw.size() == 7) {
      return Reply::Err(gce::Invalid("Invalid value for field 'pageToken': '" + token + "'."));
    }
    start = std::stoul(raw.substr(7));
  }
  Json j{{"kind", kind}, {"id", id}, {"selfLink", self_link}};
  Json page = Json::array();
  for (size_t i = start; i < items.size() && page.size() < max; ++i) page.push_back(items[i]);
  if (!page.empty()) j["items"] = page;
  if (start + page.size() < items.size()) {
    j["nextPageToken"] = Base64UrlEncode("offset:" + std::to_string(start + page.size()));
  }
  return Reply::Ok(j);
}

GoogleError InstanceNotFound(const std::string& project, const std::string& zone,
                             const std::string& name) {
  return gce::NotFound(fmt::format("The resource 'projects/{}/zones/{}/instances/{}' was not found",
                                   project, zone, name));
}

GoogleError FirewallNotFound(const std::string& project, const std::string& name) {
  return gce::NotFound(
      fmt::format("The resource 'projects/{}/global/firewalls/{}' was not found", project, name));
}

// The semantic checks of a firewall rule beyond its schema (ports, ranges, protocols).
std::optional<GoogleError> CheckFirewall(const Json& fw) {
  if (fw.contains("allowed") && fw.contains("denied") && !fw["allowed"].empty() &&
      !fw["denied"].empty()) {
    return gce::Invalid(
        "Invalid value for field 'resource': a firewall rule cannot have both "
        "allowed and denied.");
  }
  for (const char* list : {"allowed", "denied"}) {
    const Json entries = fw.value(list, Json::array());
    for (size_t i = 0; i < entries.size(); ++i) {
      const std::string proto = entries[i].value("IPProtocol", "");
      static const std::set<std::string> kProtocols = {"tcp", "udp",  "icmp", "esp",
                                                       "ah",  "sctp", "ipip", "all"};
      if (!kProtocols.count(proto) &&
          (proto.empty() || proto.find_first_not_of("0123456789") != std::string::npos)) {
        return gce::Invalid(
            fmt::format("Invalid value for field 'resource.{}[{}].IPProtocol': "
                        "'{}'. Invalid IP protocol specification.",
                        list, i, proto));
      }
      const Json ports = entries[i].value("ports", Json::array());
      for (size_t k = 0; k < ports.size(); ++k) {
        if (!PortRange(ports[k].get<std::string>())) {
          return gce::Invalid(
              fmt::format("Invalid value for field 'resource.{}[{}].ports[{}]': "
                          "'{}'. Invalid port specification.",
                          list, i, k, ports[k].get<std::string>()));
        }
      }
    }
  }
  for (const char* list : {"sourceRanges", "destinationRanges"}) {
    const Json ranges = fw.value(list, Json::array());
    for (size_t i = 0; i < ranges.size(); ++i) {
      if (!ValidCidr(ranges[i].get<std::string>())) {
        return gce::Invalid(
            fmt::format("Invalid value for field 'resource.{}[{}]': '{}'. Must be "
                        "a CIDR address range that is contained in the network.",
                        list, i, ranges[i].get<std::string>()));
      }
    }
  }
  if (fw.contains("priority") &&
      (fw["priority"].get<int64_t>() < 0 || fw["priority"].get<int64_t>() > 65535)) {
    return gce::Invalid("Invalid value for field 'resource.priority': must be 0 to 65535.");
  }
  return std::nullopt;
}

bool ValidLabel(const std::string& s, bool key) {
  static const std::regex key_re("[a-z][a-z0-9_-]{0,62}");
  static const std::regex value_re("[a-z0-9_-]{0,63}");
  return std::regex_match(s, key ? key_re : value_re);
}

}  // namespace

// --- links and addresses ------------------------------------------------------------------------

std::string GceDouble::Impl::ZoneLink(const std::string& zone) const {
  return fmt::format("{}projects/{}/zones/{}", gce::kApiBase, opts.project, zone);
}

std::string GceDouble::Impl::InstanceLink(const gce::Instance& in) const {
  return ZoneLink(in.zone) + "/instances/" + in.name;
}

std::optional<std::string> GceDouble::Impl::AllocateAddress() {
  for (uint32_t off = 1; off + 1 < range_size; ++off) {
    const uint32_t a = range_base + off;
    if (a == gateway) continue;
    const std::string text = IpText(a);
    if (used_addresses.count(text)) continue;
    used_addresses.insert(text);
    return text;
  }
  return std::nullopt;
}

std::string GceDouble::Impl::AllocateNatAddress() {
  for (const char* prefix : {"203.0.113.", "198.51.100."}) {
    for (int i = 1; i < 255; ++i) {
      std::string a = prefix + std::to_string(i);
      if (used_nat.insert(a).second) return a;
    }
  }
  return "";
}

void GceDouble::Impl::RemoveInstance(gce::Instance& in) {
  used_addresses.erase(in.network_ip);
  used_nat.erase(in.nat_ip);
  in.removed = true;
  instances.erase(in.zone + "/" + in.name);
}

// --- rendering ----------------------------------------------------------------------------------

Json GceDouble::Impl::RenderInstance(const gce::Instance& in) const {
  const bool up = in.status == "RUNNING" || in.status == "STAGING" || in.status == "STOPPING";
  Json nic{{"kind", "compute#networkInterface"},
           {"network", in.network},
           {"subnetwork", in.subnetwork},
           {"networkIP", in.network_ip},
           {"name", "nic0"},
           {"fingerprint", Fingerprint("nic/" + in.id)},
           {"stackType", "IPV4_ONLY"}};
  if (in.wants_nat) {
    Json ac{{"kind", "compute#accessConfig"},
            {"type", "ONE_TO_ONE_NAT"},
            {"name", in.access_config_name},
            {"networkTier", "PREMIUM"}};
    if (!in.nat_ip.empty()) ac["natIP"] = in.nat_ip;
    nic["accessConfigs"] = Json::array({ac});
  }
  const ImageDef* image = nullptr;
  for (const auto& i : Images()) {
    if (i.family == in.image_family) image = &i;
  }
  Json disk{{"kind", "compute#attachedDisk"},
            {"type", "PERSISTENT"},
            {"mode", "READ_WRITE"},
            {"source", ZoneLink(in.zone) + "/disks/" + in.name},
            {"deviceName", "persistent-disk-0"},
            {"index", 0},
            {"boot", true},
            {"autoDelete", true},
            {"interface", "SCSI"},
            {"diskSizeGb", in.disk_size_gb},
            {"architecture", "X86_64"},
            {"guestOsFeatures", Json::array({{{"type", "UEFI_COMPATIBLE"}},
                                             {{"type", "VIRTIO_SCSI_MULTIQUEUE"}},
                                             {{"type", "GVNIC"}}})}};
  if (image != nullptr) {
    disk["licenses"] = Json::array({fmt::format("{}projects/{}/global/licenses/{}", gce::kApiBase,
                                                image->project, image->license)});
  }
  Json tags{{"fingerprint", in.tags_fingerprint}};
  if (!in.tags.empty()) tags["items"] = in.tags;
  Json metadata{{"kind", "compute#metadata"}, {"fingerprint", in.metadata_fingerprint}};
  if (!in.metadata_items.empty()) metadata["items"] = in.metadata_items;
  Json j{{"kind", "compute#instance"},
         {"id", in.id},
         {"creationTimestamp", in.created},
         {"name", in.name},
         {"tags", tags},
         {"machineType", ZoneLink(in.zone) + "/machineTypes/" + in.machine_type},
         {"status", in.status},
         {"zone", ZoneLink(in.zone)},
         {"canIpForward", false},
         {"networkInterfaces", Json::array({nic})},
         {"disks", Json::array({disk})},
         {"metadata", metadata},
         {"selfLink", InstanceLink(in)},
         {"scheduling", in.scheduling},
         {"cpuPlatform", up ? "Intel Broadwell" : "Unknown CPU Platform"},
         {"labelFingerprint", in.label_fingerprint},
         {"startRestricted", false},
         {"deletionProtection", false},
         {"shieldedInstanceConfig",
          {{"enableSecureBoot", false}, {"enableVtpm", true}, {"enableIntegrityMonitoring", true}}},
         {"shieldedInstanceIntegrityPolicy", {{"updateAutoLearnPolicy", true}}},
         {"fingerprint", Fingerprint(in.id + "/" + in.status + "/" + in.tags_fingerprint)}};
  if (!in.description.empty()) j["description"] = in.description;
  if (!in.labels.empty()) j["labels"] = in.labels;
  if (!in.service_accounts.is_null()) j["serviceAccounts"] = in.service_accounts;
  if (!in.last_start.empty()) j["lastStartTimestamp"] = in.last_start;
  if (!in.last_stop.empty()) j["lastStopTimestamp"] = in.last_stop;
  return j;
}

// --- firewall rules of a machine ----------------------------------------------------------------

std::vector<providers::FirewallRule> GceDouble::Impl::RulesFor(const gce::Instance& in) const {
  std::vector<providers::FirewallRule> rules;
  for (const auto& [name, fw] : firewalls) {
    const Json& r = fw.res;
    if (r.value("disabled", false) || r.value("direction", "INGRESS") != "INGRESS") continue;
    if (r.value("network", "") != in.network) continue;
    const Json targets = r.value("targetTags", Json::array());
    if (r.contains("targetServiceAccounts")) continue;  // not simulated
    if (!targets.empty()) {
      bool match = false;
      for (const auto& t : targets) {
        match = match ||
                std::find(in.tags.begin(), in.tags.end(), t.get<std::string>()) != in.tags.end();
      }
      if (!match) continue;
    }
    std::vector<std::string> cidrs;
    for (const auto& c : r.value("sourceRanges", Json::array())) cidrs.push_back(c);
    if (cidrs.empty()) continue;  // sources by tag or service account only: not simulated
    std::sort(cidrs.begin(), cidrs.end());
    for (const auto& a : r.value("allowed", Json::array())) {
      std::string proto = a.value("IPProtocol", "");
      if (proto == "6") proto = "tcp";
      if (proto == "17") proto = "udp";
      if (proto != "tcp" && proto != "udp") continue;  // icmp, all, ...: not simulated
      const Json ports = a.value("ports", Json::array());
      if (ports.empty()) {
        SPDLOG_DEBUG("Firewall rule not simulated (all ports) firewall={}", name);
        continue;
      }
      for (const auto& p : ports) {
        auto range = PortRange(p.get<std::string>());
        if (!range || range->first < 1 || range->second - range->first >= 64) {
          SPDLOG_DEBUG("Firewall ports not simulated firewall={} ports={}", name,
                       p.get<std::string>());
          continue;
        }
        for (int port = range->first; port <= range->second; ++port) {
          rules.push_back(providers::FirewallRule{static_cast<uint16_t>(port), proto, cidrs});
        }
      }
    }
  }
  std::sort(rules.begin(), rules.end(), [](const auto& a, const auto& b) {
    return std::tie(a.protocol, a.port, a.source_cidrs) <
           std::tie(b.protocol, b.port, b.source_cidrs);
  });
  rules.erase(std::unique(rules.begin(), rules.end(),
                          [](const auto& a, const auto& b) {
                            return a.protocol == b.protocol && a.port == b.port &&
                                   a.source_cidrs == b.source_cidrs;
                          }),
              rules.end());
  return rules;
}

// --- dispatch -----------------------------------------------------------------------------------

gce::Reply GceDouble::Impl::Compute(const ApiCall& call, const std::string& caller) {
  const std::string& id = call.method_id;
  const std::string project = call.Param("project");
  const bool image_call = id == "compute.images.get" || id == "compute.images.getFromFamily";
  if (!IsOwnProject(project) &&
      !(image_call && (project == "debian-cloud" || project == "ubuntu-os-cloud"))) {
    return Reply::Err(gce::NotFound("The resource 'projects/" + project + "' was not found"));
  }
  const std::string base = std::string(gce::kApiBase) + "projects/" + project;
  const std::string zone = call.Param("zone");
  if (!zone.empty() && !ZoneExists(zone)) {
    return Reply::Err(gce::NotFound(
        fmt::format("The resource 'projects/{}/zones/{}' was not found", project, zone)));
  }

  if (id == "compute.regions.list" || id == "compute.regions.get") {
    std::vector<Json> items;
    std::lock_guard lock(mu);
    for (const auto& r : Regions()) {
      if (id == "compute.regions.get" && r.name != call.Param("region")) continue;
      Json zones = Json::array();
      for (const auto& z : r.zones) zones.push_back(ZoneLink(r.name + "-" + z));
      int cpus = 0, count = 0, nats = 0;
      int64_t disk = 0;
      for (const auto& [k, in] : instances) {
        if (in->region != r.name) continue;
        ++count;
        if (in->status != "TERMINATED") cpus += in->cpus;
        disk += std::stoll(in->disk_size_gb);
        if (!in->nat_ip.empty()) ++nats;
      }
      items.push_back(
          {{"kind", "compute#region"},
           {"id", StableId("region/" + r.name)},
           {"creationTimestamp", "1969-12-31T16:00:00.000-08:00"},
           {"name", r.name},
           {"description", r.name},
           {"status", "UP"},
           {"zones", zones},
           {"quotas", Json::array({{{"metric", "CPUS"}, {"limit", 24}, {"usage", cpus}},
                                   {{"metric", "DISKS_TOTAL_GB"}, {"limit", 4096}, {"usage", disk}},
                                   {{"metric", "IN_USE_ADDRESSES"}, {"limit", 8}, {"usage", nats}},
                                   {{"metric", "INSTANCES"}, {"limit", 24}, {"usage", count}}})},
           {"selfLink", base + "/regions/" + r.name},
           {"supportsPzs", false}});
    }
    if (id == "compute.regions.get") {
      if (items.empty()) {
        return Reply::Err(gce::NotFound(fmt::format(
            "The resource 'projects/{}/regions/{}' was not found", project, call.Param("region"))));
      }
      return Reply::Ok(items.front());
    }
    return ListReply(call, "compute#regionList", "projects/" + project + "/regions",
                     base + "/regions", std::move(items));
  }
  if (id == "compute.zones.list" || id == "compute.zones.get") {
    std::vector<Json> items;
    for (const auto& r : Regions()) {
      for (const auto& z : r.zones) {
        const std::string name = r.name + "-" + z;
        if (id == "compute.zones.get" && name != call.Param("zone")) continue;
        items.push_back({{"kind", "compute#zone"},
                         {"id", StableId("zone/" + name)},
                         {"creationTimestamp", "1969-12-31T16:00:00.000-08:00"},
                         {"name", name},
                         {"description", name},
                         {"status", "UP"},
                         {"region", base + "/regions/" + r.name},
                         {"selfLink", ZoneLink(name)},
                         {"availableCpuPlatforms",
                          Json::array({"Intel Broadwell", "Intel Cascade Lake", "AMD Milan"})},
                         {"supportsPzs", false}});
      }
    }
    if (id == "compute.zones.get") return Reply::Ok(items.front());  // zone checked above
    return ListReply(call, "compute#zoneList", "projects/" + project + "/zones", base + "/zones",
                     std::move(items));
  }
  if (id == "compute.machineTypes.list" || id == "compute.machineTypes.get") {
    std::vector<Json> items;
    for (const auto& t : Types()) {
      if (id == "compute.machineTypes.get" && t.name != call.Param("machineType")) continue;
      Json mt{{"kind", "compute#machineType"},
              {"id", StableId("machineType/" + t.name)},
              {"creationTimestamp", "1969-12-31T16:00:00.000-08:00"},
              {"name", t.name},
              {"description", t.description},
              {"guestCpus", t.cpus},
              {"memoryMb", t.memory_mb},
              {"imageSpaceGb", 0},
              {"maximumPersistentDisks", 128},
              {"maximumPersistentDisksSizeGb", "263168"},
              {"zone", zone},
              {"selfLink", ZoneLink(zone) + "/machineTypes/" + t.name},
              {"isSharedCpu", t.shared}};
      if (t.name == "n1-standard-4" && HasGpu(zone)) {
        mt["accelerators"] = Json::array(
            {{{"guestAcceleratorType", "nvidia-tesla-t4"}, {"guestAcceleratorCount", 1}}});
      }
      items.push_back(mt);
    }
    if (id == "compute.machineTypes.get") {
      if (items.empty()) {
        return Reply::Err(gce::NotFound(
            fmt::format("The resource 'projects/{}/zones/{}/machineTypes/{}' was not found",
                        project, zone, call.Param("machineType"))));
      }
      return Reply::Ok(items.front());
    }
    return ListReply(call, "compute#machineTypeList",
                     "projects/" + project + "/zones/" + zone + "/machineTypes",
                     ZoneLink(zone) + "/machineTypes", std::move(items));
  }
  if (image_call) {
    const bool by_family = id == "compute.images.getFromFamily";
    const std::string want = by_family ? call.Param("family") : call.Param("image");
    for (const auto& i : Images()) {
      if (i.project != project || (by_family ? i.family : i.name) != want) continue;
      const std::string link = base + "/global/images/" + i.name;
      return Reply::Ok({{"kind", "compute#image"},
                        {"id", StableId("image/" + i.name)},
                        {"creationTimestamp", i.created},
                        {"name", i.name},
                        {"description", i.description},
                        {"sourceType", "RAW"},
                        {"rawDisk", {{"source", ""}, {"containerType", "TAR"}}},
                        {"status", "READY"},
                        {"archiveSizeBytes", "1073741824"},
                        {"diskSizeGb", "10"},
                        {"licenses", Json::array({base + "/global/licenses/" + i.license})},
                        {"family", i.family},
                        {"selfLink", link},
                        {"labelFingerprint", gce::kEmptyFingerprint},
                        {"guestOsFeatures", Json::array({{{"type", "UEFI_COMPATIBLE"}},
                                                         {{"type", "VIRTIO_SCSI_MULTIQUEUE"}},
                                                         {{"type", "GVNIC"}}})},
                        {"storageLocations", Json::array({"eu", "asia", "us"})},
                        {"architecture", "X86_64"}});
    }
    return Reply::Err(
        gce::NotFound(fmt::format("The resource 'projects/{}/global/images/{}{}' was "
                                  "not found",
                                  project, by_family ? "family/" : "", want)));
  }
  if (id == "compute.zoneOperations.get" || id == "compute.globalOperations.get") {
    return OperationGet(call, false);
  }
  if (id == "compute.zoneOperations.wait" || id == "compute.globalOperations.wait") {
    return OperationGet(call, true);
  }
  if (id == "compute.instances.insert") return InstanceInsert(call, caller);
  if (id == "compute.instances.start" || id == "compute.instances.stop" ||
      id == "compute.instances.delete") {
    return InstanceAction(call, caller);
  }
  if (id == "compute.instances.setTags") return SetTags(call, caller);
  if (id == "compute.instances.list") {
    std::vector<Json> items;
    {
      std::lock_guard lock(mu);
      for (const auto& [k, in] : instances) {
        if (in->zone == zone) items.push_back(RenderInstance(*in));
      }
    }
    return ListReply(call, "compute#instanceList",
                     "projects/" + project + "/zones/" + zone + "/instances",
                     ZoneLink(zone) + "/instances", std::move(items));
  }
  if (id == "compute.instances.get" || id == "compute.instances.getGuestAttributes" ||
      id == "compute.instances.getSerialPortOutput") {
    const std::string name = call.Param("instance");
    std::lock_guard lock(mu);
    auto it = instances.find(zone + "/" + name);
    if (it == instances.end()) return Reply::Err(InstanceNotFound(project, zone, name));
    const gce::Instance& in = *it->second;
    if (id == "compute.instances.get") return Reply::Ok(RenderInstance(in));
    if (id == "compute.instances.getSerialPortOutput") {
      const std::string port = call.Param("port");
      const std::string contents = port.empty() || port == "1" ? in.serial : "";
      size_t start = 0;
      if (!call.Param("start").empty()) {
        start = static_cast<size_t>(std::max<int64_t>(0, std::stoll(call.Param("start"))));
      }
      start = std::min(start, contents.size());
      return Reply::Ok({{"kind", "compute#serialPortOutput"},
                        {"contents", contents.substr(start)},
                        {"start", std::to_string(start)},
                        {"next", std::to_string(contents.size())},
                        {"selfLink", InstanceLink(in) + "/serialPort"}});
    }
    // Guest attributes: the guest agent's host keys, once the machine booted.
    std::string query_path = call.Param("queryPath");
    const std::string variable = call.Param("variableKey");
    const std::string key_type = in.host_key.substr(0, in.host_key.find(' '));
    const std::string key_body = in.host_key.find(' ') == std::string::npos
                                     ? ""
                                     : in.host_key.substr(in.host_key.find(' ') + 1);
    const bool known = in.guest_attributes && in.keys_published && !key_body.empty();
    if (!variable.empty()) {
      if (known && variable == "hostkeys/" + key_type) {
        return Reply::Ok({{"kind", "compute#guestAttributes"},
                          {"selfLink", InstanceLink(in) + "/guestAttributes/" + variable},
                          {"variableKey", variable},
                          {"variableValue", key_body}});
      }
    } else if (known && (query_path == "hostkeys/" || query_path == "hostkeys")) {
      return Reply::Ok({{"kind", "compute#guestAttributes"},
                        {"selfLink", InstanceLink(in) + "/guestAttributes/" + query_path},
                        {"queryPath", query_path},
                        {"queryValue",
                         {{"items", Json::array({{{"namespace", "hostkeys"},
                                                  {"key", key_type},
                                                  {"value", key_body}}})}}}});
    }
    return Reply::Err(gce::NotFound(
        fmt::format("The resource 'projects/{}/zones/{}/instances/{}/guestAttributes/{}' was not "
                    "found",
                    project, zone, name, variable.empty() ? query_path : variable)));
  }
  if (id == "compute.firewalls.get") {
    std::lock_guard lock(mu);
    auto it = firewalls.find(call.Param("firewall"));
    if (it == firewalls.end()) return Reply::Err(FirewallNotFound(project, call.Param("firewall")));
    return Reply::Ok(it->second.res);
  }
  if (id == "compute.firewalls.list") {
    std::vector<Json> items;
    {
      std::lock_guard lock(mu);
      for (const auto& [name, fw] : firewalls) items.push_back(fw.res);
    }
    return ListReply(call, "compute#firewallList", "projects/" + project + "/global/firewalls",
                     base + "/global/firewalls", std::move(items));
  }
  if (id == "compute.firewalls.insert" || id == "compute.firewalls.patch" ||
      id == "compute.firewalls.delete") {
    return FirewallChange(call, caller);
  }
  return Reply::Err(gce::NotImplemented(id));
}

// --- instances ----------------------------------------------------------------------------------

gce::Reply GceDouble::Impl::InstanceInsert(const ApiCall& call, const std::string& caller) {
  const std::string project = opts.project;
  const std::string zone = call.Param("zone");
  const std::string region = RegionOf(zone);
  const Json& b = call.body;
  const std::string name = b.value("name", "");
  const std::string request_id = call.Param("requestId");
  if (!request_id.empty() && !IsUuid(request_id)) {
    return Reply::Err(gce::Invalid("Invalid value for field 'requestId': '" + request_id +
                                   "'. The request ID must be a valid UUID (not all zeros)."));
  }
  {
    std::lock_guard lock(mu);
    if (auto rid = request_ids.find(request_id); !request_id.empty() && rid != request_ids.end()) {
      return Reply::Ok(RenderOperation(*operations.at(rid->second)));
    }
    if (instances.count(zone + "/" + name)) {
      return Reply::Err(gce::AlreadyExists(fmt::format(
          "The resource 'projects/{}/zones/{}/instances/{}' already exists", project, zone, name)));
    }
  }
  auto in = std::make_shared<gce::Instance>();
  in->zone = zone;
  in->region = region;
  in->name = name;
  in->id = gce::NewNumericId();
  in->created = gce::NowRfc3339(*opts.clock);
  in->description = b.value("description", "");

  // Machine type.
  std::string mt_project;
  std::string mt = Relative(b.value("machineType", ""), project, &mt_project);
  if (mt.find('/') == std::string::npos) mt = "zones/" + zone + "/machineTypes/" + mt;
  static const std::regex mt_re("zones/([^/]+)/machineTypes/([^/]+)");
  std::smatch m;
  if (!std::regex_match(mt, m, mt_re) || m[1].str() != zone || !FindType(m[2].str()) ||
      !IsOwnProject(mt_project)) {
    return Reply::Err(gce::Invalid(fmt::format(
        "Invalid value for field 'resource.machineType': '{}'. Machine type with name '{}' does "
        "not exist in zone '{}'.",
        b.value("machineType", ""), m.size() > 2 ? m[2].str() : mt, zone)));
  }
  in->machine_type = m[2].str();
  in->cpus = FindType(in->machine_type)->cpus;

  // Boot disk from an image.
  const Json disks = b.value("disks", Json::array());
  if (disks.size() != 1 || !disks[0].value("boot", false) ||
      !disks[0].contains("initializeParams") ||
      !disks[0]["initializeParams"].contains("sourceImage")) {
    return Reply::Err(gce::Invalid(
        "Invalid value for field 'resource.disks': canopy-sim simulates exactly one boot disk "
        "made from an image (disks[0].boot and disks[0].initializeParams.sourceImage)."));
  }
  const Json& init = disks[0]["initializeParams"];
  std::string image_project;
  const std::string image_ref =
      Relative(init["sourceImage"].get<std::string>(), project, &image_project);
  const ImageDef* image = nullptr;
  for (const auto& i : Images()) {
    if (i.project == image_project && (image_ref == "global/images/" + i.name ||
                                       image_ref == "global/images/family/" + i.family)) {
      image = &i;
    }
  }
  if (image == nullptr) {
    return Reply::Err(gce::NotFound(
        fmt::format("The resource 'projects/{}/{}' was not found", image_project, image_ref)));
  }
  in->image_family = image->family;
  in->blank_image = image->blank;
  in->source_image =
      std::string(gce::kApiBase) + "projects/" + image->project + "/global/images/" + image->name;
  if (init.contains("diskSizeGb")) {
    int64_t gb = init["diskSizeGb"].is_string() ? std::stoll(init["diskSizeGb"].get<std::string>())
                                                : init["diskSizeGb"].get<int64_t>();
    if (gb < 10 || gb > 65536) {
      return Reply::Err(gce::Invalid(fmt::format(
          "Invalid value for field 'resource.disks[0].initializeParams.diskSizeGb': '{}'. "
          "Requested disk size cannot be smaller than the image size (10 GB).",
          gb)));
    }
    in->disk_size_gb = std::to_string(gb);
  }

  // Network: the default network (and subnetwork of the region); one interface.
  const Json nics = b.value("networkInterfaces", Json::array());
  if (nics.size() != 1) {
    return Reply::Err(gce::Invalid(
        "Invalid value for field 'resource.networkInterfaces': canopy-sim simulates exactly one "
        "network interface."));
  }
  const Json& nic = nics[0];
  std::string net_project;
  const std::string network =
      Relative(nic.value("network", "global/networks/default"), project, &net_project);
  if (network != "global/networks/default" || !IsOwnProject(net_project)) {
    return Reply::Err(gce::NotFound(
        fmt::format("The resource 'projects/{}/{}' was not found", net_project, network)));
  }
  in->network = std::string(gce::kApiBase) + "projects/" + project + "/global/networks/default";
  in->subnetwork =
      fmt::format("{}projects/{}/regions/{}/subnetworks/default", gce::kApiBase, project, region);
  if (nic.contains("subnetwork")) {
    std::string sub_project;
    const std::string sub = Relative(nic["subnetwork"].get<std::string>(), project, &sub_project);
    if (sub != "regions/" + region + "/subnetworks/default" || !IsOwnProject(sub_project)) {
      return Reply::Err(gce::NotFound(
          fmt::format("The resource 'projects/{}/{}' was not found", sub_project, sub)));
    }
  }
  const Json access = nic.value("accessConfigs", Json::array());
  if (access.size() > 1) {
    return Reply::Err(
        gce::Invalid("Invalid value for field "
                     "'resource.networkInterfaces[0].accessConfigs': at most one."));
  }
  if (!access.empty()) {
    if (access[0].contains("natIP")) {
      return Reply::Err(gce::Invalid(
          "Invalid value for field 'resource.networkInterfaces[0].accessConfigs[0].natIP': "
          "canopy-sim assigns ephemeral external addresses only."));
    }
    in->wants_nat = true;
    in->access_config_name = access[0].value("name", "External NAT");
  }

  // Metadata: ssh-keys for admin (the only user of the blank images), guest attributes.
  in->metadata_items =
      b.contains("metadata") ? b["metadata"].value("items", Json::array()) : Json::array();
  std::vector<std::string> users;
  for (const auto& item : in->metadata_items) {
    const std::string key = item.value("key", "");
    const std::string value = item.value("value", "");
    if (key == "enable-guest-attributes") {
      std::string v = value;
      std::transform(v.begin(), v.end(), v.begin(), ::tolower);
      in->guest_attributes = v == "true";
    }
    if (key != "ssh-keys" && key != "sshKeys") continue;
    size_t pos = 0;
    while (pos < value.size()) {
      size_t nl = value.find('\n', pos);
      std::string line = value.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      pos = nl == std::string::npos ? value.size() : nl + 1;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      const std::string user = line.substr(0, colon);
      if (user == "admin") {
        in->ssh_key = line.substr(colon + 1);
      } else {
        users.push_back(user);
      }
    }
  }
  if (in->ssh_key.empty()) {
    in->create_error =
        users.empty()
            ? "canopy-sim: metadata ssh-keys has no key for admin: nobody could log in to the "
              "machine"
            : "canopy-sim: the blank images have only the user admin; ssh-keys for '" +
                  users.front() + "' cannot log in (use admin:<public key>)";
  }
  if (in->blank_image.empty()) {
    in->create_error = "canopy-sim: image family " + image->family + " (" + image->project +
                       ") has no blank image in the simulator (debian-11 and debian-12 have)";
  }
  in->metadata_fingerprint = Fingerprint(DumpJson(in->metadata_items));

  // Labels and tags.
  in->labels = b.value("labels", Json::object());
  if (in->labels.size() > 64) {
    return Reply::Err(gce::Invalid("Invalid value for field 'resource.labels': at most 64."));
  }
  for (const auto& [k, v] : in->labels.items()) {
    if (!ValidLabel(k, true) || !ValidLabel(v.get<std::string>(), false)) {
      return Reply::Err(gce::Invalid(fmt::format(
          "Invalid value for field 'resource.labels': '{}={}'. Label keys must start with a "
          "lowercase letter; keys and values hold up to 63 of [a-z0-9_-].",
          k, v.get<std::string>())));
    }
  }
  in->label_fingerprint = Fingerprint(DumpJson(in->labels));
  const Json tags = b.contains("tags") ? b["tags"].value("items", Json::array()) : Json::array();
  for (size_t i = 0; i < tags.size(); ++i) {
    const std::string t = tags[i].get<std::string>();
    if (std::find(in->tags.begin(), in->tags.end(), t) != in->tags.end()) {
      return Reply::Err(gce::Invalid(fmt::format(
          "Invalid value for field 'resource.tags.items[{}]': '{}'. Duplicate tag.", i, t)));
    }
    in->tags.push_back(t);
  }
  in->tags_fingerprint = Fingerprint(DumpJson(in->tags.empty() ? Json() : Json(in->tags)));
  if (b.contains("serviceAccounts")) in->service_accounts = b["serviceAccounts"];
  in->scheduling = {{"onHostMaintenance", "MIGRATE"},
                    {"automaticRestart", true},
                    {"preemptible", false},
                    {"provisioningModel", "STANDARD"}};
  if (b.contains("scheduling")) in->scheduling.merge_patch(b["scheduling"]);

  std::lock_guard lock(mu);
  if (instances.count(zone + "/" + name)) {  // raced with another insert
    return Reply::Err(gce::AlreadyExists(fmt::format(
        "The resource 'projects/{}/zones/{}/instances/{}' already exists", project, zone, name)));
  }
  const std::string link = InstanceLink(*in);
  gce::OperationPtr op = NewOperation(zone, "insert", link, in->id, caller);
  if (!request_id.empty()) request_ids[request_id] = op->name;
  auto fail = [&](const std::string& code, const std::string& message, int http,
                  const std::string& http_message, const Json& details = nullptr) {
    Json e{{"code", code}, {"message", message}};
    if (!details.is_null()) e["errorDetails"] = details;
    op->error = Json{{"errors", Json::array({e})}};
    op->http_error_status = http;
    op->http_error_message = http_message;
    op->work_done = true;
    SPDLOG_INFO("Instance insert fails zone={} name={} code={}", zone, name, code);
    return Reply::Ok(RenderOperation(*op));
  };
  auto take = [](std::map<std::string, int>& m, const std::string& key) {
    auto it = m.find(key);
    if (it == m.end() || it->second == 0) return false;
    if (it->second > 0 && --it->second == 0) m.erase(it);
    return true;
  };
  if (take(faults.stockout, zone)) {
    return fail("ZONE_RESOURCE_POOL_EXHAUSTED",
                fmt::format("The zone 'projects/{}/zones/{}' does not have enough resources "
                            "available to fulfill the request.  Try a different zone, or try "
                            "again later.",
                            project, zone),
                503, "SERVICE UNAVAILABLE");
  }
  if (take(faults.quota, region)) {
    return fail("QUOTA_EXCEEDED",
                fmt::format("Quota 'CPUS' exceeded.  Limit: 24.0 in region {}.", region), 403,
                "FORBIDDEN",
                Json::array({{{"quotaInfo",
                               {{"metricName", "compute.googleapis.com/cpus"},
                                {"limitName", "CPUS-per-project-region"},
                                {"dimensions", {{"region", region}}},
                                {"limit", 24}}}}}));
  }
  if (take(faults.quota, "")) {
    return fail("QUOTA_EXCEEDED", "Quota 'CPUS_ALL_REGIONS' exceeded.  Limit: 32.0 globally.", 403,
                "FORBIDDEN",
                Json::array({{{"quotaInfo",
                               {{"metricName", "compute.googleapis.com/cpus_all_regions"},
                                {"limitName", "CPUS-ALL-REGIONS-per-project"},
                                {"limit", 32}}}}}));
  }
  if (!nic.contains("networkIP")) {
    auto addr = AllocateAddress();
    if (!addr) {
      return fail("IP_SPACE_EXHAUSTED",
                  "IP space of 'projects/" + project + "/regions/" + region +
                      "/subnetworks/default' is exhausted.",
                  400, "BAD REQUEST");
    }
    in->network_ip = *addr;
  } else {
    const std::string want = nic["networkIP"].get<std::string>();
    uint32_t a = 0;
    if (!ParseIp(want, &a) || a - range_base >= range_size || a == gateway ||
        used_addresses.count(want)) {
      operations.erase(op->name);
      request_ids.erase(request_id);
      return Reply::Err(gce::Invalid(fmt::format(
          "Invalid value for field 'resource.networkInterfaces[0].networkIP': '{}'. The address "
          "is not free in the subnetwork ({}).",
          want, opts.instance_range)));
    }
    used_addresses.insert(want);
    in->network_ip = want;
  }
  if (in->wants_nat) in->nat_ip = AllocateNatAddress();
  in->status = "PROVISIONING";
  in->ops.emplace_back("RUNNING", op);
  instances[zone + "/" + name] = in;
  SPDLOG_INFO("Instance inserted zone={} name={} address={} image={}", zone, name, in->network_ip,
              image->name);
  Kick(in);
  return Reply::Ok(RenderOperation(*op));
}

gce::Reply GceDouble::Impl::InstanceAction(const ApiCall& call, const std::string& caller) {
  const std::string& id = call.method_id;
  const std::string zone = call.Param("zone");
  const std::string name = call.Param("instance");
  const std::string request_id = call.Param("requestId");
  if (!request_id.empty() && !IsUuid(request_id)) {
    return Reply::Err(gce::Invalid("Invalid value for field 'requestId': '" + request_id +
                                   "'. The request ID must be a valid UUID (not all zeros)."));
  }
  std::lock_guard lock(mu);
  if (auto rid = request_ids.find(request_id); !request_id.empty() && rid != request_ids.end()) {
    return Reply::Ok(RenderOperation(*operations.at(rid->second)));
  }
  auto it = instances.find(zone + "/" + name);
  if (it == instances.end() || it->second->desired == "DELETED") {
    return Reply::Err(InstanceNotFound(opts.project, zone, name));
  }
  gce::InstancePtr in = it->second;
  const std::string type = id.substr(id.rfind('.') + 1);
  gce::OperationPtr op = NewOperation(zone, type, InstanceLink(*in), in->id, caller);
  if (!request_id.empty()) request_ids[request_id] = op->name;
  if (type == "stop") {
    in->desired = "TERMINATED";
    if (!in->machine_running && !in->busy && in->status == "TERMINATED") {
      op->work_done = true;
    } else {
      in->status = "STOPPING";
      in->ops.emplace_back("TERMINATED", op);
    }
  } else if (type == "start") {
    in->desired = "RUNNING";
    if (in->status == "RUNNING" && !in->busy) {
      op->work_done = true;
    } else {
      if (in->status == "TERMINATED") in->status = "STAGING";
      if (in->wants_nat && in->nat_ip.empty()) in->nat_ip = AllocateNatAddress();
      in->ops.emplace_back("RUNNING", op);
    }
  } else {  // delete
    in->desired = "DELETED";
    in->status = "STOPPING";
    in->ops.emplace_back("DELETED", op);
  }
  SPDLOG_INFO("Instance {} zone={} name={}", type, zone, name);
  Kick(in);
  return Reply::Ok(RenderOperation(*op));
}

gce::Reply GceDouble::Impl::SetTags(const ApiCall& call, const std::string& caller) {
  const std::string zone = call.Param("zone");
  const std::string name = call.Param("instance");
  const std::string request_id = call.Param("requestId");
  if (!request_id.empty() && !IsUuid(request_id)) {
    return Reply::Err(gce::Invalid("Invalid value for field 'requestId': '" + request_id +
                                   "'. The request ID must be a valid UUID (not all zeros)."));
  }
  std::lock_guard lock(mu);
  if (auto rid = request_ids.find(request_id); !request_id.empty() && rid != request_ids.end()) {
    return Reply::Ok(RenderOperation(*operations.at(rid->second)));
  }
  auto it = instances.find(zone + "/" + name);
  if (it == instances.end()) return Reply::Err(InstanceNotFound(opts.project, zone, name));
  gce::Instance& in = *it->second;
  if (call.body.value("fingerprint", "") != in.tags_fingerprint) {
    GoogleError e;
    e.code = 412;
    e.status = "";
    e.reason = "conditionNotMet";
    e.message = "Supplied fingerprint does not match current fingerprint.";
    e.location = "If-Match";
    e.location_type = "header";
    return Reply::Err(e);
  }
  std::vector<std::string> tags;
  const Json items = call.body.value("items", Json::array());
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string t = items[i].get<std::string>();
    if (std::find(tags.begin(), tags.end(), t) != tags.end()) {
      return Reply::Err(gce::Invalid(
          fmt::format("Invalid value for field 'resource.items[{}]': '{}'. Duplicate tag.", i, t)));
    }
    tags.push_back(t);
  }
  if (tags.size() > 64) return Reply::Err(gce::Invalid("Invalid value for field 'resource.items'"));
  in.tags = tags;
  in.tags_fingerprint = Fingerprint("tags/" + in.id + "/" + RandomHex(8));  // new at each change
  gce::OperationPtr op = NewOperation(zone, "setTags", InstanceLink(in), in.id, caller);
  if (!request_id.empty()) request_ids[request_id] = op->name;
  op->work_done = true;
  FirewallsChanged();
  op->firewall_version = firewall_version;
  SPDLOG_INFO("Instance tags set zone={} name={} tags={}", zone, name, DumpJson(Json(tags)));
  return Reply::Ok(RenderOperation(*op));
}

// --- firewalls ----------------------------------------------------------------------------------

gce::Reply GceDouble::Impl::FirewallChange(const ApiCall& call, const std::string& caller) {
  const std::string& id = call.method_id;
  const std::string project = opts.project;
  const std::string request_id = call.Param("requestId");
  if (!request_id.empty() && !IsUuid(request_id)) {
    return Reply::Err(gce::Invalid("Invalid value for field 'requestId': '" + request_id +
                                   "'. The request ID must be a valid UUID (not all zeros)."));
  }
  const std::string name =
      id == "compute.firewalls.insert" ? call.body.value("name", "") : call.Param("firewall");
  const std::string link =
      fmt::format("{}projects/{}/global/firewalls/{}", gce::kApiBase, project, name);
  const std::string default_network =
      std::string(gce::kApiBase) + "projects/" + project + "/global/networks/default";
  std::lock_guard lock(mu);
  if (auto rid = request_ids.find(request_id); !request_id.empty() && rid != request_ids.end()) {
    return Reply::Ok(RenderOperation(*operations.at(rid->second)));
  }
  auto it = firewalls.find(name);
  Json res;
  std::string type;
  if (id == "compute.firewalls.insert") {
    if (it != firewalls.end()) {
      return Reply::Err(gce::AlreadyExists(fmt::format(
          "The resource 'projects/{}/global/firewalls/{}' already exists", project, name)));
    }
    res = call.body;
    res["kind"] = "compute#firewall";
    res["id"] = gce::NewNumericId();
    res["creationTimestamp"] = gce::NowRfc3339(*opts.clock);
    res["selfLink"] = link;
    type = "insert";
  } else {
    if (it == firewalls.end()) return Reply::Err(FirewallNotFound(project, name));
    res = it->second.res;
    if (id == "compute.firewalls.patch") {
      if (call.body.value("name", name) != name) {
        return Reply::Err(gce::Invalid("Invalid value for field 'resource.name': '" +
                                       call.body.value("name", "") +
                                       "'. The name of a firewall rule cannot change."));
      }
      Json patch = call.body;
      for (const char* fixed : {"kind", "id", "creationTimestamp", "selfLink", "name"}) {
        patch.erase(fixed);
      }
      res.merge_patch(patch);
      type = "compute.firewalls.patch";
    } else {
      type = "delete";
    }
  }
  if (type != "delete") {
    std::string net_project;
    const std::string network =
        Relative(res.value("network", "global/networks/default"), project, &net_project);
    if (network != "global/networks/default" || !IsOwnProject(net_project)) {
      return Reply::Err(gce::NotFound(
          fmt::format("The resource 'projects/{}/{}' was not found", net_project, network)));
    }
    res["network"] = default_network;
    if (!res.contains("direction")) res["direction"] = "INGRESS";
    if (!res.contains("priority")) res["priority"] = 1000;
    if (!res.contains("disabled")) res["disabled"] = false;
    if (!res.contains("logConfig")) res["logConfig"] = {{"enable", false}};
    if (res["direction"] == "INGRESS" && !res.contains("sourceRanges") &&
        !res.contains("sourceTags") && !res.contains("sourceServiceAccounts")) {
      res["sourceRanges"] = Json::array({"0.0.0.0/0"});
    }
    if (res["priority"].is_string())
      res["priority"] = std::stoll(res["priority"].get<std::string>());
    if (auto e = CheckFirewall(res)) return Reply::Err(*e);
  }
  gce::OperationPtr op = NewOperation("", type, link, res.value("id", ""), caller);
  if (!request_id.empty()) request_ids[request_id] = op->name;
  if (type == "delete") {
    firewalls.erase(it);
  } else {
    firewalls[name].res = res;
  }
  op->work_done = true;
  FirewallsChanged();
  op->firewall_version = firewall_version;
  SPDLOG_INFO("Firewall {} name={}", type, name);
  return Reply::Ok(RenderOperation(*op));
}

}  // namespace canopy::sim
