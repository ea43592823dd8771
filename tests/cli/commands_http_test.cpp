// cli/commands over real HTTP: the fake root served by net::HttpServer on 127.0.0.1 (port 0) and
// reached through HttpTransport (net::HttpClient).
#include <gtest/gtest.h>

#include <sstream>

#include "cli/commands.h"
#include "cli/fake_root.h"
#include "support/test_util.h"

namespace canopy::cli {
namespace {

using fake::FakeRoot;

class CommandsHttpTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK(root_.StartServer()); }

  Context MakeContext() {
    Context c{out_,
              err_,
              in_,
              [this](const std::string& n) -> std::optional<std::string> {
                if (n == "XDG_CONFIG_HOME") {
                  return dir_.str();
                }
                return std::nullopt;
              },
              [](std::string_view) -> Result<SecretString> {
                return Error::FailedPrecondition("standard input is not a terminal");
              },
              HttpTransport(),
              std::make_shared<SystemClock>(),
              {}};
    c.global.root = root_.url();
    return c;
  }

  testing::TempDir dir_;
  FakeRoot root_;
  std::ostringstream out_;
  std::ostringstream err_;
  std::istringstream in_;
};

TEST_F(CommandsHttpTest, LoginThenListOverHttp) {
  Context ctx = MakeContext();
  ASSERT_EQ(Login(ctx, {std::string(FakeRoot::kUser), std::string(FakeRoot::kPassword)}), kExitOk)
      << err_.str();
  out_.str("");
  ctx.global.output = OutputFormat::kJson;
  ASSERT_EQ(ProviderList(ctx), kExitOk) << err_.str();
  EXPECT_EQ(err_.str(), "");
  auto j = ParseJson(out_.str());
  ASSERT_OK(j);
  ASSERT_TRUE(j->is_array());
  EXPECT_EQ((*j)[0]["id"], "prv-1");
  auto req = root_.last();
  EXPECT_EQ(req.path, "/api/v1/providers");
  EXPECT_EQ(req.headers["authorization"], std::string("Bearer ") + FakeRoot::kToken);
}

TEST_F(CommandsHttpTest, ApiErrorsAndEmptyBodiesOverHttp) {
  Context ctx = MakeContext();
  ASSERT_EQ(Login(ctx, {std::string(FakeRoot::kUser), std::string(FakeRoot::kPassword)}), kExitOk)
      << err_.str();
  out_.str("");
  EXPECT_EQ(CredentialDelete(ctx, "crd-busy"), kExitError);
  EXPECT_EQ(err_.str(),
            "error: credential crd-busy is used by 2 billed workers (conflict, HTTP 409)\n");
  EXPECT_EQ(out_.str(), "");
  err_.str("");
  ctx.global.output = OutputFormat::kJson;
  ASSERT_EQ(CredentialDelete(ctx, "crd-1"), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "{}\n");
}

TEST_F(CommandsHttpTest, CredentialSecretTravelsInBodyOverHttp) {
  Context ctx = MakeContext();
  ASSERT_EQ(Login(ctx, {std::string(FakeRoot::kUser), std::string(FakeRoot::kPassword)}), kExitOk)
      << err_.str();
  CredentialAddOptions o{
      "gcp-main",  "gcp", std::nullopt, false, std::string(R"({"private_key":"pk-123"})"),
      std::nullopt};
  ASSERT_EQ(CredentialAdd(ctx, o), kExitOk) << err_.str();
  auto body = ParseJson(root_.last().body);
  ASSERT_OK(body);
  EXPECT_EQ((*body)["secret"]["private_key"], "pk-123");
  EXPECT_EQ(out_.str().find("pk-123"), std::string::npos);
}

TEST_F(CommandsHttpTest, StoppedRootIsReportedAsUnreachable) {
  Context ctx = MakeContext();
  testing::ClosedPort closed;
  ctx.global.root = closed.url();
  EXPECT_EQ(Login(ctx, {std::string(FakeRoot::kUser), std::string(FakeRoot::kPassword)}),
            kExitError);
  std::string e = err_.str();
  EXPECT_EQ(e.rfind("error: cannot reach root at " + *ctx.global.root + ": ", 0), 0u) << e;
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1);
}

}  // namespace
}  // namespace canopy::cli
