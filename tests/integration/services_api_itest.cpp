// The services API of a real root with no cluster: validation, names, roles, the Oakestra SLA
// import, and a deployed service that stays pending with no_worker_capacity, then undeploys.
// (Running services on real clusters: tests/e2e/services_e2e_test.cpp.)
#include <gtest/gtest.h>

#include "support/daemons.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

class ServicesApi : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::make_unique<RootDaemon>(tmp_.str() + "/data");
    root_->Start();
    admin_ = root_->AdminToken();
  }
  ApiReply Call(const std::string& m, const std::string& p, const std::string& b = "") {
    return root_->Call(m, p, b, admin_);
  }
  TempDir tmp_;
  std::unique_ptr<RootDaemon> root_;
  std::string admin_;
};

TEST_F(ServicesApi, BadInputIsA4xxWithAClearMessage) {
  for (const char* body : {"", "[]", "{", R"({"name":"x"})", R"({"name":"x","command":[]})",
                           R"({"name":"x","command":["/bin/true"],"ports":[{"port":0}]})",
                           R"({"name":"x","command":["/bin/true"],"replicas":1000})",
                           R"({"name":"x","command":["/bin/true"],"cluster_id":"cls-nope"})"}) {
    auto r = Call("POST", "/api/v1/services", body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
    EXPECT_TRUE(r.json.contains("error")) << r.body;
  }
  auto ok = Call("POST", "/api/v1/services", R"({"name":"web","command":["/bin/true"]})");
  ASSERT_EQ(ok.status, 201) << ok.body;
  EXPECT_EQ(Call("POST", "/api/v1/services", R"({"name":"web","command":["/bin/true"]})").status,
            409);
  EXPECT_EQ(Call("GET", "/api/v1/services/svc-nope").status, 404);
  EXPECT_EQ(Call("POST", "/api/v1/services/svc-nope/deploy").status, 404);
  EXPECT_EQ(
      Call("POST", "/api/v1/services/" + ok.json["id"].get<std::string>() + "/scale", "{}").status,
      400);
  auto sla = Call("POST", "/api/v1/services/import", R"({"applications":[{"application_name":"a",
      "microservices":[{"microservice_name":"m","code":"docker.io/nginx"}]}]})");
  EXPECT_EQ(sla.status, 400) << sla.body;
  EXPECT_NE(sla.body.find("not container images"), std::string::npos) << sla.body;
}

TEST_F(ServicesApi, OnlyAppAndAdminMayUseServices) {
  auto mk = [&](const std::string& name, const std::string& role) {
    auto r = Call(
        "POST", "/api/v1/users",
        R"({"username":")" + name + R"(","password":"password-123","roles":[")" + role + R"("]})");
    EXPECT_EQ(r.status, 201) << r.body;
    return root_->Login(name, "password-123");
  };
  std::string infra = mk("infra1", "infra"), app = mk("app1", "app");
  EXPECT_EQ(root_->Call("GET", "/api/v1/services", "", infra).status, 403);
  auto r =
      root_->Call("POST", "/api/v1/services", R"({"name":"web","command":["/bin/true"]})", app);
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(root_->Call("GET", "/api/v1/services", "", app).json.size(), 1u);
}

TEST_F(ServicesApi, ImportedSlaServiceWithNoClusterIsPendingThenUndeploys) {
  auto sla = Call("POST", "/api/v1/services/import", R"({"sla_version":"v2.0","customerID":"Admin",
      "applications":[{"application_name":"shop","microservices":[
        {"microservice_name":"web","cmd":["python3","-m","http.server","8080"],"port":"8080:8080/tcp",
         "memory":100,"vcpus":1}]}]})");
  ASSERT_EQ(sla.status, 201) << sla.body;
  ASSERT_EQ(sla.json["services"].size(), 1u);
  Json s = sla.json["services"][0];
  EXPECT_EQ(s["name"], "shop-web");
  EXPECT_EQ(s["cpu_millis"], 1000);
  EXPECT_EQ(s["state"], "undeployed");
  const std::string id = s["id"];
  auto dep = Call("POST", "/api/v1/services/" + id + "/deploy", R"({"replicas":2})");
  ASSERT_EQ(dep.status, 202) << dep.body;
  ASSERT_TRUE(WaitFor(
      [&] {
        s = Call("GET", "/api/v1/services/" + id).json;
        return s.value("state", "") == "pending" && s["instances"].size() == 2 &&
               s["reason"].is_string();
      },
      10s))
      << s.dump();
  EXPECT_EQ(s["reason"].get<std::string>().rfind("no_worker_capacity", 0), 0u) << s.dump();
  EXPECT_EQ(s["instances"][0]["state"], "pending");
  EXPECT_EQ(Call("DELETE", "/api/v1/services/" + id).status, 409);
  ASSERT_EQ(Call("POST", "/api/v1/services/" + id + "/undeploy").status, 202);
  ASSERT_TRUE(WaitFor(
      [&] {
        s = Call("GET", "/api/v1/services/" + id).json;
        return s.value("state", "") == "undeployed" && s["instances"].empty();
      },
      10s))
      << s.dump();
  EXPECT_EQ(Call("DELETE", "/api/v1/services/" + id).status, 204);
  EXPECT_EQ(Call("GET", "/api/v1/services/" + id).status, 404);
}

}  // namespace
}  // namespace canopy::testing
