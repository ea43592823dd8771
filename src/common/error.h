// Error and ErrorCode: the one error vocabulary of Canopy. Value types, thread-compatible.
// The mapping to HTTP status lives only in net/error_mapping.cpp.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace canopy {

enum class ErrorCode {
  kOk = 0,
  kInvalidArgument,     // 400: bad input from the caller
  kUnauthenticated,     // 401
  kPermissionDenied,    // 403
  kNotFound,            // 404
  kAlreadyExists,       // 409
  kConflict,            // 409: state does not allow the action
  kFailedPrecondition,  // 409: a precondition of the system is not met
  kPayloadTooLarge,     // 413
  kUnprocessable,       // 422: well-formed but semantically rejected (e.g. credential invalid)
  kResourceExhausted,   // 429
  kInternal,            // 500
  kProviderError,       // 502: a cloud/adapter failed
  kUnavailable,         // 503: try again later
  kDeadlineExceeded,    // 504
  kNotSupported,        // 501: this implementation does not offer the feature (not a state problem)
};

// Stable snake_case name used in API error bodies ("invalid_argument", ...).
std::string_view ErrorCodeName(ErrorCode code);

// Inverse of ErrorCodeName; kInternal for unknown names.
ErrorCode ParseErrorCode(std::string_view name);
// Inverse of ErrorCodeName; nullopt for unknown names (and for "ok").
std::optional<ErrorCode> ErrorCodeFromName(std::string_view name);

// Whether an operation failing with this code may succeed if retried later.
bool IsRetryable(ErrorCode code);

// message must be safe to show users; never put secrets in it. Diagnostic detail goes to logs.
struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  // Optional machine-readable reason ("capacity", "quota", "no_worker_capacity", ...); may be
  // empty.
  std::string reason;

  static Error InvalidArgument(std::string m) {
    return {ErrorCode::kInvalidArgument, std::move(m), {}};
  }
  static Error Unauthenticated(std::string m) {
    return {ErrorCode::kUnauthenticated, std::move(m), {}};
  }
  static Error PermissionDenied(std::string m) {
    return {ErrorCode::kPermissionDenied, std::move(m), {}};
  }
  static Error NotFound(std::string m) { return {ErrorCode::kNotFound, std::move(m), {}}; }
  static Error AlreadyExists(std::string m) {
    return {ErrorCode::kAlreadyExists, std::move(m), {}};
  }
  static Error Conflict(std::string m) { return {ErrorCode::kConflict, std::move(m), {}}; }
  static Error FailedPrecondition(std::string m) {
    return {ErrorCode::kFailedPrecondition, std::move(m), {}};
  }
  static Error Unprocessable(std::string m) {
    return {ErrorCode::kUnprocessable, std::move(m), {}};
  }
  static Error Internal(std::string m) { return {ErrorCode::kInternal, std::move(m), {}}; }
  static Error Provider(std::string m) { return {ErrorCode::kProviderError, std::move(m), {}}; }
  static Error Unavailable(std::string m) { return {ErrorCode::kUnavailable, std::move(m), {}}; }
  static Error DeadlineExceeded(std::string m) {
    return {ErrorCode::kDeadlineExceeded, std::move(m), {}};
  }
  static Error NotSupported(std::string m) { return {ErrorCode::kNotSupported, std::move(m), {}}; }
  // The same error with a machine-readable reason.
  Error WithReason(std::string r) && {
    reason = std::move(r);
    return std::move(*this);
  }

  std::string ToString() const;
};

}  // namespace canopy
