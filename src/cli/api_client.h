// ApiClient: the CLI's view of the root's REST API v1 (base URL + bearer token). Turns API error
// bodies {"error":{"code","message"}} and transport failures into canopy::Error values whose
// message is ready for the user. Used by cli/commands. Thread-compatible.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/json.h"
#include "common/result.h"
#include "common/secret.h"
#include "net/client.h"
#include "net/tls.h"

namespace canopy::cli {

// Sends one HTTP request. Production code uses HttpTransport() (net::HttpClient); tests pass fakes.
using Transport = std::function<Result<net::ClientResponse>(const net::ClientRequest&)>;

// The Transport for a root whose https certificate must chain to `ca_pem` (empty: the system's
// roots). Plain http ignores the CA.
using TransportFactory = std::function<Transport(const std::string& ca_pem)>;

// GETs <root>/ca.crt: without verification when `fingerprint` is empty (the caller shows the
// fingerprint and asks), else checked against it (net::FetchPinnedCa: kFailedPrecondition,
// reason "ca_fingerprint_mismatch", when it differs).
using CaFetcher =
    std::function<Result<net::FetchedCa>(const std::string& root, const std::string& fingerprint)>;

// Transports over net::HttpClient (defined in http_transport.cpp so that code not sending real
// requests does not need canopy_net's implementation). The process keeps one HttpClient, and so
// one net::TlsClientConfig (HttpClient caches connections per config), for each CA it is asked
// for. HttpTransport() trusts the system's roots.
Transport HttpTransport();
Transport HttpTransportFor(const std::string& ca_pem);
TransportFactory HttpTransportFactory();
// net::FetchCa / net::FetchPinnedCa.
CaFetcher HttpCaFetcher();

// Checks that `url` is http(s)://host[:port][/prefix] and strips trailing slashes.
// kInvalidArgument otherwise.
Result<std::string> NormalizeRootUrl(std::string_view url);

// Builds the Error for a non-2xx response. message is "<api message> (<code>, HTTP <status>)",
// made one line and bounded in length; the code string is the API's own even when unknown here.
Error ApiErrorFromResponse(int status, std::string_view body);

// Percent-encodes one path segment or query value (RFC 3986 unreserved characters kept).
std::string EscapeUrlComponent(std::string_view s);

class ApiClient {
 public:
  // `root` must already be normalised (NormalizeRootUrl). An empty token sends no Authorization.
  ApiClient(std::string root, SecretString token, Transport transport);

  // `path` starts with "/" ("/api/v1/users"). On 2xx returns the parsed body, or an empty object
  // when the body is empty (204). Transport failures give "cannot reach root at <root>: <why>"
  // with the transport's code; other failures come from ApiErrorFromResponse.
  Result<Json> Get(std::string_view path) const;
  Result<Json> Post(std::string_view path, const Json& body) const;
  Result<Json> Delete(std::string_view path) const;
  Result<Json> Send(std::string_view method, std::string_view path, const Json* body) const;
  // GET /healthz; OK on any HTTP answer (so over https: the root's certificate verified).
  // Transport failures as in Send.
  Status Reach() const;

  const std::string& root() const { return root_; }

 private:
  // A transport failure as "cannot reach root at <root>: <why>", keeping its code.
  Error Unreachable(Error err) const;

  std::string root_;
  SecretString token_;
  Transport transport_;
};

}  // namespace canopy::cli
