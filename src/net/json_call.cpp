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
  auto resp = HttpClient().Do(req);
  if (!resp) {
    return Error::Unavailable("cannot reach " + call.peer);
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
