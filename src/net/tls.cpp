// TLS contexts for the server and the client (net/tls.h, net/detail/tls_context.h).
#include "net/tls.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>

#include "net/client.h"
#include "net/detail/tls_context.h"
#include "net/pki.h"

namespace canopy::net {

bool CommonNameMatches(const std::string& pattern, const std::string& cn) {
  if (pattern.empty()) return true;
  if (pattern.back() == '*') {
    std::string prefix = pattern.substr(0, pattern.size() - 1);
    return cn.size() > prefix.size() && cn.starts_with(prefix);
  }
  return cn == pattern;
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(host, ec);
  return !ec && addr.is_loopback();
}

Result<FetchedCa> FetchCa(const std::string& base_url) {
  auto cfg = std::make_shared<TlsClientConfig>();
  cfg->unverified = true;
  std::string base = base_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  ClientRequest req;
  req.url = base + "/ca.crt";
  req.timeout = std::chrono::milliseconds(10000);
  CANOPY_ASSIGN_OR_RETURN(ClientResponse resp, HttpClient(cfg).Do(req));
  if (resp.status != 200) {
    return Error::Unavailable(
        fmt::format("{} did not give its CA certificate (HTTP {})", base, resp.status));
  }
  auto fp = pki::Fingerprint(resp.body);
  if (!fp) return Error::InvalidArgument(fmt::format("{} sent no CA certificate", base));
  return FetchedCa{resp.body, *fp};
}

Result<FetchedCa> FetchPinnedCa(const std::string& base_url, const std::string& fingerprint) {
  CANOPY_ASSIGN_OR_RETURN(std::string want, pki::NormalizeFingerprint(fingerprint));
  CANOPY_ASSIGN_OR_RETURN(FetchedCa got, FetchCa(base_url));
  if (got.fingerprint != want) {
    Error e = Error::FailedPrecondition(fmt::format(
        "the CA certificate at {} has fingerprint {}, not the expected {}: refusing to trust "
        "it (a wrong fingerprint, or someone in between)",
        base_url, got.fingerprint, want));
    e.reason = "ca_fingerprint_mismatch";
    return e;
  }
  return got;
}

namespace detail {
namespace asio = boost::asio;
namespace {

std::string CnOf(X509* cert) {
  if (cert == nullptr) return "";
  X509_NAME* name = X509_get_subject_name(cert);
  int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (idx < 0) return "";
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
  if (n < 0) return "";
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

Status Hardened(asio::ssl::context& ctx) {
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression |
                  asio::ssl::context::single_dh_use);
  return OkStatus();
}

}  // namespace

Result<std::shared_ptr<asio::ssl::context>> MakeServerContext(const TlsServerConfig& cfg) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  CANOPY_TRY(Hardened(*ctx));
  boost::system::error_code ec;
  ctx->use_certificate_chain(asio::buffer(cfg.chain_pem), ec);
  if (!ec) ctx->use_private_key(asio::buffer(cfg.key_pem.Reveal()), asio::ssl::context::pem, ec);
  if (ec || SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    ERR_clear_error();
    return Error::InvalidArgument(
        "TLS: the server certificate or key is invalid or they do not match");
  }
  if (!cfg.client_ca_pem.empty()) {
    ctx->add_certificate_authority(asio::buffer(cfg.client_ca_pem), ec);
    if (ec) return Error::InvalidArgument("TLS: the client CA certificate is invalid");
    int mode = asio::ssl::verify_peer;
    if (cfg.require_client_cert) mode |= asio::ssl::verify_fail_if_no_peer_cert;
    ctx->set_verify_mode(mode);
    if (cfg.partial_chain) {
      X509_STORE_set_flags(SSL_CTX_get_cert_store(ctx->native_handle()), X509_V_FLAG_PARTIAL_CHAIN);
    }
    // Session resumption would skip the client certificate check of a later connection.
    SSL_CTX_set_session_cache_mode(ctx->native_handle(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx->native_handle(), SSL_OP_NO_TICKET);
  }
  return ctx;
}

Result<std::shared_ptr<asio::ssl::context>> MakeClientContext(const TlsClientConfig& cfg) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  CANOPY_TRY(Hardened(*ctx));
  boost::system::error_code ec;
  if (cfg.ca_pem.empty()) {
    ctx->set_default_verify_paths(ec);
  } else {
    ctx->add_certificate_authority(asio::buffer(cfg.ca_pem), ec);
    if (ec) return Error::InvalidArgument("TLS: the CA certificate is invalid");
  }
  ctx->set_verify_mode(cfg.unverified ? asio::ssl::verify_none : asio::ssl::verify_peer);
  if (!cfg.chain_pem.empty()) {
    ctx->use_certificate_chain(asio::buffer(cfg.chain_pem), ec);
    if (!ec) ctx->use_private_key(asio::buffer(cfg.key_pem.Reveal()), asio::ssl::context::pem, ec);
    if (ec) {
      ERR_clear_error();
      return Error::InvalidArgument("TLS: the client certificate or key is invalid");
    }
  }
  return ctx;
}

std::string PeerCommonName(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return "";
  return CnOf(cert);
}

bool VerifyServer(const TlsClientConfig& cfg, const std::string& host, bool preverified,
                  asio::ssl::verify_context& ctx) {
  if (cfg.unverified) return true;
  if (!preverified) return false;
  X509_STORE_CTX* store = ctx.native_handle();
  if (X509_STORE_CTX_get_error_depth(store) != 0) return true;
  if (cfg.verify_host && !asio::ssl::host_name_verification(host)(preverified, ctx)) return false;
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  if (!CommonNameMatches(cfg.expect_cn, CnOf(cert))) {
    X509_STORE_CTX_set_error(store, X509_V_ERR_HOSTNAME_MISMATCH);
    return false;
  }
  return true;
}

}  // namespace detail
}  // namespace canopy::net
