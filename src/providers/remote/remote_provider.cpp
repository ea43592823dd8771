#include "providers/remote/remote_provider.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "net/error_mapping.h"

namespace canopy::providers::remote {

RemoteProvider::RemoteProvider(std::string base_url, SecretString adapter_key, ProviderInfo info)
    : base_url_(std::move(base_url)), adapter_key_(std::move(adapter_key)), info_(std::move(info)) {
  while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
}

Result<Json> RemoteProvider::Call(const std::string& method, const std::string& path,
                                  const Json& body) const {
  net::ClientRequest req;
  req.method = method;
  req.url = base_url_ + path;
  req.headers["Authorization"] = "Bearer " + adapter_key_.Reveal();
  req.headers["Content-Type"] = "application/json";
  req.body = DumpJson(body);
  req.timeout = std::chrono::milliseconds(60000);
  auto resp = http_.Do(req);
  if (!resp) {
    SPDLOG_WARN("Provider adapter unreachable url={} error={}", base_url_, resp.error().ToString());
    return Error::Unavailable(fmt::format("provider adapter at {} is unreachable", base_url_));
  }
  if (resp->status >= 200 && resp->status < 300) {
    if (resp->body.empty()) return Json::object();
    auto j = ParseJson(resp->body);
    if (!j) return Error::Provider("provider adapter sent a malformed answer");
    return *j;
  }
  return net::ErrorFromResponse(*resp);
}

Status RemoteProvider::ValidateCredential(const CredentialSecret& secret) {
  auto r = Call("POST", "/v1/credentials/validate", Json{{"secret", secret.Reveal()}});
  if (!r) return std::move(r).error();
  return OkStatus();
}

}  // namespace canopy::providers::remote
