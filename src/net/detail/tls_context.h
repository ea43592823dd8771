// Builds Asio SSL contexts from the TLS settings (net/tls.h). Internal to net.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/verify_context.hpp>
#include <memory>
#include <string>

#include "common/result.h"
#include "net/tls.h"

namespace canopy::net::detail {

Result<std::shared_ptr<boost::asio::ssl::context>> MakeServerContext(const TlsServerConfig& cfg);
Result<std::shared_ptr<boost::asio::ssl::context>> MakeClientContext(const TlsClientConfig& cfg);

// The common name of the verified peer certificate of `ssl` ("" when none).
std::string PeerCommonName(SSL* ssl);

// The verify callback of a client connection to `host` under `cfg`.
bool VerifyServer(const TlsClientConfig& cfg, const std::string& host, bool preverified,
                  boost::asio::ssl::verify_context& ctx);

}  // namespace canopy::net::detail
