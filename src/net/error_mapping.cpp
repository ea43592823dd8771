#include "net/error_mapping.h"

#include <fmt/format.h>

namespace canopy::net {

int HttpStatusFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return 200;
    case ErrorCode::kInvalidArgument: return 400;
    case ErrorCode::kUnauthenticated: return 401;
    case ErrorCode::kPermissionDenied: return 403;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kAlreadyExists: return 409;
    case ErrorCode::kConflict: return 409;
    case ErrorCode::kFailedPrecondition: return 409;
    case ErrorCode::kPayloadTooLarge: return 413;
    case ErrorCode::kUnprocessable: return 422;
    case ErrorCode::kResourceExhausted: return 429;
    case ErrorCode::kInternal: return 500;
    case ErrorCode::kProviderError: return 502;
    case ErrorCode::kUnavailable: return 503;
    case ErrorCode::kDeadlineExceeded: return 504;
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

Error ErrorFromResponse(const ClientResponse& r) {
  auto j = ParseJson(r.body);
  if (j && j->is_object() && j->contains("error") && (*j)["error"].is_object()) {
    const Json& e = (*j)["error"];
    Error err;
    err.code = e.contains("code") && e["code"].is_string()
                   ? ParseErrorCode(e["code"].get<std::string>())
                   : ErrorCode::kInternal;
    err.message = e.contains("message") && e["message"].is_string()
                      ? e["message"].get<std::string>()
                      : fmt::format("HTTP {}", r.status);
    if (e.contains("reason") && e["reason"].is_string()) err.reason = e["reason"].get<std::string>();
    return err;
  }
  ErrorCode code = ErrorCode::kInternal;
  switch (r.status) {
    case 400: code = ErrorCode::kInvalidArgument; break;
    case 401: code = ErrorCode::kUnauthenticated; break;
    case 403: code = ErrorCode::kPermissionDenied; break;
    case 404: code = ErrorCode::kNotFound; break;
    case 409: code = ErrorCode::kConflict; break;
    case 413: code = ErrorCode::kPayloadTooLarge; break;
    case 422: code = ErrorCode::kUnprocessable; break;
    case 429: code = ErrorCode::kResourceExhausted; break;
    case 502: code = ErrorCode::kProviderError; break;
    case 503: code = ErrorCode::kUnavailable; break;
    case 504: code = ErrorCode::kDeadlineExceeded; break;
    default: break;
  }
  return Error{code, fmt::format("HTTP {}", r.status), {}};
}

}  // namespace canopy::net
