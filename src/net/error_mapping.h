// The one table mapping ErrorCode to HTTP status, and the API error body
// {"error":{"code","message"}} in both directions. Used by the root API, the provider adapter
// service and every HTTP client of Canopy's own services. Thread-safe (pure functions).
#pragma once

#include "common/error.h"
#include "net/client.h"
#include "net/http.h"

namespace canopy::net {

int HttpStatusFor(ErrorCode code);
// {"error":{"code":"not_found","message":"..."}} with the status from the table. An Error whose
// message is exactly kMethodNotAllowed is answered 405.
Response ErrorResponse(const Error& e);
inline constexpr std::string_view kMethodNotAllowed = "method not allowed";

// Reads an error body from one of Canopy's services (falls back to the status when the body is
// not an API error).
Error ErrorFromResponse(const ClientResponse& r);

}  // namespace canopy::net
