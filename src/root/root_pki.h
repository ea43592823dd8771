// The root's PKI on disk: its CA (`ca.crt`, `ca.key` 0600 — created on first start, or the
// operator's), its own certificate (`tls.crt`, `tls.key` 0600: "canopy-root", server and client,
// for the names it is reached by; renewed when a third of its life is left or when a name is
// missing), and the TLS settings of its listeners (the operator may bring the API listener's
// certificate). Thread-compatible.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"
#include "net/pki.h"
#include "net/tls.h"

namespace canopy::root {

struct RootPkiOptions {
  std::string data_dir;
  std::vector<std::string> names;  // IP addresses and DNS names of the root's certificate
  std::string ca_cert_file;        // the operator's CA (with ca_key_file), else ca.crt/ca.key
  std::string ca_key_file;
  std::string api_cert_file;  // the operator's certificate chain for --listen (with its key)
  std::string api_key_file;
};

struct RootPki {
  net::pki::Authority ca;
  net::pki::Identity identity;  // the root's own, issued by `ca`
  bool api_cert_from_operator = false;
  net::TlsServerConfigPtr api_tls;   // for --listen
  net::TlsServerConfigPtr tier_tls;  // for --cluster-listen: the root's own, client CA = `ca`
};

// Loads or creates everything; renews the root's certificate when due.
Result<RootPki> LoadOrCreateRootPki(const RootPkiOptions& opts);
// Renews the root's own certificate when due (or a name is missing): true when it did.
Result<bool> RenewRootCertificate(RootPki& pki, const RootPkiOptions& opts);

// The names a root listening on `hosts` is reached by: the hosts themselves (every interface
// address for a wildcard one), 127.0.0.1, ::1 and localhost, and `extra`.
std::vector<std::string> RootCertificateNames(const std::vector<std::string>& hosts,
                                              const std::vector<std::string>& extra);

}  // namespace canopy::root
