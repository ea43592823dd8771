#include "sim/aws_machines.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <thread>
#include <tuple>

#include "common/files.h"
#include "common/ids.h"
#include "common/log.h"
#include "providers/aws/sigv4.h"

namespace canopy::sim {

namespace fs = std::filesystem;
namespace aws = providers::aws;
using providers::InstanceState;

namespace {

// Key pair names of AWS may hold characters local key files may not: keep [A-Za-z0-9._-].
std::string LocalKeyName(const std::string& aws_name) {
  std::string out = "aws-";
  for (char ch : aws_name) {
    bool ok = std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-';
    out.push_back(ok ? ch : '_');
  }
  return out;
}

enum class Want { kRun, kStop, kGone };

Want WantOf(const std::string& ec2_state) {
  if (ec2_state == "pending" || ec2_state == "running") return Want::kRun;
  if (ec2_state == "stopping" || ec2_state == "stopped") return Want::kStop;
  return Want::kGone;
}

}  // namespace

Result<AwsMachinesOptions> ParseAwsMachinesOptions(const Json& c) {
  if (!c.is_object()) return Error::InvalidArgument("the sim config must be a JSON object");
  AwsMachinesOptions o;
  CANOPY_ASSIGN_OR_RETURN(o.endpoint, GetString(c, "endpoint_url", 512));
  CANOPY_ASSIGN_OR_RETURN(o.subnet_id, GetString(c, "subnet_id", 64));
  CANOPY_ASSIGN_OR_RETURN(o.access_key_id, GetString(c, "access_key_id", 128));
  CANOPY_ASSIGN_OR_RETURN(std::string secret, GetString(c, "secret_access_key", 128));
  o.secret_access_key = SecretString(std::move(secret));
  CANOPY_ASSIGN_OR_RETURN(o.console_dir, GetString(c, "console_dir", 1024));
  CANOPY_ASSIGN_OR_RETURN(o.local.state_dir, GetString(c, "state_dir", 1024));
  if (c.contains("region")) {
    CANOPY_ASSIGN_OR_RETURN(o.region, GetString(c, "region", 32));
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
  if (o.subnet_id.rfind("subnet-", 0) != 0) {
    return Error::InvalidArgument("subnet_id must be a subnet id (subnet-...)");
  }
  return o;
}

std::string ConsoleWithHostKey(const std::string& instance_id, const std::string& image,
                               const std::string& sha256) {
  return fmt::format(
      "[    0.000000] Linux version (canopy-sim machine of {} on image {})\n"
      "Cloud-init finished: the SSH host keys below were generated on first boot.\n"
      "-----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
      "256 {} root@{} (ED25519)\n"
      "-----END SSH HOST KEY FINGERPRINTS-----\n",
      instance_id, image, sha256, instance_id);
}

AwsMachines::AwsMachines(AwsMachinesOptions options)
    : opts_(std::move(options)),
      client_(aws::AwsEndpoints{opts_.endpoint, {}},
              aws::RetryPolicy{2, std::chrono::milliseconds(50), std::chrono::milliseconds(200)}) {}

AwsMachines::~AwsMachines() { Wait(); }

Result<std::unique_ptr<AwsMachines>> AwsMachines::Create(AwsMachinesOptions options) {
  std::error_code ec;
  fs::create_directories(options.console_dir, ec);
  if (ec) return Error::Internal("cannot create " + options.console_dir + ": " + ec.message());
  std::unique_ptr<AwsMachines> m(new AwsMachines(std::move(options)));
  CANOPY_ASSIGN_OR_RETURN(m->local_, providers::local::LocalProvider::Create(m->opts_.local));
  return m;
}

providers::CallContext AwsMachines::LocalCtx() const {
  return providers::CallContext{providers::CredentialSecret(Json{{"type", "local"}}), "local"};
}

Result<aws::Xml> AwsMachines::Ec2(const std::string& action, const aws::QueryParams& p) const {
  aws::SigV4Credentials creds{opts_.access_key_id, opts_.secret_access_key, ""};
  return client_.Query(creds, "ec2", opts_.region, action, p);
}

// Ingress rules by security group id, as a machine's firewall can hold them.
Result<std::map<std::string, std::vector<providers::FirewallRule>>> GroupRules(
    const std::function<Result<aws::Xml>(const aws::QueryParams&)>& describe) {
  CANOPY_ASSIGN_OR_RETURN(aws::Xml x, describe({}));
  std::map<std::string, std::vector<providers::FirewallRule>> out;
  for (const aws::Xml* g : aws::XmlItems(x, "securityGroupInfo")) {
    auto& rules = out[aws::XmlText(*g, "groupId")];
    for (const aws::Xml* p : aws::XmlItems(*g, "ipPermissions")) {
      std::string proto = aws::XmlText(*p, "ipProtocol");
      if (proto != "tcp" && proto != "udp") continue;  // "-1" (all), icmp: not simulated
      int from = std::atoi(aws::XmlText(*p, "fromPort").c_str());
      int to = std::atoi(aws::XmlText(*p, "toPort").c_str());
      std::vector<std::string> cidrs;
      for (const aws::Xml* r : aws::XmlItems(*p, "ipRanges")) {
        cidrs.push_back(aws::XmlText(*r, "cidrIp"));
      }
      if (cidrs.empty()) continue;  // only other groups as sources: not simulated
      std::sort(cidrs.begin(), cidrs.end());
      if (from < 1 || to > 65535 || to < from || to - from >= 64) {
        SPDLOG_DEBUG("Security group rule not simulated group={} ports={}-{}",
                     aws::XmlText(*g, "groupId"), from, to);
        continue;
      }
      for (int port = from; port <= to; ++port) {
        rules.push_back(providers::FirewallRule{static_cast<uint16_t>(port), proto, cidrs});
      }
    }
  }
  return out;
}

std::string RulesKey(const std::vector<providers::FirewallRule>& rules) {
  std::string key;
  for (const auto& r : rules) {
    key += r.protocol + "/" + std::to_string(r.port);
    for (const auto& c : r.source_cidrs) key += "," + c;
    key += ";";
  }
  return key;
}

Status AwsMachines::SyncOnce() {
  std::vector<Seen> seen;
  CANOPY_ASSIGN_OR_RETURN(auto group_rules, GroupRules([this](const aws::QueryParams& p) {
                            return Ec2("DescribeSecurityGroups", p);
                          }));
  std::string token;
  for (int page = 0; page < 100; ++page) {
    aws::QueryParams q{{"Filter.1.Name", "subnet-id"}, {"Filter.1.Value.1", opts_.subnet_id}};
    if (!token.empty()) q.emplace_back("NextToken", token);
    CANOPY_ASSIGN_OR_RETURN(aws::Xml x, Ec2("DescribeInstances", q));
    for (const aws::Xml* r : aws::XmlItems(x, "reservationSet")) {
      for (const aws::Xml* i : aws::XmlItems(*r, "instancesSet")) {
        Seen one{aws::XmlText(*i, "instanceId"),       aws::XmlText(*i, "instanceState.name"),
                 aws::XmlText(*i, "privateIpAddress"), aws::XmlText(*i, "keyName"),
                 aws::XmlText(*i, "imageId"),          {}};
        for (const aws::Xml* g : aws::XmlItems(*i, "groupSet")) {
          auto it = group_rules.find(aws::XmlText(*g, "groupId"));
          if (it != group_rules.end()) {
            one.rules.insert(one.rules.end(), it->second.begin(), it->second.end());
          }
        }
        std::sort(one.rules.begin(), one.rules.end(), [](const auto& a, const auto& b) {
          return std::tie(a.protocol, a.port, a.source_cidrs) <
                 std::tie(b.protocol, b.port, b.source_cidrs);
        });
        one.rules.erase(std::unique(one.rules.begin(), one.rules.end(),
                                    [](const auto& a, const auto& b) {
                                      return a.protocol == b.protocol && a.port == b.port &&
                                             a.source_cidrs == b.source_cidrs;
                                    }),
                        one.rules.end());
        seen.push_back(std::move(one));
      }
    }
    token = aws::XmlText(x, "nextToken");
    if (token.empty()) break;
  }
  // Machines whose instance moto no longer lists (deleted, or moto was reset) go too.
  CANOPY_ASSIGN_OR_RETURN(auto all, local_->FindInstancesByTag(LocalCtx(), "canopy-sim", "aws"));
  std::set<std::string> listed;
  for (const auto& s : seen) listed.insert(s.id);
  for (const auto& m : all) {
    if (!listed.count(m.canopy_id)) {
      seen.push_back(Seen{m.canopy_id, "terminated", "", "", "", {}});
    }
  }

  std::lock_guard lock(mu_);
  for (auto it = busy_.begin(); it != busy_.end();) {
    if (it->second.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      it = busy_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& s : seen) {
    if (busy_.count(s.id)) continue;
    busy_[s.id] = std::async(std::launch::async, [this, s] { Converge(s); });
  }
  return OkStatus();
}

void AwsMachines::Wait() {
  std::map<std::string, std::future<void>> busy;
  {
    std::lock_guard lock(mu_);
    busy.swap(busy_);
  }
  for (auto& [id, f] : busy) f.wait();
}

std::map<std::string, std::string> AwsMachines::Machines() const {
  std::lock_guard lock(mu_);
  return machine_states_;
}

void AwsMachines::Converge(const Seen& s) {
  auto found = local_->FindInstancesByTag(LocalCtx(), providers::kCanopyIdTag, s.id);
  if (!found) {
    SPDLOG_WARN("Cannot read the machine of an EC2 instance instance={} error={}", s.id,
                found.error().message);
    return;
  }
  std::optional<providers::Instance> m;
  if (!found->empty()) m = found->front();
  auto remember = [&](const std::string& state) {
    std::lock_guard lock(mu_);
    if (state.empty()) {
      machine_states_.erase(s.id);
    } else {
      machine_states_[s.id] = state;
    }
  };
  switch (WantOf(s.state)) {
    case Want::kRun: {
      {
        std::lock_guard lock(mu_);
        auto it = machine_states_.find(s.id);
        if (it != machine_states_.end() && it->second == "failed") return;  // said so once
      }
      if (m && m->state == InstanceState::kRunning &&
          fs::exists(fs::path(opts_.console_dir) / s.id)) {
        Status st = SyncFirewall(s, *m);
        if (!st)
          SPDLOG_WARN("Machine firewall failed instance={} error={}", s.id, st.error().message);
        remember("running");
        return;
      }
      Status st = Boot(s);
      if (!st) {
        SPDLOG_WARN("Machine boot failed instance={} error={}", s.id, st.error().message);
        WriteConsole(s.id, "canopy-sim: no machine: " + st.error().message + "\n");
        remember("failed");
        return;
      }
      remember("running");
      return;
    }
    case Want::kStop:
      ClearConsole(s.id);
      if (m && m->state != InstanceState::kStopped) {
        Status st = local_->StopInstance(LocalCtx(), m->handle);
        if (!st) {
          SPDLOG_WARN("Machine stop failed instance={} error={}", s.id, st.error().message);
          return;
        }
        SPDLOG_INFO("Machine stopped instance={} machine={}", s.id, m->provider_id);
      }
      remember(m ? "stopped" : "");
      return;
    case Want::kGone:
      ClearConsole(s.id);
      if (m) {
        Status st = local_->TerminateInstance(LocalCtx(), m->handle);
        if (!st) {
          SPDLOG_WARN("Machine terminate failed instance={} error={}", s.id, st.error().message);
          return;
        }
        SPDLOG_INFO("Machine terminated instance={} machine={}", s.id, m->provider_id);
        for (const auto& fw : m->firewalls) (void)local_->DeleteFirewall(LocalCtx(), fw);
      }
      {
        std::lock_guard lock(mu_);
        firewalls_.erase(s.id);
      }
      remember("");
      return;
  }
}

Status AwsMachines::Boot(const Seen& s) {
  auto found = local_->FindInstancesByTag(LocalCtx(), providers::kCanopyIdTag, s.id);
  if (!found) return found.error();
  std::optional<providers::Instance> m;
  if (!found->empty()) m = found->front();
  std::string image;
  if (!m) {
    if (s.address.empty()) return Error::FailedPrecondition("the instance has no private address");
    CANOPY_ASSIGN_OR_RETURN(image, ImageFor(s.image_id));
    providers::InstanceSpec spec;
    spec.canopy_id = s.id;
    spec.idempotency_key = s.id;
    spec.name = s.id;
    spec.instance_type = "local.small";
    spec.image = image;
    spec.disk_gb = 1;
    if (s.key_name.empty()) {
      return Error::FailedPrecondition("the instance has no key pair: nobody could log in");
    }
    CANOPY_ASSIGN_OR_RETURN(spec.key_pair, ImportKey(s.key_name));
    spec.tags = {{"canopy-sim", "aws"}, {"image", image}};
    CANOPY_ASSIGN_OR_RETURN(providers::Instance made,
                            local_->CreateInstanceAt(LocalCtx(), spec, s.address));
    SPDLOG_INFO("Machine created instance={} machine={} address={} image={}", s.id,
                made.provider_id, s.address, image);
    m = made;
  } else {
    image = m->tags.count("image") ? m->tags.at("image") : "";
    if (m->state == InstanceState::kStopped || m->state == InstanceState::kStopping) {
      CANOPY_TRY(local_->StartInstance(LocalCtx(), m->handle));
      SPDLOG_INFO("Machine started instance={} machine={}", s.id, m->provider_id);
    }
  }
  CANOPY_ASSIGN_OR_RETURN(
      providers::Instance up,
      local_->WaitUntilRunning(LocalCtx(), m->handle, std::chrono::seconds(120)));
  if (up.host_key_sha256.empty()) return Error::Internal("the machine reports no host key");
  CANOPY_TRY(SyncFirewall(s, up));
  WriteConsole(s.id, ConsoleWithHostKey(s.id, image, up.host_key_sha256));
  return OkStatus();
}

// One local firewall per machine and rule set ("sim-<instance>-<hash>"): when the rules change,
// the new one is attached and the old one detached and deleted.
Status AwsMachines::SyncFirewall(const Seen& s, const providers::Instance& machine) {
  const std::string key = RulesKey(s.rules);
  const std::string canopy_id = "sim-" + s.id + "-" + Sha256Hex(key).substr(0, 12);
  {
    std::lock_guard lock(mu_);
    auto it = firewalls_.find(s.id);
    if (it != firewalls_.end() && it->second.first == canopy_id &&
        machine.firewalls == std::vector<std::string>{it->second.second}) {
      return OkStatus();
    }
  }
  providers::FirewallSpec spec{canopy_id, canopy_id, s.rules, {{"canopy-sim", "aws"}}};
  CANOPY_ASSIGN_OR_RETURN(providers::Firewall fw, local_->CreateFirewall(LocalCtx(), spec));
  CANOPY_TRY(local_->AttachFirewall(LocalCtx(), machine.handle, fw.id));
  for (const auto& old : machine.firewalls) {
    if (old == fw.id) continue;
    CANOPY_TRY(local_->DetachFirewall(LocalCtx(), machine.handle, old));
    (void)local_->DeleteFirewall(LocalCtx(), old);
  }
  SPDLOG_INFO("Machine firewall instance={} rules={}", s.id, key.empty() ? "none" : key);
  std::lock_guard lock(mu_);
  firewalls_[s.id] = {canopy_id, fw.id};
  return OkStatus();
}

Result<std::string> AwsMachines::ImageFor(const std::string& image_id) {
  {
    std::lock_guard lock(mu_);
    if (auto it = image_names_.find(image_id); it != image_names_.end()) {
      if (it->second.empty()) {
        return Error::FailedPrecondition("AMI " + image_id + " has no blank image in the sim");
      }
      return it->second;
    }
  }
  CANOPY_ASSIGN_OR_RETURN(aws::Xml x, Ec2("DescribeImages", {{"ImageId.1", image_id}}));
  auto items = aws::XmlItems(x, "imagesSet");
  if (items.empty()) return Error::NotFound("AMI " + image_id + " not found");
  std::string name = aws::XmlText(*items.front(), "name");
  std::string local;
  for (const auto& [prefix, img] : opts_.images) {
    if (name.rfind(prefix, 0) == 0) local = img;
  }
  {
    std::lock_guard lock(mu_);
    image_names_[image_id] = local;
  }
  if (local.empty()) {
    return Error::FailedPrecondition(fmt::format(
        "AMI {} ({}) has no blank image in the sim (Debian 11 and 12 AMIs have)", image_id, name));
  }
  return local;
}

Result<std::string> AwsMachines::ImportKey(const std::string& key_name) {
  CANOPY_ASSIGN_OR_RETURN(
      aws::Xml x, Ec2("DescribeKeyPairs", {{"KeyName.1", key_name}, {"IncludePublicKey", "true"}}));
  auto items = aws::XmlItems(x, "keySet");
  if (items.empty()) return Error::NotFound("key pair " + key_name + " not found");
  std::string pub = aws::XmlText(*items.front(), "publicKey");
  if (pub.empty()) return Error::Internal("moto returned no public key for " + key_name);
  std::string name = LocalKeyName(key_name);
  CANOPY_TRY(local_->ImportKeyPair(LocalCtx(), name, pub));
  return name;
}

void AwsMachines::WriteConsole(const std::string& id, const std::string& text) {
  Status st = WriteFileAtomic((fs::path(opts_.console_dir) / id).string(), text, 0644);
  if (!st) SPDLOG_WARN("Cannot write console instance={} error={}", id, st.error().message);
}

void AwsMachines::ClearConsole(const std::string& id) {
  std::error_code ec;
  fs::remove(fs::path(opts_.console_dir) / id, ec);
}

void AwsMachines::TerminateAll() {
  Wait();
  auto all = local_->FindInstancesByTag(LocalCtx(), "canopy-sim", "aws");
  if (all) {
    for (const auto& m : *all) {
      ClearConsole(m.canopy_id);
      Status st = local_->TerminateInstance(LocalCtx(), m.handle);
      if (!st) SPDLOG_WARN("Machine terminate failed machine={}", m.provider_id);
    }
  }
  providers::local::LocalProvider::ReleaseAddresses(opts_.local);
  std::lock_guard lock(mu_);
  machine_states_.clear();
}

}  // namespace canopy::sim
