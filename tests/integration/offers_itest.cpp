// GET /api/v1/offers through a real root and a fake adapter: offers of a credential's provider,
// asked live with that credential, and clear 4xx/503 answers for everything else.
#include <gtest/gtest.h>

#include <chrono>

#include "common/json.h"
#include "support/daemons.h"
#include "support/test_util.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

TEST(Offers, ListsRegionsTypesAndImagesOfTheCredentialsProvider) {
  TempDir tmp;
  RootDaemon root(tmp.str() + "/root", {"--heartbeat-interval", "1"});
  root.Start();
  std::string admin = root.AdminToken();
  auto tok = root.Call("POST", "/api/v1/provider-tokens", "", admin);
  ASSERT_EQ(tok.status, 201) << tok.body;
  AdapterDaemon adapter("fake", root.url(), tmp.str() + "/adapter");
  adapter.Start(tok.json["token"]);
  ASSERT_TRUE(WaitFor(
      [&] { return root.Call("GET", "/api/v1/providers", "", admin).json.size() == 1; }, 10s));
  auto cred = root.Call(
      "POST", "/api/v1/credentials",
      DumpJson({{"name", "f"}, {"provider", "fake"}, {"secret", {{"api_key", "k"}}}}), admin);
  ASSERT_EQ(cred.status, 201) << cred.body;
  std::string cid = cred.json["id"];

  auto offers = root.Call("GET", "/api/v1/offers?provider=fake&credential_id=" + cid, "", admin);
  ASSERT_EQ(offers.status, 200) << offers.body;
  ASSERT_FALSE(offers.json["regions"].empty());
  ASSERT_FALSE(offers.json["instance_types"].empty());
  ASSERT_FALSE(offers.json["images"].empty());
  for (const auto& t : offers.json["instance_types"]) {
    EXPECT_TRUE(t["name"].is_string());
    EXPECT_GT(t["vcpus"].get<int>(), 0);
    EXPECT_GT(t["memory_mib"].get<int64_t>(), 0);
    EXPECT_TRUE(t["gpus"].is_number_integer());
    EXPECT_TRUE(t["price_hour"].is_number() || t["price_hour"].is_null());
  }
  std::string region = offers.json["regions"][0];
  EXPECT_EQ(root.Call("GET", "/api/v1/offers?credential_id=" + cid + "&region=" + region, "", admin)
                .status,
            200);

  // The CLI: `canopy offers --credential NAME` (name resolved to the id), table and JSON.
  {
    std::string xdg = "XDG_CONFIG_HOME=" + tmp.str() + "/xdg";
    std::string canopy = canopy::testing::BinDir() + "/canopy";
    std::string out = tmp.str() + "/cli.out";
    Process login({canopy, "login", "--root", root.url(), "--username", "admin", "--password",
                   kAdminPassword},
                  {xdg}, out);
    ASSERT_EQ(login.Wait(), 0) << ReadFile(out);
    std::string json_out = tmp.str() + "/offers.json";
    Process cli({canopy, "offers", "--credential", "f", "-o", "json"}, {xdg}, json_out);
    ASSERT_EQ(cli.Wait(), 0) << ReadFile(json_out);
    auto j = ParseJson(ReadFile(json_out));
    ASSERT_TRUE(j.has_value()) << ReadFile(json_out);
    EXPECT_EQ((*j)["instance_types"], offers.json["instance_types"]);
    std::string table_out = tmp.str() + "/offers.txt";
    Process table({canopy, "offers", "--credential", cid}, {xdg}, table_out);
    ASSERT_EQ(table.Wait(), 0) << ReadFile(table_out);
    EXPECT_NE(ReadFile(table_out).find("INSTANCE TYPE"), std::string::npos) << ReadFile(table_out);
    std::string bad_out = tmp.str() + "/bad.txt";
    Process bad({canopy, "offers", "--credential", "f", "--provider", "aws"}, {xdg}, bad_out);
    EXPECT_EQ(bad.Wait(), 1);
    EXPECT_EQ(ReadFile(bad_out).rfind("error: ", 0), 0u) << ReadFile(bad_out);
  }

  // Bad input: clear 4xx.
  EXPECT_EQ(root.Call("GET", "/api/v1/offers?provider=fake", "", admin).status, 400);
  EXPECT_EQ(root.Call("GET", "/api/v1/offers?provider=aws&credential_id=" + cid, "", admin).status,
            400);
  EXPECT_EQ(root.Call("GET", "/api/v1/offers?credential_id=crd-nope", "", admin).status, 404);
  EXPECT_EQ(
      root.Call("GET", "/api/v1/offers?credential_id=" + cid + "&region=mars-1", "", admin).status,
      400);
  EXPECT_EQ(root.Call("GET", "/api/v1/offers?credential_id=" + cid, "").status, 401);
  std::string app_id = root.CreateUser(admin, "appuser", {"app"}, "app-password-0123456789");
  std::string app = root.Login("appuser", "app-password-0123456789");
  EXPECT_EQ(root.Call("GET", "/api/v1/offers?credential_id=" + cid, "", app).status, 403);
  // The secret never comes back.
  EXPECT_EQ(offers.body.find("\"k\""), std::string::npos);

  // No live adapter of that type: a precondition (409, as for credentials), not a 500.
  adapter.KillHard();
  ASSERT_TRUE(WaitFor(
      [&] { return root.Call("GET", "/api/v1/providers", "", admin).json[0]["status"] == "down"; },
      8s));
  auto down = root.Call("GET", "/api/v1/offers?credential_id=" + cid, "", admin);
  EXPECT_EQ(down.status, 409) << down.body;
  EXPECT_TRUE(down.json["error"]["code"].is_string());
}

}  // namespace
}  // namespace canopy::testing
