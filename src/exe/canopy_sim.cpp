// canopy-sim: the machines behind Canopy's cloud simulators (scripts/sim/). Test peer, not part
// of a Canopy installation. `canopy-sim aws-machines --config FILE` follows moto's EC2 instances
// with local blank-image machines (src/sim/aws_machines.h); `canopy-sim gce --config FILE` serves
// the Compute Engine double (src/sim/gce_double.h) and writes its endpoint and owner key to the
// config's `info_file`. Both run until SIGTERM/SIGINT, then terminate every machine. With
// --parent-pid they also stop when that process is gone (a test that died).
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <iostream>
#include <optional>
#include <thread>

#include "common/files.h"
#include "common/log.h"
#include "common/shell.h"
#include "sim/aws_machines.h"
#include "sim/gce_double.h"

namespace {

// The options `parse` makes of the JSON config at `path` (kept in `config`); nullopt, with the
// reason on stderr, when the file or the options are wrong.
template <typename T>
std::optional<T> LoadOptions(const std::string& path,
                             canopy::Result<T> (*parse)(const canopy::Json&),
                             canopy::Json* config) {
  auto read = canopy::ReadJsonObjectFile(path);
  if (!read) {
    std::cerr << "canopy-sim: " << path << ": " << read.error().message << "\n";
    return std::nullopt;
  }
  *config = *read;
  auto opts = parse(*config);
  if (!opts) {
    std::cerr << "canopy-sim: " << path << ": " << opts.error().message << "\n";
    return std::nullopt;
  }
  return std::move(*opts);
}

int RunAwsMachines(const std::string& config_path, int parent_pid, int interval_ms,
                   const std::string& level) {
  using namespace canopy;
  log::Init("canopy-sim", level);
  sigset_t sigs = BlockStopSignals();
  canopy::Json config;
  auto opts = LoadOptions(config_path, sim::ParseAwsMachinesOptions, &config);
  if (!opts) return 2;
  auto machines = sim::AwsMachines::Create(std::move(*opts));
  if (!machines) {
    std::cerr << "canopy-sim: " << machines.error().message << "\n";
    return 1;
  }
  std::atomic<bool> stop{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    stop = true;
  });
  SPDLOG_INFO("Following moto's instances config={}", config_path);
  std::cout << "canopy-sim: ready" << std::endl;
  int failures = 0;
  while (!stop) {
    if (parent_pid > 0 && ::kill(parent_pid, 0) != 0 && errno == ESRCH) {
      SPDLOG_WARN("Parent process is gone, stopping pid={}", parent_pid);
      break;
    }
    Status st = (*machines)->SyncOnce();
    if (!st) {
      if (++failures % 25 == 1) SPDLOG_WARN("Cannot read moto error={}", st.error().message);
    } else {
      failures = 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
  SPDLOG_INFO("Stopping: terminating every machine");
  (*machines)->TerminateAll();
  if (!stop) ::kill(::getpid(), SIGTERM);  // wake the waiter
  waiter.join();
  return 0;
}

int RunGce(const std::string& config_path, int parent_pid, const std::string& level) {
  using namespace canopy;
  log::Init("canopy-sim", level);
  sigset_t sigs = BlockStopSignals();
  canopy::Json config;
  auto opts = LoadOptions(config_path, sim::ParseGceDoubleOptions, &config);
  if (!opts) return 2;
  auto info_file = GetOptString(config, "info_file", 1024);
  if (!info_file || !info_file->has_value()) {
    std::cerr << "canopy-sim: " << config_path << ": info_file is required\n";
    return 2;
  }
  auto gce = sim::GceDouble::Start(std::move(*opts));
  if (!gce) {
    std::cerr << "canopy-sim: " << gce.error().message << "\n";
    return 1;
  }
  Json info{{"endpoint_url", (*gce)->url()},
            {"project", (*gce)->project()},
            {"credential", (*gce)->OwnerKey()},
            {"pid", ::getpid()}};
  Status written = WriteFileAtomic(**info_file, DumpJson(info, 2), 0600);
  if (!written) {
    std::cerr << "canopy-sim: " << written.error().message << "\n";
    return 1;
  }
  std::atomic<bool> stop{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    stop = true;
  });
  SPDLOG_INFO("Compute Engine double ready url={} config={}", (*gce)->url(), config_path);
  std::cout << "canopy-sim: ready " << (*gce)->url() << std::endl;
  while (!stop) {
    if (parent_pid > 0 && ::kill(parent_pid, 0) != 0 && errno == ESRCH) {
      SPDLOG_WARN("Parent process is gone, stopping pid={}", parent_pid);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  SPDLOG_INFO("Stopping: terminating every machine");
  (*gce)->Stop();
  if (!stop) ::kill(::getpid(), SIGTERM);  // wake the waiter
  waiter.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"canopy-sim - real machines behind Canopy's cloud simulators (scripts/sim/)"};
  app.require_subcommand(1);
  std::string config, level = "info";
  int parent_pid = 0, interval_ms = 200;
  auto* aws = app.add_subcommand("aws-machines", "follow moto's EC2 instances with local machines");
  aws->add_option("--config", config, "sim config JSON (written by scripts/sim/aws-sim)")
      ->required();
  aws->add_option("--parent-pid", parent_pid, "stop when this process is gone");
  aws->add_option("--interval-ms", interval_ms, "how often moto is read")
      ->check(CLI::Range(20, 10000));
  aws->add_option("--log-level", level, "trace, debug, info, warn, error");
  auto* gce = app.add_subcommand("gce", "serve the Compute Engine double with local machines");
  gce->add_option("--config", config, "double config JSON (written by scripts/sim/gcp-sim)")
      ->required();
  gce->add_option("--parent-pid", parent_pid, "stop when this process is gone");
  gce->add_option("--log-level", level, "trace, debug, info, warn, error");
  CLI11_PARSE(app, argc, argv);
  if (gce->parsed()) return RunGce(config, parent_pid, level);
  return RunAwsMachines(config, parent_pid, interval_ms, level);
}
