// Internal to broker/: what the four operation kinds share (naming of cloud objects, opening the
// cluster's cloud, SSH logins, parallel loops, step tables). Thread-safe helpers.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "broker/broker.h"
#include "core/types.h"
#include "ops/engine.h"
#include "providers/provider.h"

namespace canopy::broker {

// The constructors of the kinds (one file each).
ops::OperationKindPtr NewClusterCreateKind(const BrokerDeps& deps, const BrokerOptions& opts);
ops::OperationKindPtr NewClusterDeleteKind(const BrokerDeps& deps);
ops::OperationKindPtr NewWorkersProvisionKind(const BrokerDeps& deps, const BrokerOptions& opts);
ops::OperationKindPtr NewWorkerShutdownKind(const BrokerDeps& deps, const BrokerOptions& opts);

namespace detail {

// A kind's steps as a table of {name, member function}; the kind loads what every step needs
// into a Run (its per-try state) and dispatches by index.
template <class Kind, class Run>
struct StepDef {
  const char* name;
  Result<ops::StepResult> (Kind::*fn)(Run&);
};
template <class Kind, class Run>
std::vector<std::string> StepNames(const std::vector<StepDef<Kind, Run>>& table) {
  std::vector<std::string> out;
  for (const auto& s : table) out.emplace_back(s.name);
  return out;
}
template <class Kind, class Run>
Result<ops::StepResult> RunTableStep(Kind& kind, const std::vector<StepDef<Kind, Run>>& table,
                                     size_t step, Run& run) {
  if (step >= table.size()) return Error::Internal("unknown step");
  return (kind.*(table[step].fn))(run);
}

// How long the current step has been running (since its first try).
std::chrono::milliseconds InStep(const ops::StepContext& ctx);

std::string KeyPairName(const core::Cluster& c);    // one per credential and region
std::string SshFirewallId(const core::Cluster& c);  // shared per credential and region
std::string ApiFirewallId(const core::Cluster& c);  // the cluster's own

// The cluster's provider and call context, opened once per step.
struct Cloud {
  control::OpenedProvider opened;
  providers::CallContext ctx;
  providers::Provider& provider() const { return *opened.provider; }
};
// No live adapter right now (restarting, heartbeats late) is kUnavailable: wait for it.
Result<Cloud> OpenCloud(control::CloudAccess& clouds, const core::Cluster& c);
// The cluster's cloud kept in `slot`: opened on first use, then the same one for the rest of a
// step (one adapter lookup and one context per step).
Result<Cloud*> OpenOnce(std::optional<Cloud>& slot, control::CloudAccess& clouds,
                        const core::Cluster& c);

// The provider handle saved in a row (kFailedPrecondition when none is saved).
Result<providers::ProviderHandle> HandleOf(const Json& j);

// Runs fn(i) for i in [0, n) on up to `parallel` threads; returns the first error (all run).
Status ForEachParallel(size_t n, size_t parallel, const std::function<Status(size_t)>& fn);

core::SshLogin LoginOf(const providers::Instance& inst);
Json LoginToJson(const core::SshLogin& l);
std::optional<core::SshLogin> LoginFromJson(const Json& j);
// Where to install: kFailedPrecondition without a login or a pinned host key (Canopy never
// connects to a host it cannot verify).
Result<install::SshTarget> TargetOf(const std::optional<core::SshLogin>& login,
                                    const SecretString& key);

// The operation's last error message, or `fallback`.
std::string ErrorText(const core::Operation& op, const std::string& fallback);

// `canopyd probe` of `url`/healthz on the instance before a tier starts there.
std::vector<std::string> PreflightArgs(const std::string& url, std::chrono::seconds timeout);

}  // namespace detail
}  // namespace canopy::broker
