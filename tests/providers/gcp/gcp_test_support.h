// Helpers of the GCP adapter's unit tests: service-account keys made with OpenSSL (no real key
// is ever checked in) and a local HTTP server standing in for Google's endpoints.
#pragma once

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/json.h"
#include "net/http.h"
#include "support/test_util.h"

namespace canopy::providers::gcp::testing {

// A fresh RSA 2048 key as PKCS#8 PEM (what Google's key files carry).
inline std::string MakeRsaPem() {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)), &EVP_PKEY_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// One RSA key per test binary (key generation takes a while).
inline const std::string& TestPem() {
  static const std::string pem = MakeRsaPem();
  return pem;
}

inline Json MakeKeyJson(const std::string& token_uri = "https://oauth2.googleapis.com/token",
                        const std::string& project = "proj-1",
                        const std::string& email = "canopy@proj-1.iam.gserviceaccount.com") {
  return Json{{"type", "service_account"},
              {"project_id", project},
              {"private_key_id", "0123456789abcdef0123456789abcdef01234567"},
              {"private_key", TestPem()},
              {"client_email", email},
              {"client_id", "111111111111111111111"},
              {"auth_uri", "https://accounts.google.com/o/oauth2/auth"},
              {"token_uri", token_uri},
              {"universe_domain", "googleapis.com"}};
}

// A Google-style error body.
inline std::string GoogleErrorBody(int code, const std::string& reason, const std::string& message,
                                   const std::string& status = "") {
  Json e{
      {"code", code},
      {"message", message},
      {"errors", Json::array({{{"domain", "global"}, {"reason", reason}, {"message", message}}})}};
  if (!status.empty()) e["status"] = status;
  return Json{{"error", e}}.dump();
}

// A local server with a token endpoint (POST /token) that counts exchanges; tests add routes.
class FakeGoogle {
 public:
  FakeGoogle() {
    router_->Add("POST", "/token", [this](const net::Request& r) {
      std::lock_guard lock(mu_);
      ++token_calls_;
      last_token_body_ = r.body;
      if (token_status_ != 200) {
        return net::Response::Text(
            token_status_,
            R"({"error":"invalid_grant","error_description":"Invalid JWT Signature."})",
            "application/json");
      }
      return net::Response::FromJson(200,
                                     Json{{"access_token", "tok-" + std::to_string(token_calls_)},
                                          {"expires_in", 3599},
                                          {"token_type", "Bearer"}});
    });
  }
  ~FakeGoogle() {
    if (server_) server_->Stop();
  }

  net::Router& router() { return *router_; }
  void Start() {
    auto s = net::HttpServer::Start(
        net::ServerOptions{}, router_,
        [](const Error& e) {
          return net::Response::Text(404, GoogleErrorBody(404, "notFound", e.message),
                                     "application/json");
        },
        nullptr);
    ASSERT_TRUE(s.has_value()) << s.error().ToString();
    server_ = std::move(*s);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }

  int token_calls() {
    std::lock_guard lock(mu_);
    return token_calls_;
  }
  std::string last_token_body() {
    std::lock_guard lock(mu_);
    return last_token_body_;
  }
  void set_token_status(int s) {
    std::lock_guard lock(mu_);
    token_status_ = s;
  }

 private:
  std::shared_ptr<net::Router> router_ = std::make_shared<net::Router>();
  std::unique_ptr<net::HttpServer> server_;
  std::mutex mu_;
  int token_calls_ = 0;
  int token_status_ = 200;
  std::string last_token_body_;
};

}  // namespace canopy::providers::gcp::testing
