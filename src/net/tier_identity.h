// TierIdentity: what a lower tier (cluster, node, adapter) holds to speak TLS — its key (made
// here, never sent anywhere), the certificate chain the tier above signed for it, and the root
// CA it trusts — kept in its data dir (pki::Identity files), plus the TLS settings built from
// them. The CA is learnt once: from the data dir, an operator's file, or fetched from the tier
// above and pinned by the fingerprint the tier was given (a mismatch is refused with both
// fingerprints named). Thread-safe.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "common/result.h"
#include "net/pki.h"
#include "net/tls.h"

namespace canopy::net {

class TierIdentity {
 public:
  // Loads `dir`'s files (`dir` "": kept in memory only) (kInvalidArgument when they do not fit
  // together); makes a key when there is none. `upstream_cn`: the name the tier above must present
  // (TlsClientConfig).
  // `verify_host` false: the tier above is recognised by its name alone (`upstream_cn` must
  // then be one only it holds: "canopy-root" — the root is often reached at an address that
  // did not exist when its certificate was made, e.g. a bridge).
  static Result<std::unique_ptr<TierIdentity>> Open(const std::string& dir, std::string upstream_cn,
                                                    bool verify_host = true);

  // Makes sure the CA is known before calling `upstream_url` over https: kept in the data dir,
  // else read from `ca_file`, else fetched from `upstream_url` and checked against
  // `fingerprint`. A given fingerprint must match the CA however it was learnt
  // (kFailedPrecondition, reason "ca_fingerprint_mismatch"). Without any: kFailedPrecondition
  // asking for one. Nothing to do for plain http.
  Status EnsureCa(const std::string& upstream_url, const std::string& fingerprint,
                  const std::string& ca_file);
  // Takes the CA from a registration answer: only when none is known yet or it is the same,
  // unless `replace` (an answer that came over loopback plain HTTP: a new root there is the
  // operator's doing); a replaced CA drops the certificate.
  Status AcceptCa(const std::string& ca_pem, bool replace = false);

  // A CSR for this tier's key.
  Result<std::string> Csr(const std::string& cn, const std::vector<std::string>& sans = {}) const;
  // A CSR naming the host of `url` (this tier's advertised URL; none for a wildcard host).
  Result<std::string> CsrForUrl(const std::string& cn, const std::string& url) const;
  // Stores the chain signed for this key (leaf first) after checking it against the CA.
  Status AcceptCertificate(const std::string& chain_pem);

  bool has_ca() const;
  bool has_certificate() const;
  // Whether the certificate should be renewed now (a third of its life left, or none).
  bool RenewalDue(std::chrono::system_clock::time_point now) const;
  std::string ca_pem() const;
  std::string common_name() const;  // of the certificate ("" without one)

  // For calls to the tier above: trust the CA, expect `upstream_cn`, present the certificate.
  // The same object until the certificate or the CA changes (HttpClient reuses connections per
  // settings object). Null when no CA is known (plain http).
  TlsClientConfigPtr Client() const;
  // For this tier's own listener: its certificate; clients may present a certificate issued by
  // `client_ca_pem` (empty: none asked). Null without a certificate.
  TlsServerConfigPtr Server(const std::string& client_ca_pem, bool partial_chain) const;

 private:
  TierIdentity(std::string dir, std::string upstream_cn, bool verify_host)
      : dir_(std::move(dir)), upstream_cn_(std::move(upstream_cn)), verify_host_(verify_host) {}
  void Rebuild();  // under mu_

  const std::string dir_;
  const std::string upstream_cn_;
  const bool verify_host_;
  mutable std::mutex mu_;
  pki::Identity id_;
  TlsClientConfigPtr client_;
};

}  // namespace canopy::net
