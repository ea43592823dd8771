// GcpClient without Google: endpoints, Google error bodies and their kinds (synchronous and in
// DONE operations), and against a local server: the bearer token, retries of rate limits and
// 5xx (only for idempotent calls), the 401 token refresh, and operation polling.
#include "providers/gcp/gcp_client.h"

#include <gtest/gtest.h>

#include <atomic>

#include "providers/gcp/gcp_test_support.h"
#include "providers/provider.h"
#include "support/test_util.h"

namespace canopy::providers::gcp {
namespace {

using namespace std::chrono_literals;
using testing::FakeGoogle;
using testing::GoogleErrorBody;
using testing::MakeKeyJson;

TEST(GcpEndpoints, DefaultsAndOverrides) {
  GcpEndpoints e;
  EXPECT_EQ(e.UrlFor("compute"), "https://compute.googleapis.com");
  EXPECT_EQ(e.UrlFor("crm"), "https://cloudresourcemanager.googleapis.com");
  EXPECT_EQ(e.UrlFor("iam"), "https://iam.googleapis.com");
  EXPECT_EQ(e.UrlFor("secretmanager"), "https://secretmanager.googleapis.com");
  EXPECT_EQ(e.TokenUrl("https://oauth2.googleapis.com/token"),
            "https://oauth2.googleapis.com/token");
  e.all = "http://127.0.0.1:9/";
  EXPECT_EQ(e.UrlFor("iam"), "http://127.0.0.1:9");
  EXPECT_EQ(e.TokenUrl("https://oauth2.googleapis.com/token"), "http://127.0.0.1:9/token");
  e.each["iam"] = "http://127.0.0.1:8";
  e.each["token"] = "http://127.0.0.1:7/oauth";
  EXPECT_EQ(e.UrlFor("iam"), "http://127.0.0.1:8");
  EXPECT_EQ(e.UrlFor("compute"), "http://127.0.0.1:9");
  EXPECT_EQ(e.TokenUrl("x"), "http://127.0.0.1:7/oauth");
}

ProviderErrorKind KindFor(int status, const std::string& reason) {
  return KindOf(MapGoogleError(ParseGoogleError(status, GoogleErrorBody(status, reason, "m")),
                               "Compute test"));
}

TEST(GcpErrors, SynchronousErrorsMapToKinds) {
  EXPECT_EQ(KindFor(404, "notFound"), ProviderErrorKind::kNotFound);
  EXPECT_EQ(KindFor(403, "forbidden"), ProviderErrorKind::kAuth);
  EXPECT_EQ(KindFor(403, "accessNotConfigured"), ProviderErrorKind::kAuth);
  EXPECT_EQ(KindFor(401, "authError"), ProviderErrorKind::kAuth);
  EXPECT_EQ(KindFor(403, "rateLimitExceeded"), ProviderErrorKind::kTransient);
  EXPECT_EQ(KindFor(403, "userRateLimitExceeded"), ProviderErrorKind::kTransient);
  EXPECT_EQ(KindFor(403, "quotaExceeded"), ProviderErrorKind::kQuota);
  EXPECT_EQ(KindFor(429, "rateLimitExceeded"), ProviderErrorKind::kTransient);
  EXPECT_EQ(KindFor(500, "backendError"), ProviderErrorKind::kTransient);
  EXPECT_EQ(KindFor(503, ""), ProviderErrorKind::kTransient);
  EXPECT_EQ(KindFor(409, "alreadyExists"), ProviderErrorKind::kInvalidRequest);
  EXPECT_EQ(KindFor(400, "invalid"), ProviderErrorKind::kInvalidRequest);
  EXPECT_EQ(KindFor(400, "required"), ProviderErrorKind::kInvalidRequest);
  EXPECT_EQ(KindFor(412, "conditionNotMet"), ProviderErrorKind::kInvalidRequest);

  auto e = ParseGoogleError(
      404, R"({"error":{"code":404,"errors":[{"domain":"global","message":"Unknown service account",
      "reason":"notFound"}],"message":"Unknown service account","status":"NOT_FOUND"}})");
  EXPECT_EQ(e.reason, "notFound");
  EXPECT_EQ(e.status, "NOT_FOUND");
  EXPECT_EQ(e.message, "Unknown service account");
  Error mapped = MapGoogleError(e, "IAM serviceAccounts.get");
  EXPECT_EQ(mapped.code, ErrorCode::kNotFound);
  EXPECT_EQ(mapped.reason, "not_found");
  EXPECT_EQ(mapped.message, "IAM serviceAccounts.get: HTTP 404 notFound: Unknown service account");
  EXPECT_TRUE(HasGoogleCode(
      MapGoogleError(ParseGoogleError(409, GoogleErrorBody(409, "alreadyExists", "x")),
                     "Compute firewalls.insert"),
      "alreadyExists"));
  // A body with only code and message (recorded for a Compute 400), and no body at all.
  auto bare = ParseGoogleError(400, R"({"error":{"code":400,"message":"Invalid value"}})");
  EXPECT_EQ(bare.message, "Invalid value");
  EXPECT_EQ(KindOf(MapGoogleError(bare, "x")), ProviderErrorKind::kInvalidRequest);
  auto html = ParseGoogleError(502, "<html>bad gateway</html>");
  EXPECT_EQ(KindOf(MapGoogleError(html, "x")), ProviderErrorKind::kTransient);
  // The OAuth shape.
  auto grant = ParseGoogleError(
      400, R"({"error":"invalid_grant","error_description":"Invalid JWT Signature."})");
  EXPECT_EQ(KindOf(MapGoogleError(grant, "token")), ProviderErrorKind::kAuth);
}

Json DoneWith(const std::string& code, int http = 400, const std::string& message = "m") {
  return Json{{"kind", "compute#operation"},
              {"name", "operation-1"},
              {"status", "DONE"},
              {"progress", 100},
              {"httpErrorStatusCode", http},
              {"httpErrorMessage", "BAD REQUEST"},
              {"error", {{"errors", Json::array({{{"code", code}, {"message", message}}})}}}};
}

ProviderErrorKind OpKind(const std::string& code, int http = 400) {
  return KindOf(MapOperationError(DoneWith(code, http), "Compute instances.insert"));
}

TEST(GcpErrors, DoneOperationErrorsMapToKinds) {
  EXPECT_EQ(OpKind("ZONE_RESOURCE_POOL_EXHAUSTED", 503), ProviderErrorKind::kCapacity);
  EXPECT_EQ(OpKind("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", 503), ProviderErrorKind::kCapacity);
  EXPECT_EQ(OpKind("RESOURCE_POOL_EXHAUSTED"), ProviderErrorKind::kCapacity);
  EXPECT_EQ(OpKind("INSUFFICIENT_CAPACITY"), ProviderErrorKind::kCapacity);
  EXPECT_EQ(OpKind("GPU_STOCKOUT"), ProviderErrorKind::kCapacity);
  EXPECT_EQ(OpKind("QUOTA_EXCEEDED", 403), ProviderErrorKind::kQuota);
  EXPECT_EQ(OpKind("REGIONAL_QUOTA_EXCEEDED"), ProviderErrorKind::kQuota);
  EXPECT_EQ(OpKind("PERMISSIONS_ERROR", 403), ProviderErrorKind::kAuth);
  EXPECT_EQ(OpKind("SOMETHING", 403), ProviderErrorKind::kAuth);
  EXPECT_EQ(OpKind("RESOURCE_NOT_FOUND", 404), ProviderErrorKind::kNotFound);
  EXPECT_EQ(OpKind("RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"), ProviderErrorKind::kTransient);
  EXPECT_EQ(OpKind("INTERNAL_ERROR", 500), ProviderErrorKind::kTransient);
  EXPECT_EQ(OpKind("INVALID_FIELD_VALUE"), ProviderErrorKind::kInvalidRequest);
  EXPECT_EQ(OpKind("CONDITION_NOT_MET"), ProviderErrorKind::kInvalidRequest);
  // Capacity wins over quota whatever the order; messages join every error.
  Json both = DoneWith("QUOTA_EXCEEDED");
  both["error"]["errors"].push_back(
      {{"code", "ZONE_RESOURCE_POOL_EXHAUSTED"}, {"message", "no n2 in us-central1-a"}});
  Error e = MapOperationError(both, "Compute instances.insert");
  EXPECT_EQ(KindOf(e), ProviderErrorKind::kCapacity);
  EXPECT_EQ(e.code, ErrorCode::kResourceExhausted);
  EXPECT_EQ(e.message,
            "Compute instances.insert: QUOTA_EXCEEDED: m; ZONE_RESOURCE_POOL_EXHAUSTED: no n2 in "
            "us-central1-a");
  EXPECT_TRUE(HasGoogleCode(e, "ZONE_RESOURCE_POOL_EXHAUSTED"));
  EXPECT_FALSE(HasGoogleCode(e, "RESOURCE_POOL_EXHAUSTED"));
}

class GcpClientServer : public ::testing::Test {
 protected:
  void SetUp() override {
    auto k = ParseServiceAccountKey(MakeKeyJson("https://oauth2.googleapis.com/token"));
    ASSERT_OK(k);
    key_ = *k;
  }
  GcpClient Client(int attempts = 4) {
    GcpEndpoints e;
    e.all = g_.url();
    return GcpClient(e, RetryPolicy{attempts, 1ms, 2ms}, OperationPolicy{1ms, 4ms, 5s});
  }
  FakeGoogle g_;
  ServiceAccountKey key_;
  std::atomic<int> calls_{0};
  std::string last_auth_;
  std::mutex mu_;
};

TEST_F(GcpClientServer, SendsTheBearerTokenAndCachesIt) {
  g_.router().Add("GET", "/v1/projects/{p}", [this](const net::Request& r) {
    std::lock_guard lock(mu_);
    last_auth_ = r.Header("authorization");
    return net::Response::FromJson(200,
                                   Json{{"projectId", r.Param("p")}, {"lifecycleState", "ACTIVE"}});
  });
  g_.Start();
  GcpClient c = Client();
  auto a = c.Call(key_, "GET", "crm", "/v1/projects/proj-1", nullptr, true, "CRM projects.get");
  ASSERT_OK(a);
  EXPECT_EQ((*a)["projectId"], "proj-1");
  ASSERT_OK(c.Call(key_, "GET", "crm", "/v1/projects/proj-1", nullptr, true, "CRM projects.get"));
  EXPECT_EQ(last_auth_, "Bearer tok-1");
  EXPECT_EQ(g_.token_calls(), 1);
}

TEST_F(GcpClientServer, RateLimitsAreRetriedEvenWithoutRequestId) {
  g_.router().Add("POST", "/v1/projects/{p}/secrets", [this](const net::Request&) {
    if (calls_++ < 2) {
      return net::Response::Text(429, GoogleErrorBody(429, "rateLimitExceeded", "slow down"),
                                 "application/json");
    }
    return net::Response::FromJson(200, Json{{"name", "projects/proj-1/secrets/s"}});
  });
  g_.Start();
  GcpClient c = Client();
  Json body = Json::object();
  auto r = c.Call(key_, "POST", "secretmanager", "/v1/projects/proj-1/secrets?secretId=s", &body,
                  /*idempotent=*/false, "SecretManager secrets.create");
  ASSERT_OK(r);
  EXPECT_EQ(calls_.load(), 3);
}

TEST_F(GcpClientServer, ServerErrorsAreRetriedOnlyForIdempotentCalls) {
  g_.router().Add("POST", "/v1/projects/{p}/serviceAccounts", [this](const net::Request&) {
    if (calls_++ < 1) {
      return net::Response::Text(503, GoogleErrorBody(503, "backendError", "try later"),
                                 "application/json");
    }
    return net::Response::FromJson(200, Json{{"email", "x@proj-1.iam.gserviceaccount.com"}});
  });
  g_.Start();
  GcpClient c = Client();
  Json body = Json::object();
  auto once = c.Call(key_, "POST", "iam", "/v1/projects/proj-1/serviceAccounts", &body, false,
                     "IAM serviceAccounts.create");
  ASSERT_FALSE(once);
  EXPECT_EQ(KindOf(once.error()), ProviderErrorKind::kTransient);
  EXPECT_EQ(calls_.load(), 1);
  calls_ = 0;
  auto again = c.Call(key_, "POST", "iam", "/v1/projects/proj-1/serviceAccounts", &body, true,
                      "IAM serviceAccounts.create");
  EXPECT_OK(again);
  EXPECT_EQ(calls_.load(), 2);
}

TEST_F(GcpClientServer, AttemptsAreCapped) {
  g_.router().Add("GET", "/compute/v1/projects/{p}/regions", [this](const net::Request&) {
    ++calls_;
    return net::Response::Text(500, GoogleErrorBody(500, "backendError", "x"), "application/json");
  });
  g_.Start();
  GcpClient c = Client(3);
  auto r = c.Call(key_, "GET", "compute", ComputePath("proj-1", "regions"), nullptr, true, "x");
  ASSERT_FALSE(r);
  EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kTransient);
  EXPECT_EQ(calls_.load(), 3);
}

TEST_F(GcpClientServer, A401DropsTheTokenAndRetriesOnce) {
  g_.router().Add("GET", "/v1/projects/{p}", [this](const net::Request& r) {
    ++calls_;
    if (r.Header("authorization") == "Bearer tok-1") {
      return net::Response::Text(
          401, GoogleErrorBody(401, "authError", "expired", "UNAUTHENTICATED"), "application/json");
    }
    return net::Response::FromJson(200, Json{{"projectId", "proj-1"}});
  });
  g_.router().Add("GET", "/v1/projects/{p}/always401", [this](const net::Request&) {
    ++calls_;
    return net::Response::Text(401, GoogleErrorBody(401, "authError", "revoked"),
                               "application/json");
  });
  g_.Start();
  GcpClient c = Client();
  auto r = c.Call(key_, "GET", "crm", "/v1/projects/proj-1", nullptr, true, "CRM projects.get");
  ASSERT_OK(r);
  EXPECT_EQ(g_.token_calls(), 2);
  EXPECT_EQ(calls_.load(), 2);
  calls_ = 0;
  auto bad = c.Call(key_, "GET", "crm", "/v1/projects/proj-1/always401", nullptr, true, "x");
  ASSERT_FALSE(bad);
  EXPECT_EQ(KindOf(bad.error()), ProviderErrorKind::kAuth);
  EXPECT_EQ(calls_.load(), 2);
}

TEST_F(GcpClientServer, TokenRefusedIsAuth) {
  g_.set_token_status(400);
  g_.Start();
  GcpClient c = Client();
  auto r = c.Call(key_, "GET", "crm", "/v1/projects/proj-1", nullptr, true, "x");
  ASSERT_FALSE(r);
  EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kAuth);
  EXPECT_EQ(r.error().code, ErrorCode::kUnauthenticated);
}

TEST_F(GcpClientServer, OperationsArePolledToDoneOnTheirScope) {
  std::atomic<int> zone_polls{0}, global_polls{0};
  g_.router().Add("GET", "/compute/v1/projects/{p}/zones/{z}/operations/{op}",
                  [&](const net::Request& r) {
                    EXPECT_EQ(r.Param("z"), "us-central1-a");
                    int n = ++zone_polls;
                    Json op{{"kind", "compute#operation"},
                            {"name", r.Param("op")},
                            {"zone",
                             "https://www.googleapis.com/compute/v1/projects/proj-1/zones/"
                             "us-central1-a"},
                            {"status", n < 3 ? "RUNNING" : "DONE"}};
                    return net::Response::FromJson(200, op);
                  });
  g_.router().Add("GET", "/compute/v1/projects/{p}/global/operations/{op}",
                  [&](const net::Request& r) {
                    ++global_polls;
                    Json op = DoneWith("QUOTA_EXCEEDED", 403, "Quota 'FIREWALLS' exceeded");
                    op["name"] = r.Param("op");
                    return net::Response::FromJson(200, op);
                  });
  g_.Start();
  GcpClient c = Client();
  Json zonal{{"name", "operation-1"},
             {"status", "PENDING"},
             {"zone", "https://www.googleapis.com/compute/v1/projects/proj-1/zones/us-central1-a"}};
  auto done = c.Wait(key_, zonal, "Compute instances.insert");
  ASSERT_OK(done);
  EXPECT_EQ((*done)["status"], "DONE");
  EXPECT_EQ(zone_polls.load(), 3);
  Json global{{"name", "operation-2"}, {"status", "RUNNING"}};
  auto failed = c.Wait(key_, global, "Compute firewalls.insert");
  ASSERT_FALSE(failed);
  EXPECT_EQ(KindOf(failed.error()), ProviderErrorKind::kQuota);
  EXPECT_NE(failed.error().message.find("Quota 'FIREWALLS' exceeded"), std::string::npos);
  EXPECT_EQ(global_polls.load(), 1);
  // An operation already DONE in the answer needs no poll.
  auto immediate = c.Wait(key_, Json{{"name", "op-3"}, {"status", "DONE"}}, "x");
  EXPECT_OK(immediate);
  EXPECT_EQ(global_polls.load(), 1);
  auto capacity = c.Wait(key_, DoneWith("ZONE_RESOURCE_POOL_EXHAUSTED", 503), "x");
  ASSERT_FALSE(capacity);
  EXPECT_EQ(KindOf(capacity.error()), ProviderErrorKind::kCapacity);
}

TEST_F(GcpClientServer, UnreachableEndpointIsTransient) {
  canopy::testing::ClosedPort closed;
  GcpEndpoints e;
  e.all = closed.url();
  GcpClient c(e, RetryPolicy{2, 1ms, 2ms}, OperationPolicy{});
  auto r = c.Call(key_, "GET", "crm", "/v1/projects/proj-1", nullptr, true, "x");
  ASSERT_FALSE(r);
  EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kTransient);
}

}  // namespace
}  // namespace canopy::providers::gcp
