// The AWS provider without AWS: adapter configuration (defaults, endpoints from the environment
// overridden by config, clear errors), the cluster identity's policy document, and the host key
// read from a cloud-init console log.
#include <gtest/gtest.h>

#include "providers/aws/aws_factory.h"
#include "providers/builtin.h"
#include "providers/registry.h"
#include "support/test_util.h"

namespace canopy::providers::aws {
namespace {

TEST(AwsFactory, DefaultsAndOverrides) {
  AwsEndpoints env;
  env.all = "http://127.0.0.1:1";
  env.each["ec2"] = "http://127.0.0.1:2";
  auto o = ParseAwsOptions(Json::object(), env);
  ASSERT_OK(o);
  EXPECT_EQ(o->endpoints.UrlFor("ec2", "us-east-1"), "http://127.0.0.1:2");
  EXPECT_EQ(o->endpoints.UrlFor("sts", "us-east-1"), "http://127.0.0.1:1");
  EXPECT_TRUE(o->pricing_api);
  auto c = ParseAwsOptions(Json{{"endpoint_url", "http://127.0.0.1:9"},
                                {"endpoints", {{"sts", "http://127.0.0.1:8"}}},
                                {"max_attempts", 2},
                                {"pricing_api", false},
                                {"ssh_address_override", "127.0.0.1:2222"},
                                {"subnets", {{"us-east-1", "subnet-0abc"}}},
                                {"private_addresses", true}},
                           env);
  ASSERT_OK(c);
  EXPECT_EQ(c->subnets.at("us-east-1"), "subnet-0abc");
  EXPECT_TRUE(c->private_addresses);
  EXPECT_FALSE(o->private_addresses);
  EXPECT_TRUE(o->subnets.empty());
  EXPECT_EQ(c->endpoints.UrlFor("iam", ""), "http://127.0.0.1:9");
  EXPECT_EQ(c->endpoints.UrlFor("sts", ""), "http://127.0.0.1:8");
  EXPECT_EQ(c->retry.max_attempts, 2);
  EXPECT_FALSE(c->pricing_api);
}

TEST(AwsFactory, BadConfigIsNamed) {
  for (const char* bad :
       {R"({"colour":"red"})", R"({"endpoint_url":"ftp://x"})",
        R"({"endpoints":{"s3":"http://x"}})", R"({"max_attempts":0})",
        R"({"price_catalog":"/no/such/file.csv"})", R"({"ssh_address_override":"h:99999"})",
        R"({"subnets":["x"]})", R"({"subnets":{"us-east-1":"vpc-1"}})",
        R"({"private_addresses":1})", R"([1])"}) {
    auto r = AwsProviderFactory().ValidateConfig(Json::parse(bad));
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad;
  }
}

TEST(AwsFactory, RegisteredAsBuiltin) {
  ProviderRegistry registry;
  ASSERT_OK(RegisterBuiltinProviders(registry));
  auto p = registry.Create("aws", Json::object());
  ASSERT_OK(p);
  EXPECT_EQ((*p)->Info().type, "aws");
}

TEST(AwsClusterPolicy, LeastPrivilegeScopedByTag) {
  Json p = AwsProvider::ClusterPolicy("c-123");
  std::string text = p.dump();
  for (const char* forbidden :
       {"RunInstances", "TerminateInstances", "iam:", "secretsmanager:", "\"*\"]"}) {
    EXPECT_EQ(text.find(forbidden), std::string::npos) << forbidden;
  }
  int scoped = 0;
  for (const auto& s : p["Statement"]) {
    for (const auto& a : s["Action"]) {
      std::string action = a;
      EXPECT_EQ(action.rfind("ec2:", 0), 0u) << action;
    }
    if (s.contains("Condition") && s["Condition"].dump().find("c-123") != std::string::npos)
      ++scoped;
  }
  EXPECT_GE(scoped, 3);
}

TEST(AwsHostKey, FromCloudInitConsole) {
  const std::string console =
      "[   10.1] cloud-init[812]: Cloud-init v. 23.1 running\n"
      "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
      "ec2: 256 SHA256:old root@ip-10-0-0-1 (ED25519)\n"
      "ec2: -----END SSH HOST KEY FINGERPRINTS-----\n"
      "reboot\n"
      "ec2: #############################################################\n"
      "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\r\n"
      "ec2: 256 SHA256:ecdsaFp/x+1 root@ip-10-0-0-1 (ECDSA)\r\n"
      "ec2: 256 SHA256:ed25519Fp/y+2 root@ip-10-0-0-1 (ED25519)\r\n"
      "ec2: 3072 SHA256:rsaFp root@ip-10-0-0-1 (RSA)\r\n"
      "ec2: -----END SSH HOST KEY FINGERPRINTS-----\n";
  EXPECT_EQ(AwsProvider::HostKeyFromConsole(console), "SHA256:ed25519Fp/y+2");
  EXPECT_EQ(AwsProvider::HostKeyFromConsole("ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
                                            "ec2: 3072 SHA256:rsaOnly root@h (RSA)\n"
                                            "ec2: -----END SSH HOST KEY FINGERPRINTS-----\n"),
            "SHA256:rsaOnly");
  EXPECT_EQ(AwsProvider::HostKeyFromConsole("Linux version 2.6.16-xenU\nno keys here\n"), "");
  EXPECT_EQ(AwsProvider::HostKeyFromConsole(
                "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\nec2: 256 SHA256:cut"),
            "");
}

}  // namespace
}  // namespace canopy::providers::aws
