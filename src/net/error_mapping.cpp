#include "net/error_mapping.h"

#include <fmt/format.h>

namespace canopy::net {

int HttpStatusFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return 200;
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kUnauthenticated:
      return 401;
    case ErrorCode::kPermissionDenied:
      return 403;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kAlreadyExists:
      return 409;
    case ErrorCode::kConflict:
      return 409;
    case ErrorCode::kFailedPrecondition:
      return 409;
    case ErrorCode::kPayloadTooLarge:
      return 413;
    case ErrorCode::kUnprocessable:
      return 422;
    case ErrorCode::kResourceExhausted:
      return 429;
    case ErrorCode::kInternal:
      return 500;
    case ErrorCode::kProviderError:
      return 502;
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kDeadlineExceeded:
      return 504;
    case ErrorCode::kNotSupported:
      return 501;
  }
  return 500;
}

Response ErrorResponse(const Error& e) {
  int status = HttpStatusFor(e.code);
  std::string code(ErrorCodeName(e.code));
  if (e.message == kMethodNotAllowed) {
    status = 405;
    code = "method_not_allowed";
  }
  Json body = {{"error", {{"code", code}, {"message", e.message}}}};
  if (!e.reason.empty()) body["error"]["reason"] = e.reason;
  return Response::FromJson(status, body);
}

ErrorCode ErrorCodeForStatus(int status) {
  switch (status) {
    case 400:
      return ErrorCode::kInvalidArgument;
    case 401:
      return ErrorCode::kUnauthenticated;
    case 403:
      return ErrorCode::kPermissionDenied;
    case 404:
      return ErrorCode::kNotFound;
    case 409:
      return ErrorCode::kConflict;
    case 413:
      return ErrorCode::kPayloadTooLarge;
    case 422:
      return ErrorCode::kUnprocessable;
    case 429:
      return ErrorCode::kResourceExhausted;
    case 501:
      return ErrorCode::kNotSupported;
    case 502:
      return ErrorCode::kProviderError;
    case 503:
      return ErrorCode::kUnavailable;
    case 504:
      return ErrorCode::kDeadlineExceeded;
    default:
      break;
  }
  // Another 4xx (405, 410, 418, ...) is still the caller's request that was refused.
  if (status >= 400 && status < 500) return ErrorCode::kInvalidArgument;
  return ErrorCode::kInternal;
}

Error ErrorFromResponse(int status, std::string_view body) {
  Error err{ErrorCodeForStatus(status), "", {}};
  auto j = ParseJson(body);
  if (j && j->is_object() && j->contains("error") && (*j)["error"].is_object()) {
    const Json& e = (*j)["error"];
    // A code name this build does not know keeps the status's meaning.
    if (e.contains("code") && e["code"].is_string()) {
      err.code = ErrorCodeFromName(e["code"].get<std::string>()).value_or(err.code);
    }
    if (e.contains("message") && e["message"].is_string())
      err.message = e["message"].get<std::string>();
    if (e.contains("reason") && e["reason"].is_string())
      err.reason = e["reason"].get<std::string>();
  }
  if (err.message.empty()) err.message = fmt::format("HTTP {}", status);
  return err;
}

Error ErrorFromResponse(const ClientResponse& r) { return ErrorFromResponse(r.status, r.body); }

}  // namespace canopy::net
