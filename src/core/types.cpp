#include "core/types.h"

#include <algorithm>
#include <utility>

namespace canopy::core {

std::string_view RoleName(Role r) {
  switch (r) {
    case Role::kAdmin: return "admin";
    case Role::kInfra: return "infra";
    case Role::kApp: return "app";
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
    case OperationState::kPending: return "pending";
    case OperationState::kRunning: return "running";
    case OperationState::kSucceeded: return "succeeded";
    case OperationState::kFailed: return "failed";
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
    case StepState::kPending: return "pending";
    case StepState::kRunning: return "running";
    case StepState::kSucceeded: return "succeeded";
    case StepState::kFailed: return "failed";
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

std::string_view ClusterKindName(ClusterKind k) { return k == ClusterKind::kCloud ? "cloud" : "edge"; }

std::optional<ClusterKind> ParseClusterKind(std::string_view s) {
  if (s == "edge") return ClusterKind::kEdge;
  if (s == "cloud") return ClusterKind::kCloud;
  return std::nullopt;
}

namespace {
constexpr std::pair<ClusterState, std::string_view> kClusterStates[] = {
    {ClusterState::kProvisioning, "PROVISIONING"}, {ClusterState::kInstalling, "INSTALLING"},
    {ClusterState::kPairing, "PAIRING"},           {ClusterState::kActive, "ACTIVE"},
    {ClusterState::kFailed, "FAILED"},             {ClusterState::kDeleting, "DELETING"},
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
    {WorkerState::kBooting, "BOOTING"},         {WorkerState::kActive, "ACTIVE"},
    {WorkerState::kFailed, "FAILED"},           {WorkerState::kTerminating, "TERMINATING"},
    {WorkerState::kStopped, "STOPPED"},         {WorkerState::kTerminated, "TERMINATED"}};
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

std::optional<WorkerState> WorkerActionThrough(std::string_view action, WorkerState from) {
  using S = WorkerState;
  if (action == "stop") {
    if (from == S::kActive) return S::kTerminating;
  } else if (action == "restart") {
    if (from == S::kStopped) return S::kBooting;
  } else if (action == "terminate") {
    if (from == S::kActive || from == S::kStopped || from == S::kFailed) return S::kTerminating;
  } else if (action == "recreate") {
    if (from == S::kTerminated || from == S::kFailed) return S::kBooting;
  } else if (action == "delete") {
    if (from != S::kBooting) return S::kTerminating;
  }
  return std::nullopt;
}

std::string_view ClusterCommandStateName(ClusterCommandState s) {
  switch (s) {
    case ClusterCommandState::kPending: return "pending";
    case ClusterCommandState::kSucceeded: return "succeeded";
    case ClusterCommandState::kFailed: return "failed";
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
