#include "core/types.h"

#include <algorithm>
#include <utility>

namespace canopy::core {

std::string_view RoleName(Role r) {
  switch (r) {
    case Role::kAdmin:
      return "admin";
    case Role::kInfra:
      return "infra";
    case Role::kApp:
      return "app";
  }
  return "app";
}

std::optional<Role> ParseRole(std::string_view s) {
  if (s == "admin") return Role::kAdmin;
  if (s == "infra") return Role::kInfra;
  if (s == "app") return Role::kApp;
  return std::nullopt;
}

bool User::HasRole(Role r) const { return std::find(roles.begin(), roles.end(), r) != roles.end(); }

std::string_view ProviderStatusName(ProviderStatus s) {
  return s == ProviderStatus::kLive ? "live" : "down";
}

std::string_view OperationStateName(OperationState s) {
  switch (s) {
    case OperationState::kPending:
      return "pending";
    case OperationState::kRunning:
      return "running";
    case OperationState::kSucceeded:
      return "succeeded";
    case OperationState::kFailed:
      return "failed";
  }
  return "pending";
}

std::optional<OperationState> ParseOperationState(std::string_view s) {
  if (s == "pending") return OperationState::kPending;
  if (s == "running") return OperationState::kRunning;
  if (s == "succeeded") return OperationState::kSucceeded;
  if (s == "failed") return OperationState::kFailed;
  return std::nullopt;
}

std::string_view StepStateName(StepState s) {
  switch (s) {
    case StepState::kPending:
      return "pending";
    case StepState::kRunning:
      return "running";
    case StepState::kSucceeded:
      return "succeeded";
    case StepState::kFailed:
      return "failed";
  }
  return "pending";
}

std::optional<StepState> ParseStepState(std::string_view s) {
  if (s == "pending") return StepState::kPending;
  if (s == "running") return StepState::kRunning;
  if (s == "succeeded") return StepState::kSucceeded;
  if (s == "failed") return StepState::kFailed;
  return std::nullopt;
}

std::string_view ClusterKindName(ClusterKind k) {
  return k == ClusterKind::kCloud ? "cloud" : "edge";
}

std::optional<ClusterKind> ParseClusterKind(std::string_view s) {
  if (s == "edge") return ClusterKind::kEdge;
  if (s == "cloud") return ClusterKind::kCloud;
  return std::nullopt;
}

namespace {
constexpr std::pair<ClusterState, std::string_view> kClusterStates[] = {
    {ClusterState::kProvisioning, "PROVISIONING"},
    {ClusterState::kInstalling, "INSTALLING"},
    {ClusterState::kPairing, "PAIRING"},
    {ClusterState::kActive, "ACTIVE"},
    {ClusterState::kFailed, "FAILED"},
    {ClusterState::kDeleting, "DELETING"},
    {ClusterState::kOffline, "OFFLINE"}};
}  // namespace

std::string_view ClusterStateName(ClusterState s) {
  for (const auto& [v, n] : kClusterStates) {
    if (v == s) return n;
  }
  return "FAILED";
}

std::optional<ClusterState> ParseClusterState(std::string_view s) {
  for (const auto& [v, n] : kClusterStates) {
    if (n == s) return v;
  }
  return std::nullopt;
}

namespace {
constexpr std::pair<WorkerState, std::string_view> kWorkerStates[] = {
    {WorkerState::kBooting, "BOOTING"}, {WorkerState::kActive, "ACTIVE"},
    {WorkerState::kFailed, "FAILED"},   {WorkerState::kTerminating, "TERMINATING"},
    {WorkerState::kStopped, "STOPPED"}, {WorkerState::kTerminated, "TERMINATED"}};
}  // namespace

std::string_view WorkerStateName(WorkerState s) {
  for (const auto& [v, n] : kWorkerStates) {
    if (v == s) return n;
  }
  return "FAILED";
}

std::optional<WorkerState> ParseWorkerState(std::string_view s) {
  for (const auto& [v, n] : kWorkerStates) {
    if (n == s) return v;
  }
  return std::nullopt;
}

namespace {

// Name tables: one per enum, read both ways.
template <class E, size_t N>
std::string_view NameIn(const std::pair<E, std::string_view> (&table)[N], E v,
                        std::string_view def) {
  for (const auto& [e, n] : table) {
    if (e == v) return n;
  }
  return def;
}
template <class E, size_t N>
std::optional<E> ParseIn(const std::pair<E, std::string_view> (&table)[N], std::string_view s) {
  for (const auto& [e, n] : table) {
    if (n == s) return e;
  }
  return std::nullopt;
}

constexpr std::pair<WorkerAction, std::string_view> kWorkerActions[] = {
    {WorkerAction::kStop, "stop"},
    {WorkerAction::kRestart, "restart"},
    {WorkerAction::kTerminate, "terminate"},
    {WorkerAction::kRecreate, "recreate"},
    {WorkerAction::kDelete, "delete"}};
constexpr std::pair<CommandType, std::string_view> kCommandTypes[] = {
    {CommandType::kPing, "ping"},
    {CommandType::kCreateNodeToken, "create_node_token"},
    {CommandType::kDeployJob, "deploy_job"},
    {CommandType::kUndeployJob, "undeploy_job"},
    {CommandType::kDrainNode, "drain_node"},
    {CommandType::kUndrainNode, "undrain_node"}};
constexpr std::pair<InstanceState, std::string_view> kInstanceStates[] = {
    {InstanceState::kPending, "pending"},       {InstanceState::kScheduled, "scheduled"},
    {InstanceState::kStarting, "starting"},     {InstanceState::kRunning, "running"},
    {InstanceState::kRestarting, "restarting"}, {InstanceState::kExited, "exited"},
    {InstanceState::kFailed, "failed"},         {InstanceState::kRemoving, "removing"}};
constexpr std::pair<NodeState, std::string_view> kNodeStates[] = {{NodeState::kOnline, "online"},
                                                                  {NodeState::kOffline, "offline"}};

}  // namespace

std::string_view WorkerActionName(WorkerAction a) { return NameIn(kWorkerActions, a, "stop"); }
std::optional<WorkerAction> ParseWorkerAction(std::string_view s) {
  return ParseIn(kWorkerActions, s);
}
std::string_view CommandTypeName(CommandType t) { return NameIn(kCommandTypes, t, "ping"); }
std::optional<CommandType> ParseCommandType(std::string_view s) {
  return ParseIn(kCommandTypes, s);
}
std::string_view InstanceStateName(InstanceState s) {
  return NameIn(kInstanceStates, s, "pending");
}
std::optional<InstanceState> ParseInstanceState(std::string_view s) {
  return ParseIn(kInstanceStates, s);
}
InstanceState InstanceStateFromReport(std::string_view reported) {
  auto s = ParseInstanceState(reported);
  if (!s || *s == InstanceState::kPending || *s == InstanceState::kScheduled ||
      *s == InstanceState::kRemoving) {
    return InstanceState::kStarting;
  }
  return *s;
}
Json NodeSystemToJson(const NodeSystem& s) {
  return {{"os", s.os},
          {"kernel", s.kernel},
          {"arch", s.arch},
          {"cpus", s.cpus},
          {"memory_mib", s.memory_mib}};
}

Result<NodeSystem> NodeSystemFromJson(const Json& j) {
  if (!j.is_object()) return Error::InvalidArgument("field 'system' must be an object");
  NodeSystem s;
  CANOPY_ASSIGN_OR_RETURN(auto os, GetOptString(j, "os", 256));
  CANOPY_ASSIGN_OR_RETURN(auto kernel, GetOptString(j, "kernel", 256));
  CANOPY_ASSIGN_OR_RETURN(auto arch, GetOptString(j, "arch", 64));
  CANOPY_ASSIGN_OR_RETURN(auto cpus, GetOptInt(j, "cpus", 0, 1 << 20));
  CANOPY_ASSIGN_OR_RETURN(auto mem, GetOptInt(j, "memory_mib", 0, int64_t{1} << 40));
  s.os = os.value_or("");
  s.kernel = kernel.value_or("");
  s.arch = arch.value_or("");
  s.cpus = cpus.value_or(0);
  s.memory_mib = mem.value_or(0);
  return s;
}

std::string_view NodeStateName(NodeState s) { return NameIn(kNodeStates, s, "offline"); }
std::optional<NodeState> ParseNodeState(std::string_view s) { return ParseIn(kNodeStates, s); }

std::optional<WorkerState> WorkerActionThrough(WorkerAction action, WorkerState from) {
  using S = WorkerState;
  switch (action) {
    case WorkerAction::kStop:
      if (from == S::kActive) return S::kTerminating;
      break;
    case WorkerAction::kRestart:
      if (from == S::kStopped) return S::kBooting;
      break;
    case WorkerAction::kTerminate:
      if (from == S::kActive || from == S::kStopped || from == S::kFailed) return S::kTerminating;
      break;
    case WorkerAction::kRecreate:
      if (from == S::kTerminated || from == S::kFailed) return S::kBooting;
      break;
    case WorkerAction::kDelete:
      if (from != S::kBooting) return S::kTerminating;
      break;
  }
  return std::nullopt;
}

Json ClusterCloudToJson(const ClusterCloud& c) {
  Json j = Json::object();
  auto put = [&](const char* k, const std::string& v) {
    if (!v.empty()) j[k] = v;
  };
  put("operation_id", c.operation_id);
  put("key_pair", c.key_pair);
  if (!c.ssh_firewall.empty() || !c.api_firewall.empty()) {
    j["firewalls"] = {{"ssh", c.ssh_firewall}, {"api", c.api_firewall}};
  }
  if (c.identity == IdentityState::kNone) j["identity_id"] = nullptr;
  if (c.identity == IdentityState::kMade) {
    j["identity_id"] = c.identity_id;
    put("identity_sealed", c.identity_sealed);
  }
  if (!c.handle.is_null()) j["handle"] = c.handle;
  put("provider_id", c.provider_id);
  put("address", c.address);
  if (c.ssh) {
    j["ssh"] = {{"user", c.ssh->user},
                {"port", c.ssh->port},
                {"host_key", c.ssh->host_key},
                {"address", c.ssh->address}};
  }
  if (!c.service_firewalls.empty()) j["service_firewalls"] = c.service_firewalls;
  return j;
}

ClusterCloud ClusterCloudFromJson(const Json& j) {
  ClusterCloud c;
  if (!j.is_object()) return c;
  auto str = [&](const Json& o, const char* k) {
    auto it = o.find(k);
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  c.operation_id = str(j, "operation_id");
  c.key_pair = str(j, "key_pair");
  if (auto f = j.find("firewalls"); f != j.end() && f->is_object()) {
    c.ssh_firewall = str(*f, "ssh");
    c.api_firewall = str(*f, "api");
  }
  if (auto i = j.find("identity_id"); i != j.end()) {
    if (i->is_string()) {
      c.identity = IdentityState::kMade;
      c.identity_id = i->get<std::string>();
      c.identity_sealed = str(j, "identity_sealed");
    } else {
      c.identity = IdentityState::kNone;
    }
  }
  if (auto h = j.find("handle"); h != j.end()) c.handle = *h;
  c.provider_id = str(j, "provider_id");
  c.address = str(j, "address");
  if (auto s = j.find("ssh"); s != j.end() && s->is_object()) {
    SshLogin l;
    l.user = str(*s, "user");
    auto p = s->find("port");
    l.port = p != s->end() && p->is_number_unsigned() && p->get<uint64_t>() <= 65535
                 ? static_cast<uint16_t>(p->get<uint64_t>())
                 : uint16_t{22};
    l.host_key = str(*s, "host_key");
    l.address = str(*s, "address");
    c.ssh = l;
  }
  if (auto f = j.find("service_firewalls"); f != j.end() && f->is_object()) {
    for (const auto& [sid, fw] : f->items()) {
      if (fw.is_string()) c.service_firewalls[sid] = fw.get<std::string>();
    }
  }
  return c;
}

std::string_view ClusterCommandStateName(ClusterCommandState s) {
  switch (s) {
    case ClusterCommandState::kPending:
      return "pending";
    case ClusterCommandState::kSucceeded:
      return "succeeded";
    case ClusterCommandState::kFailed:
      return "failed";
  }
  return "pending";
}

std::optional<ClusterCommandState> ParseClusterCommandState(std::string_view s) {
  if (s == "pending") return ClusterCommandState::kPending;
  if (s == "succeeded") return ClusterCommandState::kSucceeded;
  if (s == "failed") return ClusterCommandState::kFailed;
  return std::nullopt;
}

}  // namespace canopy::core
