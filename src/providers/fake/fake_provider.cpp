#include "providers/fake/fake_provider.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <algorithm>
#include <memory>

#include "common/ids.h"

namespace canopy::providers::fake {
namespace {

Error InvalidRequest(std::string m) {
  return MakeProviderError(ProviderErrorKind::kInvalidRequest, std::move(m));
}
Error NotFoundError(std::string m) {
  return MakeProviderError(ProviderErrorKind::kNotFound, std::move(m));
}

struct TypeOffer {
  const char* name;
  int vcpus;
  int64_t memory_mib;
  int gpus;
  double price;
};
constexpr TypeOffer kTypes[] = {
    {"fake.small", 1, 1024, 0, 0.01},
    {"fake.medium", 2, 4096, 0, 0.04},
    {"fake.gpu", 8, 32768, 1, 1.20},
};
constexpr const char* kRegions[] = {"fake-east", "fake-west"};
constexpr const char* kImages[][2] = {{"fake-debian-12", "Debian 12"},
                                      {"fake-ubuntu-24.04", "Ubuntu 24.04"}};

const TypeOffer* FindType(const std::string& name) {
  for (const auto& t : kTypes) {
    if (name == t.name) {
      return &t;
    }
  }
  return nullptr;
}

void PutString(std::string* out, std::string_view s) {
  uint32_t n = static_cast<uint32_t>(s.size());
  out->push_back(static_cast<char>(n >> 24));
  out->push_back(static_cast<char>(n >> 16));
  out->push_back(static_cast<char>(n >> 8));
  out->push_back(static_cast<char>(n));
  out->append(s);
}

// A fresh Ed25519 key: public key in OpenSSH format, private key as PKCS#8 PEM.
Result<KeyPair> GenerateEd25519(const std::string& name) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"), EVP_PKEY_free);
  if (!key) {
    return MakeProviderError(ProviderErrorKind::kTransient, "key generation failed");
  }
  unsigned char raw[32];
  size_t raw_len = sizeof(raw);
  if (EVP_PKEY_get_raw_public_key(key.get(), raw, &raw_len) != 1) {
    return MakeProviderError(ProviderErrorKind::kTransient, "key generation failed");
  }
  std::string blob;
  PutString(&blob, "ssh-ed25519");
  PutString(&blob, std::string_view(reinterpret_cast<const char*>(raw), raw_len));
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return MakeProviderError(ProviderErrorKind::kTransient, "key generation failed");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  std::string pem(data, static_cast<size_t>(len));
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(blob.data()), blob.size(), digest);
  std::string fp =
      Base64Encode(std::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
  while (!fp.empty() && fp.back() == '=') {
    fp.pop_back();
  }
  KeyPair kp;
  kp.name = name;
  kp.public_key = "ssh-ed25519 " + Base64Encode(blob) + " " + name;
  kp.private_key = SecretString(std::move(pem));
  OPENSSL_cleanse(pem.data(), pem.size());
  kp.fingerprint = "SHA256:" + fp;
  return kp;
}

}  // namespace

ProviderInfo FakeProvider::Info() const {
  return ProviderInfo{
      "fake", "0.2.0", {kContractVersion}, {"credentials", "gpu", "cluster_identity"}};
}

void FakeProvider::FailNext(const std::string& method, ProviderErrorKind kind) {
  std::lock_guard<std::mutex> l(mu_);
  fail_next_[method] = kind;
}

void FakeProvider::SetCapacity(const std::string& instance_type, int max) {
  std::lock_guard<std::mutex> l(mu_);
  capacity_[instance_type] = max;
}

int FakeProvider::LiveInstanceCount() const {
  std::lock_guard<std::mutex> l(mu_);
  return static_cast<int>(std::count_if(instances_.begin(), instances_.end(), [](const auto& kv) {
    return kv.second.state != InstanceState::kTerminated;
  }));
}

Status FakeProvider::Enter(const char* method, const CallContext& ctx) {
  auto it = fail_next_.find(method);
  if (it != fail_next_.end()) {
    ProviderErrorKind kind = it->second;
    fail_next_.erase(it);
    return MakeProviderError(
        kind, fmt::format("injected {} failure of {}", ProviderErrorKindName(kind), method));
  }
  const Json& s = ctx.credential.Reveal();
  if (!s.is_object()) {
    return InvalidRequest("secret must be a JSON object");
  }
  auto key = s.find("api_key");
  if (key == s.end() || !key->is_string() || key->get_ref<const std::string&>().empty()) {
    return InvalidRequest("secret must contain a non-empty string field 'api_key'");
  }
  if (key->get_ref<const std::string&>().rfind("invalid", 0) == 0) {
    return MakeProviderError(ProviderErrorKind::kAuth, "the provider rejected the credential");
  }
  auto ident = s.find("identity");
  if (ident != s.end() && (!ident->is_string() || !identities_.count(ident->get<std::string>()))) {
    return MakeProviderError(ProviderErrorKind::kAuth, "cluster identity is unknown or deleted");
  }
  static constexpr std::string_view kIdentityMethods[] = {"ValidateCredential", "CreateFirewall",
                                                          "FirewallExists",     "AttachFirewall",
                                                          "DetachFirewall",     "DeleteFirewall"};
  if (ident != s.end() && std::find(std::begin(kIdentityMethods), std::end(kIdentityMethods),
                                    std::string_view(method)) == std::end(kIdentityMethods)) {
    return MakeProviderError(ProviderErrorKind::kAuth,
                             "a cluster identity may only manage its cluster's firewalls");
  }
  if (!ctx.region.empty() && std::none_of(std::begin(kRegions), std::end(kRegions),
                                          [&](const char* r) { return ctx.region == r; })) {
    return InvalidRequest(fmt::format("unknown region '{}'", ctx.region));
  }
  return OkStatus();
}

std::optional<std::string> FakeProvider::IdentityClusterLocked(const CallContext& ctx) const {
  const Json& s = ctx.credential.Reveal();
  if (!s.is_object() || !s.contains("identity") || !s["identity"].is_string()) {
    return std::nullopt;
  }
  auto it = identities_.find(s["identity"].get<std::string>());
  return it == identities_.end() ? std::optional<std::string>("") : it->second;
}

Status FakeProvider::ValidateCredential(const CallContext& ctx) {
  std::lock_guard<std::mutex> l(mu_);
  return Enter("ValidateCredential", ctx);
}

Result<Offers> FakeProvider::ListOffers(const CallContext& ctx) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("ListOffers", ctx));
  Offers o;
  for (const char* r : kRegions) {
    o.regions.emplace_back(r);
  }
  for (const auto& t : kTypes) {
    o.instance_types.push_back(
        InstanceType{t.name, t.vcpus, t.memory_mib, t.gpus, t.price, "fake price list"});
  }
  for (const auto& i : kImages) {
    o.images.push_back(Image{i[0], i[1]});
  }
  return o;
}

Result<Quote> FakeProvider::GetQuote(const CallContext& ctx, const std::string& instance_type,
                                     int count) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("GetQuote", ctx));
  const TypeOffer* t = FindType(instance_type);
  if (!t) {
    return InvalidRequest(fmt::format("unknown instance type '{}'", instance_type));
  }
  if (count < 1) {
    return InvalidRequest("count must be at least 1");
  }
  return Quote{instance_type, count, t->price, t->price * count, "fake price list"};
}

std::string FakeProvider::DefaultSshUser(const std::string& image) const {
  return image.find("ubuntu") != std::string::npos ? "ubuntu" : "admin";
}

Result<Instance*> FakeProvider::FindLocked(const ProviderHandle& h) {
  if (!h.data.is_object() || !h.data.contains("id") || !h.data["id"].is_string()) {
    return InvalidRequest("malformed instance handle");
  }
  auto it = instances_.find(h.data["id"].get<std::string>());
  if (it == instances_.end() || it->second.state == InstanceState::kTerminated) {
    return NotFoundError("instance not found");
  }
  return &it->second;
}

Result<Instance> FakeProvider::CreateInstance(const CallContext& ctx, const InstanceSpec& spec) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("CreateInstance", ctx));
  if (spec.canopy_id.empty()) {
    return InvalidRequest("canopy_id is required");
  }
  for (const auto& [id, inst] : instances_) {
    if (idempotent_create_ && inst.canopy_id == spec.canopy_id &&
        inst.state != InstanceState::kTerminated) {
      return inst;
    }
  }
  const TypeOffer* t = FindType(spec.instance_type);
  if (!t) {
    return InvalidRequest(fmt::format("unknown instance type '{}'", spec.instance_type));
  }
  if (std::none_of(std::begin(kImages), std::end(kImages),
                   [&](const auto& i) { return spec.image == i[0]; })) {
    return InvalidRequest(fmt::format("unknown image '{}'", spec.image));
  }
  if (!spec.key_pair.empty() && !key_pairs_.count(spec.key_pair)) {
    return InvalidRequest(fmt::format("unknown key pair '{}'", spec.key_pair));
  }
  for (const auto& fw : spec.firewalls) {
    if (!firewalls_.count(fw)) {
      return InvalidRequest(fmt::format("unknown firewall '{}'", fw));
    }
  }
  auto cap = capacity_.find(spec.instance_type);
  if (cap != capacity_.end()) {
    int live = 0;
    for (const auto& [id, inst] : instances_) {
      if (inst.state != InstanceState::kTerminated && inst.tags.count("instance-type") &&
          inst.tags.at("instance-type") == spec.instance_type) {
        ++live;
      }
    }
    if (live >= cap->second) {
      return MakeProviderError(ProviderErrorKind::kCapacity,
                               fmt::format("no capacity for {}", spec.instance_type));
    }
  }
  int n = next_id_++;
  Instance inst;
  inst.provider_id = fmt::format("fake-i-{:06d}", n);
  inst.handle.data = Json{{"id", inst.provider_id}};
  inst.canopy_id = spec.canopy_id;
  inst.state = InstanceState::kPending;
  inst.ssh_user = DefaultSshUser(spec.image);
  inst.firewalls = spec.firewalls;
  inst.tags = spec.tags;
  inst.tags[kCanopyIdTag] = spec.canopy_id;
  inst.tags["instance-type"] = spec.instance_type;
  inst.private_address = fmt::format("10.0.{}.{}", (n / 250) % 250, n % 250 + 2);
  instances_[inst.provider_id] = inst;
  if (LoseAnswerLocked("CreateInstance")) {
    return MakeProviderError(ProviderErrorKind::kTransient,
                             "the answer of CreateInstance was lost");
  }
  return inst;
}

Result<std::vector<Instance>> FakeProvider::FindInstancesByTag(const CallContext& ctx,
                                                               const std::string& key,
                                                               const std::string& value) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("FindInstancesByTag", ctx));
  std::vector<Instance> out;
  for (const auto& [id, inst] : instances_) {
    auto t = inst.tags.find(key);
    if (inst.state != InstanceState::kTerminated && t != inst.tags.end() && t->second == value) {
      out.push_back(inst);
    }
  }
  return out;
}

Result<Instance> FakeProvider::DescribeInstance(const CallContext& ctx, const ProviderHandle& h) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("DescribeInstance", ctx));
  CANOPY_ASSIGN_OR_RETURN(Instance * inst, FindLocked(h));
  return *inst;
}

Result<Instance> FakeProvider::WaitUntilRunning(const CallContext& ctx, const ProviderHandle& h,
                                                std::chrono::seconds) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("WaitUntilRunning", ctx));
  CANOPY_ASSIGN_OR_RETURN(Instance * inst, FindLocked(h));
  if (inst->state == InstanceState::kStopped || inst->state == InstanceState::kStopping) {
    return InvalidRequest("instance is stopped");
  }
  // The fake cloud boots instantly: pending instances become running when waited for.
  inst->state = InstanceState::kRunning;
  inst->address = "203.0.113." + std::to_string(std::stoi(inst->provider_id.substr(7)) % 250 + 2);
  inst->host_key_sha256 = "SHA256:" + Sha256Hex(inst->provider_id).substr(0, 43);
  return *inst;
}

Status FakeProvider::StopInstance(const CallContext& ctx, const ProviderHandle& h) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("StopInstance", ctx));
  CANOPY_ASSIGN_OR_RETURN(Instance * inst, FindLocked(h));
  inst->state = InstanceState::kStopped;
  inst->address.clear();
  return OkStatus();
}

Status FakeProvider::StartInstance(const CallContext& ctx, const ProviderHandle& h) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("StartInstance", ctx));
  CANOPY_ASSIGN_OR_RETURN(Instance * inst, FindLocked(h));
  if (inst->state == InstanceState::kStopped || inst->state == InstanceState::kStopping) {
    inst->state = InstanceState::kPending;
  }
  return OkStatus();
}

Status FakeProvider::TerminateInstance(const CallContext& ctx, const ProviderHandle& h) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("TerminateInstance", ctx));
  auto inst = FindLocked(h);
  if (!inst) {
    return KindOf(inst.error()) == ProviderErrorKind::kNotFound ? OkStatus() : Status(inst.error());
  }
  (*inst)->state = InstanceState::kTerminated;
  (*inst)->address.clear();
  return OkStatus();
}

Result<KeyPair> FakeProvider::CreateKeyPair(const CallContext& ctx, const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("CreateKeyPair", ctx));
  if (name.empty()) {
    return InvalidRequest("key pair name is required");
  }
  auto it = key_pairs_.find(name);
  if (it != key_pairs_.end()) {
    return it->second;
  }
  CANOPY_ASSIGN_OR_RETURN(KeyPair kp, GenerateEd25519(name));
  key_pairs_[name] = kp;
  return kp;
}

Result<KeyPair> FakeProvider::GetKeyPair(const CallContext& ctx, const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("GetKeyPair", ctx));
  auto it = key_pairs_.find(name);
  if (it == key_pairs_.end()) {
    return NotFoundError(fmt::format("key pair '{}' not found", name));
  }
  return it->second;
}

std::optional<Firewall> FakeProvider::FirewallById(const std::string& id) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = firewalls_.find(id);
  if (it == firewalls_.end()) return std::nullopt;
  return it->second;
}

Result<Firewall> FakeProvider::CreateFirewall(const CallContext& ctx, const FirewallSpec& spec) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("CreateFirewall", ctx));
  if (spec.canopy_id.empty()) {
    return InvalidRequest("canopy_id is required");
  }
  for (const auto& r : spec.rules) {
    if (r.port == 0 || (r.protocol != "tcp" && r.protocol != "udp")) {
      return InvalidRequest("firewall rules need a port and protocol tcp or udp");
    }
  }
  auto scope = IdentityClusterLocked(ctx);
  std::string cluster = scope ? *scope : "";
  if (!scope) {
    auto t = spec.tags.find(kClusterTag);
    cluster = t == spec.tags.end() ? "" : t->second;
  }
  for (const auto& [id, fw] : firewalls_) {
    if (fw.canopy_id == spec.canopy_id) {
      if (scope && firewall_cluster_[id] != *scope) {
        return MakeProviderError(ProviderErrorKind::kAuth, "firewall belongs to another cluster");
      }
      return fw;
    }
  }
  Firewall fw{fmt::format("fake-fw-{:06d}", next_id_++), spec.name, spec.canopy_id, spec.rules};
  firewalls_[fw.id] = fw;
  firewall_cluster_[fw.id] = cluster;
  if (LoseAnswerLocked("CreateFirewall")) {
    return MakeProviderError(ProviderErrorKind::kTransient,
                             "the answer of CreateFirewall was lost");
  }
  return fw;
}

Result<bool> FakeProvider::FirewallExists(const CallContext& ctx, const std::string& firewall_id) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("FirewallExists", ctx));
  return firewalls_.count(firewall_id) > 0;
}

Status FakeProvider::AttachFirewall(const CallContext& ctx, const ProviderHandle& instance,
                                    const std::string& firewall_id) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("AttachFirewall", ctx));
  CANOPY_ASSIGN_OR_RETURN(Instance * inst, FindLocked(instance));
  if (!firewalls_.count(firewall_id)) {
    return NotFoundError(fmt::format("firewall '{}' not found", firewall_id));
  }
  CANOPY_TRY(CheckClusterScopeLocked(ctx, *inst, firewall_id));
  if (std::find(inst->firewalls.begin(), inst->firewalls.end(), firewall_id) ==
      inst->firewalls.end()) {
    inst->firewalls.push_back(firewall_id);
  }
  return OkStatus();
}

Status FakeProvider::CheckClusterScopeLocked(const CallContext& ctx, const Instance& inst,
                                             const std::string& firewall_id) {
  auto scope = IdentityClusterLocked(ctx);
  if (!scope) {
    return OkStatus();
  }
  auto t = inst.tags.find(kClusterTag);
  if (t == inst.tags.end() || t->second != *scope) {
    return MakeProviderError(ProviderErrorKind::kAuth, "instance belongs to another cluster");
  }
  auto f = firewall_cluster_.find(firewall_id);
  if (f != firewall_cluster_.end() && f->second != *scope) {
    return MakeProviderError(ProviderErrorKind::kAuth, "firewall belongs to another cluster");
  }
  return OkStatus();
}

Status FakeProvider::DetachFirewall(const CallContext& ctx, const ProviderHandle& instance,
                                    const std::string& firewall_id) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("DetachFirewall", ctx));
  CANOPY_ASSIGN_OR_RETURN(Instance * inst, FindLocked(instance));
  CANOPY_TRY(CheckClusterScopeLocked(ctx, *inst, firewall_id));
  std::erase(inst->firewalls, firewall_id);
  return OkStatus();
}

Status FakeProvider::DeleteFirewall(const CallContext& ctx, const std::string& firewall_id) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("DeleteFirewall", ctx));
  auto scope = IdentityClusterLocked(ctx);
  if (scope && firewalls_.count(firewall_id) && firewall_cluster_[firewall_id] != *scope) {
    return MakeProviderError(ProviderErrorKind::kAuth, "firewall belongs to another cluster");
  }
  for (const auto& [id, inst] : instances_) {
    if (inst.state != InstanceState::kTerminated &&
        std::find(inst.firewalls.begin(), inst.firewalls.end(), firewall_id) !=
            inst.firewalls.end()) {
      return InvalidRequest("firewall is attached to an instance");
    }
  }
  firewalls_.erase(firewall_id);
  firewall_cluster_.erase(firewall_id);
  return OkStatus();
}

Result<ClusterIdentity> FakeProvider::CreateClusterIdentity(const CallContext& ctx,
                                                            const std::string& cluster_id) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("CreateClusterIdentity", ctx));
  if (cluster_id.empty()) {
    return InvalidRequest("cluster id is required");
  }
  std::string id = fmt::format("fake-cid-{:06d}", next_id_++);
  identities_[id] = cluster_id;
  if (LoseAnswerLocked("CreateClusterIdentity")) {
    return MakeProviderError(ProviderErrorKind::kTransient,
                             "the answer of CreateClusterIdentity was lost");
  }
  return ClusterIdentity{
      id, CredentialSecret(Json{{"api_key", "cid-" + RandomHex(16)}, {"identity", id}})};
}

Status FakeProvider::DeleteClusterIdentity(const CallContext& ctx, const std::string& identity_id) {
  std::lock_guard<std::mutex> l(mu_);
  CANOPY_TRY(Enter("DeleteClusterIdentity", ctx));
  identities_.erase(identity_id);
  return OkStatus();
}

void FakeProvider::LoseNextAnswer(const std::string& method) {
  std::lock_guard<std::mutex> l(mu_);
  lose_answer_.insert(method);
}

bool FakeProvider::LoseAnswerLocked(const char* method) { return lose_answer_.erase(method) > 0; }

void FakeProvider::SetIdempotentCreate(bool on) {
  std::lock_guard<std::mutex> l(mu_);
  idempotent_create_ = on;
}

}  // namespace canopy::providers::fake
