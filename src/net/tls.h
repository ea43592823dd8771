// TLS settings of the tiers' listeners and calls (contexts are built in detail/tls_context.*).
// A server presents a certificate chain and may ask clients for a certificate issued by a CA it
// trusts (mutual TLS); the verified client's common name reaches handlers as Request::peer_cn.
// A client trusts one CA (the root's; or the system's when none is given), checks the server's
// address against the certificate, may require a common name, and may present its own chain.
#pragma once

#include <memory>
#include <string>

#include "common/result.h"
#include "common/secret.h"

namespace canopy::net {

struct TlsServerConfig {
  std::string chain_pem;  // leaf first
  SecretString key_pem;
  // When set: clients may present a certificate, which must verify against this CA (the
  // handshake fails otherwise); whether one is needed is up to the handlers (peer_cn) unless
  // `require_client_cert`.
  std::string client_ca_pem;
  bool require_client_cert = false;
  // Trust `client_ca_pem` as an anchor even when it is not self-signed (a cluster's own CA).
  bool partial_chain = false;
};

struct TlsClientConfig {
  std::string ca_pem;  // the CA the server must chain to; empty: the system's roots
  // The client certificate (leaf first) and its key, for mutual TLS; empty: none.
  std::string chain_pem;
  SecretString key_pem;
  // The server's certificate must carry this common name ("x*": starting with "x"); empty: any.
  std::string expect_cn;
  // Check the URL's host (name or IP address) against the server certificate.
  bool verify_host = true;
  // Accept any server certificate. Only for FetchCa, whose answer is then checked against a
  // fingerprint the user gave: never for anything else.
  bool unverified = false;
};

// GETs `<base_url>/ca.crt` (the CA certificate every Canopy tier serves, in PEM) without
// verifying the server: the caller pins what it gets by checking its fingerprint
// (pki::Fingerprint) before trusting it. kInvalidArgument when the answer is not a certificate.
struct FetchedCa {
  std::string pem;
  std::string fingerprint;  // "sha256:…"
};
Result<FetchedCa> FetchCa(const std::string& base_url);
// FetchCa, then checks the fingerprint: kFailedPrecondition (reason "ca_fingerprint_mismatch")
// naming both fingerprints when they differ.
Result<FetchedCa> FetchPinnedCa(const std::string& base_url, const std::string& fingerprint);

using TlsServerConfigPtr = std::shared_ptr<const TlsServerConfig>;
using TlsClientConfigPtr = std::shared_ptr<const TlsClientConfig>;

// Whether `cn` matches a pattern of TlsClientConfig::expect_cn.
bool CommonNameMatches(const std::string& pattern, const std::string& cn);

// Whether `host` is a loopback address or "localhost" (where plain HTTP stays allowed).
bool IsLoopbackHost(const std::string& host);

}  // namespace canopy::net
