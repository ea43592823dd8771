// Installer: puts a Canopy component (canopyd + config) onto an instance over SSH and keeps it
// running (systemd unit when systemd runs, else a POSIX sh supervisor). Used by the root and by
// clusters when they create instances. Thread-safe: each call uses its own SSH session, so calls
// for different targets may run in parallel.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/secret.h"
#include "install/ssh_session.h"

namespace canopy::install {

struct ComponentSpec {
  std::string name;         // "cluster", "node", ...: [a-z0-9_-]+, names files and the unit
  std::string binary_path;  // local canopyd binary, uploaded as <remote_dir>/bin/canopyd
  std::string remote_dir = "canopy";  // relative to the login directory (or absolute)
  SecretString config;  // written to <remote_dir>/etc/<name>.conf (0600) when non-empty
  // Arguments after the binary. "{config}" is replaced by the remote config path. The process
  // runs in <remote_dir>.
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>> env;  // names: [A-Za-z_][A-Za-z0-9_]*
  // Arguments to the uploaded canopyd, run once on the instance after the upload and before the
  // start (e.g. {"probe", "--url", ...}: can the instance reach the tier above?). A non-zero exit
  // fails the install with kFailedPrecondition, reason "install_preflight" and the command's
  // last stderr line as the message; nothing is started then. Empty = no preflight.
  std::vector<std::string> preflight;
};

struct InstallOptions {
  WaitOptions wait;           // connect phase: how long and how to wait for sshd
  bool allow_systemd = true;  // false forces the sh supervisor even when systemd runs
  std::chrono::milliseconds script_timeout{60'000};
};

struct PhaseTimings {
  int64_t connect_ms = 0;
  int64_t check_ms = 0;
  int64_t upload_ms = 0;
  int64_t preflight_ms = 0;
  int64_t start_ms = 0;
};

struct InstallReport {
  PhaseTimings timings;
  int connect_attempts = 0;
  bool upload_skipped = false;   // the remote binary already had the local digest
  bool config_changed = false;   // config/argv/env differed and were rewritten
  bool already_running = false;  // nothing was (re)started
  std::string mode;              // "systemd" or "supervisor"
  int64_t pid = 0;               // supervisor pid or systemd MainPID (0 if unknown)
};

struct ComponentStatus {
  bool running = false;
  std::string mode;       // "systemd", "supervisor" or "" when not installed
  int64_t pid = 0;        // supervisor pid / systemd MainPID
  int64_t child_pid = 0;  // supervised process (supervisor mode)
};

// Puts a component onto an instance and keeps it running. The seam between the broker and SSH:
// SshInstaller in production, in-process fakes in the broker's tests.
// Failure policy: Install never tears anything down on failure. The error's `reason` names the
// phase ("install_connect", "install_check", "install_upload", "install_preflight",
// "install_start") and the caller decides whether to terminate the instance or keep it.
class Installer {
 public:
  virtual ~Installer() = default;
  virtual Result<InstallReport> Install(const SshTarget& target,
                                        const ComponentSpec& spec) const = 0;
};

// The installer over SSH (libssh): one session per call.
class SshInstaller final : public Installer {
 public:
  explicit SshInstaller(InstallOptions opts = {}) : opts_(std::move(opts)) {}

  Result<InstallReport> Install(const SshTarget& target, const ComponentSpec& spec) const override;
  // Stops the component (and its supervisor); OK when it is not running.
  Status Stop(const SshTarget& target, const std::string& name,
              const std::string& remote_dir = "canopy") const;
  // (Named GetStatus because a member called Status would hide the canopy::Status type.)
  Result<ComponentStatus> GetStatus(const SshTarget& target, const std::string& name,
                                    const std::string& remote_dir = "canopy") const;

  // Remote script texts, exposed for unit tests.
  static std::string SupervisorScript(const ComponentSpec& spec, const std::string& abs_dir);
  /// The component's environment (spec.env) as a systemd EnvironmentFile, uploaded 0600 to
  /// etc/<name>.env: tokens never sit in the world-readable unit. "" when there is none.
  static std::string EnvironmentFile(const ComponentSpec& spec);
  static std::string SystemdUnit(const ComponentSpec& spec, const std::string& abs_dir,
                                 const std::string& user);

 private:
  InstallOptions opts_;
};

}  // namespace canopy::install
