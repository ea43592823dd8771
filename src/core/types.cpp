#include "core/types.h"

#include <algorithm>

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

}  // namespace canopy::core
