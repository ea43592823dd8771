// The AWS simulator's machines daemon: its config, and the console it writes as the AWS provider
// reads it.
#include "sim/aws_machines.h"

#include <gtest/gtest.h>

#include "providers/aws/aws_provider.h"
#include "support/test_util.h"

namespace canopy::sim {
namespace {

TEST(AwsMachinesConsole, TheProviderPinsTheFingerprintTheConsoleShows) {
  const std::string fp = "SHA256:jx6yQHrj2Fbfp51ibHjpM8eZjwibi68ZvELsYjz0TNs";
  std::string console = ConsoleWithHostKey("i-0123456789abcdef0", "debian-12-minbase", fp);
  EXPECT_EQ(providers::aws::AwsProvider::HostKeyFromConsole(console), fp);
  EXPECT_EQ(providers::aws::AwsProvider::HostKeyFromConsole("canopy-sim: no machine: x\n"), "");
}

TEST(AwsMachinesConfig, ParsesTheSimConfigAndNamesWhatIsWrong) {
  Json c{{"endpoint_url", "http://127.0.0.1:5000"},
         {"subnet_id", "subnet-0abc"},
         {"access_key_id", "AKIAEXAMPLE"},
         {"secret_access_key", "s3cr3t"},
         {"console_dir", "/tmp/x/console"},
         {"state_dir", "/tmp/x/machines"},
         {"bridge", "cbt1234"},
         {"subnet", "198.19.7.0/24"},
         {"boot_delay_ms", 5000}};
  auto o = ParseAwsMachinesOptions(c);
  ASSERT_OK(o);
  EXPECT_EQ(o->endpoint, "http://127.0.0.1:5000");
  EXPECT_EQ(o->region, "us-east-1");
  EXPECT_EQ(o->subnet_id, "subnet-0abc");
  EXPECT_EQ(o->secret_access_key.Reveal(), "s3cr3t");
  EXPECT_EQ(o->local.bridge, "cbt1234");
  EXPECT_EQ(o->local.subnet, "198.19.7.0/24");
  EXPECT_EQ(o->local.boot_delay, std::chrono::milliseconds(5000));
  EXPECT_EQ(o->images.at("debian-12-"), "debian-12-minbase");
  for (const char* field : {"endpoint_url", "subnet_id", "secret_access_key", "state_dir"}) {
    Json bad = c;
    bad.erase(field);
    auto r = ParseAwsMachinesOptions(bad);
    ASSERT_FALSE(r) << field;
    EXPECT_NE(r.error().message.find(field), std::string::npos) << r.error().message;
  }
  Json vpc = c;
  vpc["subnet_id"] = "vpc-1";
  EXPECT_FALSE(ParseAwsMachinesOptions(vpc));
  EXPECT_FALSE(ParseAwsMachinesOptions(Json::array()));
}

}  // namespace
}  // namespace canopy::sim
