// PKI of the tiers (OpenSSL 3): the root's CA, certificate signing requests made where the key
// lives, certificates issued by the CA, SHA-256 fingerprints, and the on-disk identity
// (key + certificate chain + CA) every tier keeps. Keys are EC P-256; PEM everywhere. Names:
// "canopy-root" (the root), "cluster:<id>", "cluster-ca:<id>" (a cluster's CA for its nodes,
// path length 0), "node:<id>", "adapter:<id>". Thread-safe (no shared state).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/secret.h"

namespace canopy::net::pki {

// "sha256:<64 lower-case hex>" of the DER certificate (first certificate of `pem`).
Result<std::string> Fingerprint(const std::string& cert_pem);
// Accepts "sha256:HEX", "SHA256:HEX" and HEX with or without colons; gives the canonical form.
Result<std::string> NormalizeFingerprint(const std::string& text);

// A new EC P-256 private key (PKCS#8 PEM).
Result<SecretString> NewKey();

// What a certificate may do.
enum class Usage {
  kServer,        // TLS server only
  kClient,        // TLS client only
  kServerClient,  // both (the root, clusters, adapters: they serve and call)
  kSubCa,         // a CA that may issue leaf certificates only (path length 0)
};

// A PEM CSR for `key` with common name `cn` and subject alternative names (IP addresses or DNS
// names; the CA decides which it honours).
Result<std::string> NewCsr(const SecretString& key_pem, const std::string& cn,
                           const std::vector<std::string>& sans);

struct CsrInfo {
  std::string cn;
  std::vector<std::string> sans;
};
// Parses and checks the signature of a PEM CSR. kInvalidArgument when malformed.
Result<CsrInfo> ReadCsr(const std::string& csr_pem);

struct CertInfo {
  std::string cn;
  std::string issuer_cn;
  std::vector<std::string> sans;
  std::chrono::system_clock::time_point not_before{};
  std::chrono::system_clock::time_point not_after{};
  bool is_ca = false;
  std::string fingerprint;
};
// The first certificate of `pem`.
Result<CertInfo> ReadCert(const std::string& cert_pem);
// Every certificate of a PEM bundle, in order (kInvalidArgument when there is none).
Result<std::vector<std::string>> SplitPem(const std::string& pem);

// A CA able to issue certificates: its certificate and key.
class Authority {
 public:
  // A new self-signed CA, valid `validity` from now (backdated one hour for clock skew).
  static Result<Authority> Create(const std::string& cn, std::chrono::hours validity);
  // From PEM files' content. Checks that the key belongs to the certificate and that it is a CA.
  static Result<Authority> Load(std::string cert_pem, SecretString key_pem);

  // Signs `csr_pem` as `cn` (the CSR's own name is ignored: the CA names) with `sans` (IP
  // addresses and DNS names; empty: none) for `validity`. kInvalidArgument on a bad CSR or SAN.
  // Backdated by a quarter of `validity` (at most an hour) for clock skew.
  Result<std::string> Issue(const std::string& csr_pem, const std::string& cn,
                            const std::vector<std::string>& sans, Usage usage,
                            std::chrono::seconds validity) const;

  const std::string& cert_pem() const { return cert_pem_; }
  const SecretString& key_pem() const { return key_pem_; }

 private:
  Authority(std::string cert, SecretString key)
      : cert_pem_(std::move(cert)), key_pem_(std::move(key)) {}
  std::string cert_pem_;
  SecretString key_pem_;
};

// Checks that `chain_pem` (leaf first, then intermediates) verifies up to the CA `ca_pem` at
// `now` and that its leaf's key is `key_pem` (when given). kInvalidArgument with the reason.
Status VerifyChain(const std::string& chain_pem, const std::string& ca_pem,
                   const std::optional<SecretString>& key_pem = std::nullopt);

// Whether a certificate valid [not_before, not_after) should be renewed at `now`: when less than
// a third of its lifetime is left.
bool RenewalDue(const CertInfo& cert, std::chrono::system_clock::time_point now);

// What a tier keeps on disk in its data dir: `tls.key` (0600), `tls.crt` (its chain, leaf first)
// and `ca.crt` (the root CA, its trust anchor). Empty fields: not there yet.
struct Identity {
  SecretString key_pem;
  std::string chain_pem;
  std::string ca_pem;
  bool complete() const {
    return !key_pem.Reveal().empty() && !chain_pem.empty() && !ca_pem.empty();
  }
};
Result<Identity> LoadIdentity(const std::string& dir);  // missing files: empty fields
Status SaveIdentity(const std::string& dir, const Identity& id);

}  // namespace canopy::net::pki
