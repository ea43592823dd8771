#include "control/tier_ca.h"

#include <fmt/format.h>

#include <algorithm>

#include "net/http.h"

namespace canopy::control {
namespace {

constexpr size_t kMaxNames = 16;

}  // namespace

std::string ClusterCertName(const std::string& cluster_id) { return "cluster:" + cluster_id; }
std::string AdapterCertName(const std::string& adapter_id) { return "adapter:" + adapter_id; }

TierCa::TierCa(net::pki::Authority ca, net::pki::Identity root_identity, TierCaOptions opts)
    : ca_(std::move(ca)), opts_(opts), root_(std::move(root_identity)) {
  fingerprint_ = net::pki::Fingerprint(ca_.cert_pem()).value_or("");
}

Result<std::vector<std::string>> TierCa::Names(const std::string& url,
                                               const std::vector<std::string>& extra) const {
  std::vector<std::string> names;
  if (std::string h = net::UrlHost(url); !h.empty()) names.push_back(h);
  for (const auto& n : extra) {
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  if (names.size() > kMaxNames) {
    return Error::InvalidArgument(fmt::format("at most {} names per certificate", kMaxNames));
  }
  return names;
}

Result<ClusterCerts> TierCa::IssueCluster(const std::string& cluster_id, const std::string& csr,
                                          const std::string& node_ca_csr,
                                          const std::string& url) const {
  CANOPY_ASSIGN_OR_RETURN(net::pki::CsrInfo info, net::pki::ReadCsr(csr));
  CANOPY_ASSIGN_OR_RETURN(std::vector<std::string> names, Names(url, info.sans));
  ClusterCerts out;
  CANOPY_ASSIGN_OR_RETURN(out.certificate,
                          ca_.Issue(csr, ClusterCertName(cluster_id), names,
                                    net::pki::Usage::kServerClient, opts_.leaf_validity));
  if (!node_ca_csr.empty()) {
    CANOPY_ASSIGN_OR_RETURN(out.node_ca_certificate,
                            ca_.Issue(node_ca_csr, "cluster-ca:" + cluster_id, {},
                                      net::pki::Usage::kSubCa, opts_.node_ca_validity));
  }
  return out;
}

Result<std::string> TierCa::IssueAdapter(const std::string& adapter_id, const std::string& csr,
                                         const std::string& url) const {
  CANOPY_ASSIGN_OR_RETURN(net::pki::CsrInfo info, net::pki::ReadCsr(csr));
  CANOPY_ASSIGN_OR_RETURN(std::vector<std::string> names, Names(url, info.sans));
  return ca_.Issue(csr, AdapterCertName(adapter_id), names, net::pki::Usage::kServerClient,
                   opts_.leaf_validity);
}

net::TlsClientConfigPtr TierCa::ForAdapter(const std::string& adapter_id) {
  std::lock_guard<std::mutex> l(mu_);
  auto& slot = adapters_[adapter_id];
  if (!slot) {
    auto cfg = std::make_shared<net::TlsClientConfig>();
    cfg->ca_pem = ca_.cert_pem();
    cfg->chain_pem = root_.chain_pem;
    cfg->key_pem = root_.key_pem;
    cfg->expect_cn = AdapterCertName(adapter_id);
    slot = std::move(cfg);
  }
  return slot;
}

void TierCa::SetRootIdentity(net::pki::Identity id) {
  std::lock_guard<std::mutex> l(mu_);
  root_ = std::move(id);
  adapters_.clear();
}

}  // namespace canopy::control
