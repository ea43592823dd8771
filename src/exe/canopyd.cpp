// canopyd: every Canopy daemon in one binary (root, cluster, node, provider). Thin: flag parsing
// only; the daemons live in src/root, src/providers/adapter, ...
#include <malloc.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <vector>

#include "common/json.h"
#include "common/log.h"
#include "exe/agent_roles.h"
#include "providers/adapter/adapter_service.h"
#include "providers/builtin.h"
#include "providers/registry.h"
#include "root/root_daemon.h"

namespace {

// Cloud-like knobs of the local provider given as flags; they are merged into --config.
struct LocalFlags {
  int64_t boot_delay_ms = -1;
  double fail_rate = -1;
  std::vector<std::string> capacity;  // TYPE=N
  std::string state_dir;
  // aws, gcp: endpoints (aws: like AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE>) and the price
  // catalog.
  std::string endpoint_url;
  std::vector<std::string> endpoints;  // SERVICE=URL
  std::string price_catalog;
};

int RunProvider(const std::string& type, const std::string& config_text, const LocalFlags& lf,
                const canopy::providers::adapter::AdapterOptions& opts,
                const std::string& log_level) {
  canopy::log::Init("provider", log_level);
  canopy::providers::ProviderRegistry registry;
  auto reg = canopy::providers::RegisterBuiltinProviders(registry);
  if (!reg) {
    std::cerr << "error: " << reg.error().message << "\n";
    return 1;
  }
  canopy::Json config = canopy::Json::object();
  if (!config_text.empty()) {
    auto parsed = canopy::ParseJsonObject(config_text);
    if (!parsed) {
      std::cerr << "error: --config: " << parsed.error().message << "\n";
      return 2;
    }
    config = std::move(*parsed);
  }
  if (lf.boot_delay_ms >= 0) config["boot_delay_ms"] = lf.boot_delay_ms;
  if (lf.fail_rate >= 0) config["fail_rate"] = lf.fail_rate;
  if (!lf.state_dir.empty()) config["state_dir"] = lf.state_dir;
  if (!lf.endpoint_url.empty()) config["endpoint_url"] = lf.endpoint_url;
  if (!lf.price_catalog.empty()) config["price_catalog"] = lf.price_catalog;
  for (const std::string& e : lf.endpoints) {
    auto eq = e.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "error: --endpoint must be SERVICE=URL, got '" << e << "'\n";
      return 2;
    }
    std::string svc = e.substr(0, eq);
    std::transform(svc.begin(), svc.end(), svc.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    if (type == "gcp") {
      // GCP's services: compute, crm (Resource Manager), iam, secretmanager, token.
      if (svc == "secret_manager" || svc == "secret-manager" || svc == "secretsmanager") {
        svc = "secretmanager";
      } else if (svc == "resourcemanager" || svc == "cloudresourcemanager") {
        svc = "crm";
      }
    } else if (svc == "secrets_manager" || svc == "secrets-manager") {
      svc = "secretsmanager";
    }
    config["endpoints"][svc] = e.substr(eq + 1);
  }
  for (const std::string& c : lf.capacity) {
    auto eq = c.find('=');
    int64_t n = -1;
    try {
      if (eq != std::string::npos && eq > 0) n = std::stoll(c.substr(eq + 1));
    } catch (const std::exception&) {
      n = -1;
    }
    if (n < 0) {
      std::cerr << "error: --capacity must be TYPE=COUNT, got '" << c << "'\n";
      return 2;
    }
    config["capacity"][c.substr(0, eq)] = n;
  }
  auto created = registry.Create(type, config);
  if (!created) {
    std::cerr << "error: " << created.error().message << "\n";
    return 2;
  }
  canopy::providers::ProviderPtr provider = std::move(*created);
  sigset_t sigs = canopy::exe::BlockStopSignals();
  canopy::providers::adapter::AdapterService service(std::move(provider), opts);
  return canopy::exe::ServeUntilSignal(service, sigs, "Provider adapter");
}

}  // namespace

int main(int argc, char** argv) {
  // Big short-lived buffers (Argon2 uses 19 MiB per password check) go straight to mmap and back
  // to the OS on free; an explicit threshold also stops glibc from raising it dynamically, which
  // otherwise keeps such buffers in the heap and in RSS for the daemon's lifetime.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  CLI::App app{"canopyd - Canopy daemons (root, cluster, node, provider)"};
  app.require_subcommand(1);
  app.fallthrough();  // global options (--log-level) may follow the subcommand too
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->envname("CANOPY_LOG_LEVEL");

  canopy::root::RootOptions ro;
  int64_t token_ttl = 3600, heartbeat = 5, lease_ms = 15000;
  auto* root = app.add_subcommand("root", "Run the root control plane");
  root->add_option("--listen", ro.listen, "HOST:PORT to serve the API on")->capture_default_str();
  root->add_option("--data-dir", ro.data_dir, "Directory for the database and keys")
      ->capture_default_str();
  root->add_option("--database", ro.database, "Database URL (default: SQLite in the data dir)");
  root->add_option("--token-ttl", token_ttl, "Lifetime of login tokens in seconds")
      ->check(CLI::Range(1, 86400 * 30));
  root->add_option("--heartbeat-interval", heartbeat, "Seconds between provider adapter heartbeats")
      ->check(CLI::Range(1, 3600));
  root->add_option("--op-lease-ms", lease_ms, "Operation lease in milliseconds")
      ->check(CLI::Range(200, 600000));
  root->add_option("--op-workers", ro.op_workers, "Operation engine workers")
      ->check(CLI::Range(1, 64));
  int64_t idle_timeout = ro.idle_timeout.count(), jwt_key_days = ro.jwt_key_max_age.count() / 24;
  root->add_option("--max-connections", ro.max_connections,
                   "Open connections served at once (beyond: 503 and close; 0 = no limit)")
      ->capture_default_str();
  root->add_option("--max-connections-per-address", ro.max_connections_per_address,
                   "Open connections from one peer address (0 = no limit)")
      ->capture_default_str();
  root->add_option("--max-pending-requests", ro.max_pending_requests,
                   "Requests queued or running at once (beyond: 503; 0 = no limit)")
      ->capture_default_str();
  root->add_option("--idle-timeout", idle_timeout,
                   "Seconds an idle keep-alive connection stays open (5 s under load)")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  root->add_flag("--require-adapter-approval", ro.require_adapter_approval,
                 "A newly registered (or moved) provider adapter gets no credential until an "
                 "infra user approves it (canopy provider approve ID)");
  root->add_option("--jwt-key-max-age-days", jwt_key_days,
                   "Days after which the JWT signing key is replaced (0 = never); tokens signed "
                   "by the old key stay valid until they expire")
      ->check(CLI::Range(0, 3650))
      ->capture_default_str();
  root->add_flag("--enable-test-ops", ro.enable_test_ops,
                 "Serve POST /api/v1/test/operations (tests only)");
  root->add_option("--test-kill-after-step", ro.test_kill_after_step,
                   "Tests only: KIND/STEP at which the root kills itself once (crash tests)");
  root->add_option(
      "--test-cluster-kill-after-command", ro.test_cluster_kill_after_command,
      "Tests only: installed clusters get --test-kill-after-command TYPE (crash tests)");
  root->add_option("--sweep-interval", ro.sweep_interval,
                   "Seconds between sweeps for orphan instances (0 = off)")
      ->check(CLI::Range(int64_t{0}, int64_t{86400}))
      ->capture_default_str();
  root->add_flag("--sweep-delete", ro.sweep_delete,
                 "Terminate orphan instances (default: report only)");
  root->add_option("--cluster-url", ro.cluster_url,
                   "Root URL that clusters installed by the broker dial (default: the "
                   "--cluster-listen URL, else the --listen URL)");
  root->add_option(
      "--cluster-listen", ro.cluster_listen,
      "HOST:PORT of a second listener serving only what clusters and adapters call "
      "(pairing, link, registration); binds before HOST exists (e.g. a bridge made later)");
  root->add_option(
      "--canopyd-binary", ro.canopyd_binary,
      "canopyd binary uploaded to new instances (default: canopyd-dist next to this one)");
  root->add_option("--cluster-link-interval", ro.cluster_link_interval,
                   "Link long-poll seconds given to installed clusters")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  root->add_option("--cluster-heartbeat-interval", ro.cluster_node_heartbeat,
                   "Node heartbeat seconds given to installed clusters")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  root->add_option("--ssh-source", ro.ssh_sources,
                   "CIDR allowed to the SSH port of instances the broker makes: the root's "
                   "egress address (repeatable; default: anywhere)");
  root->add_option("--cluster-api-source", ro.cluster_api_sources,
                   "CIDR allowed to installed clusters' API port: the clusters' private network, "
                   "edge nodes (repeatable; default: anywhere)");
  root->add_flag("--tls", ro.tls_on_loopback,
                 "Speak TLS on loopback listeners too (every other listener always does)");
  root->add_option("--test-tier-cert-seconds", ro.test_tier_cert_seconds,
                   "Tests only: lifetime of the certificates issued to clusters and adapters");
  root->add_option("--tls-san", ro.tls_names,
                   "Extra IP address or DNS name in the root's certificate, e.g. its public "
                   "name behind NAT (repeatable)");
  root->add_option("--tls-cert", ro.tls_cert_file,
                   "PEM certificate chain for the --listen API instead of one from the root's CA "
                   "(with --tls-key)");
  root->add_option("--tls-key", ro.tls_key_file, "PEM key of --tls-cert");
  root->add_option("--ca-cert", ro.ca_cert_file,
                   "PEM CA certificate to issue the tiers' certificates with instead of the one "
                   "made on first start (with --ca-key)");
  root->add_option("--ca-key", ro.ca_key_file, "PEM key of --ca-cert");
  root->add_option("--ssh-wait", ro.ssh_wait_seconds,
                   "Seconds one install attempt waits for an instance's sshd")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();

  canopy::providers::adapter::AdapterOptions po;
  std::string type;
  std::string provider_config;
  auto* prov = app.add_subcommand("provider", "Run a provider adapter service");
  prov->add_option("--type", type, "Provider type (see the error of an unknown type)")->required();
  prov->add_option("--config", provider_config, "Provider configuration as a JSON object");
  prov->add_option("--root", po.root_url, "Root URL")->required();
  prov->add_option("--token", po.token, "Registration token from `canopy provider token`")
      ->envname("CANOPY_PROVIDER_TOKEN");
  prov->add_option("--listen", po.listen, "HOST:PORT to serve the adapter API on")
      ->capture_default_str();
  prov->add_option("--advertise-url", po.advertise_url, "URL the root uses to reach this adapter");
  prov->add_option("--data-dir", po.data_dir, "Directory keeping the adapter's identity");
  prov->add_option("--ca-fingerprint", po.ca_fingerprint,
                   "SHA-256 fingerprint of the root's CA (sha256:HEX): an https root is trusted "
                   "only with it (pinned at first contact)");
  prov->add_option("--ca-file", po.ca_file, "The root's CA certificate (PEM), instead");
  prov->add_option("--test-kill-after-call", po.test_kill_after_call,
                   "Tests only: METHOD[#N] after whose N-th call the adapter kills itself once");
  LocalFlags lf;
  prov->add_option("--boot-delay", lf.boot_delay_ms,
                   "local: milliseconds an instance takes to boot")
      ->check(CLI::Range(int64_t{0}, int64_t{3600000}));
  prov->add_option("--fail-rate", lf.fail_rate, "local: probability that an instance create fails")
      ->check(CLI::Range(0.0, 1.0));
  prov->add_option("--capacity", lf.capacity, "local: TYPE=COUNT instances at most (repeatable)");
  prov->add_option("--state-dir", lf.state_dir, "local: directory of instance state and disks");
  prov->add_option("--endpoint-url", lf.endpoint_url,
                   "aws, gcp: base URL of every cloud service, e.g. an emulator (aws: as "
                   "AWS_ENDPOINT_URL; gcp: OAuth tokens at URL/token)");
  prov->add_option(
      "--endpoint", lf.endpoints,
      "aws, gcp: SERVICE=URL for one service (repeatable). aws: ec2, iam, sts, secretsmanager, "
      "pricing (as AWS_ENDPOINT_URL_<SERVICE>); gcp: compute, crm, iam, secretmanager, token");
  prov->add_option("--price-catalog", lf.price_catalog,
                   "aws, gcp: offline price list CSV (aws: InstanceType,Region,PriceHour; gcp: "
                   "MachineType,...,Region,PriceHour,...)");

  canopy::exe::AgentRoles agent_roles(app);

  CLI11_PARSE(app, argc, argv);
  if (auto rc = agent_roles.Run(log_level)) return *rc;
  if (root->parsed()) {
    ro.log_level = log_level;
    ro.token_ttl = std::chrono::seconds(token_ttl);
    ro.idle_timeout = std::chrono::seconds(idle_timeout);
    ro.jwt_key_max_age = std::chrono::hours(24 * jwt_key_days);
    ro.heartbeat_interval = std::chrono::seconds(heartbeat);
    ro.op_lease = std::chrono::milliseconds(lease_ms);
    return canopy::root::RunRoot(ro);
  }
  if (prov->parsed()) return RunProvider(type, provider_config, lf, po, log_level);
  return 2;
}
