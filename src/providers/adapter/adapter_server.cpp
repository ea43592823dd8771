#include "providers/adapter/adapter_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "common/ids.h"
#include "net/error_mapping.h"
#include "providers/wire.h"

namespace canopy::providers::adapter {
namespace {

Error BadRequest(std::string m) {
  return MakeProviderError(ProviderErrorKind::kInvalidRequest, std::move(m));
}

Result<std::string> Field(const Json& body, const char* k) {
  if (!body.contains(k) || !body[k].is_string()) {
    return BadRequest(fmt::format("field '{}' must be a string", k));
  }
  return body[k].get<std::string>();
}

Result<ProviderHandle> HandleField(const Json& body) {
  if (!body.contains("handle")) {
    return BadRequest("field 'handle' is required");
  }
  return wire::HandleFromJson(body["handle"]);
}

Json Empty() { return Json::object(); }

Result<Json> FromStatus(const Status& s) {
  if (!s) {
    return s.error();
  }
  return Empty();
}

// How long a call waits for the key while the registration answer is on its way.
constexpr auto kKeyWait = std::chrono::seconds(10);

constexpr const char* kMethods[] = {"info",
                                    "validate_credential",
                                    "list_offers",
                                    "get_quote",
                                    "default_ssh_user",
                                    "create_instance",
                                    "find_instances_by_tag",
                                    "describe_instance",
                                    "wait_until_running",
                                    "stop_instance",
                                    "start_instance",
                                    "terminate_instance",
                                    "create_key_pair",
                                    "get_key_pair",
                                    "create_firewall",
                                    "firewall_exists",
                                    "attach_firewall",
                                    "detach_firewall",
                                    "delete_firewall",
                                    "create_cluster_identity",
                                    "delete_cluster_identity"};

}  // namespace

AdapterServer::AdapterServer(Provider& provider, SecretString key)
    : provider_(provider), key_(std::move(key)) {}

AdapterServer::~AdapterServer() { Stop(); }

void AdapterServer::SetKey(SecretString key) {
  {
    std::lock_guard<std::mutex> l(mu_);
    key_ = std::move(key);
  }
  key_set_.notify_all();
}

uint16_t AdapterServer::port() const { return server_ ? server_->port() : 0; }

void AdapterServer::Stop() {
  if (server_) {
    server_->Stop();
  }
}

Status AdapterServer::CheckKey(const net::Request& req) const {
  std::string h = req.Header("authorization");
  std::unique_lock<std::mutex> l(mu_);
  if (!key_set_.wait_for(l, kKeyWait, [this] { return !key_.Reveal().empty(); })) {
    return Error::Unavailable("the adapter is not registered with a root yet");
  }
  if (req.tls && req.peer_cn != "canopy-root") {
    return Error::Unauthenticated("only the root's certificate may call this adapter")
        .WithReason(std::string(wire::kReasonAdapterKey));
  }
  if (h.rfind("Bearer ", 0) != 0 || !ConstantTimeEquals(h.substr(7), key_.Reveal())) {
    return Error::Unauthenticated("missing or wrong adapter key")
        .WithReason(std::string(wire::kReasonAdapterKey));
  }
  return OkStatus();
}

Result<Json> AdapterServer::Dispatch(const std::string& method, const Json& body) {
  if (!body.is_object()) {
    return BadRequest("the request body must be a JSON object");
  }
  if (method == "info") {
    return wire::ToJson(provider_.Info());
  }
  if (method == "default_ssh_user") {
    CANOPY_ASSIGN_OR_RETURN(std::string image, Field(body, "image"));
    return Json{{"user", provider_.DefaultSshUser(image)}};
  }
  CallContext ctx;
  ctx.credential = CredentialSecret(body.contains("credential") ? body["credential"] : Json());
  if (body.contains("region")) {
    CANOPY_ASSIGN_OR_RETURN(ctx.region, Field(body, "region"));
  }
  if (method == "validate_credential") {
    CANOPY_TRY(provider_.ValidateCredential(ctx));
    return Json{{"valid", true}};
  }
  if (method == "list_offers") {
    CANOPY_ASSIGN_OR_RETURN(Offers o, provider_.ListOffers(ctx));
    return wire::ToJson(o);
  }
  if (method == "get_quote") {
    CANOPY_ASSIGN_OR_RETURN(std::string type, Field(body, "instance_type"));
    if (!body.contains("count") || !body["count"].is_number_integer()) {
      return BadRequest("field 'count' must be an integer");
    }
    CANOPY_ASSIGN_OR_RETURN(Quote q, provider_.GetQuote(ctx, type, body["count"].get<int>()));
    return wire::ToJson(q);
  }
  if (method == "create_instance") {
    CANOPY_ASSIGN_OR_RETURN(InstanceSpec spec,
                            wire::InstanceSpecFromJson(body.value("spec", Json::object())));
    CANOPY_ASSIGN_OR_RETURN(Instance i, provider_.CreateInstance(ctx, spec));
    return wire::ToJson(i);
  }
  if (method == "find_instances_by_tag") {
    CANOPY_ASSIGN_OR_RETURN(std::string key, Field(body, "key"));
    CANOPY_ASSIGN_OR_RETURN(std::string value, Field(body, "value"));
    CANOPY_ASSIGN_OR_RETURN(auto list, provider_.FindInstancesByTag(ctx, key, value));
    Json a = Json::array();
    for (const auto& i : list) {
      a.push_back(wire::ToJson(i));
    }
    return Json{{"instances", a}};
  }
  if (method == "describe_instance" || method == "wait_until_running" ||
      method == "stop_instance" || method == "start_instance" || method == "terminate_instance") {
    CANOPY_ASSIGN_OR_RETURN(ProviderHandle h, HandleField(body));
    if (method == "describe_instance") {
      CANOPY_ASSIGN_OR_RETURN(Instance i, provider_.DescribeInstance(ctx, h));
      return wire::ToJson(i);
    }
    if (method == "wait_until_running") {
      int64_t t = 300;
      if (body.contains("timeout_seconds")) {
        if (!body["timeout_seconds"].is_number_integer()) {
          return BadRequest("field 'timeout_seconds' must be an integer");
        }
        t = std::clamp<int64_t>(body["timeout_seconds"].get<int64_t>(), 0, 3600);
      }
      CANOPY_ASSIGN_OR_RETURN(Instance i,
                              provider_.WaitUntilRunning(ctx, h, std::chrono::seconds(t)));
      return wire::ToJson(i);
    }
    if (method == "stop_instance") {
      return FromStatus(provider_.StopInstance(ctx, h));
    }
    if (method == "start_instance") {
      return FromStatus(provider_.StartInstance(ctx, h));
    }
    return FromStatus(provider_.TerminateInstance(ctx, h));
  }
  if (method == "create_key_pair" || method == "get_key_pair") {
    CANOPY_ASSIGN_OR_RETURN(std::string name, Field(body, "name"));
    CANOPY_ASSIGN_OR_RETURN(KeyPair kp, method == "create_key_pair"
                                            ? provider_.CreateKeyPair(ctx, name)
                                            : provider_.GetKeyPair(ctx, name));
    return wire::ToJson(kp);
  }
  if (method == "create_firewall") {
    CANOPY_ASSIGN_OR_RETURN(FirewallSpec spec,
                            wire::FirewallSpecFromJson(body.value("spec", Json::object())));
    CANOPY_ASSIGN_OR_RETURN(Firewall fw, provider_.CreateFirewall(ctx, spec));
    return wire::ToJson(fw);
  }
  if (method == "firewall_exists" || method == "delete_firewall") {
    CANOPY_ASSIGN_OR_RETURN(std::string id, Field(body, "firewall_id"));
    if (method == "delete_firewall") {
      return FromStatus(provider_.DeleteFirewall(ctx, id));
    }
    CANOPY_ASSIGN_OR_RETURN(bool exists, provider_.FirewallExists(ctx, id));
    return Json{{"exists", exists}};
  }
  if (method == "attach_firewall" || method == "detach_firewall") {
    CANOPY_ASSIGN_OR_RETURN(ProviderHandle h, HandleField(body));
    CANOPY_ASSIGN_OR_RETURN(std::string id, Field(body, "firewall_id"));
    return FromStatus(method == "attach_firewall" ? provider_.AttachFirewall(ctx, h, id)
                                                  : provider_.DetachFirewall(ctx, h, id));
  }
  if (method == "create_cluster_identity") {
    CANOPY_ASSIGN_OR_RETURN(std::string cluster, Field(body, "cluster_id"));
    CANOPY_ASSIGN_OR_RETURN(ClusterIdentity ci, provider_.CreateClusterIdentity(ctx, cluster));
    return wire::ToJson(ci);
  }
  if (method == "delete_cluster_identity") {
    CANOPY_ASSIGN_OR_RETURN(std::string id, Field(body, "identity_id"));
    return FromStatus(provider_.DeleteClusterIdentity(ctx, id));
  }
  return Error::NotFound(fmt::format("unknown method '{}'", method));
}

Status AdapterServer::Start(const std::string& listen, net::TlsServerConfigPtr tls) {
  CANOPY_ASSIGN_OR_RETURN(auto hp, net::ParseHostPort(listen));
  auto router = std::make_shared<net::Router>();
  router->Add("GET", "/healthz", [](const net::Request&) {
    return net::Response::FromJson(200, {{"status", "ok"}});
  });
  router->Add("GET", "/v1/info", [this](const net::Request& req) {
    if (auto st = CheckKey(req); !st) return net::ErrorResponse(st.error());
    return net::Response::FromJson(200, wire::ToJson(provider_.Info()));
  });
  for (const char* m : kMethods) {
    std::string method = m;
    router->Add("POST", "/v1/" + method, [this, method](const net::Request& req) {
      if (auto st = CheckKey(req); !st) return net::ErrorResponse(st.error());
      auto body = ParseJsonObject(req.body);
      if (!body) {
        return net::ErrorResponse(BadRequest("the request body must be a JSON object"));
      }
      // Only the method name and the outcome are logged: never the body (it holds the credential).
      auto r = Dispatch(method, *body);
      if (after_call_) after_call_(method);
      if (!r) {
        SPDLOG_INFO("Provider call failed method={} code={} reason={}", method,
                    ErrorCodeName(r.error().code), r.error().reason);
        return net::ErrorResponse(r.error());
      }
      SPDLOG_DEBUG("Provider call ok method={}", method);
      return net::Response::FromJson(200, *r);
    });
  }
  net::ServerOptions so;
  so.host = hp.first;
  so.port = hp.second;
  so.worker_threads = 4;
  so.tls = std::move(tls);
  CANOPY_ASSIGN_OR_RETURN(server_, net::HttpServer::Start(so, router, net::ErrorResponse, nullptr));
  return OkStatus();
}

Status AdapterServer::UpdateTls(net::TlsServerConfigPtr tls) {
  if (!server_) return Error::FailedPrecondition("the adapter server is not started");
  return server_->UpdateTls(std::move(tls));
}

}  // namespace canopy::providers::adapter
