#include "exe/agent_roles.h"

#include <iostream>

#include "common/log.h"
#include "net/probe.h"

namespace canopy::exe {
namespace {

int RunCluster(const cluster::ClusterOptions& opts, const std::string& log_level) {
  log::Init("cluster", log_level);
  sigset_t sigs = BlockStopSignals();
  cluster::ClusterService service(opts);
  return ServeUntilSignal(service, sigs, "Cluster");
}

int RunNode(const node::NodeOptions& opts, const std::string& log_level) {
  log::Init("node", log_level);
  sigset_t sigs = BlockStopSignals();
  node::NodeAgent agent(opts);
  return ServeUntilSignal(agent, sigs, "Node");
}

}  // namespace

AgentRoles::AgentRoles(CLI::App& app) {
  cluster_ =
      app.add_subcommand("cluster", "Run a cluster daemon (pairs with the root, serves nodes)");
  cluster_->add_option("--root", co_.root_url, "Root URL")->required();
  cluster_->add_option("--token", co_.token, "Cluster token (first start only)")
      ->envname("CANOPY_CLUSTER_TOKEN");
  cluster_->add_option("--token-file", co_.token_file,
                       "File holding the cluster token (removed once paired)");
  cluster_->add_option("--ca-fingerprint", co_.ca_fingerprint,
                       "SHA-256 fingerprint of the root's CA (sha256:HEX): an https root is "
                       "trusted only with it (pinned at first contact)");
  cluster_->add_option("--ca-file", co_.ca_file, "The root's CA certificate (PEM), instead");
  cluster_->add_option("--data-dir", co_.data_dir, "Directory for the cluster's identity and store")
      ->required();
  cluster_->add_option("--listen", co_.listen, "HOST:PORT to serve the node API on")
      ->capture_default_str();
  cluster_->add_option("--advertise-url", co_.advertise_url,
                       "URL of this cluster's API as reported to the root");
  cluster_
      ->add_option("--link-interval", link_interval_,
                   "Seconds per link long-poll (default: the root's)")
      ->check(CLI::Range(1, 3600));
  cluster_->add_option("--heartbeat-interval", node_heartbeat_, "Seconds between node heartbeats")
      ->check(CLI::Range(1, 3600));
  cluster_->add_option(
      "--test-kill-after-command", co_.test_kill_after_command,
      "Tests only: command TYPE after whose first run (outcome stored, ack not sent) "
      "the cluster exits with status 137");

  node_ = app.add_subcommand("node", "Run a node agent (registers with its cluster)");
  node_->add_option("--cluster", no_.cluster_url, "Cluster URL")->required();
  node_->add_option("--token", no_.token, "Node token (first start only)")
      ->envname("CANOPY_NODE_TOKEN");
  node_->add_option("--token-file", no_.token_file,
                    "File holding the node token (removed once registered)");
  node_->add_option("--ca-fingerprint", no_.ca_fingerprint,
                    "SHA-256 fingerprint of the root's CA (sha256:HEX): an https cluster is "
                    "trusted only with it (pinned at first contact)");
  node_->add_option("--ca-file", no_.ca_file, "The root's CA certificate (PEM), instead");
  node_->add_option("--data-dir", no_.data_dir, "Directory keeping the node's identity")
      ->required();
  node_->add_option("--advertise-address", no_.advertise_address,
                    "Address reported to the cluster (default: source address of the connection)");
  node_
      ->add_option("--job-user", no_.job_user,
                   "Unprivileged user jobs run as (created when missing; \"\" = the agent's "
                   "own user)")
      ->capture_default_str();
  node_
      ->add_option("--cpu-millis", no_.cpu_millis,
                   "CPU capacity offered to jobs, in millicores (default: the usable CPUs)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  node_
      ->add_option("--memory-mib", no_.memory_mib,
                   "Memory offered to jobs, in MiB (default: MemTotal from /proc/meminfo)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));

  probe_ = app.add_subcommand(
      "probe", "Check that this machine reaches an HTTP(S) URL (any HTTP answer); exit 1 if not");
  probe_->add_option("--url", probe_url_, "URL to GET")->required();
  probe_->add_option("--timeout", probe_timeout_, "Seconds to keep trying")
      ->check(CLI::Range(1, 600))
      ->capture_default_str();
}

std::optional<int> AgentRoles::Run(const std::string& log_level) {
  if (probe_->parsed()) {
    auto st = net::Probe(probe_url_, std::chrono::seconds(probe_timeout_));
    if (!st) {
      std::cerr << "error: " << st.error().message << "\n";
      return 1;
    }
    std::cout << "ok: " << probe_url_ << " answered\n";
    return 0;
  }
  if (cluster_->parsed()) {
    co_.link_interval = std::chrono::seconds(link_interval_);
    co_.heartbeat_interval = std::chrono::seconds(node_heartbeat_);
    return RunCluster(co_, log_level);
  }
  if (node_->parsed()) return RunNode(no_, log_level);
  return std::nullopt;
}

}  // namespace canopy::exe
