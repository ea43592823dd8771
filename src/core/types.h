// Domain types of the root control plane: plain values with no I/O. Thread-compatible.
// Used by store/ (persistence), api/ (handlers) and ops/ (operations engine).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/json.h"

namespace canopy::core {

enum class Role { kAdmin, kInfra, kApp };
std::string_view RoleName(Role r);
std::optional<Role> ParseRole(std::string_view s);

struct User {
  std::string id;
  std::string username;
  std::string password_hash;  // encoded KDF output (never the password)
  std::vector<Role> roles;
  TimePoint created_at{};
  bool HasRole(Role r) const;
};

// Single-use, expiring token that lets a provider adapter register. Only its SHA-256 is stored.
struct ProviderToken {
  std::string id;
  std::string token_hash;
  TimePoint expires_at{};
  TimePoint created_at{};
  std::optional<TimePoint> used_at;
  std::string created_by;  // user id
};

// A registered provider adapter. `key_ciphertext` is the adapter's key, encrypted under the
// master key: the adapter presents it on heartbeats, the root presents it when calling the adapter.
struct ProviderRecord {
  std::string id;
  std::string type;  // "local", "aws", "gcp", "fake", ...
  std::string url;   // where the root reaches the adapter
  Json capabilities = Json::object();
  std::string version;
  std::string key_ciphertext;
  TimePoint registered_at{};
  TimePoint last_seen{};
};

enum class ProviderStatus { kLive, kDown };
std::string_view ProviderStatusName(ProviderStatus s);

// A stored cloud credential. The secret is only ever held encrypted (AES-256-GCM, master key).
struct Credential {
  std::string id;
  std::string name;
  std::string provider;  // provider type
  std::string secret_ciphertext;
  std::string created_by;
  TimePoint created_at{};
};

enum class OperationState { kPending, kRunning, kSucceeded, kFailed };
std::string_view OperationStateName(OperationState s);
std::optional<OperationState> ParseOperationState(std::string_view s);

enum class StepState { kPending, kRunning, kSucceeded, kFailed };
std::string_view StepStateName(StepState s);
std::optional<StepState> ParseStepState(std::string_view s);

struct OperationStep {
  std::string name;
  StepState state = StepState::kPending;
  std::optional<TimePoint> started_at;
  std::optional<TimePoint> finished_at;
};

// A persisted long-running operation (see ops/engine.h). `version` is bumped on every update and
// used for compare-and-swap. `data` is the operation kind's own state.
struct Operation {
  std::string id;
  std::string kind;
  std::string target_id;
  OperationState state = OperationState::kPending;
  int64_t step = 0;  // index into steps
  std::vector<OperationStep> steps;
  int64_t attempt = 0;
  TimePoint next_run_at{};
  std::string lease_owner;
  TimePoint lease_until{};
  std::string last_error_code;
  std::string last_error_message;
  Json data = Json::object();
  int64_t version = 0;
  TimePoint created_at{};
  TimePoint updated_at{};
};

}  // namespace canopy::core
