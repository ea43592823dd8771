// OpenSSL 3 X.509 plumbing behind pki.h. Every OpenSSL object is owned by a unique_ptr with its
// free function; errors become Results with OpenSSL's reason (never key material).
#include "net/pki.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <memory>
#include <sstream>

#include "common/files.h"

namespace canopy::net::pki {
namespace {

using Bio = std::unique_ptr<BIO, decltype(&BIO_free_all)>;
using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;
using Req = std::unique_ptr<X509_REQ, decltype(&X509_REQ_free)>;
using Ext = std::unique_ptr<X509_EXTENSION, decltype(&X509_EXTENSION_free)>;
using Store = std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)>;
using StoreCtx = std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)>;
using CertStack = std::unique_ptr<STACK_OF(X509), void (*)(STACK_OF(X509)*)>;

std::string SslReason() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

Bio MemBio(std::string_view s) {
  return Bio(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())), &BIO_free_all);
}

std::string BioString(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<size_t>(n));
}

Result<Key> ParseKey(const SecretString& pem) {
  Bio b = MemBio(pem.Reveal());
  Key k(PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  ERR_clear_error();
  if (!k) return Error::InvalidArgument("not a PEM private key");
  return k;
}

Result<Cert> ParseCert(std::string_view pem) {
  Bio b = MemBio(pem);
  Cert c(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr), &X509_free);
  ERR_clear_error();
  if (!c) return Error::InvalidArgument("not a PEM certificate");
  return c;
}

Result<Req> ParseReq(std::string_view pem) {
  Bio b = MemBio(pem);
  Req r(PEM_read_bio_X509_REQ(b.get(), nullptr, nullptr, nullptr), &X509_REQ_free);
  ERR_clear_error();
  if (!r) return Error::InvalidArgument("not a PEM certificate signing request");
  return r;
}

std::string CertPem(X509* c) {
  Bio b(BIO_new(BIO_s_mem()), &BIO_free_all);
  PEM_write_bio_X509(b.get(), c);
  return BioString(b.get());
}

std::string NameCn(const X509_NAME* name) {
  if (name == nullptr) return "";
  int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (idx < 0) return "";
  ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, s);
  if (n < 0) return "";
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

std::vector<std::string> Sans(const GENERAL_NAMES* names) {
  std::vector<std::string> out;
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_DNS) {
      const ASN1_STRING* s = g->d.dNSName;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<size_t>(ASN1_STRING_length(s)));
    } else if (g->type == GEN_IPADD) {
      const ASN1_STRING* s = g->d.iPAddress;
      char buf[INET6_ADDRSTRLEN] = {};
      int len = ASN1_STRING_length(s);
      const unsigned char* d = ASN1_STRING_get0_data(s);
      if (len == 4) inet_ntop(AF_INET, d, buf, sizeof buf);
      if (len == 16) inet_ntop(AF_INET6, d, buf, sizeof buf);
      if (buf[0] != '\0') out.emplace_back(buf);
    }
  }
  return out;
}

bool IsIp(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

bool IsDnsName(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '.' || c == '*';
  });
}

// "IP:1.2.3.4,DNS:host" for the subjectAltName extension; kInvalidArgument on a bad entry.
Result<std::string> SanValue(const std::vector<std::string>& sans) {
  std::string v;
  for (const auto& s : sans) {
    std::string entry;
    if (IsIp(s)) {
      entry = "IP:" + s;
    } else if (IsDnsName(s)) {
      entry = "DNS:" + s;
    } else {
      return Error::InvalidArgument(fmt::format("invalid subject alternative name '{}'", s));
    }
    v += v.empty() ? entry : "," + entry;
  }
  return v;
}

Status AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  Ext ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()), &X509_EXTENSION_free);
  if (!ext || !X509_add_ext(cert, ext.get(), -1)) {
    return Error::InvalidArgument(fmt::format("certificate extension: {}", SslReason()));
  }
  return OkStatus();
}

Status SetName(X509_NAME* name, const std::string& cn) {
  if (cn.empty() || cn.size() > 64) return Error::InvalidArgument("invalid certificate name");
  if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0)) {
    return Error::InvalidArgument(fmt::format("certificate name: {}", SslReason()));
  }
  return OkStatus();
}

Status RandomSerial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return Error::Internal("no randomness");
  bytes[0] &= 0x7f;  // positive
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(BN_bin2bn(bytes, sizeof bytes, nullptr), &BN_free);
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert))) {
    return Error::Internal("certificate serial");
  }
  return OkStatus();
}

std::chrono::system_clock::time_point AsnTime(const ASN1_TIME* t) {
  struct tm tm = {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return {};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

// A certificate for `pub` named `cn`, issued by `issuer` (null: self-signed) and signed by
// `signer`.
Result<Cert> Build(EVP_PKEY* pub, const std::string& cn, const std::vector<std::string>& sans,
                   Usage usage, std::chrono::seconds validity, X509* issuer, EVP_PKEY* signer,
                   bool self_ca) {
  Cert cert(X509_new(), &X509_free);
  if (!cert) return Error::Internal("X509_new failed");
  X509_set_version(cert.get(), 2);
  CANOPY_TRY(RandomSerial(cert.get()));
  long backdate = std::min<long>(3600, static_cast<long>(validity.count()) / 4);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -backdate);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(validity.count()));
  X509_set_pubkey(cert.get(), pub);
  CANOPY_TRY(SetName(X509_get_subject_name(cert.get()), cn));
  X509_set_issuer_name(cert.get(),
                       issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(cert.get()));
  X509* iss = issuer ? issuer : cert.get();
  if (self_ca) {
    CANOPY_TRY(AddExt(cert.get(), iss, NID_basic_constraints, "critical,CA:TRUE"));
    CANOPY_TRY(AddExt(cert.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign"));
  } else if (usage == Usage::kSubCa) {
    CANOPY_TRY(AddExt(cert.get(), iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
    CANOPY_TRY(AddExt(cert.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign"));
  } else {
    CANOPY_TRY(AddExt(cert.get(), iss, NID_basic_constraints, "critical,CA:FALSE"));
    CANOPY_TRY(AddExt(cert.get(), iss, NID_key_usage, "critical,digitalSignature,keyAgreement"));
    const char* eku = usage == Usage::kServer   ? "serverAuth"
                      : usage == Usage::kClient ? "clientAuth"
                                                : "serverAuth,clientAuth";
    CANOPY_TRY(AddExt(cert.get(), iss, NID_ext_key_usage, eku));
  }
  CANOPY_TRY(AddExt(cert.get(), iss, NID_subject_key_identifier, "hash"));
  if (!self_ca) {
    CANOPY_TRY(AddExt(cert.get(), iss, NID_authority_key_identifier, "keyid:always"));
  }
  if (!sans.empty()) {
    CANOPY_ASSIGN_OR_RETURN(std::string san, SanValue(sans));
    CANOPY_TRY(AddExt(cert.get(), iss, NID_subject_alt_name, san));
  }
  if (X509_sign(cert.get(), signer, EVP_sha256()) <= 0) {
    return Error::Internal(fmt::format("signing a certificate: {}", SslReason()));
  }
  return cert;
}

std::string Hex(const unsigned char* d, size_t n) {
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) out += fmt::format("{:02x}", d[i]);
  return out;
}

}  // namespace

Result<std::string> Fingerprint(const std::string& cert_pem) {
  CANOPY_ASSIGN_OR_RETURN(Cert c, ParseCert(cert_pem));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!X509_digest(c.get(), EVP_sha256(), md, &n)) return Error::Internal("certificate digest");
  return "sha256:" + Hex(md, n);
}

Result<std::string> NormalizeFingerprint(const std::string& text) {
  std::string s = text;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.erase(0, 1);
  // `openssl x509 -fingerprint -sha256` prints "sha256 Fingerprint=AB:CD:…".
  if (size_t eq = s.find('='); eq != std::string::npos) s = s.substr(eq + 1);
  std::string lower;
  for (char c : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.starts_with("sha256:")) lower = lower.substr(7);
  std::string hex;
  for (char c : lower) {
    if (c == ':') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return Error::InvalidArgument("a CA fingerprint is sha256: and 64 hex digits");
    }
    hex += c;
  }
  if (hex.size() != 64)
    return Error::InvalidArgument("a CA fingerprint is sha256: and 64 hex digits");
  return "sha256:" + hex;
}

Result<SecretString> NewKey() {
  Key k(EVP_EC_gen("P-256"), &EVP_PKEY_free);
  if (!k) return Error::Internal(fmt::format("key generation: {}", SslReason()));
  Bio b(BIO_new(BIO_s_mem()), &BIO_free_all);
  if (!PEM_write_bio_PrivateKey(b.get(), k.get(), nullptr, nullptr, 0, nullptr, nullptr)) {
    return Error::Internal("key encoding");
  }
  SecretString out(BioString(b.get()));
  return out;
}

Result<std::string> NewCsr(const SecretString& key_pem, const std::string& cn,
                           const std::vector<std::string>& sans) {
  CANOPY_ASSIGN_OR_RETURN(Key k, ParseKey(key_pem));
  Req req(X509_REQ_new(), &X509_REQ_free);
  X509_REQ_set_version(req.get(), 0);
  CANOPY_TRY(SetName(X509_REQ_get_subject_name(req.get()), cn));
  X509_REQ_set_pubkey(req.get(), k.get());
  if (!sans.empty()) {
    CANOPY_ASSIGN_OR_RETURN(std::string san, SanValue(sans));
    STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str());
    if (e == nullptr) {
      sk_X509_EXTENSION_free(exts);
      return Error::InvalidArgument("invalid subject alternative names");
    }
    sk_X509_EXTENSION_push(exts, e);
    X509_REQ_add_extensions(req.get(), exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
  if (X509_REQ_sign(req.get(), k.get(), EVP_sha256()) <= 0) {
    return Error::Internal(fmt::format("signing a request: {}", SslReason()));
  }
  Bio b(BIO_new(BIO_s_mem()), &BIO_free_all);
  PEM_write_bio_X509_REQ(b.get(), req.get());
  return BioString(b.get());
}

Result<CsrInfo> ReadCsr(const std::string& csr_pem) {
  if (csr_pem.size() > 16384)
    return Error::InvalidArgument("certificate signing request too large");
  CANOPY_ASSIGN_OR_RETURN(Req r, ParseReq(csr_pem));
  Key pub(X509_REQ_get_pubkey(r.get()), &EVP_PKEY_free);
  if (!pub || X509_REQ_verify(r.get(), pub.get()) != 1) {
    ERR_clear_error();
    return Error::InvalidArgument("certificate signing request: bad signature");
  }
  CsrInfo info;
  info.cn = NameCn(X509_REQ_get_subject_name(r.get()));
  STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(r.get());
  if (exts != nullptr) {
    auto* names =
        static_cast<GENERAL_NAMES*>(X509V3_get_d2i(exts, NID_subject_alt_name, nullptr, nullptr));
    info.sans = Sans(names);
    GENERAL_NAMES_free(names);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
  return info;
}

Result<CertInfo> ReadCert(const std::string& cert_pem) {
  CANOPY_ASSIGN_OR_RETURN(Cert c, ParseCert(cert_pem));
  CertInfo info;
  info.cn = NameCn(X509_get_subject_name(c.get()));
  info.issuer_cn = NameCn(X509_get_issuer_name(c.get()));
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(c.get(), NID_subject_alt_name, nullptr, nullptr));
  info.sans = Sans(names);
  GENERAL_NAMES_free(names);
  info.not_before = AsnTime(X509_get0_notBefore(c.get()));
  info.not_after = AsnTime(X509_get0_notAfter(c.get()));
  info.is_ca = X509_check_ca(c.get()) != 0;
  CANOPY_ASSIGN_OR_RETURN(info.fingerprint, Fingerprint(cert_pem));
  return info;
}

Result<std::vector<std::string>> SplitPem(const std::string& pem) {
  std::vector<std::string> out;
  Bio b = MemBio(pem);
  for (;;) {
    Cert c(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr), &X509_free);
    if (!c) break;
    out.push_back(CertPem(c.get()));
  }
  ERR_clear_error();
  if (out.empty()) return Error::InvalidArgument("no PEM certificate");
  return out;
}

Result<Authority> Authority::Create(const std::string& cn, std::chrono::hours validity) {
  CANOPY_ASSIGN_OR_RETURN(SecretString key_pem, NewKey());
  CANOPY_ASSIGN_OR_RETURN(Key k, ParseKey(key_pem));
  CANOPY_ASSIGN_OR_RETURN(Cert c,
                          Build(k.get(), cn, {}, Usage::kSubCa, validity, nullptr, k.get(), true));
  return Authority(CertPem(c.get()), std::move(key_pem));
}

Result<Authority> Authority::Load(std::string cert_pem, SecretString key_pem) {
  CANOPY_ASSIGN_OR_RETURN(Cert c, ParseCert(cert_pem));
  CANOPY_ASSIGN_OR_RETURN(Key k, ParseKey(key_pem));
  if (X509_check_private_key(c.get(), k.get()) != 1) {
    ERR_clear_error();
    return Error::InvalidArgument("the CA key does not belong to the CA certificate");
  }
  if (X509_check_ca(c.get()) == 0) return Error::InvalidArgument("the certificate is not a CA");
  return Authority(CertPem(c.get()), std::move(key_pem));
}

Result<std::string> Authority::Issue(const std::string& csr_pem, const std::string& cn,
                                     const std::vector<std::string>& sans, Usage usage,
                                     std::chrono::seconds validity) const {
  CANOPY_TRY(ReadCsr(csr_pem));
  CANOPY_ASSIGN_OR_RETURN(Req r, ParseReq(csr_pem));
  Key pub(X509_REQ_get_pubkey(r.get()), &EVP_PKEY_free);
  CANOPY_ASSIGN_OR_RETURN(Cert ca, ParseCert(cert_pem_));
  CANOPY_ASSIGN_OR_RETURN(Key ca_key, ParseKey(key_pem_));
  CANOPY_ASSIGN_OR_RETURN(
      Cert c, Build(pub.get(), cn, sans, usage, validity, ca.get(), ca_key.get(), false));
  return CertPem(c.get());
}

Status VerifyChain(const std::string& chain_pem, const std::string& ca_pem,
                   const std::optional<SecretString>& key_pem) {
  CANOPY_ASSIGN_OR_RETURN(std::vector<std::string> chain, SplitPem(chain_pem));
  CANOPY_ASSIGN_OR_RETURN(Cert leaf, ParseCert(chain[0]));
  CANOPY_ASSIGN_OR_RETURN(Cert ca, ParseCert(ca_pem));
  if (key_pem) {
    CANOPY_ASSIGN_OR_RETURN(Key k, ParseKey(*key_pem));
    if (X509_check_private_key(leaf.get(), k.get()) != 1) {
      ERR_clear_error();
      return Error::InvalidArgument("the key does not belong to the certificate");
    }
  }
  Store store(X509_STORE_new(), &X509_STORE_free);
  X509_STORE_add_cert(store.get(), ca.get());
  CertStack untrusted(sk_X509_new_null(),
                      [](STACK_OF(X509) * s) { sk_X509_pop_free(s, X509_free); });
  for (size_t i = 1; i < chain.size(); ++i) {
    CANOPY_ASSIGN_OR_RETURN(Cert mid, ParseCert(chain[i]));
    sk_X509_push(untrusted.get(), mid.release());
  }
  StoreCtx ctx(X509_STORE_CTX_new(), &X509_STORE_CTX_free);
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), untrusted.get());
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return Error::InvalidArgument(
        fmt::format("certificate does not verify: {}", X509_verify_cert_error_string(err)));
  }
  return OkStatus();
}

bool RenewalDue(const CertInfo& cert, std::chrono::system_clock::time_point now) {
  auto life = cert.not_after - cert.not_before;
  return now >= cert.not_after - life / 3;
}

Result<Identity> LoadIdentity(const std::string& dir) {
  Identity id;
  if (auto k = ReadFileString(dir + "/tls.key"); k) id.key_pem = SecretString(std::move(*k));
  if (auto c = ReadFileString(dir + "/tls.crt"); c) id.chain_pem = std::move(*c);
  if (auto a = ReadFileString(dir + "/ca.crt"); a) id.ca_pem = std::move(*a);
  if (id.complete()) {
    CANOPY_TRY(VerifyChain(id.chain_pem, id.ca_pem, id.key_pem));
  }
  return id;
}

Status SaveIdentity(const std::string& dir, const Identity& id) {
  // Key first: a crash in between leaves a certificate that does not match the key, which
  // LoadIdentity reports (and the tier then asks for a new one).
  if (!id.key_pem.Reveal().empty()) {
    CANOPY_TRY(WriteFileAtomic(dir + "/tls.key", id.key_pem.Reveal(), 0600));
  }
  if (!id.chain_pem.empty()) {
    CANOPY_TRY(WriteFileAtomic(dir + "/tls.crt", id.chain_pem, 0644));
  }
  if (!id.ca_pem.empty()) CANOPY_TRY(WriteFileAtomic(dir + "/ca.crt", id.ca_pem, 0644));
  return OkStatus();
}

}  // namespace canopy::net::pki
