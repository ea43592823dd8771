#include "providers/aws/aws_provider.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/property_tree/ptree.hpp>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "common/ids.h"
#include "providers/aws/key_material.h"

namespace canopy::providers::aws {
namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kSshUserTag = "canopy-ssh-user";

// Every character of `s` is in `allowed`, and its length is within [min, max].
bool Charset(std::string_view s, std::string_view allowed, size_t min, size_t max) {
  return s.size() >= min && s.size() <= max &&
         s.find_first_not_of(allowed) == std::string_view::npos;
}
// An EC2 id: `prefix` ("i-", "sg-", "ami-") and 8 to 17 lower-case hex digits.
bool Ec2Id(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix &&
         Charset(s.substr(std::min(prefix.size(), s.size())), "0123456789abcdef", 8, 17);
}
constexpr std::string_view kUpperDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
constexpr std::string_view kNameChars =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+=,@-";

Error Invalid(std::string m) {
  return MakeProviderError(ProviderErrorKind::kInvalidRequest, std::move(m));
}
Error Auth(std::string m) { return MakeProviderError(ProviderErrorKind::kAuth, std::move(m)); }
Error NotFound(std::string m) {
  return MakeProviderError(ProviderErrorKind::kNotFound, std::move(m));
}
bool IsNotFound(const Error& e) { return KindOf(e) == ProviderErrorKind::kNotFound; }
bool HasCode(const Error& e, std::string_view code) {
  return e.message.find(": " + std::string(code) + ":") != std::string::npos;
}

// The credential of one call: a full account credential, or a cluster identity (cluster_id set).
struct Cred {
  SigV4Credentials sig;
  std::string cluster_id;
};

Result<Cred> ParseCred(const CallContext& ctx) {
  const Json& j = ctx.credential.Reveal();
  const char* shape = "an AWS credential is {access_key_id, secret_access_key, session_token?}";
  if (!j.is_object()) return Invalid(shape);
  for (const auto& [k, v] : j.items()) {
    if (k != "access_key_id" && k != "secret_access_key" && k != "session_token" &&
        k != "cluster_id") {
      return Invalid(fmt::format("unknown AWS credential field '{}': {}", k, shape));
    }
    if (!v.is_string())
      return Invalid(fmt::format("AWS credential field '{}' must be a string", k));
  }
  Cred c;
  c.sig.access_key_id = j.value("access_key_id", "");
  c.sig.secret_access_key = SecretString(j.value("secret_access_key", ""));
  c.sig.session_token = j.value("session_token", "");
  c.cluster_id = j.value("cluster_id", "");
  if (!Charset(c.sig.access_key_id, kUpperDigits, 16, 128)) {
    return Invalid("access_key_id must be 16 to 128 upper-case letters and digits");
  }
  if (c.sig.secret_access_key.Reveal().empty() || c.sig.secret_access_key.Reveal().size() > 128) {
    return Invalid("secret_access_key must be 1 to 128 characters");
  }
  return c;
}

Status RequireFull(const Cred& c, std::string_view what) {
  if (c.cluster_id.empty()) return OkStatus();
  return Auth(
      fmt::format("the cluster identity of {} may not {}: it manages only its cluster's firewalls",
                  c.cluster_id, what));
}

// A cluster identity may act only on objects tagged with its cluster.
Status Confine(const Cred& c, const std::map<std::string, std::string>& tags,
               std::string_view what) {
  if (c.cluster_id.empty()) return OkStatus();
  auto it = tags.find(kClusterTag);
  if (it != tags.end() && it->second == c.cluster_id) return OkStatus();
  return Auth(fmt::format("the cluster identity of {} may not {}: it belongs to another cluster",
                          c.cluster_id, what));
}

std::map<std::string, std::string> TagsOf(const Xml& node) {
  std::map<std::string, std::string> tags;
  for (const Xml* t : XmlItems(node, "tagSet")) tags[XmlText(*t, "key")] = XmlText(*t, "value");
  return tags;
}

void AddTags(QueryParams& p, const std::string& prefix,
             const std::map<std::string, std::string>& tags) {
  int n = 1;
  for (const auto& [k, v] : tags) {
    p.emplace_back(fmt::format("{}.Tag.{}.Key", prefix, n), k);
    p.emplace_back(fmt::format("{}.Tag.{}.Value", prefix, n), v);
    ++n;
  }
}

InstanceState StateOf(const std::string& s) {
  if (s == "running") return InstanceState::kRunning;
  if (s == "stopping") return InstanceState::kStopping;
  if (s == "stopped") return InstanceState::kStopped;
  if (s == "shutting-down" || s == "terminated") return InstanceState::kTerminated;
  return InstanceState::kPending;
}

std::string SshUserForImageName(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (n.find("ubuntu") != std::string::npos) return "ubuntu";
  if (n.find("debian") != std::string::npos) return "admin";
  return "ec2-user";
}

// Security group descriptions and names accept only a limited character set.
std::string SgText(const std::string& s) {
  std::string out;
  for (char ch : s) {
    bool ok = std::isalnum(static_cast<unsigned char>(ch)) ||
              std::string_view(" ._-:/()#,@[]+=&;{}!$*").find(ch) != std::string_view::npos;
    out.push_back(ok ? ch : '-');
  }
  return out.substr(0, 255);
}

Status ValidName(const std::string& s, std::string_view what, size_t max) {
  if (!Charset(s, kNameChars, 1, max)) {
    return Invalid(
        fmt::format("{} must be 1 to {} characters of A-Z a-z 0-9 . _ + = , @ -", what, max));
  }
  return OkStatus();
}

struct PriceEntry {
  std::optional<double> price;
  std::string note;
};

}  // namespace

struct AwsProvider::Impl {
  AwsOptions opts;
  AwsClient client;
  std::map<std::pair<std::string, std::string>, double> catalog;  // (region, type) -> USD/h

  struct OfferCache {
    Clock::time_point at;
    Offers offers;
  };
  struct RegionPrices {
    Clock::time_point at;
    bool ok = false;
    std::string error;
    std::map<std::string, double> prices;
  };
  mutable std::mutex mu;                              // guards the caches and the lock tables below
  std::map<std::string, OfferCache> offers;           // key: access key id + region
  std::map<std::string, RegionPrices> region_prices;  // key: region
  std::map<std::string, std::shared_ptr<std::mutex>> locks;
  mutable std::map<std::string, std::string> subnet_vpcs;  // subnet id -> VPC id

  explicit Impl(AwsOptions o)
      : opts(std::move(o)), client(opts.endpoints, opts.retry, opts.clock) {}

  std::shared_ptr<std::mutex> LockFor(const std::string& key) {
    std::lock_guard lock(mu);
    auto& m = locks[key];
    if (!m) m = std::make_shared<std::mutex>();
    return m;
  }

  std::string Region(const CallContext& ctx) const {
    return ctx.region.empty() ? opts.default_region : ctx.region;
  }

  Result<Xml> Ec2(const Cred& c, const std::string& region, const std::string& action,
                  const QueryParams& p, bool idempotent = true) const {
    return client.Query(c.sig, "ec2", region, action, p, idempotent);
  }
  Result<Xml> Iam(const Cred& c, const std::string& action, const QueryParams& p,
                  bool idempotent = true) const {
    return client.Query(c.sig, "iam", "us-east-1", action, p, idempotent);
  }
  Result<Json> Secrets(const Cred& c, const std::string& region, const std::string& op,
                       const Json& body, bool idempotent = true) const {
    return client.JsonCall(c.sig, "secretsmanager", region, "secretsmanager." + op, body,
                           idempotent);
  }

  Instance FromXml(const Xml& item, const std::string& region) const {
    Instance i;
    i.provider_id = XmlText(item, "instanceId");
    i.state = StateOf(XmlText(item, "instanceState.name"));
    i.private_address = XmlText(item, "privateIpAddress");
    i.address = XmlText(item, "ipAddress");
    if (i.address.empty() || opts.private_addresses) i.address = i.private_address;
    i.tags = TagsOf(item);
    i.canopy_id = i.tags.count(kCanopyIdTag) ? i.tags[kCanopyIdTag] : "";
    i.ssh_user = i.tags.count(kSshUserTag) ? i.tags[kSshUserTag] : "ec2-user";
    for (const Xml* g : XmlItems(item, "groupSet")) i.firewalls.push_back(XmlText(*g, "groupId"));
    if (!opts.ssh_address_override.empty() && !i.address.empty()) {
      const std::string& o = opts.ssh_address_override;
      auto colon = o.rfind(':');
      i.address = colon == std::string::npos ? o : o.substr(0, colon);
      if (colon != std::string::npos)
        i.ssh_port = static_cast<uint16_t>(std::stoi(o.substr(colon + 1)));
    }
    i.handle.data = {{"instance_id", i.provider_id}, {"region", region}};
    if (std::string vpc = XmlText(item, "vpcId"); !vpc.empty()) i.handle.data["vpc_id"] = vpc;
    return i;
  }

  Result<std::pair<std::string, std::string>> HandleOf(const CallContext& ctx,
                                                       const ProviderHandle& h) const {
    std::string id = h.data.is_object() ? h.data.value("instance_id", "") : "";
    if (!Ec2Id(id, "i-")) return Invalid("not an EC2 instance handle");
    std::string region = h.data.value("region", "");
    return std::make_pair(id, region.empty() ? Region(ctx) : region);
  }

  Result<std::vector<Instance>> DescribeInstances(const Cred& c, const std::string& region,
                                                  QueryParams p) const {
    std::vector<Instance> out;
    std::string token;
    for (int page = 0; page < 100; ++page) {
      QueryParams q = p;
      if (!token.empty()) q.emplace_back("NextToken", token);
      CANOPY_ASSIGN_OR_RETURN(Xml x, Ec2(c, region, "DescribeInstances", q));
      for (const Xml* r : XmlItems(x, "reservationSet")) {
        for (const Xml* i : XmlItems(*r, "instancesSet")) out.push_back(FromXml(*i, region));
      }
      token = XmlText(x, "nextToken");
      if (token.empty()) break;
    }
    return out;
  }

  Result<Instance> Describe(const Cred& c, const std::string& id, const std::string& region) const {
    CANOPY_ASSIGN_OR_RETURN(auto list, DescribeInstances(c, region, {{"InstanceId.1", id}}));
    if (list.empty()) return NotFound(fmt::format("EC2 instance {} not found in {}", id, region));
    return list.front();
  }

  // The VPC of the region's configured subnet ("" when none is configured), asked once.
  Result<std::string> SubnetVpc(const Cred& c, const std::string& region) const {
    auto sn = opts.subnets.find(region);
    if (sn == opts.subnets.end()) return std::string();
    {
      std::lock_guard lock(mu);
      if (auto it = subnet_vpcs.find(sn->second); it != subnet_vpcs.end()) return it->second;
    }
    CANOPY_ASSIGN_OR_RETURN(Xml x, Ec2(c, region, "DescribeSubnets", {{"SubnetId.1", sn->second}}));
    auto items = XmlItems(x, "subnetSet");
    if (items.empty()) {
      return Invalid(
          fmt::format("subnet {} (config subnets.{}) does not exist", sn->second, region));
    }
    std::string vpc = XmlText(*items.front(), "vpcId");
    std::lock_guard lock(mu);
    subnet_vpcs[sn->second] = vpc;
    return vpc;
  }

  // Security groups.
  Result<std::vector<Firewall>> DescribeGroups(
      const Cred& c, const std::string& region, const QueryParams& p,
      std::vector<std::map<std::string, std::string>>* tags) const {
    CANOPY_ASSIGN_OR_RETURN(Xml x, Ec2(c, region, "DescribeSecurityGroups", p));
    std::vector<Firewall> out;
    for (const Xml* g : XmlItems(x, "securityGroupInfo")) {
      Firewall f;
      f.id = XmlText(*g, "groupId");
      f.name = XmlText(*g, "groupName");
      auto t = TagsOf(*g);
      f.canopy_id = t.count(kCanopyIdTag) ? t[kCanopyIdTag] : "";
      for (const Xml* perm : XmlItems(*g, "ipPermissions")) {
        std::string proto = XmlText(*perm, "ipProtocol");
        if (proto != "tcp" && proto != "udp") continue;
        FirewallRule r;
        r.protocol = proto;
        r.port = static_cast<uint16_t>(std::atoi(XmlText(*perm, "fromPort").c_str()));
        for (const Xml* range : XmlItems(*perm, "ipRanges")) {
          std::string cidr = XmlText(*range, "cidrIp");
          if (cidr != "0.0.0.0/0") r.source_cidrs.push_back(cidr);
        }
        f.rules.push_back(std::move(r));
      }
      out.push_back(std::move(f));
      if (tags != nullptr) tags->push_back(std::move(t));
    }
    return out;
  }

  // (firewall, tags) of a group id; kNotFound when absent.
  Result<std::pair<Firewall, std::map<std::string, std::string>>> Group(
      const Cred& c, const std::string& region, const std::string& id) const {
    if (!Ec2Id(id, "sg-")) return Invalid(fmt::format("'{}' is not a security group id", id));
    std::vector<std::map<std::string, std::string>> tags;
    auto g = DescribeGroups(c, region, {{"GroupId.1", id}}, &tags);
    if (!g) return g.error();
    if (g->empty()) return NotFound(fmt::format("security group {} not found", id));
    return std::make_pair(g->front(), tags.front());
  }

  // AuthorizeSecurityGroupIngress (`authorize`) or RevokeSecurityGroupIngress of one rule; a
  // rule already there, or already gone, counts as done.
  Status SetRule(const Cred& c, const std::string& region, const std::string& group,
                 const FirewallRule& r, bool authorize) const {
    QueryParams p{{"GroupId", group},
                  {"IpPermissions.1.IpProtocol", r.protocol},
                  {"IpPermissions.1.FromPort", std::to_string(r.port)},
                  {"IpPermissions.1.ToPort", std::to_string(r.port)}};
    std::vector<std::string> cidrs =
        r.source_cidrs.empty() ? std::vector<std::string>{"0.0.0.0/0"} : r.source_cidrs;
    for (size_t i = 0; i < cidrs.size(); ++i) {
      p.emplace_back(fmt::format("IpPermissions.1.IpRanges.{}.CidrIp", i + 1), cidrs[i]);
    }
    auto r2 = Ec2(c, region,
                  authorize ? "AuthorizeSecurityGroupIngress" : "RevokeSecurityGroupIngress", p);
    if (!r2 && !HasCode(r2.error(),
                        authorize ? "InvalidPermission.Duplicate" : "InvalidPermission.NotFound")) {
      return r2.error();
    }
    return OkStatus();
  }

  Status SetGroups(const Cred& c, const std::string& region, const std::string& instance,
                   const std::vector<std::string>& groups) const {
    if (groups.empty()) return Invalid("an EC2 instance keeps at least one security group");
    QueryParams p{{"InstanceId", instance}};
    for (size_t i = 0; i < groups.size(); ++i)
      p.emplace_back(fmt::format("GroupId.{}", i + 1), groups[i]);
    auto r = Ec2(c, region, "ModifyInstanceAttribute", p);
    if (!r) return r.error();
    return OkStatus();
  }

  // Prices.
  PriceEntry PriceOf(const Cred& c, const std::string& region, const std::string& type) {
    if (auto it = catalog.find({region, type}); it != catalog.end()) {
      return {it->second, "offline catalog (on-demand, Linux)"};
    }
    if (!opts.pricing_api) {
      return {std::nullopt,
              "price unknown: not in the offline catalog, and the AWS Pricing API is off"};
    }
    RegionPrices rp;
    {
      std::lock_guard lock(mu);
      auto it = region_prices.find(region);
      if (it != region_prices.end()) {
        auto ttl = it->second.ok ? opts.price_ttl : opts.price_failure_ttl;
        if (Clock::now() - it->second.at < ttl) rp = it->second;
      }
    }
    if (rp.at == Clock::time_point{}) {
      rp = FetchRegionPrices(c, region);
      std::lock_guard lock(mu);
      region_prices[region] = rp;
    }
    if (!rp.ok)
      return {std::nullopt, "price unknown: AWS Pricing API unavailable (" + rp.error + ")"};
    if (auto it = rp.prices.find(type); it != rp.prices.end())
      return {it->second, "AWS Pricing API (on-demand, Linux)"};
    return {std::nullopt, "price unknown: the AWS Pricing API lists no on-demand Linux price"};
  }

  RegionPrices FetchRegionPrices(const Cred& c, const std::string& region) const {
    RegionPrices rp;
    rp.at = Clock::now();
    Json filters = Json::array();
    for (const auto& [field, value] :
         std::vector<std::pair<std::string, std::string>>{{"regionCode", region},
                                                          {"operatingSystem", "Linux"},
                                                          {"tenancy", "Shared"},
                                                          {"preInstalledSw", "NA"},
                                                          {"capacitystatus", "Used"}}) {
      filters.push_back({{"Type", "TERM_MATCH"}, {"Field", field}, {"Value", value}});
    }
    std::string token;
    for (int page = 0; page < 100; ++page) {
      Json body{{"ServiceCode", "AmazonEC2"},
                {"Filters", filters},
                {"FormatVersion", "aws_v1"},
                {"MaxResults", 100}};
      if (!token.empty()) body["NextToken"] = token;
      auto r =
          client.JsonCall(c.sig, "pricing", "us-east-1", "AWSPriceListService.GetProducts", body);
      if (!r) {
        rp.error = r.error().message;
        return rp;
      }
      const Json list = r->value("PriceList", Json::array());
      for (const Json& item : list) {
        if (!item.is_string()) continue;
        auto product = ParseJson(item.get<std::string>());
        if (!product || !product->is_object()) continue;
        const std::string type =
            product->value("/product/attributes/instanceType"_json_pointer, "");
        const Json od = product->value("/terms/OnDemand"_json_pointer, Json::object());
        if (!od.is_object()) continue;
        for (const auto& term : od) {
          if (!term.is_object() || !term.contains("priceDimensions")) continue;
          const Json& dims = term["priceDimensions"];
          if (!dims.is_object()) continue;
          for (const auto& dim : dims) {
            std::string usd =
                dim.is_object() ? dim.value("/pricePerUnit/USD"_json_pointer, "") : "";
            if (!type.empty() && !usd.empty()) {
              try {
                double v = std::stod(usd);
                if (v > 0) rp.prices[type] = v;
              } catch (const std::exception&) {
              }
            }
          }
        }
      }
      token = r->value("NextToken", "");
      if (token.empty()) break;
    }
    rp.ok = true;
    return rp;
  }

  Result<Offers> LoadOffers(const Cred& c, const std::string& region) {
    std::string key = c.sig.access_key_id + "/" + region;
    {
      std::lock_guard lock(mu);
      auto it = offers.find(key);
      if (it != offers.end() && Clock::now() - it->second.at < opts.offers_ttl)
        return it->second.offers;
    }
    Offers o;
    CANOPY_ASSIGN_OR_RETURN(Xml regions, Ec2(c, region, "DescribeRegions", {}));
    for (const Xml* r : XmlItems(regions, "regionInfo"))
      o.regions.push_back(XmlText(*r, "regionName"));
    std::sort(o.regions.begin(), o.regions.end());

    std::set<std::string> offered;
    std::string token;
    for (int page = 0; page < 100; ++page) {
      QueryParams p{{"LocationType", "region"},
                    {"Filter.1.Name", "location"},
                    {"Filter.1.Value.1", region},
                    {"MaxResults", "1000"}};
      if (!token.empty()) p.emplace_back("NextToken", token);
      CANOPY_ASSIGN_OR_RETURN(Xml x, Ec2(c, region, "DescribeInstanceTypeOfferings", p));
      for (const Xml* t : XmlItems(x, "instanceTypeOfferingSet"))
        offered.insert(XmlText(*t, "instanceType"));
      token = XmlText(x, "nextToken");
      if (token.empty()) break;
    }
    token.clear();
    for (int page = 0; page < 100; ++page) {
      QueryParams p{{"MaxResults", "100"}};
      if (!opts.instance_type_patterns.empty()) {
        p.emplace_back("Filter.1.Name", "instance-type");
        for (size_t i = 0; i < opts.instance_type_patterns.size(); ++i) {
          p.emplace_back(fmt::format("Filter.1.Value.{}", i + 1), opts.instance_type_patterns[i]);
        }
      }
      if (!token.empty()) p.emplace_back("NextToken", token);
      CANOPY_ASSIGN_OR_RETURN(Xml x, Ec2(c, region, "DescribeInstanceTypes", p));
      for (const Xml* t : XmlItems(x, "instanceTypeSet")) {
        InstanceType it;
        it.name = XmlText(*t, "instanceType");
        if (!offered.count(it.name)) continue;
        it.vcpus = std::atoi(XmlText(*t, "vCpuInfo.defaultVCpus").c_str());
        it.memory_mib = std::atoll(XmlText(*t, "memoryInfo.sizeInMiB").c_str());
        for (const Xml* g : XmlItems(*t, "gpuInfo.gpus"))
          it.gpus += std::atoi(XmlText(*g, "count").c_str());
        if (it.vcpus <= 0 || it.memory_mib <= 0) continue;
        o.instance_types.push_back(std::move(it));
      }
      token = XmlText(x, "nextToken");
      if (token.empty()) break;
    }
    std::sort(o.instance_types.begin(), o.instance_types.end(),
              [](const InstanceType& a, const InstanceType& b) { return a.name < b.name; });
    o.instance_types.erase(
        std::unique(o.instance_types.begin(), o.instance_types.end(),
                    [](const InstanceType& a, const InstanceType& b) { return a.name == b.name; }),
        o.instance_types.end());

    QueryParams ip;
    for (size_t i = 0; i < opts.image_owners.size(); ++i)
      ip.emplace_back(fmt::format("Owner.{}", i + 1), opts.image_owners[i]);
    ip.emplace_back("Filter.1.Name", "name");
    for (size_t i = 0; i < opts.image_name_patterns.size(); ++i) {
      ip.emplace_back(fmt::format("Filter.1.Value.{}", i + 1), opts.image_name_patterns[i]);
    }
    ip.emplace_back("Filter.2.Name", "state");
    ip.emplace_back("Filter.2.Value.1", "available");
    CANOPY_ASSIGN_OR_RETURN(Xml images, Ec2(c, region, "DescribeImages", ip));
    std::vector<std::pair<std::string, Image>> dated;
    for (const Xml* i : XmlItems(images, "imagesSet")) {
      dated.push_back(
          {XmlText(*i, "creationDate"), Image{XmlText(*i, "imageId"), XmlText(*i, "name")}});
    }
    std::sort(dated.begin(), dated.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second.name < b.second.name;
    });
    for (auto& [_, img] : dated) {
      if (static_cast<int>(o.images.size()) >= opts.max_images) break;
      o.images.push_back(std::move(img));
    }
    for (auto& t : o.instance_types) {
      PriceEntry p = PriceOf(c, region, t.name);
      t.price_hour = p.price;
      t.price_note = p.note;
    }
    std::lock_guard lock(mu);
    offers[key] = OfferCache{Clock::now(), o};
    return o;
  }

  // ARN of the identity policy named `name` (path /canopy/), in the caller's account and partition.
  Result<std::string> PolicyArn(const Cred& c, const std::string& region,
                                const std::string& name) const {
    CANOPY_ASSIGN_OR_RETURN(Xml who, client.Query(c.sig, "sts", region, "GetCallerIdentity", {}));
    std::string arn = XmlText(who, "GetCallerIdentityResult.Arn");
    std::string partition = "aws";
    if (arn.rfind("arn:", 0) == 0) partition = arn.substr(4, arn.find(':', 4) - 4);
    return fmt::format("arn:{}:iam::{}:policy/canopy/{}", partition,
                       XmlText(who, "GetCallerIdentityResult.Account"), name);
  }

  // Key pairs.
  Result<KeyPair> StoredKey(const Cred& c, const std::string& region,
                            const std::string& name) const {
    auto r = Secrets(c, region, "GetSecretValue", {{"SecretId", KeyPairSecretName(name)}});
    if (!r) {
      if (IsNotFound(r.error())) return NotFound(fmt::format("key pair {} not found", name));
      return r.error();
    }
    auto j = ParseJson(r->value("SecretString", ""));
    if (!j || !j->is_object()) return Error::Provider("the stored key pair secret is not JSON");
    KeyPair kp;
    kp.name = j->value("name", name);
    kp.public_key = j->value("public_key", "");
    kp.private_key = SecretString(j->value("private_key", ""));
    kp.fingerprint = j->value("fingerprint", "");
    return kp;
  }
};

AwsProvider::AwsProvider(AwsOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  if (!impl_->opts.price_catalog.empty()) {
    std::ifstream in(impl_->opts.price_catalog);
    std::string line;
    std::getline(in, line);  // header: InstanceType,Region,PriceHour
    while (std::getline(in, line)) {
      std::stringstream ss(line);
      std::string type, region, price;
      if (std::getline(ss, type, ',') && std::getline(ss, region, ',') &&
          std::getline(ss, price, ',')) {
        try {
          impl_->catalog[{region, type}] = std::stod(price);
        } catch (const std::exception&) {
        }
      }
    }
    SPDLOG_INFO("AWS price catalog loaded path={} entries={}", impl_->opts.price_catalog,
                impl_->catalog.size());
  }
}
AwsProvider::~AwsProvider() = default;

std::string AwsProvider::KeyPairSecretName(const std::string& name) {
  return "canopy/key-pair/" + name;
}

// Resource "*" with tag conditions rather than ARN patterns: AWS evaluates the condition for each
// resource of the call, and moto (which authorizes EC2 calls against "*") can run the same policy.
Json AwsProvider::ClusterPolicy(const std::string& cluster_id) {
  const std::string tag = std::string("aws:ResourceTag/") + kClusterTag;
  const std::string req_tag = std::string("aws:RequestTag/") + kClusterTag;
  return Json{
      {"Version", "2012-10-17"},
      {"Statement",
       Json::array({
           // Describe calls support no resource-level permissions.
           {{"Sid", "Describe"},
            {"Effect", "Allow"},
            {"Action",
             {"ec2:DescribeSecurityGroups", "ec2:DescribeInstances", "ec2:DescribeSubnets"}},
            {"Resource", "*"}},
           // New groups only with its cluster's tag (the group and its VPC see the request tags).
           {{"Sid", "CreateOwnGroups"},
            {"Effect", "Allow"},
            {"Action", {"ec2:CreateSecurityGroup"}},
            {"Resource", "*"},
            {"Condition", {{"StringEquals", {{req_tag, cluster_id}}}}}},
           {{"Sid", "TagOnCreate"},
            {"Effect", "Allow"},
            {"Action", {"ec2:CreateTags"}},
            {"Resource", "*"},
            {"Condition", {{"StringEquals", {{"ec2:CreateAction", "CreateSecurityGroup"}}}}}},
           // Rules and deletion only on its cluster's groups.
           {{"Sid", "OwnGroups"},
            {"Effect", "Allow"},
            {"Action",
             {"ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress",
              "ec2:DeleteSecurityGroup"}},
            {"Resource", "*"},
            {"Condition", {{"StringEquals", {{tag, cluster_id}}}}}},
           // Group lists only of its cluster's instances; any group may be in the list (the
           // shared SSH group stays on every instance).
           {{"Sid", "OwnInstances"},
            {"Effect", "Allow"},
            {"Action", {"ec2:ModifyInstanceAttribute"}},
            {"Resource", "*"},
            {"Condition", {{"StringEquals", {{tag, cluster_id}}}}}},
           {{"Sid", "GroupsInLists"},
            {"Effect", "Allow"},
            {"Action", {"ec2:ModifyInstanceAttribute"}},
            {"Resource", "arn:aws:ec2:*:*:security-group/*"}},
       })}};
}

ProviderInfo AwsProvider::Info() const {
  return ProviderInfo{"aws", "0.1.0", {kContractVersion}, {"cluster_identity", "gpu"}};
}

std::string AwsProvider::DefaultSshUser(const std::string& /*image*/) const { return "ec2-user"; }

Status AwsProvider::ValidateCredential(const CallContext& ctx) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  auto r = impl_->client.Query(c.sig, "sts", impl_->Region(ctx), "GetCallerIdentity", {});
  if (!r) return r.error();
  SPDLOG_INFO("AWS credential valid account={}", XmlText(*r, "GetCallerIdentityResult.Account"));
  return OkStatus();
}

Result<Offers> AwsProvider::ListOffers(const CallContext& ctx) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  CANOPY_TRY(RequireFull(c, "list offers"));
  return impl_->LoadOffers(c, impl_->Region(ctx));
}

Result<Quote> AwsProvider::GetQuote(const CallContext& ctx, const std::string& instance_type,
                                    int count) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  CANOPY_TRY(RequireFull(c, "quote prices"));
  if (count < 1 || count > 10000) return Invalid("count must be between 1 and 10000");
  std::string region = impl_->Region(ctx);
  CANOPY_ASSIGN_OR_RETURN(Offers o, impl_->LoadOffers(c, region));
  auto it = std::find_if(o.instance_types.begin(), o.instance_types.end(),
                         [&](const InstanceType& t) { return t.name == instance_type; });
  if (it == o.instance_types.end()) {
    return Invalid(fmt::format("instance type '{}' is not offered in {}", instance_type, region));
  }
  Quote q;
  q.instance_type = instance_type;
  q.count = count;
  q.price_hour_each = it->price_hour;
  if (it->price_hour) q.price_hour_total = *it->price_hour * count;
  q.note = it->price_note;
  return q;
}

Result<Instance> AwsProvider::CreateInstance(const CallContext& ctx, const InstanceSpec& spec) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  CANOPY_TRY(RequireFull(c, "create instances"));
  if (spec.canopy_id.empty()) return Invalid("canopy_id is required");
  if (spec.instance_type.empty()) return Invalid("instance_type is required");
  if (spec.image.empty()) return Invalid("image is required");
  std::string region = impl_->Region(ctx);
  auto guard = impl_->LockFor("instance/" + region + "/" + spec.canopy_id);
  std::lock_guard lock(*guard);
  CANOPY_ASSIGN_OR_RETURN(auto found, FindInstancesByTag(ctx, kCanopyIdTag, spec.canopy_id));
  if (!found.empty()) {
    SPDLOG_INFO("EC2 instance found by tag canopy_id={} instance={}", spec.canopy_id,
                found.front().provider_id);
    return found.front();
  }
  // The root volume: the image's root device, at least the image's snapshot size.
  if (!Ec2Id(spec.image, "ami-")) return Invalid(fmt::format("'{}' is not an AMI id", spec.image));
  auto described = impl_->Ec2(c, region, "DescribeImages", {{"ImageId.1", spec.image}});
  if (!described && IsNotFound(described.error())) {
    return Invalid(fmt::format("image {} is not available in {}", spec.image, region));
  }
  CANOPY_ASSIGN_OR_RETURN(Xml images, std::move(described));
  auto items = XmlItems(images, "imagesSet");
  if (items.empty())
    return Invalid(fmt::format("image {} is not available in {}", spec.image, region));
  const Xml& image = *items.front();
  std::string root = XmlText(image, "rootDeviceName");
  int disk = std::max(spec.disk_gb, 1);
  for (const Xml* bd : XmlItems(image, "blockDeviceMapping")) {
    if (XmlText(*bd, "deviceName") == root)
      disk = std::max(disk, std::atoi(XmlText(*bd, "ebs.volumeSize").c_str()));
  }
  std::string ssh_user = SshUserForImageName(XmlText(image, "name"));

  std::map<std::string, std::string> tags = spec.tags;
  tags[kCanopyIdTag] = spec.canopy_id;
  tags[kSshUserTag] = ssh_user;
  if (!spec.name.empty()) tags["Name"] = spec.name;
  QueryParams p{{"ImageId", spec.image},
                {"InstanceType", spec.instance_type},
                {"MinCount", "1"},
                {"MaxCount", "1"},
                // Real AWS also de-duplicates by ClientToken; the tag lookup above is what makes
                // a retry after a crash safe everywhere (moto ignores the token).
                {"ClientToken",
                 "canopy-" + Sha256Hex(spec.canopy_id + "/" + spec.idempotency_key).substr(0, 48)}};
  if (!spec.key_pair.empty()) p.emplace_back("KeyName", spec.key_pair);
  if (auto sn = impl_->opts.subnets.find(region); sn != impl_->opts.subnets.end()) {
    p.emplace_back("SubnetId", sn->second);
  }
  for (size_t i = 0; i < spec.firewalls.size(); ++i) {
    if (!spec.firewalls[i].empty())
      p.emplace_back(fmt::format("SecurityGroupId.{}", i + 1), spec.firewalls[i]);
  }
  if (!root.empty()) {
    p.emplace_back("BlockDeviceMapping.1.DeviceName", root);
    p.emplace_back("BlockDeviceMapping.1.Ebs.VolumeSize", std::to_string(disk));
    p.emplace_back("BlockDeviceMapping.1.Ebs.VolumeType", "gp3");
    p.emplace_back("BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true");
  }
  p.emplace_back("TagSpecification.1.ResourceType", "instance");
  AddTags(p, "TagSpecification.1", tags);
  p.emplace_back("TagSpecification.2.ResourceType", "volume");
  AddTags(p, "TagSpecification.2", tags);
  CANOPY_ASSIGN_OR_RETURN(Xml x, impl_->Ec2(c, region, "RunInstances", p, /*idempotent=*/false));
  auto made = XmlItems(x, "instancesSet");
  if (made.empty()) return Error::Provider("EC2 RunInstances returned no instance");
  Instance inst = impl_->FromXml(*made.front(), region);
  if (inst.tags.empty()) inst.tags = tags;
  inst.canopy_id = spec.canopy_id;
  inst.ssh_user = ssh_user;
  SPDLOG_INFO("EC2 instance created canopy_id={} instance={} type={} region={}", spec.canopy_id,
              inst.provider_id, spec.instance_type, region);
  return inst;
}

Result<std::vector<Instance>> AwsProvider::FindInstancesByTag(const CallContext& ctx,
                                                              const std::string& key,
                                                              const std::string& value) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  if (key.empty()) return Invalid("tag key is required");
  std::string region = impl_->Region(ctx);
  QueryParams p{{"Filter.1.Name", "tag:" + key},          {"Filter.1.Value.1", value},
                {"Filter.2.Name", "instance-state-name"}, {"Filter.2.Value.1", "pending"},
                {"Filter.2.Value.2", "running"},          {"Filter.2.Value.3", "stopping"},
                {"Filter.2.Value.4", "stopped"}};
  CANOPY_ASSIGN_OR_RETURN(auto list, impl_->DescribeInstances(c, region, p));
  std::vector<Instance> out;
  for (auto& i : list) {
    if (Confine(c, i.tags, "see this instance")) out.push_back(std::move(i));
  }
  return out;
}

Result<Instance> AwsProvider::DescribeInstance(const CallContext& ctx, const ProviderHandle& h) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  CANOPY_ASSIGN_OR_RETURN(auto ir, impl_->HandleOf(ctx, h));
  CANOPY_ASSIGN_OR_RETURN(Instance i, impl_->Describe(c, ir.first, ir.second));
  CANOPY_TRY(Confine(c, i.tags, "describe instance " + i.provider_id));
  return i;
}

std::string AwsProvider::HostKeyFromConsole(const std::string& console) {
  return providers::HostKeyFromConsole(console);
}

Result<Instance> AwsProvider::WaitUntilRunning(const CallContext& ctx, const ProviderHandle& h,
                                               std::chrono::seconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    CANOPY_ASSIGN_OR_RETURN(Instance i, DescribeInstance(ctx, h));
    if (i.state == InstanceState::kRunning && !i.address.empty()) {
      if (!impl_->opts.console_host_keys) return i;
      CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
      CANOPY_ASSIGN_OR_RETURN(auto ir, impl_->HandleOf(ctx, h));
      CANOPY_ASSIGN_OR_RETURN(Xml out, impl_->Ec2(c, ir.second, "GetConsoleOutput",
                                                  {{"InstanceId", ir.first}, {"Latest", "true"}}));
      std::string console;
      (void)Base64Decode(XmlText(out, "output"), &console);
      i.host_key_sha256 = HostKeyFromConsole(console);
      if (!i.host_key_sha256.empty()) return i;
      if (Clock::now() >= deadline) {
        return Error::DeadlineExceeded(fmt::format(
            "EC2 instance {} runs, but its console shows no SSH host key fingerprints yet",
            i.provider_id));
      }
      std::this_thread::sleep_for(
          std::min<Clock::duration>(deadline - Clock::now(), std::chrono::seconds(2)));
      continue;
    }
    if (i.state == InstanceState::kTerminated) {
      return NotFound(fmt::format("EC2 instance {} was terminated", i.provider_id));
    }
    auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) {
      return Error::DeadlineExceeded(fmt::format("EC2 instance {} is {} after {} s", i.provider_id,
                                                 InstanceStateName(i.state), timeout.count()));
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(left, std::chrono::seconds(1)));
  }
}

// Stop/Start/TerminateInstances on the handle's instance; `gone_ok`: not found counts as done.
Status AwsProvider::InstanceAction(const CallContext& ctx, const ProviderHandle& h,
                                   const char* action, const char* what, bool gone_ok) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  CANOPY_TRY(RequireFull(c, what));
  CANOPY_ASSIGN_OR_RETURN(auto ir, impl_->HandleOf(ctx, h));
  auto r = impl_->Ec2(c, ir.second, action, {{"InstanceId.1", ir.first}});
  if (!r && !(gone_ok && IsNotFound(r.error()))) return r.error();
  SPDLOG_INFO("EC2 {} instance={} region={}", action, ir.first, ir.second);
  return OkStatus();
}

Status AwsProvider::StopInstance(const CallContext& ctx, const ProviderHandle& h) {
  return InstanceAction(ctx, h, "StopInstances", "stop instances", false);
}

Status AwsProvider::StartInstance(const CallContext& ctx, const ProviderHandle& h) {
  return InstanceAction(ctx, h, "StartInstances", "start instances", false);
}

Status AwsProvider::TerminateInstance(const CallContext& ctx, const ProviderHandle& h) {
  return InstanceAction(ctx, h, "TerminateInstances", "terminate instances", true);
}

Result<KeyPair> AwsProvider::CreateKeyPair(const CallContext& ctx, const std::string& name) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  CANOPY_TRY(RequireFull(c, "create key pairs"));
  CANOPY_TRY(ValidName(name, "key pair name", 200));
  std::string region = impl_->Region(ctx);
  auto guard = impl_->LockFor("key/" + region + "/" + name);
  std::lock_guard lock(*guard);
  auto stored = impl_->StoredKey(c, region, name);
  if (stored) {
    // The private key is kept: make sure EC2 still knows the public half.
    auto d = impl_->Ec2(c, region, "DescribeKeyPairs", {{"KeyName.1", name}});
    if (!d) {
      if (!IsNotFound(d.error())) return d.error();
      auto imp = impl_->Ec2(
          c, region, "ImportKeyPair",
          {{"KeyName", name}, {"PublicKeyMaterial", Base64Encode(stored->public_key)}}, false);
      if (!imp) return imp.error();
      SPDLOG_INFO("EC2 key pair re-imported from Secrets Manager name={} region={}", name, region);
    }
    return stored;
  }
  if (!IsNotFound(stored.error())) return stored.error();
  // EC2 makes the key; its private half is shown once, so it goes to Secrets Manager at once.
  // A key pair without a stored secret (a crash in between) is unusable: it is replaced.
  QueryParams p{{"KeyName", name},
                {"KeyType", "rsa"},
                {"KeyFormat", "pem"},
                {"TagSpecification.1.ResourceType", "key-pair"}};
  AddTags(p, "TagSpecification.1", {{kCanopyIdTag, name}});
  auto made = impl_->Ec2(c, region, "CreateKeyPair", p, false);
  if (!made && HasCode(made.error(), "InvalidKeyPair.Duplicate")) {
    SPDLOG_WARN("EC2 key pair without a stored private key is replaced name={} region={}", name,
                region);
    CANOPY_TRY(impl_->Ec2(c, region, "DeleteKeyPair", {{"KeyName", name}}));
    made = impl_->Ec2(c, region, "CreateKeyPair", p, false);
  }
  if (!made) return made.error();
  KeyPair kp;
  kp.name = name;
  kp.private_key = SecretString(XmlText(*made, "keyMaterial"));
  auto pub = PublicKeyFromPem(kp.private_key);
  if (!pub) return Error::Provider("EC2 CreateKeyPair: " + pub.error().message);
  kp.public_key = pub->public_key;
  kp.fingerprint = pub->fingerprint;
  Json secret{{"name", name},
              {"public_key", kp.public_key},
              {"private_key", kp.private_key.Reveal()},
              {"fingerprint", kp.fingerprint},
              {"key_pair_id", XmlText(*made, "keyPairId")}};
  std::string token = RandomHex(16);  // 32 characters, as Secrets Manager requires
  auto put = impl_->Secrets(c, region, "CreateSecret",
                            {{"Name", KeyPairSecretName(name)},
                             {"Description", "Canopy SSH key pair " + name},
                             {"SecretString", DumpJson(secret)},
                             {"ClientRequestToken", token},
                             {"Tags", Json::array({{{"Key", kCanopyIdTag}, {"Value", name}}})}},
                            false);
  secret.clear();
  if (!put) {
    if (put.error().message.find("ResourceExistsException") != std::string::npos) {
      return impl_->StoredKey(c, region, name);
    }
    return put.error();
  }
  SPDLOG_INFO("EC2 key pair created and stored in Secrets Manager name={} region={}", name, region);
  return kp;
}

Result<KeyPair> AwsProvider::GetKeyPair(const CallContext& ctx, const std::string& name) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  CANOPY_TRY(RequireFull(c, "read key pairs"));
  CANOPY_TRY(ValidName(name, "key pair name", 200));
  return impl_->StoredKey(c, impl_->Region(ctx), name);
}

Result<Firewall> AwsProvider::CreateFirewall(const CallContext& ctx, const FirewallSpec& spec) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  if (spec.canopy_id.empty() || spec.canopy_id.size() > 200)
    return Invalid("canopy_id must be 1 to 200 characters");
  for (const auto& r : spec.rules) {
    if (r.port == 0) return Invalid("firewall rule port must be 1-65535");
    if (r.protocol != "tcp" && r.protocol != "udp")
      return Invalid("firewall rule protocol must be tcp or udp");
  }
  std::map<std::string, std::string> tags = spec.tags;
  if (!c.cluster_id.empty()) {
    if (tags.count(kClusterTag) && tags[kClusterTag] != c.cluster_id) {
      return Auth("a cluster identity may only create its own cluster's firewalls");
    }
    tags[kClusterTag] = c.cluster_id;
  }
  tags[kCanopyIdTag] = spec.canopy_id;
  std::string region = impl_->Region(ctx);
  auto guard = impl_->LockFor("sg/" + region + "/" + spec.canopy_id);
  std::lock_guard lock(*guard);
  std::vector<std::map<std::string, std::string>> found_tags;
  CANOPY_ASSIGN_OR_RETURN(
      auto found, impl_->DescribeGroups(c, region,
                                        {{"Filter.1.Name", "tag:" + std::string(kCanopyIdTag)},
                                         {"Filter.1.Value.1", spec.canopy_id}},
                                        &found_tags));
  Firewall fw;
  if (!found.empty()) {
    CANOPY_TRY(Confine(c, found_tags.front(), "use security group " + found.front().id));
    fw = found.front();
  } else {
    const std::string group_name = SgText("canopy-" + spec.canopy_id);
    QueryParams p{
        {"GroupName", group_name},
        {"GroupDescription", SgText("Canopy " + (spec.name.empty() ? spec.canopy_id : spec.name))},
        {"TagSpecification.1.ResourceType", "security-group"}};
    CANOPY_ASSIGN_OR_RETURN(std::string vpc, impl_->SubnetVpc(c, region));
    if (!vpc.empty()) p.emplace_back("VpcId", vpc);
    std::map<std::string, std::string> all = tags;
    if (!spec.name.empty()) all["Name"] = spec.name;
    AddTags(p, "TagSpecification.1", all);
    auto made = impl_->Ec2(c, region, "CreateSecurityGroup", p, false);
    if (!made) {
      if (!HasCode(made.error(), "InvalidGroup.Duplicate")) return made.error();
      // Same name, no tag: not ours to adopt.
      return Invalid(
          fmt::format("a security group named {} exists without the canopy-id tag", group_name));
    }
    fw.id = XmlText(*made, "groupId");
    fw.name = group_name;
    SPDLOG_INFO("EC2 security group created canopy_id={} group={} region={}", spec.canopy_id, fw.id,
                region);
  }
  // Converge the group's rules on the spec: add what is missing, revoke what is no longer wanted.
  auto same = [](FirewallRule a, FirewallRule b) {
    std::sort(a.source_cidrs.begin(), a.source_cidrs.end());
    std::sort(b.source_cidrs.begin(), b.source_cidrs.end());
    return a.port == b.port && a.protocol == b.protocol && a.source_cidrs == b.source_cidrs;
  };
  for (const auto& r : spec.rules) {
    bool have = std::any_of(fw.rules.begin(), fw.rules.end(),
                            [&](const FirewallRule& e) { return same(e, r); });
    if (!have) CANOPY_TRY(impl_->SetRule(c, region, fw.id, r, true));
  }
  for (const auto& e : fw.rules) {
    bool wanted = std::any_of(spec.rules.begin(), spec.rules.end(),
                              [&](const FirewallRule& r) { return same(e, r); });
    if (!wanted) CANOPY_TRY(impl_->SetRule(c, region, fw.id, e, false));
  }
  fw.canopy_id = spec.canopy_id;
  fw.rules = spec.rules;
  return fw;
}

Result<bool> AwsProvider::FirewallExists(const CallContext& ctx, const std::string& firewall_id) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  auto g = impl_->Group(c, impl_->Region(ctx), firewall_id);
  if (!g) {
    if (IsNotFound(g.error())) return false;
    return g.error();
  }
  CANOPY_TRY(Confine(c, g->second, "see security group " + firewall_id));
  return true;
}

Status AwsProvider::AttachFirewall(const CallContext& ctx, const ProviderHandle& instance,
                                   const std::string& firewall_id) {
  return ChangeGroups(ctx, instance, firewall_id, true);
}

Status AwsProvider::DetachFirewall(const CallContext& ctx, const ProviderHandle& instance,
                                   const std::string& firewall_id) {
  return ChangeGroups(ctx, instance, firewall_id, false);
}

// Read-modify-write of the instance's group list, serialised per instance in this adapter.
Status AwsProvider::ChangeGroups(const CallContext& ctx, const ProviderHandle& instance,
                                 const std::string& firewall_id, bool attach) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  CANOPY_ASSIGN_OR_RETURN(auto ir, impl_->HandleOf(ctx, instance));
  auto guard = impl_->LockFor("groups/" + ir.first);
  std::lock_guard lock(*guard);
  CANOPY_ASSIGN_OR_RETURN(Instance i, impl_->Describe(c, ir.first, ir.second));
  CANOPY_TRY(Confine(c, i.tags, "change the security groups of instance " + i.provider_id));
  auto g = impl_->Group(c, ir.second, firewall_id);
  if (g) {
    CANOPY_TRY(
        Confine(c, g->second,
                (attach ? "attach security group " : "detach security group ") + firewall_id));
  } else if (attach || !IsNotFound(g.error())) {
    return g.error();  // a deleted group is detached already
  }
  auto groups = i.firewalls;
  bool has = std::find(groups.begin(), groups.end(), firewall_id) != groups.end();
  if (attach == has) return OkStatus();
  if (attach) {
    groups.push_back(firewall_id);
    return impl_->SetGroups(c, ir.second, ir.first, groups);
  }
  groups.erase(std::remove(groups.begin(), groups.end(), firewall_id), groups.end());
  if (groups.empty()) {
    // An EC2 instance always has a group: the last one is replaced by its VPC's default group.
    QueryParams p{{"Filter.1.Name", "group-name"}, {"Filter.1.Value.1", "default"}};
    if (std::string vpc = i.handle.data.value("vpc_id", ""); !vpc.empty()) {
      p.emplace_back("Filter.2.Name", "vpc-id");
      p.emplace_back("Filter.2.Value.1", vpc);
    }
    CANOPY_ASSIGN_OR_RETURN(auto defaults, impl_->DescribeGroups(c, ir.second, p, nullptr));
    if (defaults.empty())
      return Invalid(
          "an EC2 instance keeps at least one security group, and no default group was found");
    groups.push_back(defaults.front().id);
  }
  return impl_->SetGroups(c, ir.second, ir.first, groups);
}

Status AwsProvider::DeleteFirewall(const CallContext& ctx, const std::string& firewall_id) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  std::string region = impl_->Region(ctx);
  auto g = impl_->Group(c, region, firewall_id);
  if (!g) {
    if (IsNotFound(g.error())) return OkStatus();
    return g.error();
  }
  CANOPY_TRY(Confine(c, g->second, "delete security group " + firewall_id));
  auto r = impl_->Ec2(c, region, "DeleteSecurityGroup", {{"GroupId", firewall_id}});
  if (!r && !IsNotFound(r.error())) return r.error();
  SPDLOG_INFO("EC2 security group deleted group={} region={}", firewall_id, region);
  return OkStatus();
}

Result<ClusterIdentity> AwsProvider::CreateClusterIdentity(const CallContext& ctx,
                                                           const std::string& cluster_id) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  CANOPY_TRY(RequireFull(c, "create identities"));
  CANOPY_TRY(ValidName(cluster_id, "cluster id", 48));
  const std::string user = "canopy-cluster-" + cluster_id;
  auto made = impl_->Iam(c, "CreateUser",
                         {{"UserName", user},
                          {"Path", "/canopy/"},
                          {"Tags.member.1.Key", kCanopyIdTag},
                          {"Tags.member.1.Value", cluster_id}},
                         false);
  if (!made && !HasCode(made.error(), "EntityAlreadyExists")) return made.error();
  CANOPY_ASSIGN_OR_RETURN(std::string policy_arn, impl_->PolicyArn(c, impl_->Region(ctx), user));
  auto policy =
      impl_->Iam(c, "CreatePolicy",
                 {{"PolicyName", user},
                  {"Path", "/canopy/"},
                  {"Description", "Canopy cluster " + cluster_id + ": its own firewalls only"},
                  {"PolicyDocument", DumpJson(ClusterPolicy(cluster_id))}},
                 false);
  if (policy) {
    policy_arn = XmlText(*policy, "CreatePolicyResult.Policy.Arn");
  } else if (!HasCode(policy.error(), "EntityAlreadyExists")) {
    return policy.error();
  }
  CANOPY_TRY(impl_->Iam(c, "AttachUserPolicy", {{"UserName", user}, {"PolicyArn", policy_arn}}));
  // Keys from an earlier, interrupted try were never handed out: replace them.
  CANOPY_ASSIGN_OR_RETURN(Xml keys, impl_->Iam(c, "ListAccessKeys", {{"UserName", user}}));
  for (const Xml* k : XmlItems(keys, "ListAccessKeysResult.AccessKeyMetadata")) {
    CANOPY_TRY(impl_->Iam(c, "DeleteAccessKey",
                          {{"UserName", user}, {"AccessKeyId", XmlText(*k, "AccessKeyId")}}));
  }
  CANOPY_ASSIGN_OR_RETURN(Xml key, impl_->Iam(c, "CreateAccessKey", {{"UserName", user}}, false));
  ClusterIdentity id;
  id.id = user;
  id.credential = CredentialSecret(
      Json{{"access_key_id", XmlText(key, "CreateAccessKeyResult.AccessKey.AccessKeyId")},
           {"secret_access_key", XmlText(key, "CreateAccessKeyResult.AccessKey.SecretAccessKey")},
           {"cluster_id", cluster_id}});
  SPDLOG_INFO("IAM cluster identity created cluster={} user={}", cluster_id, user);
  return id;
}

Status AwsProvider::DeleteClusterIdentity(const CallContext& ctx, const std::string& identity_id) {
  CANOPY_ASSIGN_OR_RETURN(Cred c, ParseCred(ctx));
  CANOPY_TRY(RequireFull(c, "delete identities"));
  CANOPY_TRY(ValidName(identity_id, "identity id", 64));
  auto keys = impl_->Iam(c, "ListAccessKeys", {{"UserName", identity_id}});
  if (!keys) {
    if (IsNotFound(keys.error())) return OkStatus();
    return keys.error();
  }
  for (const Xml* k : XmlItems(*keys, "ListAccessKeysResult.AccessKeyMetadata")) {
    auto r = impl_->Iam(c, "DeleteAccessKey",
                        {{"UserName", identity_id}, {"AccessKeyId", XmlText(*k, "AccessKeyId")}});
    if (!r && !IsNotFound(r.error())) return r.error();
  }
  CANOPY_ASSIGN_OR_RETURN(Xml attached,
                          impl_->Iam(c, "ListAttachedUserPolicies", {{"UserName", identity_id}}));
  for (const Xml* pol : XmlItems(attached, "ListAttachedUserPoliciesResult.AttachedPolicies")) {
    std::string arn = XmlText(*pol, "PolicyArn");
    auto d = impl_->Iam(c, "DetachUserPolicy", {{"UserName", identity_id}, {"PolicyArn", arn}});
    if (!d && !IsNotFound(d.error())) return d.error();
  }
  // Its own policy, attached or left unattached by an interrupted create.
  CANOPY_ASSIGN_OR_RETURN(std::string own, impl_->PolicyArn(c, impl_->Region(ctx), identity_id));
  auto del = impl_->Iam(c, "DeletePolicy", {{"PolicyArn", own}});
  if (!del && !IsNotFound(del.error())) return del.error();
  auto u = impl_->Iam(c, "DeleteUser", {{"UserName", identity_id}});
  if (!u && !IsNotFound(u.error())) return u.error();
  SPDLOG_INFO("IAM cluster identity deleted user={}", identity_id);
  return OkStatus();
}

}  // namespace canopy::providers::aws
