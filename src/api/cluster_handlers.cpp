// Clusters: edge pairing tokens, pairing, the clusters' long-poll link (state reports in,
// commands out, acks), list/get. Protocol: src/cluster/README.md. The work is done by
// control::ClusterTier; here requests are parsed and answers rendered.
#include <fmt/format.h>

#include <charconv>

#include "api/detail/context.h"
#include "api/render.h"
#include "common/clock.h"
#include "control/names.h"

namespace canopy::api::detail {
namespace {

constexpr size_t kMaxNodesPerReport = 10000;
constexpr size_t kMaxJobsPerReport = 10000;
constexpr const char* kLinkRoute = "/api/v1/clusters/{id}/link";

Result<int64_t> NonNegInt(const Json& obj, std::string_view field) {
  CANOPY_ASSIGN_OR_RETURN(auto v, GetOptInt(obj, field, 0, int64_t{1} << 40));
  return v.value_or(0);
}

Result<Json> ParseResources(const Json& body, std::string_view field) {
  if (!body.contains(field) || body[std::string(field)].is_null()) return Json::object();
  const Json& r = body[std::string(field)];
  if (!r.is_object())
    return Error::InvalidArgument(fmt::format("field '{}' must be an object", field));
  Json out = Json::object();
  for (const char* k : {"cpu_millis", "memory_mib", "memory_available_mib"}) {
    CANOPY_ASSIGN_OR_RETURN(int64_t v, NonNegInt(r, k));
    out[k] = v;
  }
  if (r.contains("load1") && !r["load1"].is_null()) {
    if (!r["load1"].is_number() || r["load1"].get<double>() < 0 || r["load1"].get<double>() > 1e6) {
      return Error::InvalidArgument("field 'load1' must be a non-negative number");
    }
    out["load1"] = r["load1"].get<double>();
  }
  if (r.contains("nodes_online")) {
    CANOPY_ASSIGN_OR_RETURN(int64_t v, NonNegInt(r, "nodes_online"));
    out["nodes_online"] = v;
  }
  return out;
}

Result<std::vector<core::ClusterNodeInfo>> ParseNodes(const Json& body) {
  std::vector<core::ClusterNodeInfo> out;
  if (!body.contains("nodes") || body["nodes"].is_null()) return out;
  const Json& arr = body["nodes"];
  if (!arr.is_array()) return Error::InvalidArgument("field 'nodes' must be an array");
  if (arr.size() > kMaxNodesPerReport)
    return Error::InvalidArgument("field 'nodes' has too many items");
  for (const Json& j : arr) {
    if (!j.is_object()) return Error::InvalidArgument("every item of 'nodes' must be an object");
    core::ClusterNodeInfo n;
    CANOPY_ASSIGN_OR_RETURN(n.id, GetString(j, "id", 128));
    CANOPY_ASSIGN_OR_RETURN(auto addr, GetOptString(j, "address", 256));
    n.address = addr.value_or("");
    CANOPY_ASSIGN_OR_RETURN(auto state, GetOptString(j, "state", 32));
    auto parsed = core::ParseNodeState(state.value_or("online"));
    if (!parsed) return Error::InvalidArgument("field 'state' of a node must be online or offline");
    n.state = *parsed;
    CANOPY_ASSIGN_OR_RETURN(Json res, ParseResources(j, "resources"));
    n.cpu_millis = res.value("cpu_millis", int64_t{0});
    n.memory_mib = res.value("memory_mib", int64_t{0});
    n.memory_available_mib = res.value("memory_available_mib", int64_t{0});
    n.load1 = res.value("load1", 0.0);
    if (j.contains("system") && !j["system"].is_null()) {
      CANOPY_ASSIGN_OR_RETURN(n.system, core::NodeSystemFromJson(j["system"]));
    }
    if (j.contains("draining")) {
      if (!j["draining"].is_boolean())
        return Error::InvalidArgument("field 'draining' must be a boolean");
      n.draining = j["draining"].get<bool>();
    }
    CANOPY_ASSIGN_OR_RETURN(auto seen, GetOptString(j, "last_seen", 64));
    if (seen) {
      n.last_seen = ParseRfc3339(*seen);
      if (!n.last_seen) return Error::InvalidArgument("field 'last_seen' must be an RFC 3339 time");
    }
    out.push_back(std::move(n));
  }
  return out;
}

// The cluster's full job list, for the service scheduler: only the string fields it needs are
// kept; malformed items are skipped.
Json ParseJobs(const Json& jobs_in) {
  Json jobs = Json::array();
  for (const auto& j : jobs_in) {
    if (!j.is_object() || !j.contains("job_id") || !j["job_id"].is_string()) continue;
    Json keep = Json::object();
    for (const char* f : {"job_id", "service_id", "node_id", "address", "state"}) {
      if (j.contains(f) && j[f].is_string() && j[f].get<std::string>().size() <= 256)
        keep[f] = j[f];
    }
    jobs.push_back(std::move(keep));
    if (jobs.size() >= kMaxJobsPerReport) break;
  }
  return jobs;
}

Result<control::LinkReport> ParseLinkReport(const Json& body) {
  control::LinkReport r;
  CANOPY_ASSIGN_OR_RETURN(r.url, GetOptString(body, "url", 512));
  if (r.url && !r.url->empty() && !control::IsValidHttpUrl(*r.url)) {
    return Error::InvalidArgument("field 'url' must be an http(s) URL");
  }
  CANOPY_ASSIGN_OR_RETURN(r.version, GetOptString(body, "version", 64));
  CANOPY_ASSIGN_OR_RETURN(r.link_interval_seconds,
                          GetOptInt(body, "link_interval_seconds", 1, 3600));
  CANOPY_ASSIGN_OR_RETURN(r.nodes, ParseNodes(body));
  CANOPY_ASSIGN_OR_RETURN(r.resources, ParseResources(body, "resources"));
  r.acks = body.contains("acks") ? body["acks"] : Json();
  CANOPY_ASSIGN_OR_RETURN(auto csr, GetOptString(body, "csr", 16384));
  CANOPY_ASSIGN_OR_RETURN(auto node_ca_csr, GetOptString(body, "node_ca_csr", 16384));
  r.csrs = {csr.value_or(""), node_ca_csr.value_or("")};
  if (body.contains("jobs") && body["jobs"].is_array()) r.jobs = ParseJobs(body["jobs"]);
  return r;
}

Json LinkReplyJson(const control::LinkReply& r) {
  Json cmds = Json::array();
  for (const auto& c : r.commands)
    cmds.push_back({{"id", c.id}, {"type", c.type}, {"args", c.args}});
  Json out = {
      {"commands", cmds}, {"acked", r.acked}, {"link_interval_seconds", r.link_interval_seconds}};
  if (!r.certs.certificate.empty()) out["certificate"] = r.certs.certificate;
  if (!r.certs.node_ca_certificate.empty()) {
    out["node_ca_certificate"] = r.certs.node_ca_certificate;
  }
  return out;
}

}  // namespace

std::vector<RouteDef> ClusterRoutes(control::ClusterTier* tier) {
  auto edge_token = [tier](const net::Request& req, const Principal& p) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    CANOPY_ASSIGN_OR_RETURN(std::string name, GetString(body, "name", 64));
    CANOPY_TRY(CheckName(name, "name"));
    CANOPY_ASSIGN_OR_RETURN(auto secs, GetOptInt(body, "ttl_seconds", 60, 7 * 24 * 3600));
    CANOPY_ASSIGN_OR_RETURN(
        auto grant,
        tier->CreateEdgeCluster(name, std::chrono::seconds(secs.value_or(0)), p.user_id));
    Json out = {{"token", grant.token},
                {"cluster_id", grant.cluster_id},
                {"expires_at", FormatRfc3339(grant.expires_at)}};
    // The cluster pins the root's CA with it at first contact (canopyd cluster --ca-fingerprint).
    if (tier->ca() != nullptr) out["ca_fingerprint"] = tier->ca()->fingerprint();
    return JsonResponse(201, out);
  };
  auto pair = [tier](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(Json body, ParseBody(req));
    CANOPY_ASSIGN_OR_RETURN(std::string token, GetString(body, "token", 256));
    CANOPY_ASSIGN_OR_RETURN(std::string url, GetString(body, "url", 512));
    if (!control::IsValidHttpUrl(url))
      return Error::InvalidArgument("field 'url' must be an http(s) URL");
    CANOPY_ASSIGN_OR_RETURN(auto version, GetOptString(body, "version", 64));
    CANOPY_ASSIGN_OR_RETURN(auto csr, GetOptString(body, "csr", 16384));
    CANOPY_ASSIGN_OR_RETURN(auto node_ca_csr, GetOptString(body, "node_ca_csr", 16384));
    CANOPY_ASSIGN_OR_RETURN(auto r, tier->Pair(token, url, version.value_or(""),
                                               {csr.value_or(""), node_ca_csr.value_or("")}));
    Json out = {{"cluster_id", r.cluster_id},
                {"cluster_key", r.cluster_key},
                {"link_interval_seconds", r.link_interval_seconds}};
    if (!r.ca_pem.empty()) out["ca"] = r.ca_pem;
    if (!r.certs.certificate.empty()) out["certificate"] = r.certs.certificate;
    if (!r.certs.node_ca_certificate.empty()) {
      out["node_ca_certificate"] = r.certs.node_ca_certificate;
    }
    return JsonResponse(200, out);
  };
  // The root's CA certificate, for lower tiers and the CLI to pin by its fingerprint.
  auto ca = [tier](const net::Request&, const Principal&) -> Result<net::Response> {
    if (tier->ca() == nullptr) return Error::NotFound("this root has no CA");
    return net::Response::Text(200, tier->ca()->ca_pem(), "application/x-pem-file");
  };
  auto link = [tier](const net::Request& req, const Principal&, net::Responder respond) {
    auto fail = [&](const Error& e) { respond(RenderHandlerError(kLinkRoute, e)); };
    std::string key = BearerToken(req);
    if (key.empty()) return fail(Error::Unauthenticated("missing cluster key"));
    auto c = tier->Authenticate(req.Param("id"), key);
    if (!c) return fail(c.error());
    if (req.tls && req.peer_cn != control::ClusterCertName(c->id)) {
      // Over TLS the link is mutual: the key alone (e.g. copied off a disk) is not enough.
      return fail(Error::Unauthenticated(
          "a cluster's link needs its client certificate from this root; pair it again"));
    }
    int64_t wait = 20;
    if (std::string w = req.Query("wait"); !w.empty()) {
      int64_t v = -1;
      auto [p, ec] = std::from_chars(w.data(), w.data() + w.size(), v);
      if (ec != std::errc() || p != w.data() + w.size() || v < 0) {
        return fail(
            Error::InvalidArgument("query parameter 'wait' must be a non-negative integer"));
      }
      wait = std::min<int64_t>(v, tier->MaxLinkWait().count());
    }
    auto body = ParseOptionalBody(req);
    if (!body) return fail(body.error());
    auto report = ParseLinkReport(*body);
    if (!report) return fail(report.error());
    tier->Link(*c, std::move(*report), std::chrono::seconds(wait),
               [respond = std::move(respond)](Result<control::LinkReply> r) {
                 if (!r) return respond(RenderHandlerError(kLinkRoute, r.error()));
                 respond(net::Response::FromJson(200, LinkReplyJson(*r)));
               });
  };
  auto list = [tier](const net::Request&, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto all, tier->List());
    Json out = Json::array();
    for (const auto& c : all) out.push_back(ClusterToJson(c));
    return JsonResponse(200, out);
  };
  auto get = [tier](const net::Request& req, const Principal&) -> Result<net::Response> {
    CANOPY_ASSIGN_OR_RETURN(auto c, tier->Get(req.Param("id")));
    return JsonResponse(200, ClusterToJson(c));
  };
  return {
      {"POST", "/api/v1/cluster-tokens", Access::kInfra, edge_token},
      {"POST", "/api/v1/clusters/pair", Access::kPublic, pair, nullptr, false, true},
      {"GET", "/ca.crt", Access::kPublic, ca, nullptr, false, true},
      {"POST", kLinkRoute, Access::kAdapter, nullptr, link, false, true},
      {"GET", "/api/v1/clusters", Access::kInfraOrApp, list},
      {"GET", "/api/v1/clusters/{id}", Access::kInfraOrApp, get},
  };
}

}  // namespace canopy::api::detail
