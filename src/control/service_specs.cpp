#include "control/service_specs.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "control/names.h"

namespace canopy::control {
namespace {

bool ValidCidr(const std::string& s) {
  auto slash = s.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 >= s.size() || s.size() > 64)
    return false;
  std::string addr = s.substr(0, slash), bits = s.substr(slash + 1);
  if (bits.size() > 3 ||
      !std::all_of(bits.begin(), bits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  int n = std::stoi(bits);
  unsigned char buf[16];
  if (inet_pton(AF_INET, addr.c_str(), buf) == 1) return n <= 32;
  if (inet_pton(AF_INET6, addr.c_str(), buf) == 1) return n <= 128;
  return false;
}

bool ValidEnvKey(const std::string& k) {
  if (k.empty() || k.size() > 128 || (k[0] >= '0' && k[0] <= '9')) return false;
  return std::all_of(k.begin(), k.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

Result<Json> ParsePorts(const Json& body) {
  Json ports = Json::array();
  if (!body.contains("ports") || body["ports"].is_null()) return ports;
  if (!body["ports"].is_array() || body["ports"].size() > 64) {
    return Error::InvalidArgument("field 'ports' must be an array of at most 64 ports");
  }
  std::set<std::pair<int64_t, std::string>> seen;
  for (const auto& p : body["ports"]) {
    if (!p.is_object())
      return Error::InvalidArgument("every item of 'ports' must be an object {port, protocol}");
    CANOPY_ASSIGN_OR_RETURN(int64_t port, GetInt(p, "port", 1, 65535));
    CANOPY_ASSIGN_OR_RETURN(auto proto, GetOptString(p, "protocol", 8));
    std::string pr = proto.value_or("tcp");
    if (pr.empty()) pr = "tcp";
    if (pr != "tcp" && pr != "udp")
      return Error::InvalidArgument("port 'protocol' must be tcp or udp");
    if (!seen.insert({port, pr}).second) {
      return Error::InvalidArgument(fmt::format("port {}/{} is listed twice", port, pr));
    }
    Json cidrs = Json::array();
    if (p.contains("source_cidrs") && !p["source_cidrs"].is_null()) {
      if (!p["source_cidrs"].is_array() || p["source_cidrs"].size() > 16) {
        return Error::InvalidArgument("port 'source_cidrs' must be an array of at most 16 CIDRs");
      }
      for (const auto& c : p["source_cidrs"]) {
        if (!c.is_string() || !ValidCidr(c.get<std::string>())) {
          return Error::InvalidArgument("port 'source_cidrs' must hold CIDRs like 198.18.0.0/15");
        }
        cidrs.push_back(c);
      }
    }
    ports.push_back({{"port", port}, {"protocol", pr}, {"source_cidrs", cidrs}});
  }
  return ports;
}

// An SLA amount (`memory` in MiB, `vcpus`) times `scale`, rounded up, as an integer: a value
// no integer can hold (1e300, NaN) is refused here instead of overflowing the conversion; the
// service request's own limits apply after.
Result<Json> SlaAmount(double value, double scale, std::string_view field, const std::string& who) {
  double scaled = std::ceil(value * scale);
  if (!std::isfinite(scaled) || scaled < 0 || scaled > 1e12) {
    return Error::InvalidArgument(
        fmt::format("microservice '{}': {} {} is out of range", who, field, value));
  }
  return Json(static_cast<int64_t>(scaled));
}

// "8080", "8080/udp", "8080:8080/tcp".
Result<Json> ParseSlaPort(const std::string& text, const std::string& who) {
  std::string t = text;
  std::string proto = "tcp";
  if (auto slash = t.find('/'); slash != std::string::npos) {
    proto = t.substr(slash + 1);
    t = t.substr(0, slash);
  }
  auto num = [](const std::string& s) -> std::optional<int64_t> {
    if (s.empty() || s.size() > 5 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    int64_t v = std::stoll(s);
    if (v < 1 || v > 65535) return std::nullopt;
    return v;
  };
  std::optional<int64_t> host, container;
  if (auto colon = t.find(':'); colon != std::string::npos) {
    host = num(t.substr(0, colon));
    container = num(t.substr(colon + 1));
  } else {
    host = container = num(t);
  }
  if (!host || !container || (proto != "tcp" && proto != "udp")) {
    return Error::InvalidArgument(fmt::format(
        "microservice '{}': port '{}' must look like 8080, 8080/udp or 8080:8080/tcp", who, text));
  }
  if (*host != *container) {
    return Error::InvalidArgument(fmt::format(
        "microservice '{}': port '{}' maps {} to {}; Canopy runs processes, which listen on the "
        "port itself (use {}:{})",
        who, text, *host, *container, *container, *container));
  }
  return Json{{"port", *host}, {"protocol", proto}};
}

std::string SlaName(const std::string& s) {
  std::string out;
  for (char c : s) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '.' || c == '_' || c == '-';
    out.push_back(ok ? c : '-');
  }
  return out;
}

}  // namespace

Result<ServiceRequest> ParseServiceRequest(const Json& body) {
  if (!body.is_object()) return Error::InvalidArgument("the body must be a JSON object");
  ServiceRequest r;
  CANOPY_ASSIGN_OR_RETURN(r.name, GetString(body, "name", 64));
  if (!IsValidName(r.name)) {
    return Error::InvalidArgument(
        "field 'name' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or "
        "digit");
  }
  if (!body.contains("command") || !body["command"].is_array() || body["command"].empty() ||
      body["command"].size() > 256) {
    return Error::InvalidArgument("field 'command' must be a non-empty array of strings (argv)");
  }
  for (const auto& a : body["command"]) {
    if (!a.is_string() || a.get<std::string>().size() > 4096 ||
        a.get<std::string>().find('\0') != std::string::npos) {
      return Error::InvalidArgument("field 'command' must be a non-empty array of strings (argv)");
    }
  }
  if (body["command"][0].get<std::string>().empty()) {
    return Error::InvalidArgument("field 'command' must name a program first");
  }
  Json env = Json::object();
  if (body.contains("env") && !body["env"].is_null()) {
    if (!body["env"].is_object() || body["env"].size() > 128) {
      return Error::InvalidArgument("field 'env' must be an object of at most 128 strings");
    }
    for (const auto& [k, v] : body["env"].items()) {
      if (!ValidEnvKey(k) || !v.is_string() || v.get<std::string>().size() > 4096) {
        return Error::InvalidArgument("field 'env' must map names like MY_VAR to strings");
      }
    }
    env = body["env"];
  }
  // Secret values: sealed at rest by Services, never returned, delivered only to the job.
  Json secret_env = Json::object();
  if (body.contains("secret_env") && !body["secret_env"].is_null()) {
    if (!body["secret_env"].is_object() || body["secret_env"].size() > 128) {
      return Error::InvalidArgument("field 'secret_env' must be an object of at most 128 strings");
    }
    for (const auto& [k, v] : body["secret_env"].items()) {
      if (!ValidEnvKey(k) || !v.is_string() || v.get<std::string>().size() > 4096) {
        return Error::InvalidArgument("field 'secret_env' must map names like MY_VAR to strings");
      }
      if (env.contains(k)) {
        return Error::InvalidArgument(
            fmt::format("'{}' is in both 'env' and 'secret_env'; keep it in one", k));
      }
    }
    secret_env = body["secret_env"];
  }
  CANOPY_ASSIGN_OR_RETURN(Json ports, ParsePorts(body));
  CANOPY_ASSIGN_OR_RETURN(auto cpu, GetOptInt(body, "cpu_millis", 0, 1'000'000));
  CANOPY_ASSIGN_OR_RETURN(auto mem, GetOptInt(body, "memory_mib", 0, 10'000'000));
  CANOPY_ASSIGN_OR_RETURN(auto replicas, GetOptInt(body, "replicas", 0, kMaxReplicas));
  CANOPY_ASSIGN_OR_RETURN(auto restart, GetOptString(body, "restart", 16));
  std::string rs = restart.value_or("on-failure");
  if (rs != "always" && rs != "on-failure" && rs != "never") {
    return Error::InvalidArgument("field 'restart' must be always, on-failure or never");
  }
  CANOPY_ASSIGN_OR_RETURN(auto cluster, GetOptString(body, "cluster_id", 128));
  r.replicas = replicas.value_or(1);
  r.spec = {{"command", body["command"]},
            {"env", env},
            {"ports", ports},
            {"cpu_millis", cpu.value_or(100)},
            {"memory_mib", mem.value_or(64)},
            {"restart", rs},
            {"cluster_id", cluster && !cluster->empty() ? Json(*cluster) : Json(nullptr)}};
  if (!secret_env.empty()) r.spec["secret_env"] = secret_env;
  return r;
}

Result<std::vector<ServiceRequest>> ParseOakestraSla(const Json& sla) {
  if (!sla.is_object() || !sla.contains("applications") || !sla["applications"].is_array()) {
    return Error::InvalidArgument(
        "an SLA needs 'applications': [{application_name, microservices: [...]}]");
  }
  std::vector<ServiceRequest> out;
  for (const auto& app : sla["applications"]) {
    if (!app.is_object()) return Error::InvalidArgument("every application must be an object");
    std::string app_name = app.value("application_name", Json("")).is_string()
                               ? app.value("application_name", std::string())
                               : "";
    if (!app.contains("microservices") || !app["microservices"].is_array()) {
      return Error::InvalidArgument(
          fmt::format("application '{}' needs 'microservices': [...]", app_name));
    }
    for (const auto& ms : app["microservices"]) {
      if (!ms.is_object()) return Error::InvalidArgument("every microservice must be an object");
      std::string ms_name = ms.contains("microservice_name") && ms["microservice_name"].is_string()
                                ? ms["microservice_name"].get<std::string>()
                                : "";
      if (ms_name.empty())
        return Error::InvalidArgument("every microservice needs 'microservice_name'");
      Json body;
      body["name"] = SlaName(app_name.empty() ? ms_name : app_name + "-" + ms_name);
      Json cmd = ms.contains("cmd") ? ms["cmd"] : Json(nullptr);
      if (cmd.is_string()) cmd = Json::array({"/bin/sh", "-c", cmd});
      if (!cmd.is_array() || cmd.empty()) {
        std::string code =
            ms.contains("code") && ms["code"].is_string() ? ms["code"].get<std::string>() : "";
        return Error::InvalidArgument(fmt::format(
            "microservice '{}' has no 'cmd': Canopy runs processes, not container images{}",
            ms_name, code.empty() ? "" : " (code '" + code + "')"));
      }
      body["command"] = cmd;
      if (ms.contains("port") && ms["port"].is_string() && !ms["port"].get<std::string>().empty()) {
        Json ports = Json::array();
        std::string all = ms["port"].get<std::string>();
        size_t start = 0;
        while (start <= all.size()) {
          size_t end = all.find_first_of(",;", start);
          std::string one =
              all.substr(start, end == std::string::npos ? std::string::npos : end - start);
          one.erase(0, one.find_first_not_of(' '));
          one.erase(one.find_last_not_of(' ') + 1);
          if (!one.empty()) {
            CANOPY_ASSIGN_OR_RETURN(Json p, ParseSlaPort(one, ms_name));
            ports.push_back(p);
          }
          if (end == std::string::npos) break;
          start = end + 1;
        }
        body["ports"] = ports;
      } else if (ms.contains("port") && ms["port"].is_number_integer()) {
        body["ports"] = Json::array({{{"port", ms["port"]}, {"protocol", "tcp"}}});
      }
      if (ms.contains("memory") && ms["memory"].is_number()) {
        CANOPY_ASSIGN_OR_RETURN(body["memory_mib"],
                                SlaAmount(ms["memory"].get<double>(), 1, "memory", ms_name));
      }
      if (ms.contains("vcpus") && ms["vcpus"].is_number()) {
        CANOPY_ASSIGN_OR_RETURN(body["cpu_millis"],
                                SlaAmount(ms["vcpus"].get<double>(), 1000, "vcpus", ms_name));
      }
      if (ms.contains("replicas")) body["replicas"] = ms["replicas"];
      if (ms.contains("environment") && ms["environment"].is_array()) {
        Json env = Json::object();
        for (const auto& e : ms["environment"]) {
          if (!e.is_string()) continue;
          std::string kv = e.get<std::string>();
          auto eq = kv.find('=');
          if (eq == std::string::npos) {
            return Error::InvalidArgument(
                fmt::format("microservice '{}': environment '{}' must be K=V", ms_name, kv));
          }
          env[kv.substr(0, eq)] = kv.substr(eq + 1);
        }
        body["env"] = env;
      }
      auto req = ParseServiceRequest(body);
      if (!req) {
        return Error::InvalidArgument(
            fmt::format("microservice '{}': {}", ms_name, req.error().message));
      }
      out.push_back(std::move(*req));
    }
  }
  if (out.empty()) return Error::InvalidArgument("the SLA has no microservices");
  return out;
}

std::string InstanceReasonText(const core::ServiceInstance& i) {
  if (i.reason_code.empty()) return i.reason;
  if (i.reason.empty()) return i.reason_code;
  return i.reason_code + ": " + i.reason;
}

std::string ServiceState(const core::Service& s,
                         const std::vector<core::ServiceInstance>& instances, std::string* reason) {
  if (reason) reason->clear();
  if (!s.deployed) return instances.empty() ? "undeployed" : "undeploying";
  bool pending = false, failed = false, all_running = true;
  for (const auto& i : instances) {
    if (i.state == core::InstanceState::kPending) {
      if (!pending && reason) *reason = InstanceReasonText(i);
      pending = true;
    }
    if (i.state == core::InstanceState::kFailed || i.state == core::InstanceState::kExited)
      failed = true;
    if (i.state != core::InstanceState::kRunning) all_running = false;
  }
  if (pending) return "pending";
  if (failed) return "degraded";
  if (all_running && static_cast<int64_t>(instances.size()) == s.replicas) return "running";
  return "deploying";
}

}  // namespace canopy::control
