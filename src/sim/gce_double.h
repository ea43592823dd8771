// GceDouble: a Compute Engine test double with real machines behind it, for the GCP adapter
// (docs/providers/gcp.md is the wire contract, docs/providers/gcp-sim.md what is simulated). One
// HTTP port on 127.0.0.1 serves the OAuth token endpoint (JWT bearer, RS256 checked against the
// keys the double issued), Resource Manager v1 (project, IAM policy), Compute v1 (catalog,
// instances, firewalls, operations), IAM v1 (service accounts and keys) and Secret Manager v1.
// Every request is validated against Google's discovery documents first (src/sim/discovery.h).
// Each instance gets a local blank-image machine (src/providers/local) at the address the double
// assigns, with the `ssh-keys` key for `admin`, its firewall following the firewall rules that
// target its tags, and its host key in the guest attributes and on the serial port once booted.
// Faults (stockouts, quota, 429, 503, slow operations, expired tokens) are injected through
// /_sim/faults. State is in memory. Thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/json.h"
#include "common/result.h"
#include "providers/local/local_provider.h"

namespace canopy::sim {

struct GceDoubleOptions {
  std::string discovery_dir;           ///< the discovery documents (../shared/reference/gcp)
  std::string listen = "127.0.0.1:0";  ///< host:port (0 = a free port)
  std::string project = "canopy-sim";  ///< the one project; its owner account is bootstrapped
  /// Real machines behind the instances (needs root). Off: instances are records that go through
  /// the same states, with a generated host key (for tests of the API alone).
  bool machines = true;
  providers::local::LocalOptions
      local;  ///< the machines' bridge, subnet, images, state, boot delay
  /// Where instances' addresses (networkIP) come from; inside local.subnet.
  std::string instance_range = "198.19.64.0/18";
  int operation_polls = 2;  ///< an operation is DONE at the earliest at this poll
  std::chrono::milliseconds operation_min{0};  ///< ... and not before this much time
  std::chrono::seconds token_lifetime{3600};   ///< access tokens (expires_in + 1)
  std::chrono::seconds max_wait{120};          ///< operations.wait answers after this at most
  ClockPtr clock;                              ///< default: the system clock
};

/// Reads the config of `canopy-sim gce` ({discovery_dir, listen, project, machines, state_dir,
/// bridge, subnet, images_dir, boot_delay_ms, instance_range, operation_polls, operation_min_ms,
/// token_lifetime_s}).
Result<GceDoubleOptions> ParseGceDoubleOptions(const Json& config);

class GceDouble {
 public:
  /// Loads the discovery documents, makes the project and its owner account, binds and serves.
  static Result<std::unique_ptr<GceDouble>> Start(GceDoubleOptions options);
  ~GceDouble();
  GceDouble(const GceDouble&) = delete;
  GceDouble& operator=(const GceDouble&) = delete;

  /// "http://127.0.0.1:PORT": the `endpoint_url` of the adapter's config.
  std::string url() const;
  const std::string& project() const;
  /// The project owner's service-account key JSON (as Google issues it; its token_uri is
  /// url() + "/token"): the credential to add.
  Json OwnerKey() const;

  /// Fault injection, as POST /_sim/faults takes it (docs/providers/gcp-sim.md).
  Status AddFault(const Json& fault);
  void ClearFaults();
  /// Every instance: {zone, name, id, status, network_ip, machine, host_key, firewall_rules}.
  Json Instances() const;
  /// Waits until no instance has a change in flight (tests).
  void WaitIdle();

  /// Stops serving, waits for the machines' changes in flight and terminates every machine.
  /// Idempotent.
  void Stop();

 private:
  GceDouble();
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace canopy::sim
