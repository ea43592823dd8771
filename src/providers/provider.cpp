#include "providers/provider.h"

namespace canopy::providers {

std::string_view ProviderErrorKindName(ProviderErrorKind k) {
  switch (k) {
    case ProviderErrorKind::kCapacity:
      return "capacity";
    case ProviderErrorKind::kQuota:
      return "quota";
    case ProviderErrorKind::kAuth:
      return "auth";
    case ProviderErrorKind::kInvalidRequest:
      return "invalid_request";
    case ProviderErrorKind::kNotFound:
      return "not_found";
    case ProviderErrorKind::kTransient:
      return "transient";
  }
  return "transient";
}

Error MakeProviderError(ProviderErrorKind kind, std::string message) {
  ErrorCode code = ErrorCode::kUnavailable;
  switch (kind) {
    case ProviderErrorKind::kCapacity:
      code = ErrorCode::kResourceExhausted;
      break;
    case ProviderErrorKind::kQuota:
      code = ErrorCode::kResourceExhausted;
      break;
    case ProviderErrorKind::kAuth:
      code = ErrorCode::kUnauthenticated;
      break;
    case ProviderErrorKind::kInvalidRequest:
      code = ErrorCode::kInvalidArgument;
      break;
    case ProviderErrorKind::kNotFound:
      code = ErrorCode::kNotFound;
      break;
    case ProviderErrorKind::kTransient:
      code = ErrorCode::kUnavailable;
      break;
  }
  return Error{code, std::move(message), std::string(ProviderErrorKindName(kind))};
}

ProviderErrorKind KindOf(const Error& e) {
  for (ProviderErrorKind k : {ProviderErrorKind::kCapacity, ProviderErrorKind::kQuota,
                              ProviderErrorKind::kAuth, ProviderErrorKind::kInvalidRequest,
                              ProviderErrorKind::kNotFound, ProviderErrorKind::kTransient}) {
    if (e.reason == ProviderErrorKindName(k)) {
      return k;
    }
  }
  // An untyped error (from a layer below the provider): classify by code. Anything not clearly
  // the caller's fault or a missing object is treated as transient so that callers may retry.
  switch (e.code) {
    case ErrorCode::kResourceExhausted:
      return ProviderErrorKind::kCapacity;
    case ErrorCode::kUnauthenticated:
    case ErrorCode::kPermissionDenied:
      return ProviderErrorKind::kAuth;
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kUnprocessable:
    case ErrorCode::kFailedPrecondition:
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kConflict:
    case ErrorCode::kPayloadTooLarge:
      return ProviderErrorKind::kInvalidRequest;
    case ErrorCode::kNotFound:
      return ProviderErrorKind::kNotFound;
    default:
      return ProviderErrorKind::kTransient;
  }
}

std::string_view InstanceStateName(InstanceState s) {
  switch (s) {
    case InstanceState::kPending:
      return "pending";
    case InstanceState::kRunning:
      return "running";
    case InstanceState::kStopping:
      return "stopping";
    case InstanceState::kStopped:
      return "stopped";
    case InstanceState::kTerminated:
      return "terminated";
  }
  return "pending";
}

}  // namespace canopy::providers
