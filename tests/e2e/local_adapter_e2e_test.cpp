// End to end: root + `canopyd provider --type local` as real processes. The adapter registers and
// heartbeats (live → down when killed → live again after a restart, still managing its instances);
// through the adapter an instance is created, canopyd is installed on it over SSH with the stored
// key and the reported host key, a firewall opens exactly its port, and stop/start/terminate do
// what the contract says. Root only (skipped otherwise); everything made is removed at the end.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <thread>

#include "common/ids.h"
#include "common/json.h"
#include "install/installer.h"
#include "providers/local/local_exec.h"
#include "providers/local/local_provider.h"
#include "providers/remote/remote_provider.h"
#include "support/daemons.h"
#include "support/local_env.h"
#include "support/test_util.h"

namespace canopy {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using canopy::testing::AdapterDaemon;
using canopy::testing::LocalTestNet;
using canopy::testing::ReadFile;
using canopy::testing::RootDaemon;
using canopy::testing::TempDir;
using canopy::testing::WaitFor;
using providers::CallContext;
using providers::CredentialSecret;
using providers::Instance;
using providers::InstanceState;
using providers::local::LocalProvider;
using providers::local::NetnsPids;
using providers::local::RunCommand;

bool Reachable(const std::string& addr, uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
  if (!ok && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, 400) == 1) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      ok = err == 0;
    }
  }
  close(fd);
  return ok;
}

// Whether something in the instance's namespace listens on TCP `port` (seen from inside).
bool ListensInside(const std::string& ns, uint16_t port) {
  auto r = RunCommand({"/usr/sbin/ip", "netns", "exec", ns, "ss", "-Hltn"});
  return r.has_value() && r->out.find(":" + std::to_string(port) + " ") != std::string::npos;
}

// Alive = exists and is not a zombie waiting for a parent that does not reap (e.g. in containers).
bool Alive(int64_t pid) {
  if (pid <= 0) return false;
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  auto close_paren = stat.rfind(')');
  if (stat.empty() || close_paren == std::string::npos || close_paren + 2 >= stat.size())
    return false;
  return stat[close_paren + 2] != 'Z';
}

std::string ProviderStatus(const RootDaemon& root, const std::string& token,
                           const std::string& id) {
  auto list = root.Call("GET", "/api/v1/providers", "", token);
  for (const auto& p : list.json) {
    if (p.value("id", "") == id) return p.value("status", "");
  }
  return "absent";
}

class LocalAdapterE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!LocalTestNet::Available()) GTEST_SKIP() << "the local provider needs root";
    root_ = std::make_unique<RootDaemon>((dir_.path() / "root").string(),
                                         std::vector<std::string>{"--heartbeat-interval", "1"});
    root_->Start();
    admin_ = root_->AdminToken();
    auto tok = root_->Call("POST", "/api/v1/provider-tokens", "{}", admin_);
    ASSERT_EQ(tok.status, 201) << tok.body;
    adapter_dir_ = (dir_.path() / "adapter").string();
    adapter_ = std::make_unique<AdapterDaemon>(
        "local", root_->url(), adapter_dir_,
        std::vector<std::string>{"--config", DumpJson(net_.Config())});
    adapter_->Start(tok.json["token"].get<std::string>());
  }

  void TearDown() override {
    adapter_.reset();
    net_.Cleanup();
    auto ns = RunCommand({"/usr/sbin/ip", "netns", "list"});
    if (ns && made_) {
      EXPECT_EQ(ns->out.find(made_->provider_id), std::string::npos) << ns->out;
    }
  }

  // The adapter's identity (written 0600 by the adapter itself) gives the key the root uses.
  std::unique_ptr<providers::remote::RemoteProvider> Remote() {
    // The adapter answers (provider.url) before its registration is through: wait for it.
    Result<Json> id = Error::NotFound("no identity yet");
    WaitFor(
        [&] {
          return (id = ParseJsonObject(ReadFile(adapter_dir_ + "/identity.json"))).has_value();
        },
        std::chrono::seconds(10));
    EXPECT_TRUE(id.has_value());
    if (!id) return nullptr;
    adapter_id_ = (*id)["id"].get<std::string>();
    providers::ProviderInfo info;
    info.type = "local";
    // The adapter serves the root only (mutual TLS): the test calls it as the root.
    return std::make_unique<providers::remote::RemoteProvider>(
        adapter_->url(), SecretString((*id)["adapter_key"].get<std::string>()), info,
        root_->TlsAsRoot("adapter:" + adapter_id_));
  }

  install::SshTarget Target(const Instance& in, const providers::KeyPair& kp) {
    install::SshTarget t;
    t.host = in.address;
    t.port = in.ssh_port;
    t.user = in.ssh_user;
    t.private_key = kp.private_key;
    t.host_key_sha256 = in.host_key_sha256;
    return t;
  }

  install::ComponentSpec RootComponent(const std::string& name, uint16_t port) {
    install::ComponentSpec spec;
    spec.name = name;
    spec.binary_path = canopy::testing::CanopydPath();
    spec.argv = {"root", "--listen", "0.0.0.0:" + std::to_string(port), "--data-dir",
                 name + "-data"};
    spec.env = {{"CANOPY_ADMIN_PASSWORD", "pw-" + name + "-0123456789"}};
    return spec;
  }

  TempDir dir_;
  LocalTestNet net_;
  std::unique_ptr<RootDaemon> root_;
  std::unique_ptr<AdapterDaemon> adapter_;
  std::string admin_, adapter_dir_, adapter_id_;
  std::optional<Instance> made_;
};

TEST_F(LocalAdapterE2E, AdapterLifecycleInstallFirewallAndInstanceLifecycle) {
  CallContext ctx{CredentialSecret(Json::object()), "local"};
  auto remote = Remote();
  ASSERT_NE(remote, nullptr);
  ASSERT_EQ(ProviderStatus(*root_, admin_, adapter_id_), "live");

  // Create an instance with a stored key pair and an SSH firewall (as the broker does: inbound
  // traffic is dropped unless a firewall opens it) through the adapter.
  ASSERT_OK(remote->CreateKeyPair(ctx, "e2e"));
  providers::FirewallSpec ssh_fw;
  ssh_fw.canopy_id = "fw-ssh-" + RandomHex(4);
  ssh_fw.name = ssh_fw.canopy_id;
  ssh_fw.rules = {providers::FirewallRule{22, "tcp", {}}};
  auto ssh_firewall = remote->CreateFirewall(ctx, ssh_fw);
  ASSERT_OK(ssh_firewall);
  providers::InstanceSpec spec;
  spec.canopy_id = "w-" + RandomHex(4);
  spec.idempotency_key = "idem-" + spec.canopy_id;
  spec.instance_type = "local.small";
  // This host's filesystem: the test installs the full `canopyd` (a root, linked against this
  // host's libraries), which a blank image could not run; clusters' tests use blank images.
  spec.image = "debian-12";
  spec.key_pair = "e2e";
  spec.firewalls = {ssh_firewall->id};
  spec.tags = {{"suite", "e2e"}};
  auto created = remote->CreateInstance(ctx, spec);
  ASSERT_OK(created);
  made_ = *created;
  auto running = remote->WaitUntilRunning(ctx, created->handle, 30s);
  ASSERT_OK(running);
  const std::string ns = LocalProvider::NetnsName(running->provider_id);

  // Kill the adapter: down within 3 heartbeat periods (+ one check period of slack).
  adapter_->KillHard();
  auto killed = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor([&] { return ProviderStatus(*root_, admin_, adapter_id_) == "down"; }, 8s));
  EXPECT_LT(std::chrono::steady_clock::now() - killed, 4500ms);
  // The instance lives on without its adapter.
  EXPECT_TRUE(Reachable(running->address, running->ssh_port));

  // Restart from its saved identity: live again, same id, and it still manages the instance.
  adapter_->Start("");
  ASSERT_TRUE(WaitFor([&] { return ProviderStatus(*root_, admin_, adapter_id_) == "live"; }, 8s));
  remote = Remote();
  ASSERT_NE(remote, nullptr);
  auto found = remote->FindInstancesByTag(ctx, providers::kCanopyIdTag, spec.canopy_id);
  ASSERT_OK(found);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].provider_id, running->provider_id);
  EXPECT_EQ((*found)[0].state, InstanceState::kRunning);
  auto again = remote->CreateInstance(ctx, spec);  // same idempotency key: the same instance
  ASSERT_OK(again);
  EXPECT_EQ(again->provider_id, running->provider_id);

  // SSH in with the stored key (pinning the reported host key) and install canopyd.
  auto kp = remote->GetKeyPair(ctx, "e2e");
  ASSERT_OK(kp);
  ASSERT_FALSE(running->host_key_sha256.empty());
  install::SshInstaller installer;
  const uint16_t port = 7811, other = 7812;
  auto report = installer.Install(Target(*running, *kp), RootComponent("web", port));
  ASSERT_OK(report);
  EXPECT_FALSE(report->upload_skipped);
  auto other_report = installer.Install(Target(*running, *kp), RootComponent("other", other));
  ASSERT_OK(other_report);
  EXPECT_TRUE(other_report->upload_skipped);  // same binary digest already there
  ASSERT_TRUE(WaitFor([&] { return ListensInside(ns, port) && ListensInside(ns, other); }, 20s));
  // A wrong host key is refused.
  auto wrong = Target(*running, *kp);
  wrong.host_key_sha256 = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  EXPECT_FALSE(installer.GetStatus(wrong, "web").has_value());

  // Default drop: neither port is reachable from the host until a firewall opens one.
  EXPECT_FALSE(Reachable(running->address, port));
  providers::FirewallSpec fw;
  fw.canopy_id = "fw-" + spec.canopy_id;
  fw.name = fw.canopy_id;
  fw.rules = {providers::FirewallRule{port, "tcp", {}}};
  auto firewall = remote->CreateFirewall(ctx, fw);
  ASSERT_OK(firewall);
  ASSERT_OK(remote->AttachFirewall(ctx, running->handle, firewall->id));
  ASSERT_TRUE(WaitFor([&] { return Reachable(running->address, port); }, 5s));
  // A root listening on every address speaks TLS.
  auto health = canopy::testing::CallApi("https://" + running->address + ":" + std::to_string(port),
                                         "GET", "/healthz");
  EXPECT_EQ(health.status, 200) << health.body;
  EXPECT_FALSE(Reachable(running->address, other));
  EXPECT_TRUE(ListensInside(ns, other));

  // Stop: every process of the instance is gone, the disk stays.
  auto st = installer.GetStatus(Target(*running, *kp), "web");
  ASSERT_OK(st);
  ASSERT_TRUE(st->running);
  const int64_t supervisor = st->pid, child = st->child_pid;
  const fs::path disk = fs::path(net_.state_dir()) / "instances" / running->provider_id / "disk";
  ASSERT_TRUE(fs::exists(disk / "canopy/bin/canopyd"));
  ASSERT_OK(remote->StopInstance(ctx, running->handle));
  EXPECT_TRUE(NetnsPids(ns).empty());
  EXPECT_FALSE(Alive(supervisor));
  EXPECT_FALSE(Alive(child));
  EXPECT_TRUE(fs::exists(disk / "canopy/bin/canopyd"));
  EXPECT_TRUE(fs::exists(disk / "canopy/web-data"));  // the root runs in canopy/
  auto stopped = remote->DescribeInstance(ctx, running->handle);
  ASSERT_OK(stopped);
  EXPECT_EQ(stopped->state, InstanceState::kStopped);

  // Start: SSH answers again; the install is checked, not repeated; the firewall still applies.
  ASSERT_OK(remote->StartInstance(ctx, running->handle));
  auto restarted = remote->WaitUntilRunning(ctx, running->handle, 30s);
  ASSERT_OK(restarted);
  auto re = installer.Install(Target(*restarted, *kp), RootComponent("web", port));
  ASSERT_OK(re);
  EXPECT_TRUE(re->upload_skipped);
  ASSERT_TRUE(WaitFor([&] { return Reachable(restarted->address, port); }, 20s));
  EXPECT_FALSE(Reachable(restarted->address, other));

  // Terminate: namespace, veth and disk are gone; a second terminate is still success.
  ASSERT_OK(remote->TerminateInstance(ctx, running->handle));
  auto list = RunCommand({"/usr/sbin/ip", "netns", "list"});
  ASSERT_OK(list);
  EXPECT_EQ(list->out.find(ns), std::string::npos);
  EXPECT_FALSE(fs::exists("/sys/class/net/" + LocalProvider::VethName(running->provider_id)));
  EXPECT_FALSE(fs::exists(disk));
  EXPECT_OK(remote->TerminateInstance(ctx, running->handle));
  EXPECT_OK(remote->DeleteFirewall(ctx, firewall->id));
  EXPECT_OK(remote->DeleteFirewall(ctx, ssh_firewall->id));
  // The adapter's log never holds the private key.
  std::string pk = kp->private_key.Reveal();
  EXPECT_EQ(ReadFile(adapter_->log_path()).find(pk.substr(40, 40)), std::string::npos);
}

}  // namespace
}  // namespace canopy
