#include "control/service_specs.h"

#include <gtest/gtest.h>

namespace canopy::control {
namespace {

TEST(ServiceRequest, DefaultsAndValidation) {
  auto r = ParseServiceRequest(Json{{"name", "web"},
                                    {"command", {"python3", "-m", "http.server", "8080"}},
                                    {"ports", {{{"port", 8080}}}}});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->replicas, 1);
  EXPECT_EQ(r->spec["cpu_millis"], 100);
  EXPECT_EQ(r->spec["memory_mib"], 64);
  EXPECT_EQ(r->spec["restart"], "on-failure");
  EXPECT_EQ(r->spec["ports"][0]["protocol"], "tcp");
  EXPECT_TRUE(r->spec["cluster_id"].is_null());

  auto bad = [](Json body) {
    auto x = ParseServiceRequest(body);
    EXPECT_FALSE(x.has_value()) << DumpJson(body);
    if (!x) {
      EXPECT_EQ(x.error().code, ErrorCode::kInvalidArgument);
    }
  };
  Json ok = {{"name", "web"}, {"command", {"/bin/true"}}};
  bad(Json::array());
  bad({{"command", {"/bin/true"}}});
  bad({{"name", "-x"}, {"command", {"/bin/true"}}});
  bad({{"name", "web"}, {"command", Json::array()}});
  bad({{"name", "web"}, {"command", "/bin/true"}});
  bad({{"name", "web"}, {"command", {""}}});
  for (auto [k, v] : std::vector<std::pair<std::string, Json>>{
           {"ports", {{{"port", 0}}}},
           {"ports", {{{"port", 70000}}}},
           {"ports", {{{"port", 80}, {"protocol", "icmp"}}}},
           {"ports", {{{"port", 80}}, {{"port", 80}}}},
           {"ports", {{{"port", 80}, {"source_cidrs", {"10.0.0.0"}}}}},
           {"ports", {{{"port", 80}, {"source_cidrs", {"300.0.0.0/8"}}}}},
           {"replicas", 101},
           {"replicas", -1},
           {"cpu_millis", "1"},
           {"env", {{"A=B", "x"}}},
           {"env", {{"A", 1}}},
           {"restart", "sometimes"}}) {
    Json b = ok;
    b[k] = v;
    bad(b);
  }
  Json good = ok;
  good["ports"] = {
      {{"port", 53}, {"protocol", "udp"}, {"source_cidrs", {"198.18.0.0/15", "::1/128"}}}};
  EXPECT_TRUE(ParseServiceRequest(good).has_value());
}

TEST(OakestraSla, EssentialFieldsBecomeServices) {
  Json sla = Json::parse(R"({
    "sla_version": "v2.0", "customerID": "Admin",
    "applications": [{
      "applicationID": "", "application_name": "shop", "application_namespace": "test",
      "microservices": [
        {"microserviceID": "", "microservice_name": "web", "microservice_namespace": "test",
         "virtualization": "container", "cmd": ["python3", "-m", "http.server", "8080"],
         "memory": 100, "vcpus": 0.5, "vgpus": 0, "code": "docker.io/library/python:3",
         "port": "8080:8080/tcp", "environment": ["MODE=prod"]},
        {"microservice_name": "dns", "cmd": "exec dnsd", "port": "5353/udp; 8053", "memory": 32, "vcpus": 1}
      ]}]})");
  auto r = ParseOakestraSla(sla);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].name, "shop-web");
  EXPECT_EQ((*r)[0].spec["command"][0], "python3");
  EXPECT_EQ((*r)[0].spec["memory_mib"], 100);
  EXPECT_EQ((*r)[0].spec["cpu_millis"], 500);
  EXPECT_EQ((*r)[0].spec["ports"][0]["port"], 8080);
  EXPECT_EQ((*r)[0].spec["env"]["MODE"], "prod");
  EXPECT_EQ((*r)[1].spec["command"], Json::array({"/bin/sh", "-c", "exec dnsd"}));
  EXPECT_EQ((*r)[1].spec["ports"].size(), 2u);
  EXPECT_EQ((*r)[1].spec["ports"][0]["protocol"], "udp");
  EXPECT_EQ((*r)[1].spec["cpu_millis"], 1000);
}

TEST(OakestraSla, WhatCannotRunIsRefusedWithTheMicroserviceName) {
  auto refuse = [](const std::string& ms, const std::string& needle) {
    Json sla = {
        {"applications", {{{"application_name", "a"}, {"microservices", {Json::parse(ms)}}}}}};
    auto r = ParseOakestraSla(sla);
    ASSERT_FALSE(r.has_value()) << ms;
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  };
  refuse(R"({"microservice_name": "img", "code": "docker.io/nginx"})", "not container images");
  refuse(R"({"microservice_name": "map", "cmd": ["x"], "port": "80:8080"})", "maps 80 to 8080");
  refuse(R"({"microservice_name": "bad", "cmd": ["x"], "port": "http"})", "'bad'");
  // Amounts no integer can hold are refused, not converted (that overflow is undefined).
  refuse(R"({"microservice_name": "huge", "cmd": ["x"], "memory": 1e300})", "memory 1e+300");
  refuse(R"({"microservice_name": "neg", "cmd": ["x"], "vcpus": -2})", "vcpus -2 is out of range");
  refuse(R"({"microservice_name": "big", "cmd": ["x"], "vcpus": 1e18})", "'big'");
  EXPECT_FALSE(ParseOakestraSla(Json{{"applications", Json::array()}}).has_value());
  EXPECT_FALSE(ParseOakestraSla(Json::array()).has_value());
}

TEST(ServiceState, FromInstances) {
  core::Service s;
  s.replicas = 2;
  auto inst = [](std::string state, std::string reason = "", std::string code = "") {
    core::ServiceInstance i;
    i.state = *core::ParseInstanceState(state);
    i.reason = std::move(reason);
    i.reason_code = std::move(code);
    return i;
  };
  std::string reason;
  EXPECT_EQ(ServiceState(s, {}, &reason), "undeployed");
  EXPECT_EQ(ServiceState(s, {inst("removing")}, &reason), "undeploying");
  s.deployed = true;
  EXPECT_EQ(ServiceState(s, {inst("running"), inst("pending", "x", "no_worker_capacity")}, &reason),
            "pending");
  EXPECT_EQ(reason, "no_worker_capacity: x");  // the code, then the text, for people
  EXPECT_EQ(ServiceState(s, {inst("pending", "cluster c is gone")}, &reason), "pending");
  EXPECT_EQ(reason, "cluster c is gone");
  EXPECT_EQ(ServiceState(s, {inst("running"), inst("starting")}, &reason), "deploying");
  EXPECT_EQ(ServiceState(s, {inst("running"), inst("running")}, &reason), "running");
  EXPECT_EQ(ServiceState(s, {inst("running"), inst("failed")}, &reason), "degraded");
}

}  // namespace
}  // namespace canopy::control
