#include "root/root_daemon.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>

#include "api/api.h"
#include "auth/jwt.h"
#include "auth/password.h"
#include "auth/secret_box.h"
#include "broker/broker.h"
#include "broker/sweeper.h"
#include "common/files.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/shell.h"
#include "control/users.h"
#include "install/installer.h"
#include "net/error_mapping.h"
#include "net/http.h"
#include "ops/engine.h"
#include "ops/test_kind.h"
#include "root/root_core.h"
#include "root/root_pki.h"
#include "scheduler/firewall_sync.h"
#include "scheduler/service_scheduler.h"
#include "store/store.h"

namespace canopy::root {
namespace {

// canopyd-dist (what the build writes next to canopyd: the static canopyd-agent, or canopyd
// stripped of debug info in builds without it) when it exists, else this very binary.
std::string DefaultDistBinary() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "canopyd";
  auto dist = self;
  dist += "-dist";
  if (std::filesystem::exists(dist, ec)) return dist.string();
  return self.string();
}

// Creates user "admin" on first start (no users yet).
Status BootstrapAdmin(store::Store& store, const RootOptions& opts, const Clock& clock,
                      IdGenerator& ids) {
  CANOPY_ASSIGN_OR_RETURN(int64_t n, store.users().Count());
  if (n > 0) return OkStatus();
  const char* env = std::getenv("CANOPY_ADMIN_PASSWORD");
  std::string password = env != nullptr ? env : "";
  bool generated = password.empty();
  if (generated) password = RandomToken(18);
  if (auto st = control::CheckNewPassword(SecretString(password), "CANOPY_ADMIN_PASSWORD"); !st) {
    return Error::InvalidArgument(fmt::format(
        "CANOPY_ADMIN_PASSWORD must have at least {} characters", control::kMinPasswordLength));
  }
  CANOPY_ASSIGN_OR_RETURN(std::string hash, auth::HashPassword(SecretString(password)));
  core::User u;
  u.id = ids.NewId("usr");
  u.username = "admin";
  u.password_hash = hash;
  u.roles = {core::Role::kAdmin, core::Role::kInfra, core::Role::kApp};
  u.created_at = clock.Now();
  if (generated) {
    CANOPY_TRY(WriteFileAtomic(opts.data_dir + "/admin-password", password + "\n"));
    SPDLOG_INFO("Created user admin; its generated password is in {}/admin-password",
                opts.data_dir);
  } else {
    SPDLOG_INFO("Created user admin with the password from CANOPY_ADMIN_PASSWORD");
  }
  return store.users().Create(u);
}

// Lets the root hold `wanted` descriptors (its connection cap plus files and sockets of its
// own): raises the soft limit up to the hard one, never lowers it.
void RaiseOpenFileLimit(size_t wanted) {
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlim_t target = std::min<rlim_t>(static_cast<rlim_t>(wanted), rl.rlim_max);
  if (rl.rlim_cur >= target) return;
  rl.rlim_cur = target;
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    SPDLOG_WARN("Cannot raise the open file limit to {}", target);
  } else {
    SPDLOG_INFO("Open file limit raised to {}", target);
  }
}

}  // namespace

int RunRoot(const RootOptions& opts) {
  log::Init("root", opts.log_level);
  std::error_code ec;
  std::filesystem::create_directories(opts.data_dir, ec);
  if (ec) {
    SPDLOG_ERROR("Cannot create data dir dir={} error={}", opts.data_dir, ec.message());
    return 1;
  }
  ::chmod(opts.data_dir.c_str(), 0700);

  // Block the stop signals before any thread starts, so only sigwait below sees them.
  sigset_t sigs = BlockStopSignals();

  auto fail = [](const Error& e) {
    SPDLOG_ERROR("Root failed to start: {}", e.message);
    return 1;
  };
  std::string db_url =
      opts.database.empty() ? "sqlite:" + opts.data_dir + "/canopy.db" : opts.database;
  auto store = store::OpenStore(db_url);
  if (!store) return fail(store.error());
  auth::JwtRotation rotation;
  rotation.max_key_age = opts.jwt_key_max_age;
  rotation.token_ttl = opts.token_ttl;
  auto jwt = auth::JwtKeys::LoadOrCreate(opts.data_dir + "/jwt-ed25519.pem", rotation,
                                         std::chrono::system_clock::now());
  if (!jwt) return fail(jwt.error());
  const char* mk = std::getenv("CANOPY_MASTER_KEY");
  auto secrets =
      auth::SecretBox::LoadOrCreate(opts.data_dir + "/master.key", mk != nullptr ? mk : "");
  if (!secrets) return fail(secrets.error());

  auto clock = std::make_shared<SystemClock>();
  auto ids = std::make_shared<RandomIdGenerator>();
  if (auto st = BootstrapAdmin(**store, opts, *clock, *ids); !st) return fail(st.error());

  ops::EngineOptions eo;
  eo.owner = fmt::format("root-{}-{}", ::getpid(), RandomHex(4));
  eo.workers = opts.op_workers;
  eo.lease = opts.op_lease;
  if (!opts.test_kill_after_step.empty()) {
    eo.after_step_hook = [point = opts.test_kill_after_step,
                          marker = opts.data_dir + "/test-kill-done"](const core::Operation& op,
                                                                      const std::string& step) {
      // "KIND/STEP" or "KIND/STEP@ACTION" (ACTION = the operation's data.action).
      std::string at = op.kind + "/" + step;
      if (at != point && at + "@" + op.data.value("action", "") != point) return false;
      if (std::filesystem::exists(marker)) return false;
      (void)WriteFileAtomic(marker, point + " " + op.id + "\n");
      SPDLOG_WARN("Test kill after step op={} point={}", op.id, point);
      spdlog::default_logger()->flush();
      ::raise(SIGKILL);
      return true;
    };
  }
  ops::Engine engine(**store, clock, ids, eo);
  if (opts.enable_test_ops) (void)engine.Register(std::make_unique<ops::TestStepsKind>());

  auto hp = net::ParseHostPort(opts.listen);
  if (!hp) return fail(hp.error());
  std::optional<std::pair<std::string, uint16_t>> thp;
  if (!opts.cluster_listen.empty()) {
    auto parsed = net::ParseHostPort(opts.cluster_listen);
    if (!parsed) return fail(parsed.error());
    thp = *parsed;
  }
  // The root's CA and certificate: every listener not on loopback speaks TLS.
  RootPkiOptions pko;
  pko.data_dir = opts.data_dir;
  std::vector<std::string> hosts = {hp->first};
  if (thp) hosts.push_back(thp->first);
  hosts.push_back(net::UrlHost(opts.cluster_url));  // "" for none (RootCertificateNames skips it)
  pko.names = RootCertificateNames(hosts, opts.tls_names);
  pko.ca_cert_file = opts.ca_cert_file;
  pko.ca_key_file = opts.ca_key_file;
  pko.api_cert_file = opts.tls_cert_file;
  pko.api_key_file = opts.tls_key_file;
  auto pki = LoadOrCreateRootPki(pko);
  if (!pki) return fail(pki.error());
  control::TierCaOptions tco;
  if (opts.test_tier_cert_seconds > 0) {
    tco.leaf_validity = tco.node_ca_validity = std::chrono::seconds(opts.test_tier_cert_seconds);
  }
  auto tier_ca = std::make_shared<control::TierCa>(pki->ca, pki->identity, tco);
  auto tls_for = [&](const std::string& host) {
    return opts.tls_on_loopback || !net::IsLoopbackHost(host);
  };
  RootCoreOptions co;
  co.ca = tier_ca;
  co.token_ttl = opts.token_ttl;
  co.adapters.heartbeat_interval = opts.heartbeat_interval;
  co.adapters.require_approval = opts.require_adapter_approval;
  co.enable_test_ops = opts.enable_test_ops;
  if (opts.enable_test_ops) co.test_ops_marker_file = opts.data_dir + "/test-ops.log";
  RootCore core(**store, **jwt, **secrets, clock, ids, engine, co);
  core.Start();
  auto metrics = std::make_shared<net::Metrics>();
  net::ServerOptions so;
  so.host = hp->first;
  so.port = hp->second;
  so.worker_threads = opts.http_workers;
  so.max_connections = opts.max_connections;
  so.max_connections_per_address = opts.max_connections_per_address;
  so.max_pending_requests = opts.max_pending_requests;
  so.idle_timeout = opts.idle_timeout;
  if (tls_for(hp->first)) so.tls = pki->api_tls;
  RaiseOpenFileLimit(opts.max_connections + 256);
  auto server = net::HttpServer::Start(so, core.Router(api::RouterScope::kAll, metrics),
                                       net::ErrorResponse, metrics);
  if (!server) return fail(server.error());
  auto url_of = [&](const std::string& host, uint16_t port) {
    return fmt::format("{}://{}:{}", tls_for(host) ? "https" : "http",
                       host.find(':') != std::string::npos ? "[" + host + "]" : host, port);
  };
  std::string url = url_of(hp->first, (*server)->port());
  std::unique_ptr<net::HttpServer> tier_server;
  std::string tier_url;
  if (thp) {
    net::ServerOptions to = so;
    to.host = thp->first;
    to.port = thp->second;
    to.freebind = true;
    to.tls = tls_for(thp->first) ? pki->tier_tls : nullptr;
    auto ts = net::HttpServer::Start(to, core.Router(api::RouterScope::kTiers, metrics),
                                     net::ErrorResponse, metrics);
    if (!ts) return fail(ts.error());
    tier_server = std::move(*ts);
    tier_url = url_of(thp->first, tier_server->port());
  }
  broker::BrokerOptions bo;
  bo.cluster_root_url = !opts.cluster_url.empty() ? opts.cluster_url
                        : !tier_url.empty()       ? tier_url
                                                  : url;
  bo.canopyd_binary = opts.canopyd_binary.empty() ? DefaultDistBinary() : opts.canopyd_binary;
  bo.link_interval_seconds = opts.cluster_link_interval;
  bo.ssh_sources = opts.ssh_sources;
  bo.cluster_api_sources = opts.cluster_api_sources;
  if (bo.ssh_sources.empty() || bo.cluster_api_sources.empty()) {
    SPDLOG_WARN(
        "Instances the broker makes accept {} from anywhere: set {} to the root's egress "
        "address and the clusters' private network",
        bo.ssh_sources.empty() ? "SSH" : "the cluster API",
        bo.ssh_sources.empty() ? "--ssh-source" : "--cluster-api-source");
  }
  bo.node_heartbeat_seconds = opts.cluster_node_heartbeat;
  if (!opts.test_cluster_kill_after_command.empty()) {
    bo.cluster_extra_args = {"--test-kill-after-command", opts.test_cluster_kill_after_command};
  }
  install::InstallOptions io;
  io.wait.deadline = std::chrono::seconds(opts.ssh_wait_seconds);
  install::SshInstaller installer(io);
  broker::BrokerDeps bd;
  bd.clouds = &core.clouds();
  bd.commands = &core.commands();
  bd.tier = &core.tier();
  bd.queue = &engine;
  bd.ids = ids;
  bd.installer = &installer;
  if (auto st = broker::RegisterBrokerKinds(engine, bd, bo); !st) return fail(st.error());
  engine.Start();
  // Services: the scheduler places instances; the firewall sync follows them (fire-and-forget).
  scheduler::FirewallSync firewalls(**store, clock, core.clouds(),
                                    scheduler::FirewallSyncOptions{});
  scheduler::ServiceScheduler services(**store, clock, core.commands(), core.board(),
                                       scheduler::SchedulerOptions{}, nullptr,
                                       [&firewalls] { firewalls.Trigger(); });
  firewalls.Start();
  services.Start();
  std::unique_ptr<broker::PeriodicSweeper> sweeper;
  if (opts.sweep_interval > 0) {
    sweeper = std::make_unique<broker::PeriodicSweeper>(
        **store, core.clouds(), std::chrono::seconds(opts.sweep_interval), opts.sweep_delete);
  }
  // tier.url first: root.url appearing says the root is up, with both files current.
  std::error_code rm_ec;
  if (tier_url.empty()) {
    std::filesystem::remove(opts.data_dir + "/tier.url", rm_ec);
  } else {
    (void)WriteFileAtomic(opts.data_dir + "/tier.url", tier_url + "\n");
  }
  (void)WriteFileAtomic(opts.data_dir + "/root.url", url + "\n");
  SPDLOG_INFO(
      "Root listening url={} tier_url={} data_dir={} cluster_url={} dist_binary={} "
      "ca_fingerprint={}",
      url, tier_url.empty() ? "-" : tier_url, opts.data_dir, bo.cluster_root_url, bo.canopyd_binary,
      tier_ca->fingerprint());

  // Renews the root's certificate before it expires, without a restart: new connections get
  // the new one.
  std::jthread renewer([&](std::stop_token stop) {
    std::mutex mu;
    std::condition_variable_any cv;
    while (!stop.stop_requested()) {
      std::unique_lock<std::mutex> l(mu);
      cv.wait_for(l, stop, std::chrono::hours(1), [] { return false; });
      if (stop.stop_requested()) break;
      auto renewed = RenewRootCertificate(*pki, pko);
      if (!renewed) {
        SPDLOG_ERROR("Cannot renew the root's certificate: {}", renewed.error().message);
        continue;
      }
      if (!*renewed) continue;
      tier_ca->SetRootIdentity(pki->identity);
      if (so.tls) (void)(*server)->UpdateTls(pki->api_tls);
      if (tier_server && tls_for(thp->first)) (void)tier_server->UpdateTls(pki->tier_tls);
    }
  });

  int sig = 0;
  sigwait(&sigs, &sig);
  renewer.request_stop();
  renewer.join();
  SPDLOG_INFO("Stopping root signal={}", sig);
  sweeper.reset();
  services.Stop();
  firewalls.Stop();
  if (tier_server) tier_server->Stop();
  (*server)->Stop();
  engine.Stop();
  core.Stop();
  return 0;
}

}  // namespace canopy::root
