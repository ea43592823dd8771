// AwsMachines: real machines behind the EC2 instances of moto, for the AWS simulator
// (scripts/sim/aws-sim, docs/providers/aws-sim.md). Every instance moto reports in the simulated
// subnet gets a local blank-image instance (src/providers/local) with the instance's private
// address and the public key of its key pair, and follows the instance's state as a cloud's
// hypervisor would:
//   pending/running        -> the machine boots (again, after a stop: same disk and host key), and
//                             its console shows the host key fingerprints as cloud-init prints them
//                             (a file per instance in console_dir, which the patched moto serves as
//                             GetConsoleOutput: scripts/sim/aws_moto.py)
//   stopping/stopped       -> the console is cleared and the machine stops (its disk stays)
//   shutting-down/terminated, or no longer listed -> the machine is terminated
// The AMI picks the image by its name ("debian-11-*" -> debian-11-minbase, "debian-12-*" ->
// debian-12-minbase); an instance of another AMI gets no machine, and its console says why.
// Security groups are enforced: a machine's nftables firewall lets in what the ingress rules
// (by CIDR) of the instance's groups allow, updated as they change; rules naming other groups or
// all protocols are not simulated, and port ranges over 64 ports are skipped (logged).
// Thread-safe. Each instance's changes run on a thread of their own, one at a time per instance.
#pragma once

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "common/result.h"
#include "common/secret.h"
#include "providers/aws/aws_client.h"
#include "providers/local/local_provider.h"

namespace canopy::sim {

struct AwsMachinesOptions {
  std::string endpoint;  ///< moto's URL
  std::string region = "us-east-1";
  std::string subnet_id;  ///< only instances in this subnet get machines
  std::string access_key_id;
  SecretString secret_access_key;
  std::string console_dir;  ///< one file per instance id: its console output
  providers::local::LocalOptions local;
  /// AMI name prefix -> local blank image.
  std::map<std::string, std::string> images = {{"debian-11-", "debian-11-minbase"},
                                               {"debian-12-", "debian-12-minbase"}};
};

/// Parses the sim's JSON config ({endpoint_url, region, subnet_id, access_key_id,
/// secret_access_key, console_dir, state_dir, bridge, subnet, images_dir, boot_delay_ms}).
Result<AwsMachinesOptions> ParseAwsMachinesOptions(const Json& config);

/// The console text of a machine whose SSH host key has fingerprint `sha256` ("SHA256:..."),
/// in cloud-init's format (what AwsProvider::HostKeyFromConsole reads).
std::string ConsoleWithHostKey(const std::string& instance_id, const std::string& image,
                               const std::string& sha256);

class AwsMachines {
 public:
  static Result<std::unique_ptr<AwsMachines>> Create(AwsMachinesOptions options);
  ~AwsMachines();

  /// One pass: reads moto's instances in the subnet and starts the changes that bring the
  /// machines in line (in the background); an instance whose last change still runs waits for
  /// the next pass. An error when moto cannot be read.
  Status SyncOnce();
  /// Waits for the changes in flight.
  void Wait();
  /// Terminates every machine (moto's instances die with moto) and frees their addresses.
  void TerminateAll();

  /// Instance id -> machine state ("running", "stopped", ...), as of the last pass.
  std::map<std::string, std::string> Machines() const;

 private:
  explicit AwsMachines(AwsMachinesOptions options);
  struct Seen {
    std::string id, state, address, key_name, image_id;
    std::vector<providers::FirewallRule> rules;  // its groups' ingress rules, sorted
  };
  void Converge(const Seen& s);
  Status Boot(const Seen& s);
  Status SyncFirewall(const Seen& s, const providers::Instance& machine);
  Result<std::string> ImageFor(const std::string& image_id);
  Result<std::string> ImportKey(const std::string& key_name);
  void WriteConsole(const std::string& id, const std::string& text);
  void ClearConsole(const std::string& id);
  providers::CallContext LocalCtx() const;
  Result<providers::aws::Xml> Ec2(const std::string& action,
                                  const providers::aws::QueryParams& p) const;

  AwsMachinesOptions opts_;
  providers::aws::AwsClient client_;
  std::unique_ptr<providers::local::LocalProvider> local_;
  mutable std::mutex mu_;
  std::map<std::string, std::future<void>> busy_;      // instance id -> its change in flight
  std::map<std::string, std::string> image_names_;     // AMI id -> local image ("" = none)
  std::map<std::string, std::string> machine_states_;  // instance id -> local state
  // instance id -> {firewall canopy id, local firewall id} last applied
  std::map<std::string, std::pair<std::string, std::string>> firewalls_;
};

}  // namespace canopy::sim
