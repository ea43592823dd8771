// AwsClient without AWS: error parsing and mapping to provider error kinds, XML helpers,
// endpoint resolution, and the retry policy against a local HTTP server that throttles.
#include "providers/aws/aws_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>

#include "net/http.h"
#include "providers/provider.h"
#include "support/test_util.h"

namespace canopy::providers::aws {
namespace {

using namespace std::chrono_literals;

ProviderErrorKind KindFor(const std::string& code, int status = 400) {
  return KindOf(MapAwsError(AwsError{status, code, "m"}, "EC2 Test"));
}

TEST(AwsErrorMapping, CodesMapToTypedKinds) {
  EXPECT_EQ(KindFor("InsufficientInstanceCapacity", 500), ProviderErrorKind::kCapacity);
  EXPECT_EQ(KindFor("InsufficientHostCapacity"), ProviderErrorKind::kCapacity);
  EXPECT_EQ(KindFor("InstanceLimitExceeded"), ProviderErrorKind::kQuota);
  EXPECT_EQ(KindFor("VcpuLimitExceeded"), ProviderErrorKind::kQuota);
  EXPECT_EQ(KindFor("SecurityGroupLimitExceeded"), ProviderErrorKind::kQuota);
  EXPECT_EQ(KindFor("LimitExceeded", 409), ProviderErrorKind::kQuota);
  // RequestLimitExceeded is EC2's throttling, not a quota.
  EXPECT_EQ(KindFor("RequestLimitExceeded", 503), ProviderErrorKind::kTransient);
  EXPECT_EQ(KindFor("Throttling"), ProviderErrorKind::kTransient);
  EXPECT_EQ(KindFor("ThrottlingException"), ProviderErrorKind::kTransient);
  EXPECT_EQ(KindFor("AuthFailure", 401), ProviderErrorKind::kAuth);
  EXPECT_EQ(KindFor("UnauthorizedOperation", 403), ProviderErrorKind::kAuth);
  EXPECT_EQ(KindFor("InvalidClientTokenId", 403), ProviderErrorKind::kAuth);
  EXPECT_EQ(KindFor("SignatureDoesNotMatch", 403), ProviderErrorKind::kAuth);
  EXPECT_EQ(KindFor("AccessDenied", 403), ProviderErrorKind::kAuth);
  EXPECT_EQ(KindFor("InvalidInstanceID.Malformed"), ProviderErrorKind::kInvalidRequest);
  EXPECT_EQ(KindFor("InvalidGroupId.Malformed"), ProviderErrorKind::kInvalidRequest);
  EXPECT_EQ(KindFor("InvalidParameterValue"), ProviderErrorKind::kInvalidRequest);
  EXPECT_EQ(KindFor("InvalidInstanceID.NotFound"), ProviderErrorKind::kNotFound);
  EXPECT_EQ(KindFor("NoSuchEntity", 404), ProviderErrorKind::kNotFound);
  EXPECT_EQ(KindFor("ResourceNotFoundException"), ProviderErrorKind::kNotFound);
  EXPECT_EQ(KindFor("InternalError", 500), ProviderErrorKind::kTransient);
  EXPECT_EQ(KindFor("", 502), ProviderErrorKind::kTransient);
  EXPECT_EQ(KindFor("DependencyViolation"), ProviderErrorKind::kTransient);
  EXPECT_EQ(KindFor("SomethingNew", 403), ProviderErrorKind::kAuth);
  EXPECT_EQ(KindFor("SomethingNew", 400), ProviderErrorKind::kInvalidRequest);
  auto e =
      MapAwsError(AwsError{401, "AuthFailure", "AWS was not able to validate"}, "EC2 RunInstances");
  EXPECT_EQ(e.code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(e.reason, "auth");
  EXPECT_EQ(e.message, "EC2 RunInstances: AuthFailure: AWS was not able to validate");
}

TEST(AwsErrorParsing, Ec2IamAndJsonBodies) {
  auto ec2 = ParseAwsError(400, R"(<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID 'i-1' does not exist</Message></Error></Errors><RequestID>r</RequestID></Response>)");
  EXPECT_EQ(ec2.code, "InvalidInstanceID.NotFound");
  EXPECT_EQ(ec2.message, "The instance ID 'i-1' does not exist");
  auto iam = ParseAwsError(
      404,
      R"(<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>gone</Message></Error><RequestId>x</RequestId></ErrorResponse>)");
  EXPECT_EQ(iam.code, "NoSuchEntity");
  EXPECT_EQ(iam.message, "gone");
  auto json = ParseAwsError(
      400,
      R"({"__type":"com.amazonaws.secretsmanager#ResourceNotFoundException","message":"no secret"})");
  EXPECT_EQ(json.code, "ResourceNotFoundException");
  EXPECT_EQ(json.message, "no secret");
  auto html = ParseAwsError(500, "<!doctype html><html><title>500</title>");
  EXPECT_EQ(html.code, "");
  EXPECT_EQ(html.http_status, 500);
}

TEST(AwsXml, ItemsAndText) {
  auto x = ParseXml(R"(<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <reservationSet><item><instancesSet>
    <item><instanceId>i-0123456789abcdef0</instanceId><instanceState><name>running</name></instanceState></item>
    <item><instanceId>i-0000000000000000f</instanceId></item>
  </instancesSet></item></reservationSet><nextToken>abc</nextToken></DescribeInstancesResponse>)");
  ASSERT_OK(x);
  auto res = XmlItems(*x, "reservationSet");
  ASSERT_EQ(res.size(), 1u);
  auto inst = XmlItems(*res[0], "instancesSet");
  ASSERT_EQ(inst.size(), 2u);
  EXPECT_EQ(XmlText(*inst[0], "instanceId"), "i-0123456789abcdef0");
  EXPECT_EQ(XmlText(*inst[0], "instanceState.name"), "running");
  EXPECT_EQ(XmlText(*inst[1], "instanceState.name"), "");
  EXPECT_EQ(XmlText(*x, "nextToken"), "abc");
  EXPECT_TRUE(XmlItems(*x, "missing").empty());
  EXPECT_FALSE(ParseXml("<unterminated"));
}

TEST(AwsEndpoints, SdkConventions) {
  AwsEndpoints e;
  EXPECT_EQ(e.UrlFor("ec2", "eu-west-1"), "https://ec2.eu-west-1.amazonaws.com");
  EXPECT_EQ(e.UrlFor("iam", "eu-west-1"), "https://iam.amazonaws.com");
  EXPECT_EQ(AwsEndpoints::SigningRegion("iam", "eu-west-1"), "us-east-1");
  EXPECT_EQ(AwsEndpoints::SigningRegion("sts", "eu-west-1"), "eu-west-1");
  ::setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566/", 1);
  ::setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:4577", 1);
  auto env = AwsEndpoints::FromEnvironment();
  ::unsetenv("AWS_ENDPOINT_URL");
  ::unsetenv("AWS_ENDPOINT_URL_SECRETS_MANAGER");
  EXPECT_EQ(env.UrlFor("ec2", "us-east-1"), "http://127.0.0.1:4566");
  EXPECT_EQ(env.UrlFor("secretsmanager", "us-east-1"), "http://127.0.0.1:4577");
}

// A local endpoint that throttles the first `throttle` calls, then answers.
class FlakyEndpoint : public ::testing::Test {
 protected:
  void Start(int throttle, int status, std::string error_body) {
    router_->Add("POST", "/aws", [this, throttle, status, error_body](const net::Request& r) {
      last_auth_ = r.Header("authorization");
      if (calls_++ < throttle) return net::Response::Text(status, error_body, "text/xml");
      return net::Response::Text(
          200,
          "<GetCallerIdentityResponse><GetCallerIdentityResult><Account>1</Account>"
          "</GetCallerIdentityResult></GetCallerIdentityResponse>",
          "text/xml");
    });
    auto s = net::HttpServer::Start(
        net::ServerOptions{}, router_,
        [](const Error& e) { return net::Response::Text(500, e.message); }, nullptr);
    ASSERT_OK(s);
    server_ = std::move(*s);
    endpoints_.all = "http://127.0.0.1:" + std::to_string(server_->port()) + "/aws";
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }
  SigV4Credentials creds_{"AKIAIOSFODNN7EXAMPLE", SecretString("secret-never-sent"), ""};
  std::shared_ptr<net::Router> router_ = std::make_shared<net::Router>();
  std::unique_ptr<net::HttpServer> server_;
  AwsEndpoints endpoints_;
  std::atomic<int> calls_{0};
  std::string last_auth_;
};

constexpr const char* kThrottled =
    "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate "
    "exceeded</Message></Error></ErrorResponse>";

TEST_F(FlakyEndpoint, ThrottlingIsRetriedWithBackoffEvenWhenNotIdempotent) {
  Start(2, 400, kThrottled);
  AwsClient c(endpoints_, RetryPolicy{4, 5ms, 20ms});
  auto r = c.Query(creds_, "sts", "us-east-1", "GetCallerIdentity", {}, /*idempotent=*/false);
  ASSERT_OK(r);
  EXPECT_EQ(XmlText(*r, "GetCallerIdentityResult.Account"), "1");
  EXPECT_EQ(calls_.load(), 3);
  EXPECT_EQ(last_auth_.rfind("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/", 0), 0u)
      << last_auth_;
  EXPECT_EQ(last_auth_.find("secret-never-sent"), std::string::npos);
}

TEST_F(FlakyEndpoint, AttemptsAreCappedAndTheLastErrorIsTyped) {
  Start(100, 400, kThrottled);
  AwsClient c(endpoints_, RetryPolicy{3, 1ms, 2ms});
  auto r = c.Query(creds_, "sts", "us-east-1", "GetCallerIdentity", {});
  ASSERT_FALSE(r);
  EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kTransient);
  EXPECT_EQ(calls_.load(), 3);
}

TEST_F(FlakyEndpoint, ServerErrorsAreRetriedOnlyForIdempotentCalls) {
  Start(1, 503,
        "<Response><Errors><Error><Code>Unavailable</Code><Message>x</Message></Error></Errors></"
        "Response>");
  AwsClient c(endpoints_, RetryPolicy{3, 1ms, 2ms});
  auto once = c.Query(creds_, "ec2", "us-east-1", "RunInstances", {}, /*idempotent=*/false);
  ASSERT_FALSE(once);
  EXPECT_EQ(KindOf(once.error()), ProviderErrorKind::kTransient);
  EXPECT_EQ(calls_.load(), 1);
  auto again = c.Query(creds_, "ec2", "us-east-1", "DescribeInstances", {});
  EXPECT_OK(again);
}

TEST(AwsClientTransport, RegionMustBeARegionName) {
  AwsClient c(AwsEndpoints{}, RetryPolicy{1, 1ms, 1ms});
  SigV4Credentials creds{"AKIAIOSFODNN7EXAMPLE", SecretString("s"), ""};
  for (const char* bad : {"evil.example.com/x", "us-east-1.attacker", "US-EAST-1", "a b"}) {
    auto r = c.Query(creds, "ec2", bad, "DescribeRegions", {});
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kInvalidRequest) << bad;
  }
}

TEST(AwsClientTransport, UnreachableEndpointIsTransient) {
  AwsEndpoints e;
  canopy::testing::ClosedPort closed;
  e.all = closed.url();
  AwsClient c(e, RetryPolicy{2, 1ms, 2ms});
  SigV4Credentials creds{"AKIAIOSFODNN7EXAMPLE", SecretString("s"), ""};
  auto r = c.Query(creds, "sts", "us-east-1", "GetCallerIdentity", {});
  ASSERT_FALSE(r);
  EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kTransient);
}

}  // namespace
}  // namespace canopy::providers::aws
