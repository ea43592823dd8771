// Adapters: the root's registry of provider adapters (registration tokens, registration,
// heartbeats, live/down, detach) and ProviderOpener, the seam through which everything at the
// root reaches a provider: AdapterOpener (production) gives a RemoteProvider to the adapter a
// credential is bound to; tests put an in-process provider behind the same interface. Thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "auth/secret_box.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/json.h"
#include "control/tier_ca.h"
#include "core/types.h"
#include "providers/provider.h"
#include "store/store.h"

namespace canopy::control {

struct AdapterOptions {
  std::chrono::seconds provider_token_ttl{3600};
  std::chrono::seconds heartbeat_interval{5};
  int missed_heartbeats_for_down = 3;
  // A newly registered (or moved) adapter gets no credential until an infra user approves it.
  bool require_approval = false;
};

struct ProviderTokenGrant {
  std::string token;  // shown once ("cpt_..."); only its hash is stored
  TimePoint expires_at{};
};

struct AdapterRegistration {  // what an adapter sends (validated by the HTTP layer)
  std::string token;
  std::string type;
  std::string url;
  std::string version;
  Json capabilities = Json::object();
  // Moving a registered adapter to a new URL: its id and key, with the fresh token.
  std::string adapter_id;
  std::string adapter_key;
  // A CSR for the adapter's TLS key: required when the root has a CA (then `url` is https).
  std::string csr;
};

struct AdapterIdentity {  // what the root answers
  std::string id;
  std::string adapter_key;
  int64_t heartbeat_interval_seconds = 0;
  std::string certificate;  // signed by the root's CA for `csr` (empty without a CA)
  std::string ca_pem;       // the root's CA
};

// Machine-readable reason of the kFailedPrecondition "no live provider adapter of type ...".
inline constexpr std::string_view kReasonNoLiveAdapter = "no_live_adapter";
// A heartbeat from a new URL: moving needs a registration with a fresh token (and the key).
inline constexpr std::string_view kReasonAdapterMoved = "adapter_moved";
// The adapter a credential is bound to awaits an infra user's approval.
inline constexpr std::string_view kReasonAdapterNotApproved = "adapter_not_approved";
// The adapter a credential is bound to has no certificate from this root (registered before TLS).
inline constexpr std::string_view kReasonAdapterUntrusted = "adapter_untrusted";
// The adapter a credential is bound to was detached.
inline constexpr std::string_view kReasonAdapterGone = "adapter_gone";

class Adapters {
 public:
  Adapters(store::Store& store, ClockPtr clock, IdGeneratorPtr ids, const auth::SecretBox& secrets,
           AdapterOptions opts, TierCa* ca = nullptr);

  // ttl nullopt = options.provider_token_ttl.
  Result<ProviderTokenGrant> CreateToken(std::optional<std::chrono::seconds> ttl,
                                         const std::string& user_id);
  // Consumes the token; kUnauthenticated for a bad or used one. With `adapter_id` and
  // `adapter_key` (both valid), moves that adapter to `url` instead of adding one: same id, same
  // bound credentials; approved again only by an infra user when approval is required.
  Result<AdapterIdentity> Register(const AdapterRegistration& r);
  // An adapter's heartbeat with its key. A `url` other than the registered one is refused
  // (kConflict, reason kReasonAdapterMoved): credentials are never sent to a URL that only a
  // heartbeat announced.
  // With `csr` (renewal before expiry), answers a new certificate; "" otherwise.
  Result<std::string> Heartbeat(const std::string& id, const std::string& key,
                                const std::optional<std::string>& url, const std::string& csr = "");
  // An infra user approves an adapter (kNotFound); idempotent.
  Status Approve(const std::string& id, const std::string& user_id);
  // The adapter a new credential of `type` is bound to: `requested` (an adapter id: it must be of
  // the type and approved) or, when empty, the only live approved adapter of the type
  // (kInvalidArgument naming them when there are several; kFailedPrecondition when none).
  Result<core::ProviderRecord> ChooseFor(const std::string& type, const std::string& requested);
  Result<std::vector<core::ProviderRecord>> List();
  Result<core::ProviderRecord> Get(
      const std::string& id);  // kNotFound "provider adapter not found"
  Status Detach(const std::string& id, const std::string& user_id);

  core::ProviderStatus StatusOf(const core::ProviderRecord& p) const;
  Result<SecretString> KeyOf(const core::ProviderRecord& p) const;

 private:
  Result<AdapterIdentity> Move(const AdapterRegistration& r);
  // The adapter `id` when `key` is its key: kNotFound when absent, kUnauthenticated otherwise.
  Result<core::ProviderRecord> Keyed(const std::string& id, const std::string& key);

  store::Store& store_;
  ClockPtr clock_;
  IdGeneratorPtr ids_;
  const auth::SecretBox& secrets_;
  AdapterOptions opts_;
  TierCa* ca_;
};

// How the root reaches a provider of a given type. Thread-safe.
class ProviderOpener {
 public:
  virtual ~ProviderOpener() = default;
  // The adapter a new credential of `type` is bound to (Adapters::ChooseFor); an opener without
  // adapters (tests) binds to `requested` as given.
  virtual Result<std::string> Bind(const std::string& type, const std::string& requested) {
    (void)type;
    return requested;
  }
  // The provider behind the adapter a credential is bound to, and only that one:
  // kFailedPrecondition when it is down (kReasonNoLiveAdapter), unapproved or gone.
  virtual Result<std::shared_ptr<providers::Provider>> ForAdapter(
      const std::string& type, const std::string& adapter_id) = 0;
};

// The production opener: a RemoteProvider to the adapter a credential is bound to, when it is
// live and approved.
class AdapterOpener final : public ProviderOpener {
 public:
  // With a CA, adapters are reached only over mutual TLS, as the holder of the certificate the
  // root issued to the adapter a credential is bound to.
  explicit AdapterOpener(Adapters& adapters, TierCa* ca = nullptr) : adapters_(adapters), ca_(ca) {}
  Result<std::string> Bind(const std::string& type, const std::string& requested) override;
  Result<std::shared_ptr<providers::Provider>> ForAdapter(const std::string& type,
                                                          const std::string& adapter_id) override;

 private:
  Adapters& adapters_;
  TierCa* ca_;
};

}  // namespace canopy::control
