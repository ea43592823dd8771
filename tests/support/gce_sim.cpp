#include "support/gce_sim.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <filesystem>
#include <memory>

#include "common/clock.h"
#include "common/ids.h"
#include "net/client.h"
#include "net/http.h"
#include "support/moto.h"
#include "support/sim_script.h"

namespace canopy::testing {

std::string GcpReferenceDir() { return SourceDir() + "/../shared/reference/gcp"; }

GceSim::~GceSim() { Stop(); }

Status GceSim::Start(const LocalTestNet& net, int boot_delay_ms) {
  // The net's /24 is the instances' range: its addresses are the test's alone (LocalTestNet
  // locks them).
  const std::string subnet = net.Options().subnet;
  started_ = true;
  CANOPY_ASSIGN_OR_RETURN(
      info_, StartSimScript("gcp-sim", dir_.str(),
                            {"--bridge", net.bridge(), "--subnet", subnet, "--instance-range",
                             subnet, "--boot-delay-ms", std::to_string(boot_delay_ms),
                             "--discovery-dir", GcpReferenceDir()}));
  return OkStatus();
}

namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

Result<std::string> SignRs256(const std::string& pem, const std::string& input) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) return Error::InvalidArgument("cannot read the private key PEM");
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1) {
    return Error::Internal("cannot sign");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    return Error::Internal("cannot sign");
  }
  sig.resize(len);
  return sig;
}

}  // namespace

std::string GceSim::MachineState(const std::string& name) const {
  for (const auto& r : SimMachineRecords(dir_.str())) {
    if (r.value("name", "") == name) return r.value("state", "");
  }
  return "";
}

int GceSim::MachineCount() const { return static_cast<int>(SimMachineRecords(dir_.str()).size()); }

void GceSim::Stop() {
  if (!started_) return;
  started_ = false;
  StopSimScript("gcp-sim", dir_.str());
}

Result<std::string> ServiceAccountJwt(const Json& key, const Json& overrides,
                                      const std::string& sign_with_pem) {
  if (!key.is_object() || !key.contains("private_key") || !key.contains("client_email")) {
    return Error::InvalidArgument("not a service-account key JSON");
  }
  const int64_t now = UnixSeconds(std::chrono::system_clock::now());
  Json header{{"alg", "RS256"}, {"typ", "JWT"}, {"kid", key.value("private_key_id", "")}};
  Json claims{{"iss", key["client_email"]},
              {"scope", "https://www.googleapis.com/auth/cloud-platform"},
              {"aud", key.value("token_uri", "")},
              {"iat", now},
              {"exp", now + 3600}};
  claims.merge_patch(overrides);
  const std::string input =
      Base64UrlEncode(DumpJson(header)) + "." + Base64UrlEncode(DumpJson(claims));
  CANOPY_ASSIGN_OR_RETURN(
      std::string sig,
      SignRs256(sign_with_pem.empty() ? key["private_key"].get<std::string>() : sign_with_pem,
                input));
  return input + "." + Base64UrlEncode(sig);
}

Result<GceAnswer> ExchangeJwt(const std::string& token_url, const std::string& assertion) {
  net::ClientRequest req;
  req.method = "POST";
  req.url = token_url;
  req.headers["Content-Type"] = "application/x-www-form-urlencoded";
  req.body = "grant_type=" + net::UrlEncode("urn:ietf:params:oauth:grant-type:jwt-bearer") +
             "&assertion=" + net::UrlEncode(assertion);
  CANOPY_ASSIGN_OR_RETURN(net::ClientResponse r, net::HttpClient().Do(req));
  auto body = ParseJson(r.body);
  return GceAnswer{r.status, body ? *body : Json(r.body)};
}

Result<std::string> AccessToken(const Json& key) {
  CANOPY_ASSIGN_OR_RETURN(std::string jwt, ServiceAccountJwt(key));
  CANOPY_ASSIGN_OR_RETURN(GceAnswer a, ExchangeJwt(key.value("token_uri", ""), jwt));
  if (a.status != 200 || !a.body.contains("access_token")) {
    return Error::Unauthenticated("token refused: " + DumpJson(a.body));
  }
  return a.body["access_token"].get<std::string>();
}

Result<GceAnswer> GceCall(const std::string& base, const std::string& method,
                          const std::string& path, const std::string& token, const Json& body) {
  net::ClientRequest req;
  req.method = method;
  req.url = base + path;
  if (!token.empty()) req.headers["Authorization"] = "Bearer " + token;
  if (!body.is_null()) {
    req.headers["Content-Type"] = "application/json";
    req.body = DumpJson(body);
  }
  CANOPY_ASSIGN_OR_RETURN(net::ClientResponse r, net::HttpClient().Do(req));
  auto parsed = ParseJson(r.body);
  return GceAnswer{r.status, parsed ? *parsed : Json(r.body)};
}

}  // namespace canopy::testing
