#include "providers/remote/remote_provider.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "net/error_mapping.h"
#include "providers/wire.h"

namespace canopy::providers::remote {
namespace {
Status Done(const Result<Json>& r) { return r ? OkStatus() : Status(r.error()); }
}  // namespace

RemoteProvider::RemoteProvider(std::string base_url, SecretString adapter_key, ProviderInfo info,
                               net::TlsClientConfigPtr tls)
    : base_url_(std::move(base_url)),
      adapter_key_(std::move(adapter_key)),
      info_(std::move(info)),
      http_(std::move(tls)) {
  while (!base_url_.empty() && base_url_.back() == '/') {
    base_url_.pop_back();
  }
}

Result<Json> RemoteProvider::Call(const std::string& method, const CallContext& ctx, Json args,
                                  std::chrono::milliseconds timeout) const {
  if (!args.is_object()) {
    args = Json::object();
  }
  args["credential"] = ctx.credential.Reveal();
  args["region"] = ctx.region;
  net::ClientRequest req;
  req.method = "POST";
  req.url = base_url_ + "/v1/" + method;
  req.headers["Authorization"] = "Bearer " + adapter_key_.Reveal();
  req.headers["Content-Type"] = "application/json";
  req.body = DumpJson(args);
  req.timeout = timeout;
  auto resp = http_.Do(req);
  if (!resp) {
    SPDLOG_WARN("Provider adapter unreachable url={} error={}", base_url_, resp.error().ToString());
    return MakeProviderError(ProviderErrorKind::kTransient,
                             fmt::format("provider adapter at {} is unreachable", base_url_));
  }
  if (resp->status >= 200 && resp->status < 300) {
    if (resp->body.empty()) {
      return Json::object();
    }
    auto j = ParseJson(resp->body);
    if (!j) {
      return Error::Provider("provider adapter sent a malformed answer");
    }
    return *j;
  }
  Error err = net::ErrorFromResponse(*resp);
  if (err.code == ErrorCode::kUnauthenticated && err.reason == wire::kReasonAdapterKey) {
    // Not the user's credential: the process at this URL does not hold this record's key (the
    // adapter re-registered, or another one took its address). The next live record may serve.
    SPDLOG_WARN("Provider adapter refused the root's adapter key url={}", base_url_);
    return MakeProviderError(
        ProviderErrorKind::kTransient,
        fmt::format("provider adapter at {} does not accept this root's adapter key", base_url_));
  }
  return err;
}

Status RemoteProvider::ValidateCredential(const CallContext& ctx) {
  auto r = Call("validate_credential", ctx, Json::object());
  if (!r) {
    return std::move(r).error();
  }
  return OkStatus();
}

std::string RemoteProvider::DefaultSshUser(const std::string& image) const {
  // Needs no credential; an unreachable adapter yields "" (the caller then uses the image default).
  auto r = Call("default_ssh_user", CallContext{}, Json{{"image", image}});
  if (!r || !r->is_object() || !r->contains("user") || !(*r)["user"].is_string()) {
    return "";
  }
  return (*r)["user"].get<std::string>();
}

Result<Offers> RemoteProvider::ListOffers(const CallContext& ctx) {
  CANOPY_ASSIGN_OR_RETURN(Json j, Call("list_offers", ctx, Json::object()));
  return wire::OffersFromJson(j);
}

Result<Quote> RemoteProvider::GetQuote(const CallContext& ctx, const std::string& instance_type,
                                       int count) {
  CANOPY_ASSIGN_OR_RETURN(
      Json j, Call("get_quote", ctx, Json{{"instance_type", instance_type}, {"count", count}}));
  return wire::QuoteFromJson(j);
}

Result<Instance> RemoteProvider::CreateInstance(const CallContext& ctx, const InstanceSpec& spec) {
  CANOPY_ASSIGN_OR_RETURN(Json j, Call("create_instance", ctx, Json{{"spec", wire::ToJson(spec)}}));
  return wire::InstanceFromJson(j);
}

Result<std::vector<Instance>> RemoteProvider::FindInstancesByTag(const CallContext& ctx,
                                                                 const std::string& key,
                                                                 const std::string& value) {
  CANOPY_ASSIGN_OR_RETURN(Json j,
                          Call("find_instances_by_tag", ctx, Json{{"key", key}, {"value", value}}));
  if (!j.is_object() || !j.contains("instances") || !j["instances"].is_array()) {
    return Error::Provider("provider adapter sent a malformed answer");
  }
  std::vector<Instance> out;
  for (const auto& i : j["instances"]) {
    CANOPY_ASSIGN_OR_RETURN(Instance inst, wire::InstanceFromJson(i));
    out.push_back(std::move(inst));
  }
  return out;
}

Result<Instance> RemoteProvider::DescribeInstance(const CallContext& ctx, const ProviderHandle& h) {
  CANOPY_ASSIGN_OR_RETURN(Json j,
                          Call("describe_instance", ctx, Json{{"handle", wire::ToJson(h)}}));
  return wire::InstanceFromJson(j);
}

Result<Instance> RemoteProvider::WaitUntilRunning(const CallContext& ctx, const ProviderHandle& h,
                                                  std::chrono::seconds timeout) {
  CANOPY_ASSIGN_OR_RETURN(
      Json j, Call("wait_until_running", ctx,
                   Json{{"handle", wire::ToJson(h)}, {"timeout_seconds", timeout.count()}},
                   // The adapter waits up to `timeout`: give it a margin.
                   std::chrono::milliseconds(60000) + timeout));
  return wire::InstanceFromJson(j);
}

Status RemoteProvider::StopInstance(const CallContext& ctx, const ProviderHandle& h) {
  return Done(Call("stop_instance", ctx, Json{{"handle", wire::ToJson(h)}}));
}

Status RemoteProvider::StartInstance(const CallContext& ctx, const ProviderHandle& h) {
  return Done(Call("start_instance", ctx, Json{{"handle", wire::ToJson(h)}}));
}

Status RemoteProvider::TerminateInstance(const CallContext& ctx, const ProviderHandle& h) {
  return Done(Call("terminate_instance", ctx, Json{{"handle", wire::ToJson(h)}}));
}

Result<KeyPair> RemoteProvider::CreateKeyPair(const CallContext& ctx, const std::string& name) {
  CANOPY_ASSIGN_OR_RETURN(Json j, Call("create_key_pair", ctx, Json{{"name", name}}));
  return wire::KeyPairFromJson(j);
}

Result<KeyPair> RemoteProvider::GetKeyPair(const CallContext& ctx, const std::string& name) {
  CANOPY_ASSIGN_OR_RETURN(Json j, Call("get_key_pair", ctx, Json{{"name", name}}));
  return wire::KeyPairFromJson(j);
}

Result<Firewall> RemoteProvider::CreateFirewall(const CallContext& ctx, const FirewallSpec& spec) {
  CANOPY_ASSIGN_OR_RETURN(Json j, Call("create_firewall", ctx, Json{{"spec", wire::ToJson(spec)}}));
  return wire::FirewallFromJson(j);
}

Result<bool> RemoteProvider::FirewallExists(const CallContext& ctx,
                                            const std::string& firewall_id) {
  CANOPY_ASSIGN_OR_RETURN(Json j, Call("firewall_exists", ctx, Json{{"firewall_id", firewall_id}}));
  if (!j.is_object() || !j.contains("exists") || !j["exists"].is_boolean()) {
    return Error::Provider("provider adapter sent a malformed answer");
  }
  return j["exists"].get<bool>();
}

Status RemoteProvider::AttachFirewall(const CallContext& ctx, const ProviderHandle& instance,
                                      const std::string& firewall_id) {
  return Done(Call("attach_firewall", ctx,
                   Json{{"handle", wire::ToJson(instance)}, {"firewall_id", firewall_id}}));
}

Status RemoteProvider::DetachFirewall(const CallContext& ctx, const ProviderHandle& instance,
                                      const std::string& firewall_id) {
  return Done(Call("detach_firewall", ctx,
                   Json{{"handle", wire::ToJson(instance)}, {"firewall_id", firewall_id}}));
}

Status RemoteProvider::DeleteFirewall(const CallContext& ctx, const std::string& firewall_id) {
  return Done(Call("delete_firewall", ctx, Json{{"firewall_id", firewall_id}}));
}

Result<ClusterIdentity> RemoteProvider::CreateClusterIdentity(const CallContext& ctx,
                                                              const std::string& cluster_id) {
  CANOPY_ASSIGN_OR_RETURN(Json j,
                          Call("create_cluster_identity", ctx, Json{{"cluster_id", cluster_id}}));
  return wire::ClusterIdentityFromJson(j);
}

Status RemoteProvider::DeleteClusterIdentity(const CallContext& ctx,
                                             const std::string& identity_id) {
  return Done(Call("delete_cluster_identity", ctx, Json{{"identity_id", identity_id}}));
}

}  // namespace canopy::providers::remote
