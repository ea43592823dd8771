#include "broker/detail/common.h"

#include <fmt/format.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>

#include "providers/wire.h"

namespace canopy::broker {

Status RegisterBrokerKinds(ops::Engine& engine, const BrokerDeps& deps, const BrokerOptions& opts) {
  CANOPY_TRY(engine.Register(NewClusterCreateKind(deps, opts)));
  CANOPY_TRY(engine.Register(NewClusterDeleteKind(deps)));
  CANOPY_TRY(engine.Register(NewWorkersProvisionKind(deps, opts)));
  CANOPY_TRY(engine.Register(NewWorkerShutdownKind(deps, opts)));
  return OkStatus();
}

namespace detail {

using namespace std::chrono_literals;

std::chrono::milliseconds InStep(const ops::StepContext& ctx) {
  const auto& step = ctx.op.steps[static_cast<size_t>(ctx.op.step)];
  if (!step.started_at) return 0ms;
  return std::chrono::duration_cast<std::chrono::milliseconds>(ctx.clock.Now() - *step.started_at);
}

std::string KeyPairName(const core::Cluster& c) { return "canopy-" + c.credential_id.value_or(""); }
std::string SshFirewallId(const core::Cluster& c) { return "ssh-" + c.credential_id.value_or(""); }
std::string ApiFirewallId(const core::Cluster& c) { return c.id + "-api"; }

Result<Cloud> OpenCloud(control::CloudAccess& clouds, const core::Cluster& c) {
  if (!c.credential_id) return Error::FailedPrecondition("cluster has no credential");
  auto opened = clouds.Open(*c.credential_id);
  if (!opened) {
    if (opened.error().reason == control::kReasonNoLiveAdapter) {
      return Error::Unavailable(opened.error().message);
    }
    return std::move(opened).error();
  }
  Cloud cloud{std::move(opened).value(), {}};
  cloud.ctx = cloud.opened.Context(c.region.value_or(""));
  return cloud;
}

Result<Cloud*> OpenOnce(std::optional<Cloud>& slot, control::CloudAccess& clouds,
                        const core::Cluster& c) {
  if (!slot) {
    CANOPY_ASSIGN_OR_RETURN(Cloud cloud, OpenCloud(clouds, c));
    slot = std::move(cloud);
  }
  return &*slot;
}

Result<providers::ProviderHandle> HandleOf(const Json& j) {
  if (j.is_null()) return Error::FailedPrecondition("no instance handle saved");
  return providers::wire::HandleFromJson(j);
}

Status ForEachParallel(size_t n, size_t parallel, const std::function<Status(size_t)>& fn) {
  if (n == 0) return OkStatus();
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::optional<Error> first;
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++) {
      auto st = fn(i);
      if (!st) {
        std::lock_guard lock(mu);
        if (!first) first = st.error();
      }
    }
  };
  size_t threads = std::min(n, std::max<size_t>(1, parallel));
  std::vector<std::jthread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  pool.clear();
  if (first) return *first;
  return OkStatus();
}

core::SshLogin LoginOf(const providers::Instance& inst) {
  return core::SshLogin{inst.ssh_user, inst.ssh_port, inst.host_key_sha256, inst.address};
}

Json LoginToJson(const core::SshLogin& l) {
  return {{"user", l.user}, {"port", l.port}, {"host_key", l.host_key}, {"address", l.address}};
}

std::optional<core::SshLogin> LoginFromJson(const Json& j) {
  if (!j.is_object() || !j.contains("address")) return std::nullopt;
  core::SshLogin l;
  l.user = j.value("user", "");
  l.port = j.value("port", uint16_t{22});
  l.host_key = j.value("host_key", "");
  l.address = j.value("address", "");
  return l;
}

Result<install::SshTarget> TargetOf(const std::optional<core::SshLogin>& login,
                                    const SecretString& key) {
  if (!login) return Error::FailedPrecondition("no SSH login saved for the instance");
  if (login->host_key.empty()) {
    return Error::FailedPrecondition(fmt::format(
        "cannot install: the provider reported no SSH host key for the instance at {}, and Canopy "
        "never connects to a host it cannot verify",
        login->address));
  }
  install::SshTarget t;
  t.host = login->address;
  t.port = login->port;
  t.user = login->user;
  t.private_key = key;
  t.host_key_sha256 = login->host_key;
  return t;
}

std::string ErrorText(const core::Operation& op, const std::string& fallback) {
  return op.last_error_message.empty() ? fallback : op.last_error_message;
}

std::vector<std::string> PreflightArgs(const std::string& url, std::chrono::seconds timeout) {
  return {"probe", "--url", url + "/healthz", "--timeout", std::to_string(timeout.count())};
}

}  // namespace detail
}  // namespace canopy::broker
