#include "providers/local/local_provider.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "common/files.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/shell.h"
#include "providers/local/address_registry.h"
#include "providers/local/local_exec.h"

namespace canopy::providers::local {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

namespace {

constexpr const char* kRegion = "local";
constexpr const char* kSftpServer = "/usr/lib/openssh/sftp-server";

struct TypeInfo {
  const char* name;
  int vcpus;
  int64_t memory_mib;
  double price;
};
constexpr TypeInfo kTypes[] = {
    {"local.small", 1, 512, 0.01},
    {"local.medium", 2, 2048, 0.04},
    {"local.large", 4, 4096, 0.08},
};
const TypeInfo* FindType(const std::string& name) {
  for (const auto& t : kTypes) {
    if (name == t.name) {
      return &t;
    }
  }
  return nullptr;
}
// Images that run on this host's own filesystem (fast; for tests that need no blank machine).
bool HostImage(const std::string& image) { return image == "debian-12" || image == "ubuntu-22.04"; }

// Blank images, built by scripts/local-images.sh under LocalOptions::images_dir, newest first:
// offers list them in this order, ahead of the host images, so the first offered image (what
// `canopy cluster create` takes without --image) is the newest built blank image.
struct BlankImage {
  const char* name;
  const char* description;
};
constexpr BlankImage kBlankImages[] = {
    {"debian-12-minbase", "Debian 12 (bookworm), blank minbase image"},
    {"debian-11-minbase", "Debian 11 (bullseye), blank minbase image"},
};
bool BlankImageName(const std::string& image) {
  return std::any_of(std::begin(kBlankImages), std::end(kBlankImages),
                     [&](const BlankImage& b) { return image == b.name; });
}
bool KnownImage(const std::string& image) { return HostImage(image) || BlankImageName(image); }
// Who logs in to a blank image, as on a cloud's stock image: a user with passwordless sudo, not
// root (scripts/local-images.sh makes it).
constexpr const char* kBlankImageUser = "admin";

int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Error Invalid(std::string m) {
  return MakeProviderError(ProviderErrorKind::kInvalidRequest, std::move(m));
}
Error NotFoundErr(std::string m) {
  return MakeProviderError(ProviderErrorKind::kNotFound, std::move(m));
}

// Names used in paths: letters, digits, '.', '_', '-', not starting with '.'.
bool SafeName(const std::string& s, size_t max_len = 64) {
  if (s.empty() || s.size() > max_len || s[0] == '.') {
    return false;
  }
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

Result<std::string> ReadText(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    return Error::NotFound("missing " + p.filename().string());
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// An exclusive flock on a file, held for the object's lifetime. Each acquisition opens its own
// descriptor, so it also excludes other threads of this process.
class FileLock {
 public:
  static Result<FileLock> Acquire(const fs::path& p) {
    int fd = open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      if (errno == ENOENT) {
        return Error::NotFound("gone");
      }
      return Error::Internal("cannot open lock " + p.string());
    }
    while (flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) {
        close(fd);
        return Error::Internal("cannot lock " + p.string());
      }
    }
    return FileLock(fd);
  }
  FileLock(FileLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  FileLock(const FileLock&) = delete;
  ~FileLock() {
    if (fd_ >= 0) {
      close(fd_);
    }
  }

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_;
};

// "SHA256:<base64 without padding>" of an OpenSSH public key line, as ssh-keygen -lf prints.
Result<std::string> Fingerprint(const std::string& pub_line) {
  std::istringstream in(pub_line);
  std::string type, b64;
  in >> type >> b64;
  std::string blob;
  if (b64.empty() || !Base64Decode(b64, &blob)) {
    return Error::Internal("malformed public key");
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(blob.data(), blob.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    return Error::Internal("sha256 failed");
  }
  std::string enc = Base64Encode(std::string_view(reinterpret_cast<char*>(md), len));
  while (!enc.empty() && enc.back() == '=') {
    enc.pop_back();
  }
  return "SHA256:" + enc;
}

bool ValidCidr(const std::string& c) {
  auto slash = c.find('/');
  std::string addr = c.substr(0, slash);
  int max_prefix = addr.find(':') != std::string::npos ? 128 : 32;
  unsigned char buf[16];
  if (inet_pton(max_prefix == 128 ? AF_INET6 : AF_INET, addr.c_str(), buf) != 1) {
    return false;
  }
  if (slash == std::string::npos) {
    return true;
  }
  std::string p = c.substr(slash + 1);
  if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  return std::stoi(p) <= max_prefix;
}

std::string Ip4(uint32_t host_order) {
  in_addr a{htonl(host_order)};
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof(buf));
  return buf;
}

Json RulesToJson(const std::vector<FirewallRule>& rules) {
  Json arr = Json::array();
  for (const auto& r : rules) {
    arr.push_back({{"port", r.port}, {"protocol", r.protocol}, {"source_cidrs", r.source_cidrs}});
  }
  return arr;
}

Firewall FirewallFromJson(const Json& j) {
  Firewall f;
  f.id = j.value("id", "");
  f.name = j.value("name", "");
  f.canopy_id = j.value("canopy_id", "");
  for (const auto& r : j.value("rules", Json::array())) {
    FirewallRule rule;
    rule.port = r.value("port", uint16_t{0});
    rule.protocol = r.value("protocol", "tcp");
    rule.source_cidrs = r.value("source_cidrs", std::vector<std::string>{});
    f.rules.push_back(std::move(rule));
  }
  return f;
}

enum class Scope { kFull, kFirewalls };

}  // namespace

Status CheckRunningAsRoot(unsigned euid) {
  if (euid != 0) {
    return Error::FailedPrecondition(
        "the local provider must run as root (it creates network namespaces, veth pairs, a bridge "
        "and nftables rules, and starts sshd); effective uid is " +
        std::to_string(euid));
  }
  return OkStatus();
}

struct LocalProvider::Impl {
  LocalOptions opts;
  fs::path root, instances_dir, firewalls_dir, keys_dir, identities_dir;
  std::string owner_dir;  // root as the address registry names it (AddressRegistry::NormalStateDir)
  std::optional<AddressRegistry> registry;  // host-wide addresses on opts.bridge
  std::string ip, nft, sshd, ssh_keygen, unshare;
  uint32_t net = 0, gateway = 0, broadcast = 0;
  int prefix = 0;
  std::mutex global_mu;  // with the flock on root/lock: creation, allocation, capacity
  std::mutex rng_mu;
  std::mt19937_64 rng{std::random_device{}()};

  fs::path InstanceDir(const std::string& id) const { return instances_dir / id; }
  fs::path RecordPath(const std::string& id) const { return InstanceDir(id) / "instance.json"; }

  Result<Json> LoadRecord(const std::string& id) const {
    if (!SafeName(id)) {
      return NotFoundErr("instance not found");
    }
    auto text = ReadText(RecordPath(id));
    if (!text) {
      return NotFoundErr("instance " + id + " not found");
    }
    return ParseJsonObject(*text);
  }
  Status SaveRecord(const Json& rec) const {
    return WriteFileAtomic(RecordPath(rec["id"].get<std::string>()), DumpJson(rec, 2));
  }
  std::vector<Json> AllRecords() const {
    std::vector<Json> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(instances_dir, ec)) {
      auto r = LoadRecord(e.path().filename().string());
      if (r) {
        out.push_back(std::move(*r));
      }
    }
    return out;
  }

  // Global lock: process mutex + flock on state_dir/lock.
  struct Global {
    std::unique_lock<std::mutex> l;
    FileLock f;
  };
  Result<Global> LockGlobal() {
    std::unique_lock<std::mutex> l(global_mu);
    CANOPY_ASSIGN_OR_RETURN(FileLock f, FileLock::Acquire(root / "lock"));
    return Global{std::move(l), std::move(f)};
  }
  Result<FileLock> LockInstance(const std::string& id) {
    if (!SafeName(id)) {
      return NotFoundErr("instance not found");
    }
    auto l = FileLock::Acquire(InstanceDir(id) / "lock");
    if (!l) {
      return NotFoundErr("instance " + id + " not found");
    }
    return l;
  }

  Result<Scope> CheckCredential(const CallContext& ctx) {
    const Json& s = ctx.credential.Reveal();
    if (s.is_null() || (s.is_object() && s.empty())) {
      return Scope::kFull;
    }
    if (!s.is_object() || !s.contains("type") || !s["type"].is_string()) {
      return Invalid("local credential must be {} or {\"type\":\"local\"}");
    }
    const std::string type = s["type"].get<std::string>();
    if (type == "local" && s.size() == 1) {
      return Scope::kFull;
    }
    if (type == "local-cluster") {
      std::string id = s.value("identity_id", "");
      if (!SafeName(id) || !fs::exists(identities_dir / (id + ".json"))) {
        return MakeProviderError(ProviderErrorKind::kAuth,
                                 "cluster identity is unknown or deleted");
      }
      return Scope::kFirewalls;
    }
    return Invalid("local credential must be {} or {\"type\":\"local\"}");
  }
  Status RequireFull(const CallContext& ctx) {
    CANOPY_ASSIGN_OR_RETURN(Scope s, CheckCredential(ctx));
    if (s != Scope::kFull) {
      return MakeProviderError(ProviderErrorKind::kAuth,
                               "a cluster identity may only manage firewalls");
    }
    return OkStatus();
  }
  // nullopt for a full credential; the cluster id of a cluster identity otherwise (read from the
  // identity's own file, never from the credential the caller sent).
  Result<std::optional<std::string>> ClusterScope(const CallContext& ctx) {
    CANOPY_ASSIGN_OR_RETURN(Scope sc, CheckCredential(ctx));
    if (sc == Scope::kFull) {
      return std::optional<std::string>();
    }
    std::string id = ctx.credential.Reveal().value("identity_id", "");
    auto text = ReadText(identities_dir / (id + ".json"));
    if (!text) {
      return MakeProviderError(ProviderErrorKind::kAuth, "cluster identity is unknown or deleted");
    }
    CANOPY_ASSIGN_OR_RETURN(Json j, ParseJsonObject(*text));
    return std::optional<std::string>(j.value("cluster_id", ""));
  }
  // The kClusterTag of a stored firewall ("" when none or unknown).
  std::string FirewallCluster(const std::string& id) const {
    if (!SafeName(id)) {
      return "";
    }
    auto text = ReadText(firewalls_dir / (id + ".json"));
    if (!text) {
      return "";
    }
    auto j = ParseJsonObject(*text);
    if (!j || !(*j)["tags"].is_object()) {
      return "";
    }
    return (*j)["tags"].value(kClusterTag, "");
  }
  // With a cluster identity, both the instance record and the firewall must be its cluster's.
  Status CheckClusterScope(const std::optional<std::string>& scope, const Json& rec,
                           const std::string& firewall_id) const {
    if (!scope) {
      return OkStatus();
    }
    std::string inst_cluster;
    if (rec.contains("tags") && rec["tags"].is_object()) {
      inst_cluster = rec["tags"].value(kClusterTag, "");
    }
    if (inst_cluster != *scope) {
      return MakeProviderError(ProviderErrorKind::kAuth, "instance belongs to another cluster");
    }
    if (FirewallCluster(firewall_id) != *scope) {
      return MakeProviderError(ProviderErrorKind::kAuth, "firewall belongs to another cluster");
    }
    return OkStatus();
  }

  Status CheckRegion(const CallContext& ctx) {
    if (!ctx.region.empty() && ctx.region != kRegion) {
      return Invalid("unknown region '" + ctx.region + "' (the local provider has region 'local')");
    }
    return OkStatus();
  }

  Result<Firewall> LoadFirewall(const std::string& id) const {
    if (!SafeName(id)) {
      return NotFoundErr("firewall not found");
    }
    auto text = ReadText(firewalls_dir / (id + ".json"));
    if (!text) {
      return NotFoundErr("firewall " + id + " not found");
    }
    CANOPY_ASSIGN_OR_RETURN(Json j, ParseJsonObject(*text));
    return FirewallFromJson(j);
  }

  std::string RenderNft(const Json& rec) const {
    std::string s =
        "table inet canopy\n"
        "delete table inet canopy\n"
        "table inet canopy {\n"
        "  chain input {\n"
        "    type filter hook input priority filter; policy drop;\n"
        "    ct state established,related accept\n"
        "    iif \"lo\" accept\n";
    for (const auto& fid : rec.value("firewalls", std::vector<std::string>{})) {
      auto fw = LoadFirewall(fid);
      if (!fw) {
        continue;  // deleted meanwhile: opens nothing
      }
      s += "    # firewall " + fid + "\n";
      for (const auto& r : fw->rules) {
        std::string match = r.protocol + " dport " + std::to_string(r.port) + " accept\n";
        if (r.source_cidrs.empty()) {
          s += "    " + match;
          continue;
        }
        std::vector<std::string> v4, v6;
        for (const auto& c : r.source_cidrs) {
          (c.find(':') != std::string::npos ? v6 : v4).push_back(c);
        }
        auto join = [](const std::vector<std::string>& v) {
          std::string o;
          for (const auto& x : v) {
            o += (o.empty() ? "" : ", ") + x;
          }
          return o;
        };
        if (!v4.empty()) {
          s += "    ip saddr { " + join(v4) + " } " + match;
        }
        if (!v6.empty()) {
          s += "    ip6 saddr { " + join(v6) + " } " + match;
        }
      }
    }
    s += "  }\n}\n";
    return s;
  }

  Status ApplyFirewall(const Json& rec) {
    const std::string ns = NetnsName(rec["id"]);
    return RunChecked({ip, "netns", "exec", ns, nft, "-f", "-"}, "nftables update", RenderNft(rec));
  }

  Status EnsureBridge() {
    const std::string& b = opts.bridge;
    if (!fs::exists("/sys/class/net/" + b)) {
      auto r = RunCommand({ip, "link", "add", "name", b, "type", "bridge"});
      if (!r) {
        return r.error();
      }
      if (r->exit_code != 0 && !fs::exists("/sys/class/net/" + b)) {
        return Error::Internal("cannot create bridge " + b + ": " + r->err);
      }
    }
    // A bridge without an explicit MAC takes the lowest MAC of its ports, so it changes as
    // veths join; instances that cached the gateway's old MAC then lose replies for seconds
    // (measured: 10 s SSH connect stalls with 30 parallel creates). A fixed, locally
    // administered MAC derived from the bridge name keeps it stable.
    uint32_t h = 2166136261u;
    for (unsigned char c : b) {
      h = (h ^ c) * 16777619u;
    }
    char mac[18];
    std::snprintf(mac, sizeof mac, "02:ca:%02x:%02x:%02x:%02x", (h >> 24) & 0xff, (h >> 16) & 0xff,
                  (h >> 8) & 0xff, h & 0xff);
    CANOPY_TRY(RunChecked({ip, "link", "set", "dev", b, "address", mac}, "bridge mac"));
    CANOPY_TRY(
        RunChecked({ip, "addr", "replace", Ip4(gateway) + "/" + std::to_string(prefix), "dev", b},
                   "bridge address"));
    return RunChecked({ip, "link", "set", b, "up"}, "bridge up");
  }

  // Kills every process of the namespace, deletes it and the host veth. Idempotent.
  // Ends every process of the instance (TERM, then KILL); the namespace stays.
  void KillAll(const std::string& id) {
    const std::string ns = NetnsName(id);
    for (int sig : {SIGTERM, SIGKILL}) {
      auto pids = NetnsPids(ns);
      if (pids.empty()) {
        break;
      }
      for (int p : pids) {
        kill(p, sig);
      }
      auto until = std::chrono::steady_clock::now() +
                   (sig == SIGTERM ? milliseconds(2000) : milliseconds(3000));
      while (!NetnsPids(ns).empty() && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(milliseconds(20));
      }
    }
  }

  void TearDownNet(const std::string& id) {
    const std::string ns = NetnsName(id);
    KillAll(id);
    if (fs::exists("/run/netns/" + ns)) {
      (void)RunCommand({ip, "netns", "del", ns});
    }
    const std::string veth = VethName(id);
    if (fs::exists("/sys/class/net/" + veth)) {
      (void)RunCommand({ip, "link", "del", veth});
    }
  }

  Status WriteInstanceFiles(const Json& rec) {
    const std::string id = rec["id"];
    fs::path dir = InstanceDir(id);
    fs::path disk = dir / "disk";
    std::error_code ec;
    fs::create_directories(disk, ec);
    fs::path host_key = dir / "ssh_host_ed25519_key";
    if (!fs::exists(host_key)) {
      CANOPY_TRY(RunChecked({ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", "canopy-" + id,
                             "-f", host_key.string()},
                            "host key generation"));
    }
    CANOPY_ASSIGN_OR_RETURN(
        std::string pub,
        ReadText(fs::path(keys_dir) / (rec["key_pair"].get<std::string>() + ".pub")));
    CANOPY_TRY(WriteFileAtomic(dir / "authorized_keys", pub, 0600));
    if (BlankImageName(rec.value("image", ""))) return WriteBlankInstanceFiles(rec, pub);
    // Exec sessions start in the disk folder with HOME set to it. Subsystems arrive here too
    // (ForceCommand applies to them), so sftp is the external sftp-server run by this wrapper.
    std::string wrapper =
        "#!/bin/sh\n"
        "# Canopy local instance session: start in the disk folder with HOME set to it.\n"
        "HOME='" +
        disk.string() +
        "'\n"
        "export HOME\n"
        "cd \"$HOME\" || exit 1\n"
        "if [ -z \"$SSH_ORIGINAL_COMMAND\" ]; then exec /bin/sh -i; fi\n"
        "exec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n";
    CANOPY_TRY(WriteFileAtomic(dir / "session.sh", wrapper, 0755));
    std::string cfg = "# Generated by the Canopy local provider for instance " + id +
                      "\n"
                      "ListenAddress " +
                      rec["address"].get<std::string>() +
                      "\n"
                      "Port 22\n"
                      "PidFile " +
                      (dir / "sshd.pid").string() +
                      "\n"
                      "HostKey " +
                      host_key.string() +
                      "\n"
                      "AuthorizedKeysFile " +
                      (dir / "authorized_keys").string() +
                      "\n"
                      "PasswordAuthentication no\n"
                      "KbdInteractiveAuthentication no\n"
                      "PermitRootLogin prohibit-password\n"
                      "StrictModes no\n"
                      "UsePAM no\n"
                      "PrintMotd no\n"
                      "SetEnv HOME=" +
                      disk.string() +
                      "\n"
                      "Subsystem sftp " +
                      std::string(kSftpServer) + " -d " + disk.string() +
                      "\n"
                      "ForceCommand " +
                      (dir / "session.sh").string() + "\n";
    return WriteFileAtomic(dir / "sshd_config", cfg, 0600);
  }

  fs::path ImageRoot(const std::string& image) const {
    return fs::path(opts.images_dir) / image / "rootfs";
  }
  bool ImageBuilt(const std::string& image) const {
    std::error_code ec;
    return fs::exists(ImageRoot(image) / "etc" / "canopy-image", ec);
  }

  // An instance of a blank image: its disk is the upper layer of an overlay on the image
  // (disk/upper, with disk/work), mounted at root/ in a mount namespace of its own that boot.sh
  // makes and that lives as long as the instance's processes (stop ends them: nothing stays
  // mounted on the host; the disk stays). sshd runs chrooted there with the instance's host key
  // and the key pair's public key for root, from files written into the upper layer; its pid
  // file and log go to run/, bind-mounted at /run/canopy.
  Status WriteBlankInstanceFiles(const Json& rec, const std::string& authorized_key) {
    const std::string id = rec["id"];
    const std::string image = rec["image"];
    fs::path dir = InstanceDir(id);
    fs::path upper = dir / "disk" / "upper";
    std::error_code ec;
    // The login user's home in the upper layer must keep the image's owner and mode (an upper
    // directory hides the lower one's): copy them, and give the user its .ssh.
    const fs::path home = fs::path("home") / kBlankImageUser;
    struct stat home_st {};
    if (::stat((ImageRoot(image) / home).c_str(), &home_st) != 0) {
      return Error::Internal("image " + image + " has no /" + home.string() +
                             " (rebuild it: scripts/local-images.sh)");
    }
    for (const fs::path& d : {upper / "etc" / "ssh", upper / home / ".ssh", dir / "disk" / "work",
                              dir / "run", dir / "root"}) {
      fs::create_directories(d, ec);
      if (ec) return Error::Internal("cannot create " + d.string() + ": " + ec.message());
    }
    ::chmod((upper / "home").c_str(), 0755);
    ::chmod((upper / home).c_str(), home_st.st_mode & 07777);
    ::chmod((upper / home / ".ssh").c_str(), 0700);
    CANOPY_ASSIGN_OR_RETURN(std::string key, ReadText(dir / "ssh_host_ed25519_key"));
    CANOPY_ASSIGN_OR_RETURN(std::string key_pub, ReadText(dir / "ssh_host_ed25519_key.pub"));
    CANOPY_TRY(WriteFileAtomic(upper / "etc" / "ssh" / "ssh_host_ed25519_key", key, 0600));
    CANOPY_TRY(WriteFileAtomic(upper / "etc" / "ssh" / "ssh_host_ed25519_key.pub", key_pub, 0644));
    CANOPY_TRY(WriteFileAtomic(upper / home / ".ssh" / "authorized_keys", authorized_key, 0600));
    // Its own host name (boot.sh sets it in the instance's UTS namespace), resolvable as a cloud
    // image's /etc/hosts makes it: sudo looks it up, and waits for DNS when it cannot.
    auto hosts = ReadText(ImageRoot(image) / "etc" / "hosts");
    CANOPY_TRY(WriteFileAtomic(upper / "etc" / "hostname", id + "\n", 0644));
    CANOPY_TRY(WriteFileAtomic(
        upper / "etc" / "hosts",
        (hosts ? *hosts : std::string("127.0.0.1\tlocalhost\n")) + "127.0.1.1\t" + id + "\n",
        0644));
    for (const fs::path& p :
         {upper / home, upper / home / ".ssh", upper / home / ".ssh" / "authorized_keys"}) {
      if (::chown(p.c_str(), home_st.st_uid, home_st.st_gid) != 0) {
        return Error::Internal("cannot chown " + p.string());
      }
    }
    std::string cfg = "# Generated by the Canopy local provider for instance " + id +
                      "\nListenAddress " + rec["address"].get<std::string>() +
                      "\nPort 22\n"
                      "PidFile /run/canopy/sshd.pid\n"
                      "HostKey /etc/ssh/ssh_host_ed25519_key\n"
                      "PasswordAuthentication no\n"
                      "ChallengeResponseAuthentication no\n"
                      "PermitRootLogin no\n"
                      "UsePAM no\n"
                      "PrintMotd no\n"
                      "Subsystem sftp /usr/lib/openssh/sftp-server\n";
    CANOPY_TRY(WriteFileAtomic(upper / "etc" / "ssh" / "canopy_sshd_config", cfg, 0600));
    std::string m = (dir / "root").string();
    std::string boot =
        "#!/bin/sh\n"
        "# Canopy local instance " +
        id + ": its own root filesystem (an overlay on image " + image +
        ") in this mount namespace, then sshd chrooted into it.\n"
        "set -e\n"
        "m=" +
        ShellQuote(m) +
        "\n"
        "mount -t overlay overlay -o " +
        ShellQuote("lowerdir=" + ImageRoot(image).string() + ",upperdir=" + upper.string() +
                   ",workdir=" + (dir / "disk" / "work").string()) +
        " \"$m\"\n"
        "mount -t proc proc \"$m/proc\"\n"
        "mount -t sysfs sysfs \"$m/sys\"\n"
        "mount --rbind /dev \"$m/dev\"\n"
        "mkdir -p \"$m/run/canopy\" \"$m/run/sshd\"\n"
        "hostname " +
        ShellQuote(id) +
        "\n"
        "mount --bind " +
        ShellQuote((dir / "run").string()) +
        " \"$m/run/canopy\"\n"
        "exec chroot \"$m\" /usr/sbin/sshd -f /etc/ssh/canopy_sshd_config -E "
        "/run/canopy/sshd.log\n";
    return WriteFileAtomic(dir / "boot.sh", boot, 0700);
  }

  // Where the instance's sshd writes its pid: run/ for blank images, the instance dir otherwise.
  fs::path SshdPidFile(const std::string& id) {
    fs::path dir = InstanceDir(id);
    std::error_code ec;
    if (fs::exists(dir / "boot.sh", ec)) return dir / "run" / "sshd.pid";
    return dir / "sshd.pid";
  }

  // Boots the instance: namespace, veth on the bridge, address, firewall, sshd. Caller holds
  // the instance lock. On failure everything made here is removed.
  Status Boot(const Json& rec) {
    Status s = BootInner(rec);
    if (!s) {
      TearDownNet(rec["id"]);
    }
    return s;
  }
  Status BootInner(const Json& rec) {
    const std::string id = rec["id"];
    const std::string ns = NetnsName(id);
    const std::string veth = VethName(id);
    const std::string addr = rec["address"];
    CANOPY_TRY(WriteInstanceFiles(rec));
    CANOPY_TRY(EnsureBridge());
    TearDownNet(id);  // leftovers of an earlier boot
    CANOPY_TRY(RunChecked({ip, "netns", "add", ns}, "netns add"));
    CANOPY_TRY(
        RunChecked({ip, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
                   "veth add"));
    CANOPY_TRY(RunChecked({ip, "link", "set", veth, "master", opts.bridge, "up"}, "veth attach"));
    std::string batch =
        "link set lo up\n"
        "addr add " +
        addr + "/" + std::to_string(prefix) +
        " dev eth0\n"
        "link set eth0 up\n"
        "route add default via " +
        Ip4(gateway) + "\n";
    CANOPY_TRY(RunChecked({ip, "-n", ns, "-batch", "-"}, "namespace network setup", batch));
    CANOPY_TRY(ApplyFirewall(rec));
    std::error_code ec;
    fs::path dir = InstanceDir(id);
    fs::path pid_file = SshdPidFile(id);
    fs::remove(pid_file, ec);
    if (BlankImageName(rec.value("image", ""))) {
      CANOPY_TRY(RunChecked({ip, "netns", "exec", ns, unshare, "--mount", "--uts", "--propagation",
                             "private", "/bin/sh", (dir / "boot.sh").string()},
                            "instance root filesystem and sshd start"));
    } else {
      fs::create_directories("/run/sshd", ec);  // sshd's privilege separation directory
      CANOPY_TRY(RunChecked({ip, "netns", "exec", ns, sshd, "-f", (dir / "sshd_config").string(),
                             "-E", (dir / "sshd.log").string()},
                            "sshd start"));
    }
    // sshd daemonizes before it listens; it writes the pid file once listening.
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!fs::exists(pid_file)) {
      if (std::chrono::steady_clock::now() > until || NetnsPids(ns).empty()) {
        return Error::Internal("sshd did not start for instance " + id + " (see sshd.log)");
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
    return OkStatus();
  }

  bool SshdAlive(const std::string& id) {
    auto pid_text = ReadText(SshdPidFile(id));
    if (!pid_text) {
      return false;
    }
    int pid = std::atoi(pid_text->c_str());
    auto pids = NetnsPids(NetnsName(id));
    return pid > 0 && std::find(pids.begin(), pids.end(), pid) != pids.end();
  }

  Instance ToInstance(const Json& rec) const {
    Instance in;
    in.handle.version = 1;
    in.handle.data = Json{{"instance_id", rec["id"]}};
    in.provider_id = rec["id"];
    in.canopy_id = rec.value("canopy_id", "");
    std::string st = rec.value("state", "pending");
    if (st == "running") {
      in.state = NowMs() >= rec.value("ready_at_ms", int64_t{0}) ? InstanceState::kRunning
                                                                 : InstanceState::kPending;
    } else if (st == "stopped") {
      in.state = InstanceState::kStopped;
    } else if (st == "stopping") {
      in.state = InstanceState::kStopping;
    } else {
      in.state = InstanceState::kPending;
    }
    if (in.state == InstanceState::kRunning) {
      in.address = rec.value("address", "");
      in.private_address = in.address;
    }
    in.ssh_user = BlankImageName(rec.value("image", "")) ? kBlankImageUser : "root";
    in.ssh_port = 22;
    in.host_key_sha256 = rec.value("host_key_sha256", "");
    in.firewalls = rec.value("firewalls", std::vector<std::string>{});
    in.tags = rec.value("tags", std::map<std::string, std::string>{});
    return in;
  }

  Result<std::string> IdOf(const ProviderHandle& h) const {
    if (!h.data.is_object() || !h.data.contains("instance_id") ||
        !h.data["instance_id"].is_string()) {
      return Invalid("malformed local instance handle");
    }
    return h.data["instance_id"].get<std::string>();
  }

  int CountActive(const std::string& type) const {
    int n = 0;
    for (const auto& r : AllRecords()) {
      std::string st = r.value("state", "");
      if (r.value("instance_type", "") == type && (st == "running" || st == "pending")) {
        ++n;
      }
    }
    return n;
  }
  Status CheckCapacity(const std::string& type) const {
    auto it = opts.capacity.find(type);
    if (it != opts.capacity.end() && CountActive(type) >= it->second) {
      return MakeProviderError(
          ProviderErrorKind::kCapacity,
          "no capacity left for " + type + " (limit " + std::to_string(it->second) + ")");
    }
    return OkStatus();
  }

  AddressOwner OwnerOf(const std::string& id) const { return {owner_dir, id, NetnsName(id)}; }

  // The addresses this state dir's records hold. They count even where the registry lost them
  // (it lives in /run, so a reboot empties it) until Adopt claims them again.
  std::set<uint32_t> OwnAddresses() const {
    std::set<uint32_t> out;
    for (const auto& r : AllRecords()) {
      in_addr a{};
      if (inet_pton(AF_INET, r.value("address", "").c_str(), &a) == 1) {
        out.insert(ntohl(a.s_addr));
      }
    }
    return out;
  }

  // Gives `rec` an address no instance on the bridge holds, whichever state dir it belongs to,
  // and saves it; both happen under the registry's lock, so no other provider can take the
  // address before the record shows it is ours. Caller holds the global lock.
  // `fixed` (host byte order, 0 = any): exactly that address, as a cloud's chosen private IP.
  Status AllocateAddress(Json& rec, uint32_t fixed = 0) {
    const std::string id = rec["id"];
    uint32_t first = fixed != 0 ? fixed : gateway + 1;
    uint32_t last = fixed != 0 ? fixed : broadcast - 1;
    auto addr =
        registry->Allocate(first, last, OwnerOf(id), OwnAddresses(), [&](const std::string& a) {
          rec["address"] = a;
          return SaveRecord(rec);
        });
    if (!addr) {
      if (fixed != 0 && addr.error().code == ErrorCode::kResourceExhausted) {
        return MakeProviderError(ProviderErrorKind::kCapacity,
                                 "address " + Ip4(fixed) + " is taken by another instance");
      }
      return std::move(addr).error();
    }
    return OkStatus();
  }

  // Claims the address of `rec` on the bridge. When another live instance holds it (the registry
  // was emptied by a reboot and another provider came first, or state dirs from before the
  // registry shared a subnet), the instance moves to a free address, as a cloud VM may get a new
  // one. Returns whether the address changed. Caller holds the instance lock, not the global one.
  bool ClaimAddress(Json& rec) {
    const std::string id = rec["id"];
    const std::string old_addr = rec.value("address", "");
    if (!old_addr.empty()) {
      auto claimed = registry->Claim(old_addr, OwnerOf(id));
      if (!claimed) {
        SPDLOG_WARN("Cannot claim local instance address id={} address={} error={}", id, old_addr,
                    claimed.error().message);
        return false;
      }
      if (*claimed) {
        return false;
      }
    }
    auto g = LockGlobal();
    Status moved = g ? AllocateAddress(rec) : Status(g.error());
    if (!moved) {
      SPDLOG_ERROR(
          "Local instance address is held by another instance, none free to move to "
          "id={} address={} error={}",
          id, old_addr, moved.error().message);
      return false;
    }
    SPDLOG_WARN("Local instance address was held by another instance, moved id={} from={} to={}",
                id, old_addr, rec.value("address", ""));
    return true;
  }

  // Frees the addresses instance `id` holds; an entry left behind is reclaimed later anyway.
  void ReleaseAddress(const std::string& id) {
    Status s = registry->Release(OwnerOf(id));
    if (!s) {
      SPDLOG_WARN("Cannot release local instance address id={} error={}", id, s.error().message);
    }
  }

  // Re-adoption after an adapter restart (see the header).
  void Adopt() {
    for (const auto& listed : AllRecords()) {
      const std::string id = listed["id"];
      auto lock = LockInstance(id);
      if (!lock) {
        continue;
      }
      auto loaded = LoadRecord(id);  // again, now that nobody else changes it
      if (!loaded) {
        continue;
      }
      Json rec = std::move(*loaded);
      // Every instance holds its address on the bridge, a stopped one too (start reuses it).
      const bool readdressed = ClaimAddress(rec);
      std::string st = rec.value("state", "");
      if (st == "stopping") {
        TearDownNet(id);
        rec["state"] = "stopped";
        (void)SaveRecord(rec);
        continue;
      }
      if (st != "running" && st != "pending") {
        continue;
      }
      if (!readdressed && SshdAlive(id)) {
        continue;
      }
      SPDLOG_WARN("Local instance lost its sshd or address, booting it again id={}", id);
      if (Boot(rec)) {
        rec["state"] = "running";
      } else {
        rec["state"] = "stopped";
      }
      (void)SaveRecord(rec);
    }
  }
};

std::string LocalProvider::NetnsName(const std::string& instance_id) {
  return "canopy-" + instance_id;
}

std::string LocalProvider::VethName(const std::string& instance_id) {
  std::string alnum;
  for (char c : instance_id) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      alnum += c;
    }
  }
  if (alnum.size() > 12) {
    alnum = alnum.substr(alnum.size() - 12);
  }
  return "cv" + alnum;
}

LocalProvider::LocalProvider(LocalOptions options)
    : opts_(std::move(options)), impl_(std::make_shared<Impl>()) {}

Result<std::unique_ptr<LocalProvider>> LocalProvider::Create(LocalOptions o) {
  CANOPY_TRY(CheckRunningAsRoot(geteuid()));
  if (o.state_dir.empty() || o.state_dir[0] != '/' ||
      o.state_dir.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                    "0123456789/._-") != std::string::npos) {
    return Error::InvalidArgument(
        "state_dir must be an absolute path of letters, digits and / . _ -");
  }
  if (!SafeName(o.bridge, 15)) {
    return Error::InvalidArgument("bridge must be a valid interface name of at most 15 characters");
  }
  if (o.fail_rate < 0 || o.fail_rate > 1) {
    return Error::InvalidArgument("fail_rate must be between 0 and 1");
  }
  for (const auto& [type, n] : o.capacity) {
    if (!FindType(type) || n < 0) {
      return Error::InvalidArgument("capacity: unknown instance type or negative count: " + type);
    }
  }
  auto slash = o.subnet.find('/');
  in_addr a{};
  if (slash == std::string::npos ||
      inet_pton(AF_INET, o.subnet.substr(0, slash).c_str(), &a) != 1 || !ValidCidr(o.subnet)) {
    return Error::InvalidArgument("subnet must be an IPv4 CIDR such as 198.18.0.0/15");
  }
  int prefix = std::stoi(o.subnet.substr(slash + 1));
  if (prefix < 8 || prefix > 29) {
    return Error::InvalidArgument("subnet prefix must be between /8 and /29");
  }
  std::unique_ptr<LocalProvider> p(new LocalProvider(o));
  Impl& im = *p->impl_;
  im.opts = o;
  im.prefix = prefix;
  uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  im.net = ntohl(a.s_addr) & mask;
  im.gateway = im.net + 1;
  im.broadcast = im.net | ~mask;
  im.ip = FindTool("ip");
  im.nft = FindTool("nft");
  im.sshd = FindTool("sshd");
  im.ssh_keygen = FindTool("ssh-keygen");
  im.unshare = FindTool("unshare");
  for (const auto& [name, path] : {std::pair<const char*, std::string>{"ip (iproute2)", im.ip},
                                   {"nft (nftables)", im.nft},
                                   {"sshd (openssh-server)", im.sshd},
                                   {"ssh-keygen", im.ssh_keygen},
                                   {"unshare (util-linux)", im.unshare}}) {
    if (path.empty()) {
      return Error::FailedPrecondition(std::string("the local provider needs ") + name);
    }
  }
  if (access(kSftpServer, X_OK) != 0) {
    return Error::FailedPrecondition("the local provider needs " + std::string(kSftpServer));
  }
  im.root = o.state_dir;
  im.registry.emplace(AddressRegistry::kDefaultRoot, o.bridge);
  im.instances_dir = im.root / "instances";
  im.firewalls_dir = im.root / "firewalls";
  im.keys_dir = im.root / "keys";
  im.identities_dir = im.root / "identities";
  std::error_code ec;
  for (const auto& d : {im.instances_dir, im.firewalls_dir, im.keys_dir, im.identities_dir}) {
    fs::create_directories(d, ec);
    if (ec) {
      return Error::FailedPrecondition("cannot create " + d.string() + ": " + ec.message());
    }
  }
  chmod(im.keys_dir.c_str(), 0700);
  im.owner_dir = AddressRegistry::NormalStateDir(im.root.string());
  im.Adopt();
  return p;
}

ProviderInfo LocalProvider::Info() const {
  return ProviderInfo{"local", "0.1.0", {kContractVersion}, {"cluster_identity"}};
}

Status LocalProvider::ValidateCredential(const CallContext& ctx) {
  CANOPY_TRY(impl_->CheckCredential(ctx));
  return impl_->CheckRegion(ctx);
}

Result<Offers> LocalProvider::ListOffers(const CallContext& ctx) {
  CANOPY_TRY(impl_->RequireFull(ctx));
  Offers o;
  o.regions = {kRegion};
  for (const auto& t : kTypes) {
    o.instance_types.push_back(
        InstanceType{t.name, t.vcpus, t.memory_mib, 0, t.price, "notional price (local host)"});
  }
  // Blank images first (the default of new clusters), then this host's filesystem.
  for (const auto& b : kBlankImages) {
    if (impl_->ImageBuilt(b.name)) o.images.push_back({b.name, b.description});
  }
  o.images.push_back({"debian-12", "Debian 12 (this host's filesystem; fast, for tests)"});
  o.images.push_back(
      {"ubuntu-22.04", "Ubuntu 22.04 (alias of this host's filesystem; fast, for tests)"});
  return o;
}

Result<Quote> LocalProvider::GetQuote(const CallContext& ctx, const std::string& instance_type,
                                      int count) {
  CANOPY_TRY(impl_->RequireFull(ctx));
  const TypeInfo* t = FindType(instance_type);
  if (!t) {
    return Invalid("unknown instance type '" + instance_type + "'");
  }
  if (count < 1) {
    return Invalid("count must be at least 1");
  }
  return Quote{instance_type, count, t->price, t->price * count, "notional price (local host)"};
}

std::string LocalProvider::DefaultSshUser(const std::string& image) const {
  return BlankImageName(image) ? kBlankImageUser : "root";
}

Result<Instance> LocalProvider::CreateInstance(const CallContext& ctx, const InstanceSpec& spec) {
  return CreateInstanceAt(ctx, spec, "");
}

Result<Instance> LocalProvider::CreateInstanceAt(const CallContext& ctx, const InstanceSpec& spec,
                                                 const std::string& address) {
  Impl& im = *impl_;
  uint32_t fixed = 0;
  if (!address.empty()) {
    in_addr a{};
    if (inet_pton(AF_INET, address.c_str(), &a) != 1) {
      return Invalid("'" + address + "' is not an IPv4 address");
    }
    fixed = ntohl(a.s_addr);
    if (fixed <= im.gateway || fixed >= im.broadcast) {
      return Invalid("address " + address + " is not a host address of " + opts_.subnet +
                     " other than its gateway");
    }
  }
  CANOPY_TRY(im.RequireFull(ctx));
  CANOPY_TRY(im.CheckRegion(ctx));
  if (spec.canopy_id.empty() || spec.canopy_id.size() > 256) {
    return Invalid("canopy_id is required");
  }
  if (!FindType(spec.instance_type)) {
    return Invalid("unknown instance type '" + spec.instance_type + "'");
  }
  if (!KnownImage(spec.image)) {
    return Invalid("unknown image '" + spec.image + "'");
  }
  if (BlankImageName(spec.image) && !im.ImageBuilt(spec.image)) {
    return Invalid("image '" + spec.image + "' is not built on this host (as root: " +
                   "scripts/local-images.sh " + spec.image + ")");
  }
  if (spec.disk_gb < 1) {
    return Invalid("disk_gb must be at least 1");
  }
  if (!SafeName(spec.key_pair) || !fs::exists(im.keys_dir / (spec.key_pair + ".pub"))) {
    return Invalid("key pair '" + spec.key_pair + "' not found");
  }
  for (const auto& f : spec.firewalls) {
    if (!im.LoadFirewall(f)) {
      return Invalid("firewall '" + f + "' not found");
    }
  }
  Json rec;
  {
    CANOPY_ASSIGN_OR_RETURN(auto g, im.LockGlobal());
    for (const auto& r : im.AllRecords()) {
      if (r.value("canopy_id", "") == spec.canopy_id) {
        return im.ToInstance(r);  // idempotent: the existing instance
      }
    }
    {
      std::lock_guard<std::mutex> l(im.rng_mu);
      if (opts_.fail_rate > 0 &&
          std::uniform_real_distribution<double>(0, 1)(im.rng) < opts_.fail_rate) {
        return MakeProviderError(ProviderErrorKind::kTransient,
                                 "injected failure (fail_rate), try again");
      }
    }
    CANOPY_TRY(im.CheckCapacity(spec.instance_type));
    // Unique on this host, not only in this state dir: the namespace name derives from it.
    std::string id;
    do {
      id = "loc-" + RandomHex(5);
    } while (fs::exists(im.InstanceDir(id)) || fs::exists("/run/netns/" + NetnsName(id)));
    auto tags = spec.tags;
    tags[kCanopyIdTag] = spec.canopy_id;
    rec = Json{{"id", id},
               {"canopy_id", spec.canopy_id},
               {"idempotency_key", spec.idempotency_key},
               {"name", spec.name},
               {"instance_type", spec.instance_type},
               {"image", spec.image},
               {"disk_gb", spec.disk_gb},
               {"key_pair", spec.key_pair},
               {"firewalls", spec.firewalls},
               {"tags", tags},
               {"state", "pending"},
               {"address", ""},
               {"created_at_ms", NowMs()},
               {"ready_at_ms", int64_t{0}}};
    std::error_code ec;
    fs::create_directories(im.InstanceDir(id) / "disk", ec);
    if (ec) {
      return Error::Internal("cannot create instance folder: " + ec.message());
    }
    Status allocated = im.AllocateAddress(rec, fixed);  // saves the record
    if (!allocated) {
      fs::remove_all(im.InstanceDir(id), ec);
      return std::move(allocated).error();
    }
  }
  // The slow part runs outside the global lock, so creations proceed in parallel.
  const std::string id = rec["id"];
  CANOPY_ASSIGN_OR_RETURN(FileLock il, im.LockInstance(id));
  Status booted = im.Boot(rec);
  if (!booted) {
    im.TearDownNet(id);  // a boot that failed half-way must not leave a namespace or veth
    std::error_code ec;
    fs::remove_all(im.InstanceDir(id), ec);
    im.ReleaseAddress(id);
    SPDLOG_WARN("Local instance boot failed id={} error={}", id, booted.error().message);
    return MakeProviderError(ProviderErrorKind::kTransient,
                             "instance boot failed: " + booted.error().message);
  }
  auto pub = ReadText(im.InstanceDir(id) / "ssh_host_ed25519_key.pub");
  if (pub) {
    auto fp = Fingerprint(*pub);
    if (fp) {
      rec["host_key_sha256"] = *fp;
    }
  }
  rec["state"] = "running";
  rec["ready_at_ms"] = NowMs() + opts_.boot_delay.count();
  CANOPY_TRY(im.SaveRecord(rec));
  return im.ToInstance(rec);
}

Result<std::vector<Instance>> LocalProvider::FindInstancesByTag(const CallContext& ctx,
                                                                const std::string& key,
                                                                const std::string& value) {
  CANOPY_TRY(impl_->RequireFull(ctx));
  std::vector<Instance> out;
  for (const auto& r : impl_->AllRecords()) {
    auto tags = r.value("tags", std::map<std::string, std::string>{});
    auto it = tags.find(key);
    if (it != tags.end() && it->second == value) {
      out.push_back(impl_->ToInstance(r));
    }
  }
  return out;
}

Result<Instance> LocalProvider::DescribeInstance(const CallContext& ctx, const ProviderHandle& h) {
  CANOPY_TRY(impl_->RequireFull(ctx));
  CANOPY_ASSIGN_OR_RETURN(std::string id, impl_->IdOf(h));
  CANOPY_ASSIGN_OR_RETURN(Json rec, impl_->LoadRecord(id));
  return impl_->ToInstance(rec);
}

Result<Instance> LocalProvider::WaitUntilRunning(const CallContext& ctx, const ProviderHandle& h,
                                                 std::chrono::seconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (true) {
    CANOPY_ASSIGN_OR_RETURN(Instance in, DescribeInstance(ctx, h));
    if (in.state == InstanceState::kRunning && !in.address.empty()) {
      return in;
    }
    if (in.state == InstanceState::kStopped || in.state == InstanceState::kTerminated) {
      return Invalid("instance " + in.provider_id + " is " +
                     std::string(InstanceStateName(in.state)));
    }
    if (std::chrono::steady_clock::now() >= until) {
      return Error::DeadlineExceeded("instance " + in.provider_id + " not running in time");
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
}

Status LocalProvider::StopInstance(const CallContext& ctx, const ProviderHandle& h) {
  Impl& im = *impl_;
  CANOPY_TRY(im.RequireFull(ctx));
  CANOPY_ASSIGN_OR_RETURN(std::string id, im.IdOf(h));
  CANOPY_ASSIGN_OR_RETURN(FileLock il, im.LockInstance(id));
  CANOPY_ASSIGN_OR_RETURN(Json rec, im.LoadRecord(id));
  if (rec.value("state", "") == "stopped") {
    return OkStatus();
  }
  rec["state"] = "stopping";
  CANOPY_TRY(im.SaveRecord(rec));
  // Like a stopped VM: nothing runs, the disk (and the namespace, empty) stays; start boots it
  // again from scratch.
  im.KillAll(id);
  rec["state"] = "stopped";
  return im.SaveRecord(rec);
}

Status LocalProvider::StartInstance(const CallContext& ctx, const ProviderHandle& h) {
  Impl& im = *impl_;
  CANOPY_TRY(im.RequireFull(ctx));
  CANOPY_ASSIGN_OR_RETURN(std::string id, im.IdOf(h));
  CANOPY_ASSIGN_OR_RETURN(FileLock il, im.LockInstance(id));
  CANOPY_ASSIGN_OR_RETURN(Json rec, im.LoadRecord(id));
  std::string st = rec.value("state", "");
  if (st == "running" || st == "pending") {
    return OkStatus();
  }
  // It kept its address while stopped; this only moves it if the registry lost the claim and
  // another instance took the address meanwhile.
  im.ClaimAddress(rec);
  {
    CANOPY_ASSIGN_OR_RETURN(auto g, im.LockGlobal());
    CANOPY_TRY(im.CheckCapacity(rec.value("instance_type", "")));
    rec["state"] = "pending";
    CANOPY_TRY(im.SaveRecord(rec));
  }
  Status booted = im.Boot(rec);
  if (!booted) {
    rec["state"] = "stopped";
    (void)im.SaveRecord(rec);
    return MakeProviderError(ProviderErrorKind::kTransient,
                             "instance boot failed: " + booted.error().message);
  }
  rec["state"] = "running";
  rec["ready_at_ms"] = NowMs() + opts_.boot_delay.count();
  return im.SaveRecord(rec);
}

Status LocalProvider::TerminateInstance(const CallContext& ctx, const ProviderHandle& h) {
  Impl& im = *impl_;
  CANOPY_TRY(im.RequireFull(ctx));
  CANOPY_ASSIGN_OR_RETURN(std::string id, im.IdOf(h));
  if (!SafeName(id) || !fs::exists(im.InstanceDir(id))) {
    return OkStatus();  // unknown: already gone
  }
  auto il = im.LockInstance(id);
  if (!il) {
    return OkStatus();
  }
  im.TearDownNet(id);
  std::error_code ec;
  fs::remove_all(im.InstanceDir(id), ec);
  if (ec) {
    return Error::Internal("cannot remove instance folder: " + ec.message());
  }
  // Only now: while the record exists the address is still the instance's.
  im.ReleaseAddress(id);
  return OkStatus();
}

Result<KeyPair> LocalProvider::GetKeyPair(const CallContext& ctx, const std::string& name) {
  Impl& im = *impl_;
  CANOPY_TRY(im.RequireFull(ctx));
  if (!SafeName(name)) {
    return Invalid("key pair name must be letters, digits, '.', '_' or '-'");
  }
  auto priv = ReadText(im.keys_dir / name);
  auto pub = ReadText(im.keys_dir / (name + ".pub"));
  if (!priv || !pub) {
    return NotFoundErr("key pair '" + name + "' not found");
  }
  KeyPair kp;
  kp.name = name;
  kp.public_key = *pub;
  while (!kp.public_key.empty() && kp.public_key.back() == '\n') {
    kp.public_key.pop_back();
  }
  kp.private_key = SecretString(*priv);
  CANOPY_ASSIGN_OR_RETURN(kp.fingerprint, Fingerprint(kp.public_key));
  return kp;
}

Status LocalProvider::ImportKeyPair(const CallContext& ctx, const std::string& name,
                                    const std::string& public_key) {
  Impl& im = *impl_;
  CANOPY_TRY(im.RequireFull(ctx));
  if (!SafeName(name)) {
    return Invalid("key pair name must be letters, digits, '.', '_' or '-'");
  }
  std::string line = public_key.substr(0, public_key.find('\n'));
  if ((line.rfind("ssh-", 0) != 0 && line.rfind("ecdsa-", 0) != 0) || !Fingerprint(line)) {
    return Invalid("key pair '" + name + "': not an OpenSSH public key");
  }
  CANOPY_ASSIGN_OR_RETURN(auto g, im.LockGlobal());
  auto have = ReadText(im.keys_dir / (name + ".pub"));
  if (have && *have == line + "\n") {
    return OkStatus();
  }
  return WriteFileAtomic(im.keys_dir / (name + ".pub"), line + "\n", 0644);
}

Result<KeyPair> LocalProvider::CreateKeyPair(const CallContext& ctx, const std::string& name) {
  Impl& im = *impl_;
  CANOPY_TRY(im.RequireFull(ctx));
  if (!SafeName(name)) {
    return Invalid("key pair name must be letters, digits, '.', '_' or '-'");
  }
  {
    CANOPY_ASSIGN_OR_RETURN(auto g, im.LockGlobal());
    if (!fs::exists(im.keys_dir / (name + ".pub"))) {
      std::error_code ec;
      fs::remove(im.keys_dir / name, ec);
      fs::path tmp = im.keys_dir / (".tmp-" + RandomHex(4));
      CANOPY_TRY(RunChecked({im.ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", "canopy-" + name,
                             "-f", tmp.string()},
                            "key generation"));
      chmod(tmp.c_str(), 0600);
      fs::rename(tmp, im.keys_dir / name, ec);
      fs::rename(fs::path(tmp.string() + ".pub"), im.keys_dir / (name + ".pub"), ec);
      if (ec) {
        return Error::Internal("cannot store key pair: " + ec.message());
      }
    }
  }
  return GetKeyPair(ctx, name);
}

Result<Firewall> LocalProvider::CreateFirewall(const CallContext& ctx, const FirewallSpec& spec) {
  Impl& im = *impl_;
  CANOPY_ASSIGN_OR_RETURN(auto scope, im.ClusterScope(ctx));
  auto tags = spec.tags;
  if (scope) {
    tags[kClusterTag] = *scope;
  }
  if (spec.canopy_id.empty()) {
    return Invalid("canopy_id is required");
  }
  for (const auto& r : spec.rules) {
    if (r.port == 0) {
      return Invalid("firewall rule port must be 1..65535");
    }
    if (r.protocol != "tcp" && r.protocol != "udp") {
      return Invalid("firewall rule protocol must be tcp or udp");
    }
    for (const auto& c : r.source_cidrs) {
      if (!ValidCidr(c)) {
        return Invalid("invalid source CIDR '" + c + "'");
      }
    }
  }
  CANOPY_ASSIGN_OR_RETURN(auto g, im.LockGlobal());
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(im.firewalls_dir, ec)) {
    if (e.path().extension() != ".json") {
      continue;
    }
    auto fw = im.LoadFirewall(e.path().stem().string());
    if (fw && fw->canopy_id == spec.canopy_id) {
      if (scope && im.FirewallCluster(fw->id) != *scope) {
        return MakeProviderError(ProviderErrorKind::kAuth, "firewall belongs to another cluster");
      }
      return *fw;
    }
  }
  Firewall f{"fw-" + RandomHex(6), spec.name, spec.canopy_id, spec.rules};
  Json j{{"id", f.id},
         {"name", f.name},
         {"canopy_id", f.canopy_id},
         {"rules", RulesToJson(f.rules)},
         {"tags", tags}};
  CANOPY_TRY(WriteFileAtomic(im.firewalls_dir / (f.id + ".json"), DumpJson(j, 2)));
  return f;
}

Result<bool> LocalProvider::FirewallExists(const CallContext& ctx, const std::string& firewall_id) {
  CANOPY_TRY(impl_->CheckCredential(ctx));
  return impl_->LoadFirewall(firewall_id).has_value();
}

Status LocalProvider::AttachFirewall(const CallContext& ctx, const ProviderHandle& instance,
                                     const std::string& firewall_id) {
  Impl& im = *impl_;
  CANOPY_ASSIGN_OR_RETURN(auto scope, im.ClusterScope(ctx));
  CANOPY_TRY(im.LoadFirewall(firewall_id));
  CANOPY_ASSIGN_OR_RETURN(std::string id, im.IdOf(instance));
  CANOPY_ASSIGN_OR_RETURN(FileLock il, im.LockInstance(id));
  CANOPY_ASSIGN_OR_RETURN(Json rec, im.LoadRecord(id));
  CANOPY_TRY(im.CheckClusterScope(scope, rec, firewall_id));
  auto fws = rec.value("firewalls", std::vector<std::string>{});
  if (std::find(fws.begin(), fws.end(), firewall_id) != fws.end()) {
    return OkStatus();
  }
  fws.push_back(firewall_id);
  rec["firewalls"] = fws;
  if (rec.value("state", "") == "running") {
    CANOPY_TRY(im.ApplyFirewall(rec));
  }
  return im.SaveRecord(rec);
}

Status LocalProvider::DetachFirewall(const CallContext& ctx, const ProviderHandle& instance,
                                     const std::string& firewall_id) {
  Impl& im = *impl_;
  CANOPY_ASSIGN_OR_RETURN(auto scope, im.ClusterScope(ctx));
  CANOPY_ASSIGN_OR_RETURN(std::string id, im.IdOf(instance));
  CANOPY_ASSIGN_OR_RETURN(FileLock il, im.LockInstance(id));
  CANOPY_ASSIGN_OR_RETURN(Json rec, im.LoadRecord(id));
  CANOPY_TRY(im.CheckClusterScope(scope, rec, firewall_id));
  auto fws = rec.value("firewalls", std::vector<std::string>{});
  auto it = std::find(fws.begin(), fws.end(), firewall_id);
  if (it == fws.end()) {
    return OkStatus();
  }
  fws.erase(it);
  rec["firewalls"] = fws;
  if (rec.value("state", "") == "running") {
    CANOPY_TRY(im.ApplyFirewall(rec));
  }
  return im.SaveRecord(rec);
}

Status LocalProvider::DeleteFirewall(const CallContext& ctx, const std::string& firewall_id) {
  Impl& im = *impl_;
  CANOPY_ASSIGN_OR_RETURN(auto scope, im.ClusterScope(ctx));
  if (!SafeName(firewall_id)) {
    return OkStatus();
  }
  if (scope && im.LoadFirewall(firewall_id) && im.FirewallCluster(firewall_id) != *scope) {
    return MakeProviderError(ProviderErrorKind::kAuth, "firewall belongs to another cluster");
  }
  for (const auto& r : im.AllRecords()) {
    auto fws = r.value("firewalls", std::vector<std::string>{});
    if (std::find(fws.begin(), fws.end(), firewall_id) != fws.end()) {
      return Invalid("firewall " + firewall_id + " is attached to instance " +
                     r["id"].get<std::string>());
    }
  }
  std::error_code ec;
  fs::remove(im.firewalls_dir / (firewall_id + ".json"), ec);
  return OkStatus();
}

Result<ClusterIdentity> LocalProvider::CreateClusterIdentity(const CallContext& ctx,
                                                             const std::string& cluster_id) {
  Impl& im = *impl_;
  CANOPY_TRY(im.RequireFull(ctx));
  if (cluster_id.empty() || cluster_id.size() > 256) {
    return Invalid("cluster_id is required");
  }
  std::string id = "lci-" + RandomHex(6);
  Json cred{{"type", "local-cluster"},
            {"cluster_id", cluster_id},
            {"scope", "firewalls"},
            {"identity_id", id}};
  CANOPY_TRY(WriteFileAtomic(im.identities_dir / (id + ".json"),
                             DumpJson(Json{{"id", id}, {"cluster_id", cluster_id}})));
  return ClusterIdentity{id, CredentialSecret(cred)};
}

Status LocalProvider::DeleteClusterIdentity(const CallContext& ctx,
                                            const std::string& identity_id) {
  CANOPY_TRY(impl_->RequireFull(ctx));
  if (!SafeName(identity_id)) {
    return OkStatus();
  }
  std::error_code ec;
  fs::remove(impl_->identities_dir / (identity_id + ".json"), ec);
  return OkStatus();
}

void LocalProvider::Purge(const LocalOptions& options) {
  const std::string ip = FindTool("ip");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(options.state_dir) / "instances", ec)) {
    const std::string id = e.path().filename().string();
    const std::string ns = NetnsName(id);
    for (int pid : NetnsPids(ns)) {
      kill(pid, SIGKILL);
    }
    for (int i = 0; i < 100 && !NetnsPids(ns).empty(); ++i) {
      std::this_thread::sleep_for(milliseconds(20));
    }
    (void)RunCommand({ip, "netns", "del", ns});
    (void)RunCommand({ip, "link", "del", VethName(id)});
  }
  if (fs::exists("/sys/class/net/" + options.bridge)) {
    (void)RunCommand({ip, "link", "del", options.bridge});
  }
  ReleaseAddresses(options);
  fs::remove_all(options.state_dir, ec);
}

void LocalProvider::ReleaseAddresses(const LocalOptions& options) {
  Status s = AddressRegistry(AddressRegistry::kDefaultRoot, options.bridge)
                 .ReleaseStateDir(AddressRegistry::NormalStateDir(options.state_dir));
  if (!s) {
    SPDLOG_WARN("Cannot release local addresses state_dir={} bridge={} error={}", options.state_dir,
                options.bridge, s.error().message);
  }
}

std::string LocalProvider::AddressRegistryDir(const std::string& bridge) {
  return AddressRegistry(AddressRegistry::kDefaultRoot, bridge).dir();
}

}  // namespace canopy::providers::local
