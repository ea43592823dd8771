// AdapterServer: the HTTP binding of the Provider interface (POST /v1/<method>, Bearer adapter
// key), serving a Provider& it does not own. Used by AdapterService (canopyd provider) and served
// in-process by tests. Never logs or keeps credentials. Thread-safe.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "common/result.h"
#include "common/secret.h"
#include "net/http.h"
#include "providers/provider.h"

namespace canopy::providers::adapter {

class AdapterServer {
 public:
  /// `provider` must outlive the server. An empty key refuses every call until SetKey.
  AdapterServer(Provider& provider, SecretString key);
  ~AdapterServer();

  /// Binds `listen` ("HOST:PORT", port 0 picks a free one) and serves.
  /// With `tls`, speaks TLS (an empty chain: no handshake succeeds until UpdateTls) and then
  /// serves calls only to a client presenting the root's certificate ("canopy-root").
  Status Start(const std::string& listen, net::TlsServerConfigPtr tls = nullptr);
  Status UpdateTls(net::TlsServerConfigPtr tls);
  void Stop();
  uint16_t port() const;
  void SetKey(SecretString key);
  /// Tests only (crash injection): called after a call was handled and before it is answered.
  /// Set before Start().
  void SetAfterCallHook(std::function<void(const std::string& method)> hook) {
    after_call_ = std::move(hook);
  }

  /// Handles one call of the binding: `method` is the snake_case name, `body` the request JSON.
  /// Exposed for tests; the HTTP route calls it after checking the key.
  Result<Json> Dispatch(const std::string& method, const Json& body);

 private:
  /// The key check of every call but /healthz: OK, a 401 for a missing or wrong key (reason
  /// kReasonAdapterKey), or a 503 while the adapter has no key yet. A call that arrives while the
  /// registration answer is on its way (the root already knows the key, this process not yet)
  /// waits for it, bounded, instead of being refused.
  Status CheckKey(const net::Request& req) const;

  Provider& provider_;
  mutable std::mutex mu_;
  mutable std::condition_variable key_set_;
  SecretString key_;
  std::unique_ptr<net::HttpServer> server_;
  std::function<void(const std::string&)> after_call_;
};

}  // namespace canopy::providers::adapter
