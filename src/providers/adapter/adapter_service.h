// AdapterService: the `canopyd provider` shell. Serves any Provider over HTTP (AdapterServer),
// registers with the root using a single-use provider token (or the identity saved in its data
// dir by an earlier registration), and heartbeats. Run() blocks until Stop(); thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "common/result.h"
#include "common/secret.h"
#include "net/tier_identity.h"
#include "providers/adapter/adapter_server.h"
#include "providers/provider.h"

namespace canopy::providers::adapter {

struct AdapterOptions {
  std::string root_url;  // e.g. http://127.0.0.1:8080
  std::string token;     // provider registration token (needed on first start only)
  std::string listen = "127.0.0.1:0";
  std::string advertise_url;  // URL the root uses to reach this adapter; default from listen
  std::string data_dir;       // keeps identity.json (0600) and its TLS key across restarts
  // The root CA, for an https root: its fingerprint (pinned at first contact) or a PEM file.
  std::string ca_fingerprint;
  std::string ca_file;
  // Tests only: "METHOD" or "METHOD#N" -> the adapter SIGKILLs itself once, after handling the
  // N-th call (default 1st) of METHOD and before answering it (a marker in data_dir makes it once).
  std::string test_kill_after_call;
};

class AdapterService {
 public:
  AdapterService(ProviderPtr provider, AdapterOptions opts);
  ~AdapterService();

  // Starts the HTTP server and registers. kUnauthenticated when the root refuses the token.
  Status Start();
  // Heartbeats until Stop(). Re-registers if the root forgot the adapter and a token is at hand.
  void Run();
  void Stop();
  uint16_t port() const;
  const std::string& id() const { return id_; }

 private:
  // Registers with the token; `move`: as the adapter of the saved identity, at a new URL.
  Status Register(bool move = false);
  Status Heartbeat();
  // The server's TLS settings from the certificate the root signed (pending without one).
  net::TlsServerConfigPtr ServerTls() const;
  bool LoadIdentity();
  Status SaveIdentity() const;

  ProviderPtr provider_;
  AdapterOptions opts_;
  std::unique_ptr<AdapterServer> server_;
  std::unique_ptr<net::TierIdentity> tls_;  // its key, the root's certificate for it, the CA
  std::string id_;
  SecretString key_;
  std::chrono::seconds heartbeat_{5};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace canopy::providers::adapter
