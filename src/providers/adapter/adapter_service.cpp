#include "providers/adapter/adapter_service.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/files.h"
#include "common/ids.h"
#include "net/client.h"
#include "net/error_mapping.h"
#include "net/json_call.h"

namespace canopy::providers::adapter {
namespace {}  // namespace

AdapterService::AdapterService(ProviderPtr provider, AdapterOptions opts)
    : provider_(std::move(provider)), opts_(std::move(opts)) {
  while (!opts_.root_url.empty() && opts_.root_url.back() == '/') opts_.root_url.pop_back();
}

AdapterService::~AdapterService() { Stop(); }

uint16_t AdapterService::port() const { return server_ ? server_->port() : 0; }

Status AdapterService::Start() {
  CANOPY_ASSIGN_OR_RETURN(auto hp, net::ParseHostPort(opts_.listen));
  if (!opts_.data_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(opts_.data_dir, ec);
    ::chmod(opts_.data_dir.c_str(), 0700);
  }
  // The root reaches adapters over mutual TLS only: this key, a certificate from the root.
  CANOPY_ASSIGN_OR_RETURN(tls_, net::TierIdentity::Open(opts_.data_dir, "canopy-root", false));
  server_ = std::make_unique<AdapterServer>(*provider_, SecretString());
  if (!opts_.test_kill_after_call.empty()) {
    std::string point = opts_.test_kill_after_call;
    int nth = 1;
    if (auto hash = point.find('#'); hash != std::string::npos) {
      nth = std::max(1, std::atoi(point.c_str() + hash + 1));
      point.resize(hash);
    }
    auto seen = std::make_shared<std::atomic<int>>(0);
    std::string marker = opts_.data_dir + "/test-kill-done";
    server_->SetAfterCallHook([point, nth, seen, marker](const std::string& method) {
      if (method != point || ++*seen != nth || std::filesystem::exists(marker)) return;
      (void)WriteFileAtomic(marker, method + "\n");
      SPDLOG_WARN("Test kill after call method={} n={}", method, nth);
      spdlog::default_logger()->flush();
      ::raise(SIGKILL);
    });
  }
  // Port 0 with a data dir: the port of the last run again when it is free, so that the URL
  // the root knows stays right (the root refuses a heartbeat from a new URL).
  bool listening = false;
  if (hp.second == 0 && !opts_.data_dir.empty()) {
    std::string last;
    {
      std::ifstream in(opts_.data_dir + "/provider.url");
      std::getline(in, last);
    }
    if (auto colon = last.rfind(':'); colon != std::string::npos) {
      int port = std::atoi(last.c_str() + colon + 1);
      if (port > 0 && port < 65536 &&
          server_->Start(
              fmt::format("{}:{}", opts_.listen.substr(0, opts_.listen.rfind(':')), port),
              ServerTls())) {
        listening = true;
      }
    }
  }
  if (!listening) CANOPY_TRY(server_->Start(opts_.listen, ServerTls()));
  if (opts_.advertise_url.empty()) {
    opts_.advertise_url = fmt::format("https://{}:{}", hp.first, server_->port());
  }
  SPDLOG_INFO("Provider adapter listening type={} url={}", provider_->Info().type,
              opts_.advertise_url);
  if (!opts_.data_dir.empty()) {
    // The bound address (useful with port 0): supervisors and tests read it instead of guessing.
    std::error_code ec;
    std::filesystem::create_directories(opts_.data_dir, ec);
    ::chmod(opts_.data_dir.c_str(), 0700);
    (void)WriteFileAtomic(opts_.data_dir + "/provider.url",
                          fmt::format("https://{}:{}\n", hp.first, server_->port()));
  }

  if (LoadIdentity() && !tls_->has_certificate()) {
    // Registered before adapters spoke TLS: only a new registration gives it a certificate.
    if (opts_.token.empty()) {
      return Error::FailedPrecondition(
          "this adapter has no certificate from the root yet: start it once with a new "
          "registration token (canopy provider token)");
    }
    return Register(/*move=*/true);
  }
  if (!id_.empty()) {
    server_->SetKey(key_);
    auto hb = Heartbeat();
    if (hb) {
      SPDLOG_INFO("Resumed registration provider={}", id_);
      return OkStatus();
    }
    if (hb.error().reason == "adapter_moved") {
      // Listening elsewhere than registered: moving needs a fresh token from an infra user.
      if (opts_.token.empty()) {
        return Error::FailedPrecondition(hb.error().message +
                                         " (the root refuses this adapter at its new URL)");
      }
      return Register(/*move=*/true);
    }
    if (hb.error().code != ErrorCode::kNotFound && hb.error().code != ErrorCode::kUnauthenticated) {
      // The root may be down for now; keep the identity and heartbeat later.
      SPDLOG_WARN("Root not reachable yet error={}", hb.error().ToString());
      return OkStatus();
    }
    SPDLOG_WARN("Root no longer knows this adapter; registering again");
  }
  return Register();
}

Status AdapterService::Register(bool move) {
  if (opts_.token.empty()) {
    return Error::Unauthenticated(
        "no registration token: pass --token from `canopy provider token`");
  }
  ProviderInfo info = provider_->Info();
  net::JsonCall call;
  CANOPY_TRY(tls_->EnsureCa(opts_.root_url, opts_.ca_fingerprint, opts_.ca_file));
  call.tls = tls_->Client();
  CANOPY_ASSIGN_OR_RETURN(std::string csr, tls_->CsrForUrl("adapter", opts_.advertise_url));
  call.url = opts_.root_url + "/api/v1/providers/register";
  call.body = {{"token", opts_.token},
               {"type", info.type},
               {"url", opts_.advertise_url},
               {"version", info.adapter_version},
               {"contract_versions", info.contract_versions},
               {"capabilities", info.capabilities},
               {"csr", csr}};
  if (move) {
    call.body["adapter_id"] = id_;
    call.body["adapter_key"] = key_.Reveal();
  }
  call.peer = "root at " + opts_.root_url;
  CANOPY_ASSIGN_OR_RETURN(Json j, net::PostJson(call));
  auto id = GetString(j, "id");
  auto key = GetString(j, "adapter_key");
  if (!id || !key) return Error::Internal("root sent a malformed registration answer");
  auto ca = GetOptString(j, "ca", 16384);
  auto cert = GetOptString(j, "certificate", 16384);
  if (!ca || !*ca || !cert || !*cert) {
    return Error::FailedPrecondition(
        "the root signed no certificate for this adapter (a root older than the adapter?)");
  }
  CANOPY_TRY(tls_->AcceptCa(**ca, !opts_.root_url.starts_with("https://")));
  CANOPY_TRY(tls_->AcceptCertificate(**cert));
  CANOPY_TRY(server_->UpdateTls(ServerTls()));
  id_ = *id;
  key_ = SecretString(*key);
  server_->SetKey(key_);
  auto hb = GetOptInt(j, "heartbeat_interval_seconds", 1, 3600);
  if (hb && *hb) heartbeat_ = std::chrono::seconds(**hb);
  SPDLOG_INFO("Registered with root provider={} heartbeat_s={}", id_, heartbeat_.count());
  return SaveIdentity();
}

bool AdapterService::LoadIdentity() {
  if (opts_.data_dir.empty()) return false;
  auto j = ReadJsonObjectFile(opts_.data_dir + "/identity.json");
  if (!j) return false;
  auto id = GetString(*j, "id");
  auto key = GetString(*j, "adapter_key");
  auto root = GetOptString(*j, "root_url");
  if (!id || !key) return false;
  if (root && *root && **root != opts_.root_url) return false;  // a different root
  id_ = *id;
  key_ = SecretString(*key);
  auto hb = GetOptInt(*j, "heartbeat_interval_seconds", 1, 3600);
  if (hb && *hb) heartbeat_ = std::chrono::seconds(**hb);
  return true;
}

Status AdapterService::SaveIdentity() const {
  if (opts_.data_dir.empty()) return OkStatus();
  std::error_code ec;
  std::filesystem::create_directories(opts_.data_dir, ec);
  ::chmod(opts_.data_dir.c_str(), 0700);
  Json j = {{"id", id_},
            {"adapter_key", key_.Reveal()},
            {"root_url", opts_.root_url},
            {"heartbeat_interval_seconds", heartbeat_.count()}};
  return WriteFileAtomic(opts_.data_dir + "/identity.json", DumpJson(j));
}

Status AdapterService::Heartbeat() {
  net::JsonCall call;
  call.url = fmt::format("{}/api/v1/providers/{}/heartbeat", opts_.root_url, id_);
  call.bearer = key_;
  call.body = {{"url", opts_.advertise_url}};
  call.timeout = std::chrono::milliseconds(5000);
  call.peer = "root at " + opts_.root_url;
  call.tls = tls_->Client();
  bool renewing = tls_->has_certificate() && tls_->RenewalDue(std::chrono::system_clock::now());
  if (renewing) {
    CANOPY_ASSIGN_OR_RETURN(call.body["csr"], tls_->CsrForUrl("adapter", opts_.advertise_url));
  }
  CANOPY_ASSIGN_OR_RETURN(Json j, net::PostJson(call));
  if (renewing && j.contains("certificate") && j["certificate"].is_string()) {
    if (auto st = tls_->AcceptCertificate(j["certificate"].get<std::string>()); !st) {
      SPDLOG_ERROR("Renewed certificate refused: {}", st.error().message);
    } else if (auto up = server_->UpdateTls(ServerTls()); !up) {
      SPDLOG_ERROR("Cannot use the renewed certificate: {}", up.error().message);
    } else {
      SPDLOG_INFO("Adapter certificate renewed provider={}", id_);
    }
  }
  return OkStatus();
}

net::TlsServerConfigPtr AdapterService::ServerTls() const {
  auto ready = tls_->Server(tls_->ca_pem(), false);
  return ready ? ready : std::make_shared<net::TlsServerConfig>();
}

void AdapterService::Run() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    cv_.wait_for(l, heartbeat_, [this] { return stop_; });
    if (stop_) break;
    l.unlock();
    auto st = Heartbeat();
    if (!st) {
      SPDLOG_WARN("Heartbeat failed error={}", st.error().ToString());
      if (st.error().code == ErrorCode::kNotFound ||
          st.error().code == ErrorCode::kUnauthenticated) {
        auto reg = Register();
        if (!reg) SPDLOG_ERROR("Re-registration failed error={}", reg.error().ToString());
      }
    }
    l.lock();
  }
}

void AdapterService::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (server_) server_->Stop();
}

}  // namespace canopy::providers::adapter
