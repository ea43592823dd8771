// The production Transport. Kept apart from api_client.cpp so that only binaries that really send
// requests link net::HttpClient's implementation.
#include <map>
#include <memory>
#include <mutex>

#include "cli/api_client.h"
#include "net/tls.h"

namespace canopy::cli {

namespace {

// One HttpClient per CA for the whole process: net::HttpClient keeps its connections (and TLS
// contexts) per TlsClientConfig pointer, so a new config per call would open a new connection per
// call. A process trusts one CA, or two while `canopy login` finds out which.
std::shared_ptr<const net::HttpClient> ClientFor(const std::string& ca_pem) {
  static std::mutex mu;
  static auto* clients = new std::map<std::string, std::shared_ptr<const net::HttpClient>>();
  std::lock_guard<std::mutex> l(mu);
  auto& client = (*clients)[ca_pem];
  if (!client) {
    auto cfg = std::make_shared<net::TlsClientConfig>();
    cfg->ca_pem = ca_pem;
    client = std::make_shared<net::HttpClient>(std::move(cfg));
  }
  return client;
}

}  // namespace

Transport HttpTransportFor(const std::string& ca_pem) {
  auto client = ClientFor(ca_pem);
  return [client](const net::ClientRequest& req) { return client->Do(req); };
}

Transport HttpTransport() { return HttpTransportFor(""); }

TransportFactory HttpTransportFactory() {
  return [](const std::string& ca_pem) { return HttpTransportFor(ca_pem); };
}

CaFetcher HttpCaFetcher() {
  return [](const std::string& root, const std::string& fingerprint) -> Result<net::FetchedCa> {
    if (fingerprint.empty()) {
      return net::FetchCa(root);
    }
    return net::FetchPinnedCa(root, fingerprint);
  };
}

}  // namespace canopy::cli
