// Provisioning benchmark of the local provider: N instances created in parallel, each then gets
// canopyd installed over SSH (the installer's connect / check / upload / start phases). Prints a
// Markdown table row per N with the median and the slowest of each phase and the wall time until
// all N are ready. Needs root; uses its own bridge and /24 and removes everything afterwards.
//   [BOOT_DELAY_MS=ms] local_provision CANOPYD_PATH N [N ...]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "common/ids.h"
#include "install/installer.h"
#include "providers/local/local_provider.h"

namespace {

using namespace canopy;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

int64_t Ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

struct Sample {
  bool ok = false;
  std::string error;
  int64_t create_ms = 0, boot_ms = 0, connect_ms = 0, check_ms = 0, upload_ms = 0, start_ms = 0,
          ready_ms = 0;
};

struct Stat {
  int64_t median = 0, max = 0;
};

Stat Summarize(std::vector<int64_t> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.back()};
}

Sample One(providers::Provider& p, const providers::CallContext& ctx, const providers::KeyPair& kp,
           const std::string& ssh_fw, const std::string& canopyd, int i, Clock::time_point t0) {
  Sample s;
  providers::InstanceSpec spec;
  spec.canopy_id = "bench-" + std::to_string(i) + "-" + RandomHex(3);
  spec.idempotency_key = spec.canopy_id;
  spec.instance_type = "local.small";
  spec.image = "debian-12";
  spec.key_pair = kp.name;
  spec.firewalls = {ssh_fw};
  auto c0 = Clock::now();
  auto created = p.CreateInstance(ctx, spec);
  if (!created) {
    s.error = created.error().ToString();
    return s;
  }
  s.create_ms = Ms(Clock::now() - c0);
  auto b0 = Clock::now();
  auto run = p.WaitUntilRunning(ctx, created->handle, std::chrono::seconds(120));
  if (!run) {
    s.error = run.error().ToString();
    return s;
  }
  s.boot_ms = Ms(Clock::now() - b0);
  install::SshTarget t;
  t.host = run->address;
  t.port = run->ssh_port;
  t.user = run->ssh_user;
  t.private_key = kp.private_key;
  t.host_key_sha256 = run->host_key_sha256;
  install::ComponentSpec comp;
  comp.name = "node";
  comp.binary_path = canopyd;
  comp.argv = {"root", "--listen", "0.0.0.0:7900", "--data-dir", "data"};
  comp.env = {{"CANOPY_ADMIN_PASSWORD", "bench-password-0123456789"}};
  install::SshInstaller installer;
  auto rep = installer.Install(t, comp);
  if (!rep) {
    s.error = rep.error().ToString();
    return s;
  }
  s.connect_ms = rep->timings.connect_ms;
  s.check_ms = rep->timings.check_ms;
  s.upload_ms = rep->timings.upload_ms;
  s.start_ms = rep->timings.start_ms;
  s.ready_ms = Ms(Clock::now() - t0);
  s.ok = true;
  return s;
}

void Cleanup(const providers::local::LocalOptions& o) { providers::local::LocalProvider::Purge(o); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CANOPYD_PATH N [N ...]\n", argv[0]);
    return 2;
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "error: needs root (the local provider makes network namespaces)\n");
    return 2;
  }
  std::string canopyd = fs::absolute(argv[1]).string();
  providers::local::LocalOptions o;
  o.state_dir = "/tmp/canopy-bench-" + RandomHex(4);
  o.bridge = "cbb" + RandomHex(4);
  o.subnet = "198.19.250.0/24";
  if (const char* d = std::getenv("BOOT_DELAY_MS")) {
    o.boot_delay = std::chrono::milliseconds(std::atol(d));
  }
  providers::CallContext ctx{providers::CredentialSecret(Json::object()), "local"};
  std::printf(
      "| instances | all ready (s) | create p50/max (ms) | boot p50/max | connect p50/max | "
      "check p50/max | upload p50/max | start p50/max |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  int rc = 0;
  for (int a = 2; a < argc; ++a) {
    int n = std::atoi(argv[a]);
    auto p = providers::local::LocalProvider::Create(o);
    if (!p) {
      std::fprintf(stderr, "error: %s\n", p.error().ToString().c_str());
      Cleanup(o);
      return 1;
    }
    auto kp = (*p)->CreateKeyPair(ctx, "bench-" + std::to_string(n));
    if (!kp) {
      std::fprintf(stderr, "error: %s\n", kp.error().ToString().c_str());
      Cleanup(o);
      return 1;
    }
    providers::FirewallSpec fw;
    fw.canopy_id = "bench-ssh-" + std::to_string(n);
    fw.name = fw.canopy_id;
    fw.rules = {providers::FirewallRule{22, "tcp", {}}};
    auto ssh_fw = (*p)->CreateFirewall(ctx, fw);
    if (!ssh_fw) {
      std::fprintf(stderr, "error: %s\n", ssh_fw.error().ToString().c_str());
      Cleanup(o);
      return 1;
    }
    auto t0 = Clock::now();
    std::vector<std::future<Sample>> fut;
    for (int i = 0; i < n; ++i) {
      fut.push_back(std::async(std::launch::async,
                               [&, i] { return One(**p, ctx, *kp, ssh_fw->id, canopyd, i, t0); }));
    }
    std::vector<Sample> got;
    for (auto& f : fut) got.push_back(f.get());
    int64_t wall = Ms(Clock::now() - t0);
    auto col = [&](int64_t Sample::*m) {
      std::vector<int64_t> v;
      for (const auto& s : got)
        if (s.ok) v.push_back(s.*m);
      Stat st = Summarize(v);
      return std::to_string(st.median) + " / " + std::to_string(st.max);
    };
    int failed = 0;
    for (const auto& s : got) {
      if (!s.ok) {
        ++failed;
        std::fprintf(stderr, "instance failed: %s\n", s.error.c_str());
      }
    }
    std::printf("| %d%s | %.2f | %s | %s | %s | %s | %s | %s |\n", n,
                failed ? (" (" + std::to_string(failed) + " failed)").c_str() : "", wall / 1000.0,
                col(&Sample::create_ms).c_str(), col(&Sample::boot_ms).c_str(),
                col(&Sample::connect_ms).c_str(), col(&Sample::check_ms).c_str(),
                col(&Sample::upload_ms).c_str(), col(&Sample::start_ms).c_str());
    std::fflush(stdout);
    if (failed) rc = 1;
    p->reset();
    Cleanup(o);
  }
  return rc;
}
