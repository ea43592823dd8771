#include "net/json_call.h"

#include "net/client.h"
#include "net/error_mapping.h"

namespace canopy::net {

Result<Json> PostJson(const JsonCall& call) {
  ClientRequest req;
  req.method = "POST";
  req.url = call.url;
  req.headers["Content-Type"] = "application/json";
  if (!call.bearer.Reveal().empty()) {
    req.headers["Authorization"] = "Bearer " + call.bearer.Reveal();
  }
  req.body = DumpJson(call.body);
  req.timeout = call.timeout;
  req.connect_timeout = call.connect_timeout;
  auto resp = HttpClient(call.tls).Do(req);
  if (!resp) {
    // The transport's message names the origin and what failed (refused, timed out, a
    // certificate that does not verify), never the request.
    return Error::Unavailable("cannot reach " + call.peer + ": " + resp.error().message);
  }
  if (resp->status < 200 || resp->status > 299) {
    return ErrorFromResponse(*resp);
  }
  if (resp->body.empty()) {
    return Json::object();
  }
  auto j = ParseJsonObject(resp->body);
  if (!j) {
    return Error::Internal(call.peer + " sent a malformed answer");
  }
  return std::move(*j);
}

}  // namespace canopy::net
