// Integration tests of LocalProvider: real namespaces, veths, a bridge, nftables and sshd on this
// host. Skipped unless run as root. Each test uses its own state_dir, bridge and /24 inside
// 198.19.0.0/16, and TearDown removes every namespace, veth, bridge and process it made.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "common/files.h"
#include "common/ids.h"
#include "providers/local/local_exec.h"
#include "providers/local/local_factory.h"
#include "providers/local/local_provider.h"
#include "support/test_util.h"

namespace canopy::providers::local {
namespace {

namespace fs = std::filesystem;
using canopy::testing::TempDir;
using std::chrono::milliseconds;

CallContext Ctx() { return CallContext{CredentialSecret(Json::object()), ""}; }

// True when a TCP connection to addr:port from the host completes within `wait`.
bool Reachable(const std::string& addr, uint16_t port, milliseconds wait = milliseconds(700)) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  bool ok = rc == 0;
  if (!ok && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, static_cast<int>(wait.count())) == 1) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      ok = err == 0;
    }
  }
  close(fd);
  return ok;
}

bool EventuallyReachable(const std::string& addr, uint16_t port) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < until) {
    if (Reachable(addr, port, milliseconds(300))) {
      return true;
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  return false;
}

std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class LocalProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) {
      GTEST_SKIP() << "the local provider needs root";
    }
    bridge_ = "cbt" + RandomHex(4);
    unsigned char octet = 0;
    std::string hex = RandomHex(1);
    octet = static_cast<unsigned char>(std::stoi(hex, nullptr, 16));
    subnet_prefix_ = "198.19." + std::to_string(octet) + ".";
    opts_.state_dir = (dir_.path() / "state").string();
    opts_.bridge = bridge_;
    opts_.subnet = subnet_prefix_ + "0/24";
    made_bridge_ = true;
  }

  void TearDown() override {
    if (!made_bridge_) {
      return;
    }
    provider_.reset();
    for (const LocalOptions& o : others_) {
      LocalProvider::Purge(o);
    }
    LocalProvider::Purge(opts_);
    listeners_.clear();
    EXPECT_FALSE(fs::exists("/sys/class/net/" + bridge_));
    // Nothing is left in /run: the bridge's address registry goes with its last entry.
    EXPECT_FALSE(fs::exists(LocalProvider::AddressRegistryDir(bridge_)));
  }

  LocalProvider& P() {
    if (!provider_) {
      auto p = LocalProvider::Create(opts_);
      EXPECT_TRUE(p.has_value()) << p.error().ToString();
      provider_ = std::move(*p);
    }
    return *provider_;
  }

  InstanceSpec Spec(const std::string& canopy_id) {
    InstanceSpec s;
    s.canopy_id = canopy_id;
    s.idempotency_key = "idem-" + canopy_id;
    s.instance_type = "local.small";
    s.image = "debian-12";
    s.key_pair = "k1";
    return s;
  }

  // Creates key pair k1 and an instance, waits until running.
  Instance CreateRunning(const std::string& canopy_id) {
    auto kp = P().CreateKeyPair(Ctx(), "k1");
    EXPECT_TRUE(kp.has_value());
    auto in = P().CreateInstance(Ctx(), Spec(canopy_id));
    EXPECT_TRUE(in.has_value()) << in.error().ToString();
    if (!in) {
      return {};
    }
    auto run = P().WaitUntilRunning(Ctx(), in->handle, std::chrono::seconds(10));
    EXPECT_TRUE(run.has_value()) << run.error().ToString();
    return run.has_value() ? *run : Instance{};
  }

  Firewall MakeFirewall(const std::string& canopy_id, uint16_t port) {
    FirewallSpec fs_spec;
    fs_spec.canopy_id = canopy_id;
    fs_spec.name = canopy_id;
    fs_spec.rules = {FirewallRule{port, "tcp", {}}};
    auto f = P().CreateFirewall(Ctx(), fs_spec);
    EXPECT_TRUE(f.has_value()) << f.error().ToString();
    return f.value_or(Firewall{});
  }

  fs::path InstanceDir(const Instance& in) const {
    return fs::path(opts_.state_dir) / "instances" / in.provider_id;
  }

  // Runs `command` over ssh with the stored key, pinning the reported host key.
  CommandResult Ssh(const Instance& in, const std::string& command) {
    fs::path hostpub = InstanceDir(in) / "ssh_host_ed25519_key.pub";
    std::string pub = Slurp(hostpub);
    std::istringstream iss(pub);
    std::string type, b64;
    iss >> type >> b64;
    fs::path kh = dir_.path() / "known_hosts";
    std::ofstream(kh) << in.address << " " << type << " " << b64 << "\n";
    fs::path key = fs::path(opts_.state_dir) / "keys" / "k1";
    auto r = RunCommand(
        {"/usr/bin/ssh", "-F", "/dev/null", "-i", key.string(), "-o", "StrictHostKeyChecking=yes",
         "-o", "UserKnownHostsFile=" + kh.string(), "-o", "BatchMode=yes", "-o", "ConnectTimeout=3",
         "-o", "IdentitiesOnly=yes", "root@" + in.address, command},
        {}, std::chrono::seconds(15));
    EXPECT_TRUE(r.has_value());
    return r.value_or(CommandResult{});
  }

  // A TCP listener on `port` inside the instance's namespace (not http.server: it does a reverse
  // DNS lookup of its address at bind time, which stalls in a namespace without DNS).
  static constexpr const char* kListener =
      "import socket,sys\n"
      "s=socket.socket()\n"
      "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
      "s.bind((sys.argv[1],int(sys.argv[2])))\n"
      "s.listen(16)\n"
      "while True:\n"
      "  c,_=s.accept()\n"
      "  c.close()\n";
  void Listen(const Instance& in, uint16_t port) {
    listeners_.push_back(std::make_unique<canopy::testing::Process>(
        std::vector<std::string>{"/usr/sbin/ip", "netns", "exec",
                                 LocalProvider::NetnsName(in.provider_id), "/usr/bin/python3", "-c",
                                 kListener, in.address, std::to_string(port)},
        std::vector<std::string>{}, (dir_.path() / ("listen" + std::to_string(port))).string()));
    std::string ns = LocalProvider::NetnsName(in.provider_id);
    for (int i = 0; i < 100; ++i) {
      auto r = RunCommand({"/usr/sbin/ip", "netns", "exec", ns, "/usr/bin/ss", "-Hltn",
                           "sport = :" + std::to_string(port)});
      if (r && r->out.find(":" + std::to_string(port)) != std::string::npos) {
        return;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    ADD_FAILURE() << "listener on port " << port
                  << " did not start: " << Slurp(dir_.path() / ("listen" + std::to_string(port)));
  }

  TempDir dir_;
  LocalOptions opts_;
  std::string bridge_, subnet_prefix_;
  bool made_bridge_ = false;
  std::unique_ptr<LocalProvider> provider_;
  std::vector<LocalOptions> others_;  // further state dirs on the bridge, purged by TearDown
  std::vector<std::unique_ptr<canopy::testing::Process>> listeners_;
};

// Creates an instance on `p` (key pair k1 made first) and waits until it runs.
Instance CreateRunningOn(LocalProvider& p, const InstanceSpec& spec) {
  EXPECT_OK(p.CreateKeyPair(Ctx(), "k1"));
  auto in = p.CreateInstance(Ctx(), spec);
  EXPECT_TRUE(in.has_value()) << in.error().ToString();
  if (!in) {
    return {};
  }
  auto run = p.WaitUntilRunning(Ctx(), in->handle, std::chrono::seconds(10));
  EXPECT_TRUE(run.has_value()) << run.error().ToString();
  return run.value_or(Instance{});
}

// The owner an address registry entry names ({} when there is none).
Json RegistryEntry(const std::string& bridge, const std::string& address) {
  fs::path p = fs::path(LocalProvider::AddressRegistryDir(bridge)) / address;
  auto j = ReadJsonObjectFile(p.string());
  return j ? *j : Json::object();
}

void WriteRegistryEntry(const std::string& bridge, const std::string& address,
                        const std::string& state_dir, const std::string& instance_id) {
  fs::path dir = LocalProvider::AddressRegistryDir(bridge);
  ASSERT_TRUE(fs::exists(dir / "lock"));
  std::ofstream(dir / address) << Json{
      {"state_dir", state_dir},
      {"instance_id", instance_id},
      {"netns", LocalProvider::NetnsName(
                    instance_id)}}.dump();
}

TEST(LocalProviderRootCheck, RejectsNonRootWithClearMessage) {
  Status s = CheckRunningAsRoot(1000);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(s.error().message.find("must run as root"), std::string::npos);
  EXPECT_NE(s.error().message.find("1000"), std::string::npos);
  EXPECT_OK(CheckRunningAsRoot(0));
}

TEST(LocalProviderFactory, RejectsUnknownOptionsAndBadTypes) {
  auto r = MakeLocalProvider(Json{{"state_dri", "/tmp/x"}});
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("state_dri"), std::string::npos);
  EXPECT_FALSE(MakeLocalProvider(Json{{"capacity", 3}}).has_value());
  EXPECT_FALSE(MakeLocalProvider(Json{{"fail_rate", "high"}}).has_value());
  EXPECT_FALSE(MakeLocalProvider(Json::array()).has_value());
}

TEST(LocalProviderNames, VethNamesFitInterfaceLimit) {
  EXPECT_LE(LocalProvider::VethName("loc-0123456789abcdef0123").size(), 15u);
  EXPECT_NE(LocalProvider::VethName("loc-aaaaaaaaaa"), LocalProvider::VethName("loc-aaaaaaaaab"));
  EXPECT_EQ(LocalProvider::NetnsName("loc-1"), "canopy-loc-1");
}

TEST_F(LocalProviderTest, CreateGivesRunningInstanceReachableBySshOnlyAfterFirewallOpens22) {
  auto t0 = std::chrono::steady_clock::now();
  Instance in = CreateRunning("c-ssh");
  ASSERT_FALSE(in.provider_id.empty());
  auto t_running = std::chrono::steady_clock::now();
  EXPECT_EQ(in.state, InstanceState::kRunning);
  EXPECT_EQ(in.address.rfind(subnet_prefix_, 0), 0u) << in.address;
  EXPECT_EQ(in.ssh_user, "root");
  EXPECT_EQ(in.tags.at(kCanopyIdTag), "c-ssh");
  // The reported host key is the fingerprint of the key sshd serves.
  auto fp = RunCommand(
      {"/usr/bin/ssh-keygen", "-lf", (InstanceDir(in) / "ssh_host_ed25519_key.pub").string()});
  ASSERT_TRUE(fp.has_value());
  ASSERT_EQ(in.host_key_sha256.rfind("SHA256:", 0), 0u);
  EXPECT_NE(fp->out.find(in.host_key_sha256 + " "), std::string::npos) << fp->out;
  // Default drop: 22 is closed without a firewall.
  EXPECT_FALSE(Reachable(in.address, 22));
  Firewall fw = MakeFirewall("fw-ssh", 22);
  ASSERT_OK(P().AttachFirewall(Ctx(), in.handle, fw.id));
  ASSERT_TRUE(EventuallyReachable(in.address, 22));
  CommandResult r = Ssh(in, "pwd; echo $HOME; echo hello > f.txt");
  auto elapsed = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string disk = (InstanceDir(in) / "disk").string();
  EXPECT_EQ(r.out, disk + "\n" + disk + "\n");
  EXPECT_EQ(Slurp(InstanceDir(in) / "disk" / "f.txt"), "hello\n");
  std::cout << "[ measure ] key pair + create -> running: "
            << std::chrono::duration_cast<milliseconds>(t_running - t0).count()
            << " ms; -> first ssh command done: " << elapsed.count() << " ms\n";
  // SFTP starts in the disk folder too.
  fs::path batch = dir_.path() / "sftp.batch";
  std::ofstream(batch) << "pwd\nls\n";
  std::string pub = Slurp(InstanceDir(in) / "ssh_host_ed25519_key.pub");
  auto sftp = RunCommand(
      {"/usr/bin/sftp", "-F", "/dev/null", "-b", batch.string(), "-i",
       (fs::path(opts_.state_dir) / "keys" / "k1").string(), "-o", "StrictHostKeyChecking=yes",
       "-o", "UserKnownHostsFile=" + (dir_.path() / "known_hosts").string(), "root@" + in.address});
  ASSERT_TRUE(sftp.has_value());
  EXPECT_EQ(sftp->exit_code, 0) << sftp->err;
  EXPECT_NE(sftp->out.find(disk), std::string::npos) << sftp->out;
  EXPECT_NE(sftp->out.find("f.txt"), std::string::npos) << sftp->out;
}

TEST_F(LocalProviderTest, FirewallOpensOnlyAttachedPortAndDetachClosesIt) {
  Instance in = CreateRunning("c-fw");
  ASSERT_FALSE(in.provider_id.empty());
  Listen(in, 8080);
  Listen(in, 8081);
  EXPECT_FALSE(Reachable(in.address, 8080));
  Firewall fw = MakeFirewall("fw-8080", 8080);
  ASSERT_OK(P().AttachFirewall(Ctx(), in.handle, fw.id));
  ASSERT_OK(P().AttachFirewall(Ctx(), in.handle, fw.id));  // attaching twice succeeds
  EXPECT_TRUE(EventuallyReachable(in.address, 8080));
  EXPECT_FALSE(Reachable(in.address, 8081));  // listening, but not opened
  auto desc = P().DescribeInstance(Ctx(), in.handle);
  ASSERT_OK(desc);
  EXPECT_EQ(desc->firewalls, std::vector<std::string>{fw.id});
  // A firewall in use cannot be deleted.
  EXPECT_FALSE(P().DeleteFirewall(Ctx(), fw.id).has_value());
  ASSERT_OK(P().DetachFirewall(Ctx(), in.handle, fw.id));
  ASSERT_OK(P().DetachFirewall(Ctx(), in.handle, fw.id));
  EXPECT_FALSE(Reachable(in.address, 8080));
  ASSERT_OK(P().DeleteFirewall(Ctx(), fw.id));
  EXPECT_FALSE(*P().FirewallExists(Ctx(), fw.id));
  ASSERT_OK(P().DeleteFirewall(Ctx(), fw.id));  // NotFound is success
}

TEST_F(LocalProviderTest, FirewallSourceCidrRestrictsAccess) {
  Instance in = CreateRunning("c-cidr");
  ASSERT_FALSE(in.provider_id.empty());
  Listen(in, 8082);
  FirewallSpec spec{"fw-cidr", "cidr", {FirewallRule{8082, "tcp", {"10.99.0.0/16"}}}, {}};
  auto fw = P().CreateFirewall(Ctx(), spec);
  ASSERT_OK(fw);
  ASSERT_OK(P().AttachFirewall(Ctx(), in.handle, fw->id));
  EXPECT_FALSE(Reachable(in.address, 8082));  // the host's address is not in 10.99/16
  FirewallSpec bad{"fw-bad", "bad", {FirewallRule{1, "tcp", {"10.0.0.0/99"}}}, {}};
  auto b = P().CreateFirewall(Ctx(), bad);
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(KindOf(b.error()), ProviderErrorKind::kInvalidRequest);
}

TEST_F(LocalProviderTest, StopEndsAllProcessesKeepsDiskAndStartMakesItReachableAgain) {
  Instance in = CreateRunning("c-stop");
  ASSERT_FALSE(in.provider_id.empty());
  Firewall fw = MakeFirewall("fw-22", 22);
  ASSERT_OK(P().AttachFirewall(Ctx(), in.handle, fw.id));
  ASSERT_EQ(Ssh(in, "echo kept > data.txt").exit_code, 0);
  Listen(in, 8083);
  std::string ns = LocalProvider::NetnsName(in.provider_id);
  auto pids = RunCommand({"/usr/sbin/ip", "netns", "pids", ns});
  ASSERT_TRUE(pids.has_value());
  EXPECT_FALSE(pids->out.empty());
  ASSERT_OK(P().StopInstance(Ctx(), in.handle));
  auto d = P().DescribeInstance(Ctx(), in.handle);
  ASSERT_OK(d);
  EXPECT_EQ(d->state, InstanceState::kStopped);
  EXPECT_TRUE(NetnsPids(ns).empty());
  EXPECT_TRUE(fs::exists("/run/netns/" + ns));  // a stopped VM: the namespace stays, empty
  EXPECT_FALSE(Reachable(in.address, 22));
  EXPECT_EQ(Slurp(InstanceDir(in) / "disk" / "data.txt"), "kept\n");
  ASSERT_OK(P().StopInstance(Ctx(), in.handle));  // stopping a stopped instance succeeds
  ASSERT_OK(P().StartInstance(Ctx(), in.handle));
  auto run = P().WaitUntilRunning(Ctx(), in.handle, std::chrono::seconds(10));
  ASSERT_OK(run);
  EXPECT_EQ(run->host_key_sha256, in.host_key_sha256);
  ASSERT_TRUE(EventuallyReachable(run->address, 22));
  CommandResult r = Ssh(*run, "cat data.txt");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "kept\n");
}

TEST_F(LocalProviderTest, TerminateRemovesNamespaceVethAndDisk) {
  Instance in = CreateRunning("c-term");
  ASSERT_FALSE(in.provider_id.empty());
  std::string ns = LocalProvider::NetnsName(in.provider_id);
  std::string veth = LocalProvider::VethName(in.provider_id);
  EXPECT_TRUE(fs::exists("/run/netns/" + ns));
  EXPECT_TRUE(fs::exists("/sys/class/net/" + veth));
  fs::path dir = InstanceDir(in);
  ASSERT_OK(P().TerminateInstance(Ctx(), in.handle));
  EXPECT_FALSE(fs::exists("/run/netns/" + ns));
  EXPECT_FALSE(fs::exists("/sys/class/net/" + veth));
  EXPECT_FALSE(fs::exists(dir));
  auto d = P().DescribeInstance(Ctx(), in.handle);
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(KindOf(d.error()), ProviderErrorKind::kNotFound);
  EXPECT_OK(P().TerminateInstance(Ctx(), in.handle));  // unknown -> success
  auto found = P().FindInstancesByTag(Ctx(), kCanopyIdTag, "c-term");
  ASSERT_OK(found);
  EXPECT_TRUE(found->empty());
}

TEST_F(LocalProviderTest, CreateIsIdempotentByCanopyId) {
  Instance a = CreateRunning("c-idem");
  ASSERT_FALSE(a.provider_id.empty());
  auto b = P().CreateInstance(Ctx(), Spec("c-idem"));
  ASSERT_OK(b);
  EXPECT_EQ(b->provider_id, a.provider_id);
  auto found = P().FindInstancesByTag(Ctx(), kCanopyIdTag, "c-idem");
  ASSERT_OK(found);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].provider_id, a.provider_id);
}

// For cloud simulators: an instance at a chosen address, and a key pair of which only the
// public half is known.
TEST_F(LocalProviderTest, CreateInstanceAtTakesExactlyTheAddressWithAnImportedKey) {
  auto kp = P().CreateKeyPair(Ctx(), "k1");
  ASSERT_OK(kp);
  ASSERT_OK(P().ImportKeyPair(Ctx(), "imported", kp->public_key));
  EXPECT_OK(P().ImportKeyPair(Ctx(), "imported", kp->public_key));  // again: the same key
  auto not_a_key = P().ImportKeyPair(Ctx(), "junk", "hello world");
  ASSERT_FALSE(not_a_key);
  EXPECT_EQ(not_a_key.error().code, ErrorCode::kInvalidArgument);
  auto imported = P().GetKeyPair(Ctx(), "imported");
  EXPECT_FALSE(imported) << "no private key to return for an imported key pair";

  InstanceSpec spec = Spec("c-at");
  spec.key_pair = "imported";
  auto in = P().CreateInstanceAt(Ctx(), spec, subnet_prefix_ + "77");
  ASSERT_OK(in);
  auto running = P().WaitUntilRunning(Ctx(), in->handle, std::chrono::seconds(10));
  ASSERT_OK(running);
  EXPECT_EQ(running->address, subnet_prefix_ + "77");
  EXPECT_EQ(Slurp(fs::path(opts_.state_dir) / "instances" / in->provider_id / "authorized_keys"),
            kp->public_key.substr(0, kp->public_key.find('\n')) + "\n");
  // The address is taken: another instance cannot have it.
  auto clash = P().CreateInstanceAt(Ctx(), Spec("c-at-2"), subnet_prefix_ + "77");
  ASSERT_FALSE(clash);
  EXPECT_NE(clash.error().message.find("is taken"), std::string::npos) << clash.error().message;
  for (const std::string& bad :
       std::vector<std::string>{subnet_prefix_ + "1", subnet_prefix_ + "255", "10.0.0.5", "x"}) {
    auto r = P().CreateInstanceAt(Ctx(), Spec("c-at-bad"), bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad << ": " << r.error().message;
  }
  EXPECT_OK(P().TerminateInstance(Ctx(), in->handle));
}

TEST_F(LocalProviderTest, SecondProviderReadoptsInstancesAndRestartsDeadSshd) {
  Instance in = CreateRunning("c-adopt");
  ASSERT_FALSE(in.provider_id.empty());
  Firewall fw = MakeFirewall("fw-a22", 22);
  ASSERT_OK(P().AttachFirewall(Ctx(), in.handle, fw.id));
  provider_.reset();  // the adapter "exits"; sshd keeps running
  EXPECT_TRUE(EventuallyReachable(in.address, 22));
  // Kill sshd, as a crash would, then a new adapter adopts the instance.
  int pid = std::atoi(Slurp(InstanceDir(in) / "sshd.pid").c_str());
  ASSERT_GT(pid, 0);
  kill(pid, SIGKILL);
  for (int i = 0; i < 100 && !NetnsPids(LocalProvider::NetnsName(in.provider_id)).empty(); ++i) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  auto found = P().FindInstancesByTag(Ctx(), kCanopyIdTag, "c-adopt");
  ASSERT_OK(found);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].state, InstanceState::kRunning);
  ASSERT_TRUE(EventuallyReachable(in.address, 22));
  EXPECT_EQ(Ssh((*found)[0], "true").exit_code, 0);
}

TEST_F(LocalProviderTest, CapacityPerTypeRaisesCapacityError) {
  opts_.capacity = {{"local.small", 1}};
  Instance a = CreateRunning("c-cap1");
  ASSERT_FALSE(a.provider_id.empty());
  auto b = P().CreateInstance(Ctx(), Spec("c-cap2"));
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(KindOf(b.error()), ProviderErrorKind::kCapacity);
  // Another type is not limited; a stopped instance frees its slot.
  ASSERT_OK(P().StopInstance(Ctx(), a.handle));
  auto c = P().CreateInstance(Ctx(), Spec("c-cap2"));
  ASSERT_OK(c);
  auto restart = P().StartInstance(Ctx(), a.handle);
  ASSERT_FALSE(restart.has_value());
  EXPECT_EQ(KindOf(restart.error()), ProviderErrorKind::kCapacity);
}

TEST_F(LocalProviderTest, FailRateOneFailsEveryCreateTransiently) {
  opts_.fail_rate = 1.0;
  ASSERT_OK(P().CreateKeyPair(Ctx(), "k1"));
  auto r = P().CreateInstance(Ctx(), Spec("c-fail"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kTransient);
  auto found = P().FindInstancesByTag(Ctx(), kCanopyIdTag, "c-fail");
  ASSERT_OK(found);
  EXPECT_TRUE(found->empty());
}

TEST_F(LocalProviderTest, BootDelayKeepsInstancePendingUntilItPasses) {
  opts_.boot_delay = milliseconds(600);
  ASSERT_OK(P().CreateKeyPair(Ctx(), "k1"));
  auto in = P().CreateInstance(Ctx(), Spec("c-delay"));
  ASSERT_OK(in);
  EXPECT_EQ(in->state, InstanceState::kPending);
  EXPECT_TRUE(in->address.empty());
  auto run = P().WaitUntilRunning(Ctx(), in->handle, std::chrono::seconds(5));
  ASSERT_OK(run);
  EXPECT_FALSE(run->address.empty());
}

TEST_F(LocalProviderTest, KeyPairsAreStoredPrivatelyAndReturnedAgain) {
  auto a = P().CreateKeyPair(Ctx(), "k1");
  ASSERT_OK(a);
  auto b = P().CreateKeyPair(Ctx(), "k1");
  ASSERT_OK(b);
  EXPECT_EQ(a->public_key, b->public_key);
  EXPECT_EQ(a->private_key.Reveal(), b->private_key.Reveal());
  struct stat st {};
  ASSERT_EQ(stat((fs::path(opts_.state_dir) / "keys" / "k1").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto fp = RunCommand(
      {"/usr/bin/ssh-keygen", "-lf", (fs::path(opts_.state_dir) / "keys" / "k1.pub").string()});
  ASSERT_TRUE(fp.has_value());
  EXPECT_NE(fp->out.find(a->fingerprint + " "), std::string::npos);
  auto missing = P().GetKeyPair(Ctx(), "nope");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(KindOf(missing.error()), ProviderErrorKind::kNotFound);
  EXPECT_FALSE(P().CreateKeyPair(Ctx(), "../evil").has_value());
}

TEST_F(LocalProviderTest, CredentialsAndClusterIdentityScope) {
  EXPECT_OK(P().ValidateCredential(Ctx()));
  EXPECT_OK(P().ValidateCredential(CallContext{CredentialSecret(Json{{"type", "local"}}), ""}));
  auto bad = P().ValidateCredential(CallContext{CredentialSecret(Json{{"type", "aws"}}), ""});
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(KindOf(bad.error()), ProviderErrorKind::kInvalidRequest);
  auto ident = P().CreateClusterIdentity(Ctx(), "cl-1");
  ASSERT_OK(ident);
  EXPECT_EQ(ident->credential.Reveal()["type"], "local-cluster");
  EXPECT_EQ(ident->credential.Reveal()["cluster_id"], "cl-1");
  EXPECT_EQ(ident->credential.Reveal()["scope"], "firewalls");
  CallContext cl{ident->credential, ""};
  FirewallSpec spec{"fw-cl", "cl", {FirewallRule{9000, "tcp", {}}}, {}};
  EXPECT_OK(P().CreateFirewall(cl, spec));
  auto denied = P().CreateKeyPair(cl, "k2");
  ASSERT_FALSE(denied.has_value());
  EXPECT_EQ(KindOf(denied.error()), ProviderErrorKind::kAuth);
  ASSERT_OK(P().DeleteClusterIdentity(Ctx(), ident->id));
  auto gone = P().CreateFirewall(cl, spec);
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(KindOf(gone.error()), ProviderErrorKind::kAuth);
  auto offers = P().ListOffers(Ctx());
  ASSERT_OK(offers);
  EXPECT_EQ(offers->instance_types.size(), 3u);
  auto q = P().GetQuote(Ctx(), "local.medium", 3);
  ASSERT_OK(q);
  EXPECT_NEAR(*q->price_hour_total, 3 * *q->price_hour_each, 1e-9);
  EXPECT_FALSE(P().GetQuote(Ctx(), "m5.large", 1).has_value());
}

// Offers list the built blank images first, newest first, then this host's images: the first
// offered image is what `canopy cluster create` takes without --image. An image that is not built
// (no <images_dir>/<name>/rootfs/etc/canopy-image) is not offered.
TEST_F(LocalProviderTest, OffersListBuiltBlankImagesFirstThenTheHostImages) {
  opts_.images_dir = (dir_.path() / "images").string();
  auto ids = [&] {
    std::vector<std::string> out;
    auto o = P().ListOffers(Ctx());
    EXPECT_TRUE(o.has_value()) << o.error().ToString();
    if (o) {
      for (const auto& i : o->images) out.push_back(i.id);
    }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(ids(), (V{"debian-12", "ubuntu-22.04"}));
  auto build = [&](const std::string& name) {
    fs::path etc = fs::path(opts_.images_dir) / name / "rootfs" / "etc";
    fs::create_directories(etc);
    ASSERT_OK(WriteFileAtomic((etc / "canopy-image").string(), name + "\n", 0644));
  };
  build("debian-11-minbase");
  EXPECT_EQ(ids(), (V{"debian-11-minbase", "debian-12", "ubuntu-22.04"}));
  build("debian-12-minbase");
  EXPECT_EQ(ids(), (V{"debian-12-minbase", "debian-11-minbase", "debian-12", "ubuntu-22.04"}));
  build("debian-13-minbase");  // a folder of a name the provider does not know
  EXPECT_EQ(ids().size(), 4u);
}

TEST_F(LocalProviderTest, ParallelCreatesGetDistinctAddresses) {
  ASSERT_OK(P().CreateKeyPair(Ctx(), "k1"));
  constexpr int kN = 6;
  std::vector<Result<Instance>> results(kN, Error::Internal("not run"));
  auto t0 = std::chrono::steady_clock::now();
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kN; ++i) {
      threads.emplace_back([&, i] {
        // Two racing creates per canopy_id: still one instance each.
        results[i] = P().CreateInstance(Ctx(), Spec("c-par" + std::to_string(i % (kN / 2))));
      });
    }
  }
  auto ms = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0);
  std::cout << "[ measure ] " << kN << " parallel CreateInstance calls: " << ms.count() << " ms\n";
  std::set<std::string> ids, addrs;
  for (auto& r : results) {
    ASSERT_OK(r);
    ids.insert(r->provider_id);
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kN / 2));
  for (int i = 0; i < kN / 2; ++i) {
    auto found = P().FindInstancesByTag(Ctx(), kCanopyIdTag, "c-par" + std::to_string(i));
    ASSERT_OK(found);
    ASSERT_EQ(found->size(), 1u);
    auto run = P().WaitUntilRunning(Ctx(), (*found)[0].handle, std::chrono::seconds(10));
    ASSERT_OK(run);
    addrs.insert(run->address);
  }
  EXPECT_EQ(addrs.size(), static_cast<size_t>(kN / 2));
}

// Two adapters with their own state dirs on one bridge (two `canopy up` data dirs, a test beside a
// demo) share the host's addresses: no address twice, a terminated instance's address free for
// either, and entries whose owner is gone taken over while live ones are respected.
TEST_F(LocalProviderTest, ProvidersWithTheirOwnStateDirsOnOneBridgeNeverShareAnAddress) {
  LocalOptions b_opts = opts_;
  b_opts.state_dir = (dir_.path() / "state-b").string();
  others_.push_back(b_opts);
  auto b = LocalProvider::Create(b_opts);
  ASSERT_OK(b);
  Instance a1 = CreateRunning("c-a1");
  Instance b1 = CreateRunningOn(**b, Spec("c-b1"));
  const std::string a_dir = fs::canonical(opts_.state_dir).string();
  const std::string b_dir = fs::canonical(b_opts.state_dir).string();
  ASSERT_FALSE(a1.provider_id.empty());
  ASSERT_FALSE(b1.provider_id.empty());
  EXPECT_EQ(a1.address, subnet_prefix_ + "2");
  EXPECT_EQ(b1.address, subnet_prefix_ + "3");  // not .2 again: that one is provider A's
  EXPECT_EQ(RegistryEntry(bridge_, a1.address).value("state_dir", ""), a_dir);
  EXPECT_EQ(RegistryEntry(bridge_, a1.address).value("instance_id", ""), a1.provider_id);
  EXPECT_EQ(RegistryEntry(bridge_, b1.address).value("state_dir", ""), b_dir);

  // Terminating frees the address for every provider on the bridge.
  ASSERT_OK(P().TerminateInstance(Ctx(), a1.handle));
  EXPECT_FALSE(fs::exists(fs::path(LocalProvider::AddressRegistryDir(bridge_)) / a1.address));
  Instance b2 = CreateRunningOn(**b, Spec("c-b2"));
  EXPECT_EQ(b2.address, a1.address);

  // .4: its owner's state dir vanished (a crashed test, a deleted data dir): taken over.
  WriteRegistryEntry(bridge_, subnet_prefix_ + "4", (dir_.path() / "vanished").string(),
                     "loc-gone1");
  // .5: a third state dir whose record still holds it: respected.
  fs::path c_dir = dir_.path() / "state-c";
  LocalOptions c_opts = opts_;
  c_opts.state_dir = c_dir.string();
  others_.push_back(c_opts);
  fs::create_directories(c_dir / "instances" / "loc-live1");
  c_dir = fs::canonical(c_dir);
  std::ofstream(c_dir / "instances" / "loc-live1" / "instance.json")
      << Json{{"id", "loc-live1"}, {"address", subnet_prefix_ + "5"}}.dump();
  WriteRegistryEntry(bridge_, subnet_prefix_ + "5", c_dir.string(), "loc-live1");
  // .6: no record behind it, but its namespace still exists, so something on the bridge may use
  // the address: respected until the namespace goes.
  const std::string orphan = "loc-orph" + RandomHex(3);
  struct NetnsGuard {
    std::string name;
    ~NetnsGuard() { (void)RunCommand({"/usr/sbin/ip", "netns", "del", name}); }
  } guard{LocalProvider::NetnsName(orphan)};
  ASSERT_OK(RunChecked({"/usr/sbin/ip", "netns", "add", guard.name}, "netns add"));
  WriteRegistryEntry(bridge_, subnet_prefix_ + "6", (dir_.path() / "vanished").string(), orphan);

  Instance a2 = CreateRunning("c-a2");
  EXPECT_EQ(a2.address, subnet_prefix_ + "4");
  EXPECT_EQ(RegistryEntry(bridge_, a2.address).value("state_dir", ""), a_dir);
  EXPECT_EQ(RegistryEntry(bridge_, a2.address).value("instance_id", ""), a2.provider_id);
  Instance a3 = CreateRunning("c-a3");
  EXPECT_EQ(a3.address, subnet_prefix_ + "7");
  ASSERT_OK(RunChecked({"/usr/sbin/ip", "netns", "del", guard.name}, "netns del"));
  Instance a4 = CreateRunning("c-a4");
  EXPECT_EQ(a4.address, subnet_prefix_ + "6");

  // A stopped instance keeps its address: nobody else gets it, and start brings it back on it.
  ASSERT_OK(P().StopInstance(Ctx(), a4.handle));
  Instance b3 = CreateRunningOn(**b, Spec("c-b3"));
  EXPECT_EQ(b3.address, subnet_prefix_ + "8");
  ASSERT_OK(P().StartInstance(Ctx(), a4.handle));
  auto a4_again = P().WaitUntilRunning(Ctx(), a4.handle, std::chrono::seconds(10));
  ASSERT_OK(a4_again);
  EXPECT_EQ(a4_again->address, a4.address);
}

TEST_F(LocalProviderTest, ParallelCreatesOfTwoStateDirsOnOneBridgeGetDistinctAddresses) {
  LocalOptions b_opts = opts_;
  b_opts.state_dir = (dir_.path() / "state-b").string();
  others_.push_back(b_opts);
  auto b = LocalProvider::Create(b_opts);
  ASSERT_OK(b);
  ASSERT_OK(P().CreateKeyPair(Ctx(), "k1"));
  ASSERT_OK((*b)->CreateKeyPair(Ctx(), "k1"));
  constexpr int kPerProvider = 4;
  std::vector<Result<Instance>> results(2 * kPerProvider, Error::Internal("not run"));
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < 2 * kPerProvider; ++i) {
      LocalProvider& p = i % 2 == 0 ? P() : **b;
      threads.emplace_back([&, i, &p = p] {
        results[i] = p.CreateInstance(Ctx(), Spec("c-both" + std::to_string(i)));
      });
    }
  }
  std::set<std::string> addrs;
  for (auto& r : results) {
    ASSERT_OK(r);
    addrs.insert(r->address);
  }
  EXPECT_EQ(addrs.size(), results.size());
}

// The registry lives in /run: a reboot (or a hand) empties it while state dirs keep their
// records. A provider claims its records' addresses again when it starts; an instance whose
// address another provider took meanwhile moves to a free one and boots there.
TEST_F(LocalProviderTest, AfterTheRegistryIsLostAClashingInstanceMovesToAFreeAddress) {
  Instance a1 = CreateRunning("c-a1");
  ASSERT_EQ(a1.address, subnet_prefix_ + "2");
  provider_.reset();
  fs::remove_all(LocalProvider::AddressRegistryDir(bridge_));

  LocalOptions b_opts = opts_;
  b_opts.state_dir = (dir_.path() / "state-b").string();
  others_.push_back(b_opts);
  auto b = LocalProvider::Create(b_opts);
  ASSERT_OK(b);
  Instance b1 = CreateRunningOn(**b, Spec("c-b1"));
  EXPECT_EQ(b1.address, subnet_prefix_ + "2");  // nothing said .2 was taken

  // Provider A starts again: .2 is B's now, so A's instance moves.
  auto moved = P().WaitUntilRunning(Ctx(), a1.handle, std::chrono::seconds(10));
  ASSERT_OK(moved);
  EXPECT_EQ(moved->address, subnet_prefix_ + "3");
  EXPECT_EQ(RegistryEntry(bridge_, moved->address).value("instance_id", ""), a1.provider_id);
  EXPECT_EQ(RegistryEntry(bridge_, b1.address).value("instance_id", ""), b1.provider_id);
  EXPECT_NE(Slurp(InstanceDir(a1) / "sshd_config").find("ListenAddress " + moved->address + "\n"),
            std::string::npos);
  auto listening = RunCommand({"/usr/sbin/ip", "netns", "exec",
                               LocalProvider::NetnsName(a1.provider_id), "/usr/bin/ss", "-Hltn"});
  ASSERT_OK(listening);
  EXPECT_NE(listening->out.find(moved->address + ":22"), std::string::npos) << listening->out;
}

}  // namespace
}  // namespace canopy::providers::local
