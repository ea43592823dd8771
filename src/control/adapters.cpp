#include "control/adapters.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "providers/remote/remote_provider.h"

namespace canopy::control {
namespace {

constexpr std::string_view kTokenPrefix = "cpt_";

}  // namespace

Adapters::Adapters(store::Store& store, ClockPtr clock, IdGeneratorPtr ids,
                   const auth::SecretBox& secrets, AdapterOptions opts, TierCa* ca)
    : store_(store),
      clock_(std::move(clock)),
      ids_(std::move(ids)),
      secrets_(secrets),
      opts_(opts),
      ca_(ca) {}

Result<ProviderTokenGrant> Adapters::CreateToken(std::optional<std::chrono::seconds> ttl,
                                                 const std::string& user_id) {
  ProviderTokenGrant g;
  g.token = std::string(kTokenPrefix) + RandomToken(32);
  core::ProviderToken t;
  t.id = ids_->NewId("ptk");
  t.token_hash = Sha256Hex(g.token);
  t.created_at = clock_->Now();
  t.expires_at = g.expires_at = t.created_at + ttl.value_or(opts_.provider_token_ttl);
  t.created_by = user_id;
  CANOPY_TRY(store_.provider_tokens().Create(t));
  SPDLOG_INFO("Created provider token token_id={} by={}", t.id, user_id);
  return g;
}

Result<AdapterIdentity> Adapters::Register(const AdapterRegistration& r) {
  if (ca_ != nullptr && (r.csr.empty() || !r.url.starts_with("https://"))) {
    return Error::InvalidArgument(
        "this root reaches adapters over TLS only: register with an https 'url' and a 'csr' "
        "(a canopyd provider older than the root?)");
  }
  if (!r.adapter_id.empty() || !r.adapter_key.empty()) return Move(r);
  std::string adapter_key = RandomToken(32);
  core::ProviderRecord p;
  p.id = ids_->NewId("prv");
  AdapterIdentity out{p.id, adapter_key, opts_.heartbeat_interval.count(), "", ""};
  if (ca_ != nullptr) {
    CANOPY_ASSIGN_OR_RETURN(out.certificate, ca_->IssueAdapter(p.id, r.csr, r.url));
    out.ca_pem = ca_->ca_pem();
  }
  p.type = r.type;
  p.url = r.url;
  p.capabilities = r.capabilities;
  p.version = r.version;
  p.registered_at = p.last_seen = clock_->Now();
  p.approved = !opts_.require_approval;
  CANOPY_ASSIGN_OR_RETURN(p.key_ciphertext, secrets_.Seal(SecretString(adapter_key), p.id));
  CANOPY_TRY(store_.Transaction([&](store::Store& tx) -> Status {
    CANOPY_TRY(tx.provider_tokens().Consume(Sha256Hex(r.token), clock_->Now()));
    return tx.providers().Create(p);
  }));
  SPDLOG_INFO("Registered provider adapter provider={} type={} url={} approved={}", p.id, p.type,
              p.url, p.approved);
  return out;
}

Result<AdapterIdentity> Adapters::Move(const AdapterRegistration& r) {
  if (r.adapter_id.empty() || r.adapter_key.empty()) {
    return Error::InvalidArgument("moving an adapter needs both 'adapter_id' and 'adapter_key'");
  }
  auto p = Keyed(r.adapter_id, r.adapter_key);
  if (!p && p.error().code != ErrorCode::kNotFound &&
      p.error().code != ErrorCode::kUnauthenticated) {
    return std::move(p).error();
  }
  if (!p || p->type != r.type)
    return Error::Unauthenticated("unknown adapter or wrong adapter key");
  AdapterIdentity out{p->id, r.adapter_key, opts_.heartbeat_interval.count(), "", ""};
  if (ca_ != nullptr) {
    CANOPY_ASSIGN_OR_RETURN(out.certificate, ca_->IssueAdapter(p->id, r.csr, r.url));
    out.ca_pem = ca_->ca_pem();
  }
  std::string from = p->url;
  p->url = r.url;
  p->version = r.version;
  p->capabilities = r.capabilities;
  if (from != r.url && opts_.require_approval) p->approved = false;
  CANOPY_TRY(store_.Transaction([&](store::Store& tx) -> Status {
    CANOPY_TRY(tx.provider_tokens().Consume(Sha256Hex(r.token), clock_->Now()));
    CANOPY_TRY(tx.providers().Update(*p));
    return tx.providers().Touch(p->id, clock_->Now());
  }));
  SPDLOG_INFO("Provider adapter moved by registration provider={} from={} to={} approved={}", p->id,
              from, p->url, p->approved);
  return out;
}

Status Adapters::Approve(const std::string& id, const std::string& user_id) {
  CANOPY_ASSIGN_OR_RETURN(core::ProviderRecord p, Get(id));
  if (p.approved) return OkStatus();
  p.approved = true;
  CANOPY_TRY(store_.providers().Update(p));
  SPDLOG_INFO("Approved provider adapter provider={} by={}", id, user_id);
  return OkStatus();
}

Result<core::ProviderRecord> Adapters::ChooseFor(const std::string& type,
                                                 const std::string& requested) {
  if (!requested.empty()) {
    auto p = store_.providers().Get(requested);
    if (!p) {
      if (p.error().code == ErrorCode::kNotFound) {
        return Error::InvalidArgument(fmt::format("no provider adapter '{}'", requested));
      }
      return std::move(p).error();
    }
    if (p->type != type) {
      return Error::InvalidArgument(
          fmt::format("provider adapter '{}' is of type '{}', not '{}'", requested, p->type, type));
    }
    if (!p->approved) {
      return Error::FailedPrecondition(
                 fmt::format("provider adapter '{}' awaits approval (canopy provider approve {})",
                             requested, requested))
          .WithReason(std::string(kReasonAdapterNotApproved));
    }
    return p;
  }
  CANOPY_ASSIGN_OR_RETURN(auto all, store_.providers().List());
  std::vector<const core::ProviderRecord*> live;
  size_t unapproved = 0;
  for (const auto& p : all) {
    if (p.type != type || StatusOf(p) != core::ProviderStatus::kLive) continue;
    if (!p.approved) {
      ++unapproved;
      continue;
    }
    live.push_back(&p);
  }
  if (live.size() == 1) return *live.front();
  if (live.size() > 1) {
    std::string ids;
    for (const auto* p : live) ids += (ids.empty() ? "" : ", ") + p->id;
    return Error::InvalidArgument(fmt::format(
        "several live provider adapters of type '{}' ({}): name one with 'adapter'", type, ids));
  }
  if (unapproved > 0) {
    return Error::FailedPrecondition(
               fmt::format("the live provider adapter of type '{}' awaits approval (canopy "
                           "provider list; canopy provider approve ID)",
                           type))
        .WithReason(std::string(kReasonAdapterNotApproved));
  }
  return Error::FailedPrecondition(fmt::format("no live provider adapter of type '{}'", type))
      .WithReason(std::string(kReasonNoLiveAdapter));
}

Result<core::ProviderRecord> Adapters::Keyed(const std::string& id, const std::string& key) {
  auto p = store_.providers().Get(id);
  if (!p) {
    if (p.error().code == ErrorCode::kNotFound) {
      return Error::NotFound("provider adapter not registered");
    }
    return std::move(p).error();
  }
  CANOPY_ASSIGN_OR_RETURN(SecretString stored, KeyOf(*p));
  if (!ConstantTimeEquals(key, stored.Reveal())) return Error::Unauthenticated("wrong adapter key");
  return p;
}

Result<std::string> Adapters::Heartbeat(const std::string& id, const std::string& key,
                                        const std::optional<std::string>& url,
                                        const std::string& csr) {
  if (key.empty()) return Error::Unauthenticated("missing adapter key");
  auto p = Keyed(id, key);
  if (!p) return std::move(p).error();
  if (url && *url != p->url) {
    SPDLOG_WARN(
        "Provider adapter heartbeat from a new URL refused provider={} registered={} "
        "announced={}",
        p->id, p->url, *url);
    return Error::Conflict(
               fmt::format("this adapter is registered at {}; to move it to {}, start it "
                           "with a new registration token (canopy provider token)",
                           p->url, *url))
        .WithReason(std::string(kReasonAdapterMoved));
  }
  std::string cert;
  if (!csr.empty()) {
    if (ca_ == nullptr) return Error::FailedPrecondition("this root issues no certificates");
    CANOPY_ASSIGN_OR_RETURN(cert, ca_->IssueAdapter(p->id, csr, p->url));
    SPDLOG_INFO("Provider adapter certificate renewed provider={}", p->id);
  }
  CANOPY_TRY(store_.providers().Touch(p->id, clock_->Now()));
  return cert;
}

Result<std::vector<core::ProviderRecord>> Adapters::List() { return store_.providers().List(); }

Result<core::ProviderRecord> Adapters::Get(const std::string& id) {
  auto p = store_.providers().Get(id);
  if (!p && p.error().code == ErrorCode::kNotFound) {
    return Error::NotFound("provider adapter not found");
  }
  return p;
}

Status Adapters::Detach(const std::string& id, const std::string& user_id) {
  auto st = store_.providers().Delete(id);
  if (!st) {
    if (st.error().code == ErrorCode::kNotFound)
      return Error::NotFound("provider adapter not found");
    return st;
  }
  SPDLOG_INFO("Detached provider adapter provider={} by={}", id, user_id);
  return OkStatus();
}

core::ProviderStatus Adapters::StatusOf(const core::ProviderRecord& p) const {
  auto limit = opts_.heartbeat_interval * opts_.missed_heartbeats_for_down;
  return clock_->Now() - p.last_seen <= limit ? core::ProviderStatus::kLive
                                              : core::ProviderStatus::kDown;
}

Result<SecretString> Adapters::KeyOf(const core::ProviderRecord& p) const {
  return secrets_.Open(p.key_ciphertext, p.id);
}

Result<std::string> AdapterOpener::Bind(const std::string& type, const std::string& requested) {
  CANOPY_ASSIGN_OR_RETURN(core::ProviderRecord p, adapters_.ChooseFor(type, requested));
  return p.id;
}

Result<std::shared_ptr<providers::Provider>> AdapterOpener::ForAdapter(
    const std::string& type, const std::string& adapter_id) {
  if (adapter_id.empty()) {
    return Error::FailedPrecondition(
               fmt::format("this credential is bound to no provider adapter (no "
                           "adapter of type '{}' existed when it was migrated); "
                           "delete it and add it again",
                           type))
        .WithReason(std::string(kReasonAdapterGone));
  }
  auto adapter = adapters_.Get(adapter_id);
  if (!adapter) {
    if (adapter.error().code != ErrorCode::kNotFound) return std::move(adapter).error();
    return Error::FailedPrecondition(
               fmt::format("the provider adapter {} this credential is bound to was detached; "
                           "delete the credential and add it again",
                           adapter_id))
        .WithReason(std::string(kReasonAdapterGone));
  }
  if (adapter->type != type) {
    return Error::Internal("credential bound to an adapter of another type");
  }
  if (!adapter->approved) {
    return Error::FailedPrecondition(
               fmt::format("the provider adapter {} this credential is bound to awaits approval",
                           adapter_id))
        .WithReason(std::string(kReasonAdapterNotApproved));
  }
  if (adapters_.StatusOf(*adapter) != core::ProviderStatus::kLive) {
    return Error::FailedPrecondition(
               fmt::format("the provider adapter {} this credential is bound to is down",
                           adapter_id))
        .WithReason(std::string(kReasonNoLiveAdapter));
  }
  net::TlsClientConfigPtr tls;
  if (ca_ != nullptr) {
    if (!adapter->url.starts_with("https://")) {
      return Error::FailedPrecondition(
                 fmt::format("the provider adapter {} has no certificate from this root; restart "
                             "it with a new registration token",
                             adapter_id))
          .WithReason(std::string(kReasonAdapterUntrusted));
    }
    tls = ca_->ForAdapter(adapter->id);
  }
  CANOPY_ASSIGN_OR_RETURN(SecretString key, adapters_.KeyOf(*adapter));
  return std::shared_ptr<providers::Provider>(std::make_shared<providers::remote::RemoteProvider>(
      adapter->url, std::move(key),
      providers::ProviderInfo{adapter->type, adapter->version, {}, {}}, std::move(tls)));
}

}  // namespace canopy::control
