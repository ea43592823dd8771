#include "root/root_pki.h"

#include <fmt/format.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/files.h"
#include "control/tier_ca.h"

namespace canopy::root {
namespace {

constexpr auto kCaValidity = std::chrono::hours(24 * 365 * 10);
constexpr auto kRootCertValidity = std::chrono::hours(24 * 90);

void Add(std::vector<std::string>& v, const std::string& s) {
  if (!s.empty() && std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
}

std::vector<std::string> InterfaceAddresses() {
  std::vector<std::string> out;
  struct ifaddrs* ifs = nullptr;
  if (::getifaddrs(&ifs) != 0) return out;
  for (auto* i = ifs; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    int fam = i->ifa_addr->sa_family;
    if (fam != AF_INET && fam != AF_INET6) continue;
    char host[NI_MAXHOST];
    socklen_t len = fam == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    if (::getnameinfo(i->ifa_addr, len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0) {
      continue;
    }
    std::string h = host;
    if (h.find('%') != std::string::npos) continue;  // link-local with a scope
    Add(out, h);
  }
  ::freeifaddrs(ifs);
  return out;
}

Result<net::pki::Authority> LoadOrCreateCa(const RootPkiOptions& o) {
  if (!o.ca_cert_file.empty() || !o.ca_key_file.empty()) {
    if (o.ca_cert_file.empty() || o.ca_key_file.empty()) {
      return Error::InvalidArgument("--ca-cert and --ca-key go together");
    }
    CANOPY_ASSIGN_OR_RETURN(std::string cert, ReadFileString(o.ca_cert_file));
    CANOPY_ASSIGN_OR_RETURN(std::string key, ReadFileString(o.ca_key_file));
    CANOPY_ASSIGN_OR_RETURN(auto ca, net::pki::Authority::Load(cert, SecretString(key)));
    // The tiers fetch ca.crt from the data dir's copy too (canopy up, tests).
    CANOPY_TRY(WriteFileAtomic(o.data_dir + "/ca.crt", ca.cert_pem(), 0644));
    return ca;
  }
  std::string cert_path = o.data_dir + "/ca.crt";
  std::string key_path = o.data_dir + "/ca.key";
  auto cert = ReadFileString(cert_path);
  auto key = ReadFileString(key_path);
  if (cert && key) return net::pki::Authority::Load(*cert, SecretString(*key));
  if (cert || key) {
    return Error::FailedPrecondition(fmt::format(
        "{} and {} must both exist (restore the missing one, or remove both to make a new CA; "
        "every cluster and adapter then has to pair again)",
        cert_path, key_path));
  }
  CANOPY_ASSIGN_OR_RETURN(auto ca, net::pki::Authority::Create("Canopy root CA", kCaValidity));
  CANOPY_TRY(WriteFileAtomic(key_path, ca.key_pem().Reveal(), 0600));
  CANOPY_TRY(WriteFileAtomic(cert_path, ca.cert_pem(), 0644));
  SPDLOG_INFO("Created the root CA fingerprint={}",
              net::pki::Fingerprint(ca.cert_pem()).value_or(""));
  return ca;
}

bool NeedsNewCertificate(const net::pki::Identity& id, const net::pki::Authority& ca,
                         const std::vector<std::string>& names) {
  if (!id.complete() || id.ca_pem != ca.cert_pem()) return true;
  if (!net::pki::VerifyChain(id.chain_pem, ca.cert_pem(), id.key_pem)) return true;
  auto info = net::pki::ReadCert(id.chain_pem);
  if (!info || net::pki::RenewalDue(*info, std::chrono::system_clock::now())) return true;
  for (const auto& n : names) {
    if (std::find(info->sans.begin(), info->sans.end(), n) == info->sans.end()) return true;
  }
  return false;
}

Result<net::pki::Identity> Issue(const net::pki::Authority& ca,
                                 const std::vector<std::string>& names) {
  net::pki::Identity id;
  CANOPY_ASSIGN_OR_RETURN(id.key_pem, net::pki::NewKey());
  CANOPY_ASSIGN_OR_RETURN(std::string csr,
                          net::pki::NewCsr(id.key_pem, std::string(control::kRootCertName), {}));
  CANOPY_ASSIGN_OR_RETURN(id.chain_pem,
                          ca.Issue(csr, std::string(control::kRootCertName), names,
                                   net::pki::Usage::kServerClient, kRootCertValidity));
  id.ca_pem = ca.cert_pem();
  return id;
}

void MakeConfigs(RootPki& pki, const std::string& api_chain, const SecretString& api_key) {
  auto tier = std::make_shared<net::TlsServerConfig>();
  tier->chain_pem = pki.identity.chain_pem;
  tier->key_pem = pki.identity.key_pem;
  tier->client_ca_pem = pki.ca.cert_pem();
  pki.tier_tls = tier;
  auto api = std::make_shared<net::TlsServerConfig>(*tier);
  if (!api_chain.empty()) {
    api->chain_pem = api_chain;
    api->key_pem = api_key;
  }
  pki.api_tls = api;
}

}  // namespace

std::vector<std::string> RootCertificateNames(const std::vector<std::string>& hosts,
                                              const std::vector<std::string>& extra) {
  std::vector<std::string> names;
  for (const auto& h : hosts) {
    if (h.empty()) continue;
    if (h == "0.0.0.0" || h == "::") {
      for (const auto& a : InterfaceAddresses()) Add(names, a);
    } else {
      Add(names, h);
    }
  }
  Add(names, "127.0.0.1");
  Add(names, "::1");
  Add(names, "localhost");
  for (const auto& e : extra) Add(names, e);
  return names;
}

Result<RootPki> LoadOrCreateRootPki(const RootPkiOptions& opts) {
  CANOPY_ASSIGN_OR_RETURN(net::pki::Authority ca, LoadOrCreateCa(opts));
  RootPki pki{std::move(ca), {}, false, nullptr, nullptr};
  CANOPY_ASSIGN_OR_RETURN(pki.identity, net::pki::LoadIdentity(opts.data_dir));
  // LoadIdentity read ca.crt too; the root's trust anchor is its CA whatever the file says.
  CANOPY_TRY(RenewRootCertificate(pki, opts));
  return pki;
}

Result<bool> RenewRootCertificate(RootPki& pki, const RootPkiOptions& opts) {
  std::string api_chain;
  SecretString api_key;
  if (!opts.api_cert_file.empty() || !opts.api_key_file.empty()) {
    if (opts.api_cert_file.empty() || opts.api_key_file.empty()) {
      return Error::InvalidArgument("--tls-cert and --tls-key go together");
    }
    CANOPY_ASSIGN_OR_RETURN(api_chain, ReadFileString(opts.api_cert_file));
    CANOPY_ASSIGN_OR_RETURN(std::string k, ReadFileString(opts.api_key_file));
    api_key = SecretString(std::move(k));
    pki.api_cert_from_operator = true;
  }
  bool renewed = false;
  if (NeedsNewCertificate(pki.identity, pki.ca, opts.names)) {
    CANOPY_ASSIGN_OR_RETURN(pki.identity, Issue(pki.ca, opts.names));
    CANOPY_TRY(net::pki::SaveIdentity(opts.data_dir, pki.identity));
    SPDLOG_INFO("Issued the root's certificate names={}", fmt::join(opts.names, ","));
    renewed = true;
  }
  MakeConfigs(pki, api_chain, api_key);
  return renewed;
}

}  // namespace canopy::root
