// TierCa: the root's certificate authority for the lower tiers. It signs what clusters and
// adapters ask for (CSRs: their keys never leave them): a cluster's certificate (server and
// client, "cluster:<id>") and its node CA ("cluster-ca:<id>", path length 0, for its nodes'
// certificates), an adapter's certificate ("adapter:<id>"), and holds the root's own client
// identity for calls to adapters, which must present the certificate of the adapter a credential
// is bound to. A root without a TierCa (in-process tests) issues nothing. Thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/result.h"
#include "net/pki.h"
#include "net/tls.h"

namespace canopy::control {

struct TierCaOptions {
  std::chrono::seconds leaf_validity{std::chrono::hours(24 * 30)};      // clusters', adapters'
  std::chrono::seconds node_ca_validity{std::chrono::hours(24 * 365)};  // clusters' node CAs
};

// The names in the certificates the root issues.
std::string ClusterCertName(const std::string& cluster_id);
std::string AdapterCertName(const std::string& adapter_id);
inline constexpr std::string_view kRootCertName = "canopy-root";

// What the root signed for a cluster.
struct ClusterCerts {
  std::string certificate;          // PEM
  std::string node_ca_certificate;  // PEM; empty when no node CA was asked for
};

class TierCa {
 public:
  // `root_identity`: the root's own certificate chain and key (issued by `ca`), presented to
  // adapters.
  TierCa(net::pki::Authority ca, net::pki::Identity root_identity, TierCaOptions opts = {});

  const std::string& ca_pem() const { return ca_.cert_pem(); }
  const std::string& fingerprint() const { return fingerprint_; }

  // Signs a cluster's CSR (and its node CA's, when not empty). The names in the certificate are
  // the host of `url` (its advertised URL) and the CSR's own IP/DNS names (at most 16).
  // kInvalidArgument on a bad CSR.
  Result<ClusterCerts> IssueCluster(const std::string& cluster_id, const std::string& csr,
                                    const std::string& node_ca_csr, const std::string& url) const;
  // Signs an adapter's CSR for the host of `url`, where the root will call it.
  Result<std::string> IssueAdapter(const std::string& adapter_id, const std::string& csr,
                                   const std::string& url) const;

  // The TLS settings of the root's calls to adapter `adapter_id`: trust this CA only, expect
  // "adapter:<id>", present the root's certificate. Cached per adapter.
  net::TlsClientConfigPtr ForAdapter(const std::string& adapter_id);
  // The root's own identity was renewed: later calls present the new one.
  void SetRootIdentity(net::pki::Identity id);

 private:
  Result<std::vector<std::string>> Names(const std::string& url,
                                         const std::vector<std::string>& extra) const;

  net::pki::Authority ca_;
  std::string fingerprint_;
  TierCaOptions opts_;
  std::mutex mu_;
  net::pki::Identity root_;
  std::map<std::string, net::TlsClientConfigPtr> adapters_;
};

}  // namespace canopy::control
