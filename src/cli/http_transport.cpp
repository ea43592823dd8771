// The production Transport. Kept apart from api_client.cpp so that only binaries that really send
// requests link net::HttpClient's implementation.
#include <memory>

#include "cli/api_client.h"

namespace canopy::cli {

Transport HttpTransport() {
  auto client = std::make_shared<net::HttpClient>();
  return [client](const net::ClientRequest& req) { return client->Do(req); };
}

}  // namespace canopy::cli
