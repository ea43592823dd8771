// JSON (de)serialization of every Provider struct, for the adapter HTTP binding (AdapterServer and
// RemoteProvider). The one place the wire format lives. Pure functions, thread-safe.
// Secrets (private keys, identity credentials) are serialized: callers never log these documents.
#pragma once

#include <string_view>

#include "common/json.h"
#include "common/result.h"
#include "providers/provider.h"

namespace canopy::providers::wire {

/// Reason of the adapter's 401 when the root's adapter key is missing or wrong. It tells that
/// refusal apart from a cloud refusing the user's credential (also a 401, kind auth).
inline constexpr std::string_view kReasonAdapterKey = "adapter_key";

Json ToJson(const ProviderInfo& v);
Json ToJson(const ProviderHandle& v);
Json ToJson(const InstanceSpec& v);
Json ToJson(const Instance& v);
Json ToJson(const KeyPair& v);
Json ToJson(const FirewallRule& v);
Json ToJson(const FirewallSpec& v);
Json ToJson(const Firewall& v);
Json ToJson(const ClusterIdentity& v);
Json ToJson(const Offers& v);
Json ToJson(const Quote& v);

// Each returns kInvalidArgument (kind invalid_request) on a malformed document.
Result<ProviderInfo> ProviderInfoFromJson(const Json& j);
Result<ProviderHandle> HandleFromJson(const Json& j);
Result<InstanceSpec> InstanceSpecFromJson(const Json& j);
Result<Instance> InstanceFromJson(const Json& j);
Result<KeyPair> KeyPairFromJson(const Json& j);
Result<FirewallSpec> FirewallSpecFromJson(const Json& j);
Result<Firewall> FirewallFromJson(const Json& j);
Result<ClusterIdentity> ClusterIdentityFromJson(const Json& j);
Result<Offers> OffersFromJson(const Json& j);
Result<Quote> QuoteFromJson(const Json& j);
Result<InstanceState> InstanceStateFromName(std::string_view name);

}  // namespace canopy::providers::wire
