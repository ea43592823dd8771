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

// The one HTTP -> Error decoder, used by every client of Canopy's services (the CLI, the lower
// tiers, the root calling adapters). Reads {"error":{"code","message","reason?"}}; the code comes
// from the body when this build knows its name, else from the status (ErrorCodeForStatus); the
// message is "HTTP <status>" when the body has none.
Error ErrorFromResponse(int status, std::string_view body);
Error ErrorFromResponse(const ClientResponse& r);
// The code a status means without a body: the table's inverse; another 4xx is kInvalidArgument,
// another status kInternal.
ErrorCode ErrorCodeForStatus(int status);

}  // namespace canopy::net
