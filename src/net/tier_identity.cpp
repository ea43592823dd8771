#include "net/tier_identity.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "common/files.h"
#include "net/http.h"

namespace canopy::net {

Result<std::unique_ptr<TierIdentity>> TierIdentity::Open(const std::string& dir,
                                                         std::string upstream_cn,
                                                         bool verify_host) {
  std::unique_ptr<TierIdentity> t(new TierIdentity(dir, std::move(upstream_cn), verify_host));
  if (!dir.empty()) {
    CANOPY_ASSIGN_OR_RETURN(t->id_, pki::LoadIdentity(dir));
  }
  if (t->id_.key_pem.Reveal().empty()) {
    CANOPY_ASSIGN_OR_RETURN(t->id_.key_pem, pki::NewKey());
    pki::Identity key_only;
    key_only.key_pem = t->id_.key_pem;
    if (!dir.empty()) CANOPY_TRY(pki::SaveIdentity(dir, key_only));
    t->id_.chain_pem.clear();  // a chain without its key is useless
  } else if (!t->id_.chain_pem.empty()) {
    if (auto st = pki::VerifyChain(t->id_.chain_pem, t->id_.ca_pem, t->id_.key_pem); !st) {
      t->id_.chain_pem.clear();  // asks for a new one
    }
  }
  t->Rebuild();
  return t;
}

void TierIdentity::Rebuild() {
  if (id_.ca_pem.empty()) {
    client_ = nullptr;
    return;
  }
  auto c = std::make_shared<TlsClientConfig>();
  c->ca_pem = id_.ca_pem;
  c->expect_cn = upstream_cn_;
  c->verify_host = verify_host_;
  if (!id_.chain_pem.empty()) {
    c->chain_pem = id_.chain_pem;
    c->key_pem = id_.key_pem;
  }
  client_ = std::move(c);
}

Status TierIdentity::EnsureCa(const std::string& upstream_url, const std::string& fingerprint,
                              const std::string& ca_file) {
  std::string want;
  if (!fingerprint.empty()) {
    CANOPY_ASSIGN_OR_RETURN(want, pki::NormalizeFingerprint(fingerprint));
  }
  auto check = [&](const std::string& pem, const std::string& where) -> Status {
    CANOPY_ASSIGN_OR_RETURN(std::string got, pki::Fingerprint(pem));
    if (!want.empty() && got != want) {
      Error e = Error::FailedPrecondition(fmt::format(
          "the CA certificate {} has fingerprint {}, not the expected {}: refusing to trust it "
          "(a wrong fingerprint, or someone in between)",
          where, got, want));
      e.reason = "ca_fingerprint_mismatch";
      return e;
    }
    return OkStatus();
  };
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!id_.ca_pem.empty()) return check(id_.ca_pem, "in " + dir_ + "/ca.crt");
  }
  std::string pem;
  if (!ca_file.empty()) {
    std::ifstream in(ca_file, std::ios::binary);
    if (!in) return Error::InvalidArgument(fmt::format("cannot read the CA file {}", ca_file));
    std::ostringstream ss;
    ss << in.rdbuf();
    pem = ss.str();
    CANOPY_TRY(check(pem, "in " + ca_file));
  } else if (upstream_url.starts_with("https://")) {
    if (want.empty()) {
      return Error::FailedPrecondition(
          fmt::format("{} speaks TLS and this tier knows no CA yet: pass the root CA's fingerprint "
                      "(--ca-fingerprint sha256:…, printed by the root and by `canopy up`)",
                      upstream_url));
    }
    CANOPY_ASSIGN_OR_RETURN(FetchedCa got, FetchPinnedCa(upstream_url, want));
    pem = got.pem;
  } else {
    return OkStatus();
  }
  return AcceptCa(pem);
}

Status TierIdentity::AcceptCa(const std::string& ca_pem, bool replace) {
  CANOPY_ASSIGN_OR_RETURN(pki::CertInfo info, pki::ReadCert(ca_pem));
  if (!info.is_ca) return Error::InvalidArgument("the CA certificate is not a CA");
  std::lock_guard<std::mutex> l(mu_);
  if (!id_.ca_pem.empty() && replace &&
      pki::Fingerprint(id_.ca_pem).value_or("") != info.fingerprint) {
    id_.chain_pem.clear();
    id_.ca_pem.clear();
  }
  if (!id_.ca_pem.empty()) {
    if (pki::Fingerprint(id_.ca_pem).value_or("") != info.fingerprint) {
      return Error::FailedPrecondition(
          fmt::format("the tier above now shows another CA ({}) than the one this tier trusts; "
                      "refusing it",
                      info.fingerprint));
    }
    return OkStatus();
  }
  pki::Identity ca_only;
  ca_only.ca_pem = ca_pem;
  if (!dir_.empty()) CANOPY_TRY(pki::SaveIdentity(dir_, ca_only));
  id_.ca_pem = ca_pem;
  Rebuild();
  return OkStatus();
}

Result<std::string> TierIdentity::Csr(const std::string& cn,
                                      const std::vector<std::string>& sans) const {
  std::lock_guard<std::mutex> l(mu_);
  return pki::NewCsr(id_.key_pem, cn, sans);
}

Result<std::string> TierIdentity::CsrForUrl(const std::string& cn, const std::string& url) const {
  std::vector<std::string> names;
  if (std::string host = UrlHost(url); !host.empty()) names.push_back(host);
  return Csr(cn, names);
}

Status TierIdentity::AcceptCertificate(const std::string& chain_pem) {
  std::lock_guard<std::mutex> l(mu_);
  if (id_.ca_pem.empty()) return Error::FailedPrecondition("no CA to check the certificate with");
  CANOPY_TRY(pki::VerifyChain(chain_pem, id_.ca_pem, id_.key_pem));
  pki::Identity chain_only;
  chain_only.chain_pem = chain_pem;
  if (!dir_.empty()) CANOPY_TRY(pki::SaveIdentity(dir_, chain_only));
  id_.chain_pem = chain_pem;
  Rebuild();
  return OkStatus();
}

bool TierIdentity::has_ca() const {
  std::lock_guard<std::mutex> l(mu_);
  return !id_.ca_pem.empty();
}

bool TierIdentity::has_certificate() const {
  std::lock_guard<std::mutex> l(mu_);
  return !id_.chain_pem.empty();
}

bool TierIdentity::RenewalDue(std::chrono::system_clock::time_point now) const {
  std::lock_guard<std::mutex> l(mu_);
  if (id_.chain_pem.empty()) return true;
  auto info = pki::ReadCert(id_.chain_pem);
  return !info || pki::RenewalDue(*info, now);
}

std::string TierIdentity::ca_pem() const {
  std::lock_guard<std::mutex> l(mu_);
  return id_.ca_pem;
}

std::string TierIdentity::common_name() const {
  std::lock_guard<std::mutex> l(mu_);
  if (id_.chain_pem.empty()) return "";
  auto info = pki::ReadCert(id_.chain_pem);
  return info ? info->cn : "";
}

TlsClientConfigPtr TierIdentity::Client() const {
  std::lock_guard<std::mutex> l(mu_);
  return client_;
}

TlsServerConfigPtr TierIdentity::Server(const std::string& client_ca_pem,
                                        bool partial_chain) const {
  std::lock_guard<std::mutex> l(mu_);
  if (id_.chain_pem.empty()) return nullptr;
  auto s = std::make_shared<TlsServerConfig>();
  s->chain_pem = id_.chain_pem;
  s->key_pem = id_.key_pem;
  s->client_ca_pem = client_ca_pem;
  s->partial_chain = partial_chain;
  return s;
}

}  // namespace canopy::net
