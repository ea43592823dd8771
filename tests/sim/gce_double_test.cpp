// GceDouble without machines (instances are records; no root): the token endpoint (RS256 JWTs
// made here with OpenSSL), Resource Manager, IAM, Secret Manager, Compute's catalog, instances,
// firewalls and operations, IAM confinement of a cluster account, fault injection, and answers
// compared with Google's: every answer is checked against the discovery document's response
// schema, and the shapes against real recordings (../shared/reference/gcp/recordings).
#include "sim/gce_double.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "common/ids.h"
#include "net/http.h"
#include "sim/discovery.h"
#include "support/gce_sim.h"
#include "support/test_util.h"

namespace canopy::sim {
namespace {

using namespace std::chrono_literals;
using testing::GceAnswer;

constexpr char kP[] = "/compute/v1/projects/canopy-sim";
constexpr char kZ[] = "/compute/v1/projects/canopy-sim/zones/us-central1-a";
constexpr char kEd25519[] =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPcS3b5mJ0kKq9mQ1w8o3yJrZ0bq3m1x2s4v5w6x7y8z admin";

Json InstanceBody(const std::string& name, const std::string& family = "debian-12",
                  const std::string& user = "admin") {
  return Json{
      {"name", name},
      {"machineType", "zones/us-central1-a/machineTypes/e2-small"},
      {"disks",
       {{{"boot", true},
         {"autoDelete", true},
         {"initializeParams",
          {{"sourceImage",
            "projects/" +
                std::string(family.rfind("ubuntu", 0) == 0 ? "ubuntu-os-cloud" : "debian-cloud") +
                "/global/images/family/" + family},
           {"diskSizeGb", "10"}}}}}},
      {"networkInterfaces", {{{"network", "global/networks/default"}}}},
      {"metadata",
       {{"items",
         {{{"key", "ssh-keys"}, {"value", user + ":" + std::string(kEd25519)}},
          {{"key", "enable-guest-attributes"}, {"value", "TRUE"}}}}}},
      {"labels", {{"canopy-id", name}, {"canopy-cluster", "c-1"}}},
      {"tags", {{"items", {"canopy-web"}}}}};
}

class GceDoubleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto d = Discovery::LoadGcp(testing::GcpReferenceDir());
    if (d) discovery_ = d->release();
  }
  static void TearDownTestSuite() {
    delete discovery_;
    discovery_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(discovery_, nullptr) << "no discovery documents in " << testing::GcpReferenceDir();
    GceDoubleOptions o;
    o.discovery_dir = testing::GcpReferenceDir();
    o.machines = false;
    auto d = GceDouble::Start(o);
    ASSERT_OK(d);
    double_ = std::move(*d);
    auto t = testing::AccessToken(double_->OwnerKey());
    ASSERT_OK(t);
    token_ = *t;
  }

  // A call as the owner; the answer is checked against the method's response schema.
  GceAnswer Call(const std::string& method, const std::string& path, const Json& body = nullptr,
                 const std::string& token = "") {
    auto a = testing::GceCall(double_->url(), method, path, token.empty() ? token_ : token, body);
    EXPECT_OK(a);
    if (!a) return {};
    if (a->status == 200) {
      ApiCall call;
      EXPECT_FALSE(discovery_->Validate(method, path, body.is_null() ? "" : DumpJson(body), &call));
      const std::string schema = discovery_->ResponseSchema(call.method_id);
      if (!schema.empty()) {
        auto e = discovery_->ValidateValue(call.api, schema, a->body, "response");
        EXPECT_FALSE(e.has_value()) << call.method_id << ": " << (e ? e->message : "") << "\n"
                                    << a->body.dump(2);
      }
    } else {
      EXPECT_TRUE(a->body.contains("error")) << a->body.dump();
    }
    return *a;
  }

  // Polls a zonal/global operation until DONE; the statuses seen.
  Json PollDone(const Json& op, std::vector<std::string>* seen = nullptr) {
    const std::string path =
        op.contains("zone")
            ? std::string(kZ) + "/operations/" + op["name"].get<std::string>()
            : std::string(kP) + "/global/operations/" + op["name"].get<std::string>();
    Json last;
    for (int i = 0; i < 500; ++i) {
      last = Call("GET", path).body;
      if (seen) seen->push_back(last.value("status", ""));
      if (last.value("status", "") == "DONE") return last;
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "operation never DONE: " << last.dump();
    return last;
  }

  Json Insert(const Json& body, const std::string& query = "") {
    GceAnswer a = Call("POST", std::string(kZ) + "/instances" + query, body);
    EXPECT_EQ(a.status, 200) << a.body.dump();
    return a.body;
  }

  // A new service account with a key: {email, key JSON}.
  std::pair<std::string, Json> NewAccount(const std::string& id) {
    GceAnswer sa = Call("POST", "/v1/projects/canopy-sim/serviceAccounts",
                        Json{{"accountId", id}, {"serviceAccount", {{"displayName", id}}}});
    EXPECT_EQ(sa.status, 200) << sa.body.dump();
    const std::string email = sa.body.value("email", "");
    GceAnswer key = Call("POST", "/v1/projects/canopy-sim/serviceAccounts/" + email + "/keys",
                         Json{{"privateKeyType", "TYPE_GOOGLE_CREDENTIALS_FILE"},
                              {"keyAlgorithm", "KEY_ALG_RSA_2048"}});
    EXPECT_EQ(key.status, 200) << key.body.dump();
    std::string raw;
    EXPECT_TRUE(Base64Decode(key.body.value("privateKeyData", ""), &raw));
    auto j = ParseJson(raw);
    EXPECT_OK(j);
    return {email, j ? *j : Json()};
  }

  void Grant(const std::string& role, const std::string& email) {
    GceAnswer p = Call("POST", "/v1/projects/canopy-sim:getIamPolicy", Json::object());
    ASSERT_EQ(p.status, 200);
    Json policy = p.body;
    policy["bindings"].push_back({{"role", role}, {"members", {"serviceAccount:" + email}}});
    GceAnswer set = Call("POST", "/v1/projects/canopy-sim:setIamPolicy", Json{{"policy", policy}});
    ASSERT_EQ(set.status, 200) << set.body.dump();
  }

  static Discovery* discovery_;
  std::unique_ptr<GceDouble> double_;
  std::string token_;
};

Discovery* GceDoubleTest::discovery_ = nullptr;

TEST_F(GceDoubleTest, TokenEndpointChecksTheJwt) {
  const Json key = double_->OwnerKey();
  EXPECT_EQ(key["type"], "service_account");
  EXPECT_EQ(key["token_uri"], double_->url() + "/token");
  EXPECT_NE(key["private_key"].get<std::string>().find("BEGIN PRIVATE KEY"), std::string::npos);

  auto jwt = testing::ServiceAccountJwt(key);
  ASSERT_OK(jwt);
  auto ok = testing::ExchangeJwt(key["token_uri"], *jwt);
  ASSERT_OK(ok);
  EXPECT_EQ(ok->status, 200) << ok->body.dump();
  EXPECT_EQ(ok->body["token_type"], "Bearer");
  EXPECT_EQ(ok->body["expires_in"], 3599);
  EXPECT_FALSE(ok->body["access_token"].get<std::string>().empty());

  auto refused = [&](const std::string& assertion, const std::string& error = "invalid_grant") {
    auto a = testing::ExchangeJwt(key["token_uri"], assertion);
    ASSERT_OK(a);
    EXPECT_EQ(a->status, 400) << a->body.dump();
    EXPECT_EQ(a->body.value("error", ""), error) << a->body.dump();
  };
  // Signed with another key (another account's, with this one's kid and claims).
  const Json other = NewAccount("another-account").second;
  auto forged = testing::ServiceAccountJwt(key, Json::object(), other["private_key"]);
  ASSERT_OK(forged);
  refused(*forged);
  auto sig = testing::ExchangeJwt(key["token_uri"], *forged);
  EXPECT_EQ(sig->body["error_description"], "Invalid JWT Signature.");
  // Expired, too long, wrong audience, unknown account, unknown key id, no scope, not a JWT.
  const int64_t now = UnixSeconds(std::chrono::system_clock::now());
  refused(*testing::ServiceAccountJwt(key, {{"iat", now - 7200}, {"exp", now - 3600}}));
  refused(*testing::ServiceAccountJwt(key, {{"exp", now + 7200}}));
  refused(*testing::ServiceAccountJwt(key, {{"aud", "https://oauth2.googleapis.com/token"}}));
  refused(*testing::ServiceAccountJwt(key, {{"iss", "nobody@canopy-sim.iam.gserviceaccount.com"}}));
  Json wrong_kid = key;
  wrong_kid["private_key_id"] = "0123456789abcdef0123456789abcdef01234567";
  refused(*testing::ServiceAccountJwt(wrong_kid));
  refused(*testing::ServiceAccountJwt(key, {{"scope", "email"}}), "invalid_scope");
  refused("not.a-jwt");

  // Bearer tokens: unknown -> 401 in Google's shape; expired -> 401.
  GceAnswer unknown = Call("GET", std::string(kP) + "/regions", nullptr, "ya29.unknown");
  EXPECT_EQ(unknown.status, 401);
  EXPECT_EQ(unknown.body["error"]["status"], "UNAUTHENTICATED");
  EXPECT_EQ(unknown.body["error"]["errors"][0]["reason"], "authError");
  auto none = testing::GceCall(double_->url(), "GET", std::string(kP) + "/regions", "");
  ASSERT_OK(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(Call("GET", std::string(kP) + "/regions").status, 200);
  ASSERT_OK(double_->AddFault(Json{{"fault", "expire_tokens"}}));
  EXPECT_EQ(Call("GET", std::string(kP) + "/regions").status, 401);
  auto fresh = testing::AccessToken(key);
  ASSERT_OK(fresh);
  EXPECT_EQ(Call("GET", std::string(kP) + "/regions", nullptr, *fresh).status, 200);
}

TEST_F(GceDoubleTest, ResourceManagerIamAndKeys) {
  GceAnswer project = Call("GET", "/v1/projects/canopy-sim");
  ASSERT_EQ(project.status, 200);
  EXPECT_EQ(project.body["lifecycleState"], "ACTIVE");
  EXPECT_EQ(project.body["projectId"], "canopy-sim");
  EXPECT_EQ(Call("GET", "/v1/projects/someone-else").status, 403);

  auto [email, key] = NewAccount("canopy-c-0123456789");
  EXPECT_EQ(email, "canopy-c-0123456789@canopy-sim.iam.gserviceaccount.com");
  EXPECT_EQ(key["client_email"], email);
  EXPECT_EQ(key["project_id"], "canopy-sim");
  GceAnswer again = Call("POST", "/v1/projects/canopy-sim/serviceAccounts",
                         Json{{"accountId", "canopy-c-0123456789"}});
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(again.body["error"]["status"], "ALREADY_EXISTS");
  EXPECT_EQ(
      Call("POST", "/v1/projects/canopy-sim/serviceAccounts", Json{{"accountId", "X"}}).status,
      400);
  GceAnswer got = Call("GET", "/v1/projects/-/serviceAccounts/" + email);
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body["email"], email);
  // The issued key works: a token for the new account.
  auto token = testing::AccessToken(key);
  ASSERT_OK(token);

  // Policy: read-modify-write with the etag; a stale etag is refused.
  GceAnswer p = Call("POST", "/v1/projects/canopy-sim:getIamPolicy", Json::object());
  ASSERT_EQ(p.status, 200);
  const std::string etag = p.body["etag"];
  Grant("roles/compute.securityAdmin", email);
  Json stale = p.body;
  stale["etag"] = etag;
  GceAnswer conflict =
      Call("POST", "/v1/projects/canopy-sim:setIamPolicy", Json{{"policy", stale}});
  EXPECT_EQ(conflict.status, 409);
  EXPECT_EQ(conflict.body["error"]["status"], "ABORTED");
  Json ghost = Call("POST", "/v1/projects/canopy-sim:getIamPolicy", Json::object()).body;
  ghost["bindings"].push_back(
      {{"role", "roles/viewer"},
       {"members", {"serviceAccount:ghost@canopy-sim.iam.gserviceaccount.com"}}});
  EXPECT_EQ(Call("POST", "/v1/projects/canopy-sim:setIamPolicy", Json{{"policy", ghost}}).status,
            400);

  // Deleting the account ends its tokens.
  EXPECT_EQ(Call("DELETE", "/v1/projects/canopy-sim/serviceAccounts/" + email).status, 200);
  GceAnswer gone = Call("GET", "/v1/projects/canopy-sim/serviceAccounts/" + email);
  EXPECT_EQ(gone.status, 404);
  EXPECT_EQ(gone.body["error"]["message"], "Unknown service account");
  EXPECT_EQ(Call("GET", std::string(kP) + "/regions", nullptr, *token).status, 401);
  // Its binding stays, naming it as deleted; the policy can still be written back.
  Json after = Call("POST", "/v1/projects/canopy-sim:getIamPolicy", Json::object()).body;
  EXPECT_NE(after.dump().find("deleted:serviceAccount:" + email + "?uid="), std::string::npos);
  EXPECT_EQ(Call("POST", "/v1/projects/canopy-sim:setIamPolicy", Json{{"policy", after}}).status,
            200);
}

TEST_F(GceDoubleTest, ClusterAccountIsConfinedToFirewallsAndTags) {
  auto [email, key] = NewAccount("canopy-c-abcdef0123");
  auto token = testing::AccessToken(key);
  ASSERT_OK(token);
  // No role yet: nothing.
  GceAnswer none = Call("GET", std::string(kP) + "/global/firewalls", nullptr, *token);
  EXPECT_EQ(none.status, 403);
  Grant("roles/compute.securityAdmin", email);
  // Firewalls and the instance calls of attach/detach: allowed.
  const Json fw{{"name", "canopy-fw1"},
                {"network", "global/networks/default"},
                {"allowed", {{{"IPProtocol", "tcp"}, {"ports", {"22"}}}}},
                {"sourceRanges", {"0.0.0.0/0"}},
                {"targetTags", {"canopy-fw1"}}};
  GceAnswer op = Call("POST", std::string(kP) + "/global/firewalls", fw, *token);
  ASSERT_EQ(op.status, 200) << op.body.dump();
  EXPECT_EQ(op.body["user"], email);
  EXPECT_EQ(
      Call("GET", std::string(kP) + "/global/operations/" + op.body["name"].get<std::string>(),
           nullptr, *token)
          .status,
      200);
  EXPECT_EQ(Call("GET", std::string(kZ) + "/instances", nullptr, *token).status, 200);
  // Anything else: 403 in Compute's shape.
  GceAnswer insert = Call("POST", std::string(kZ) + "/instances", InstanceBody("canopy-x"), *token);
  EXPECT_EQ(insert.status, 403);
  EXPECT_EQ(insert.body["error"]["errors"][0]["reason"], "forbidden");
  EXPECT_EQ(insert.body["error"]["message"],
            "Required 'compute.instances.create' permission for "
            "'projects/canopy-sim/zones/us-central1-a/instances/canopy-x'");
  EXPECT_EQ(Call("GET", std::string(kP) + "/regions", nullptr, *token).status, 403);
  EXPECT_EQ(Call("POST", "/v1/projects/canopy-sim/serviceAccounts",
                 Json{{"accountId", "escalate-me"}}, *token)
                .status,
            403);
  EXPECT_EQ(Call("GET", "/v1/projects/canopy-sim/secrets/x", nullptr, *token).status, 403);
}

TEST_F(GceDoubleTest, CatalogRegionsZonesTypesImages) {
  GceAnswer regions = Call("GET", std::string(kP) + "/regions");
  ASSERT_EQ(regions.status, 200);
  std::set<std::string> names;
  for (const auto& r : regions.body["items"]) names.insert(r["name"]);
  EXPECT_EQ(names, (std::set<std::string>{"asia-east1", "europe-west1", "us-central1"}));
  EXPECT_EQ(regions.body["items"][2]["zones"].size(), 4u);  // us-central1: a, b, c, f
  GceAnswer zones = Call("GET", std::string(kP) + "/zones");
  EXPECT_EQ(zones.body["items"].size(), 10u);

  GceAnswer types = Call("GET", std::string(kZ) + "/machineTypes?maxResults=500");
  ASSERT_EQ(types.status, 200);
  bool gpu = false;
  for (const auto& t : types.body["items"]) {
    if (t["name"] == "n1-standard-4") gpu = t.contains("accelerators");
  }
  EXPECT_TRUE(gpu);
  GceAnswer no_gpu = Call("GET", std::string(kP) + "/zones/us-central1-c/machineTypes");
  for (const auto& t : no_gpu.body["items"]) EXPECT_FALSE(t.contains("accelerators"));
  // Paging.
  std::vector<std::string> paged;
  std::string token;
  for (int i = 0; i < 10; ++i) {
    GceAnswer page = Call("GET", std::string(kZ) + "/machineTypes?maxResults=3" +
                                     (token.empty() ? "" : "&pageToken=" + token));
    ASSERT_EQ(page.status, 200);
    for (const auto& t : page.body["items"]) paged.push_back(t["name"]);
    token = page.body.value("nextPageToken", "");
    if (token.empty()) break;
  }
  EXPECT_EQ(paged.size(), types.body["items"].size());

  GceAnswer image = Call("GET", "/compute/v1/projects/debian-cloud/global/images/family/debian-12");
  ASSERT_EQ(image.status, 200);
  EXPECT_EQ(image.body["family"], "debian-12");
  EXPECT_EQ(image.body["selfLink"],
            "https://www.googleapis.com/compute/v1/projects/debian-cloud/global/images/"
            "debian-12-bookworm-v20240110");
  EXPECT_EQ(Call("GET", "/compute/v1/projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts")
                .status,
            200);
  EXPECT_EQ(Call("GET", "/compute/v1/projects/debian-cloud/global/images/family/debian-9").status,
            404);
  EXPECT_EQ(Call("GET", "/compute/v1/projects/other-project/regions").status, 404);
}

TEST_F(GceDoubleTest, InstanceLifecycleOperationsAndTags) {
  const std::string rid = "4a7e5c9e-2b1f-4d7a-9a2e-1c3b5d7f9a0b";
  Json op = Insert(InstanceBody("canopy-a1"), "?requestId=" + rid);
  EXPECT_EQ(op["status"], "PENDING");
  EXPECT_EQ(op["operationType"], "insert");
  // The same requestId: the same operation, no second instance.
  Json again = Insert(InstanceBody("canopy-a1"), "?requestId=" + rid);
  EXPECT_EQ(again["name"], op["name"]);
  std::vector<std::string> seen;
  Json done = PollDone(op, &seen);
  EXPECT_FALSE(done.contains("error")) << done.dump();
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen.front(), "RUNNING");  // PENDING -> RUNNING -> DONE over polls
  EXPECT_EQ(seen.back(), "DONE");
  EXPECT_EQ(Call("POST", std::string(kZ) + "/instances", InstanceBody("canopy-a1")).status, 409);
  double_->WaitIdle();

  GceAnswer got = Call("GET", std::string(kZ) + "/instances/canopy-a1");
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body["status"], "RUNNING");
  const std::string ip = got.body["networkInterfaces"][0]["networkIP"];
  EXPECT_EQ(ip.rfind("198.19.", 0), 0u) << ip;
  EXPECT_FALSE(got.body["networkInterfaces"][0].contains("accessConfigs"));

  // List with a label filter.
  GceAnswer found = Call("GET", std::string(kZ) + "/instances?filter=" +
                                    net::UrlEncode("labels.canopy-id=\"canopy-a1\""));
  ASSERT_EQ(found.status, 200);
  ASSERT_EQ(found.body["items"].size(), 1u);
  GceAnswer other = Call("GET", std::string(kZ) + "/instances?filter=" +
                                    net::UrlEncode("labels.canopy-id=\"canopy-zz\""));
  EXPECT_FALSE(other.body.contains("items"));  // Compute omits an empty list
  EXPECT_EQ(Call("GET", std::string(kZ) + "/instances?filter=" + net::UrlEncode("labels.a=(\"b\""))
                .status,
            400);

  // Guest attributes: the host key.
  GceAnswer attrs = Call(
      "GET", std::string(kZ) + "/instances/canopy-a1/getGuestAttributes?queryPath=hostkeys%2F");
  ASSERT_EQ(attrs.status, 200) << attrs.body.dump();
  EXPECT_EQ(attrs.body["queryValue"]["items"][0]["key"], "ssh-ed25519");
  const std::string host_key = attrs.body["queryValue"]["items"][0]["value"];
  GceAnswer serial = Call("GET", std::string(kZ) + "/instances/canopy-a1/serialPort?port=1");
  EXPECT_NE(serial.body["contents"].get<std::string>().find("BEGIN SSH HOST KEY FINGERPRINTS"),
            std::string::npos);

  // setTags: the fingerprint must be the current one.
  const std::string fp = got.body["tags"]["fingerprint"];
  GceAnswer stale =
      Call("POST", std::string(kZ) + "/instances/canopy-a1/setTags",
           Json{{"items", {"canopy-web", "canopy-fw2"}}, {"fingerprint", "AAAAAAAAAAA="}});
  EXPECT_EQ(stale.status, 412);
  EXPECT_EQ(stale.body["error"]["errors"][0]["reason"], "conditionNotMet");
  GceAnswer tagged = Call("POST", std::string(kZ) + "/instances/canopy-a1/setTags",
                          Json{{"items", {"canopy-web", "canopy-fw2"}}, {"fingerprint", fp}});
  ASSERT_EQ(tagged.status, 200);
  EXPECT_EQ(tagged.body["operationType"], "setTags");
  PollDone(tagged.body);
  got = Call("GET", std::string(kZ) + "/instances/canopy-a1");
  EXPECT_EQ(got.body["tags"]["items"], Json({"canopy-web", "canopy-fw2"}));
  EXPECT_NE(got.body["tags"]["fingerprint"], fp);

  // Stop, start (same host key), delete.
  GceAnswer stop = Call("POST", std::string(kZ) + "/instances/canopy-a1/stop");
  ASSERT_EQ(stop.status, 200);
  PollDone(stop.body);
  EXPECT_EQ(Call("GET", std::string(kZ) + "/instances/canopy-a1").body["status"], "TERMINATED");
  EXPECT_EQ(
      Call("GET", std::string(kZ) + "/instances/canopy-a1/getGuestAttributes?queryPath=hostkeys%2F")
          .status,
      404);
  GceAnswer start = Call("POST", std::string(kZ) + "/instances/canopy-a1/start");
  PollDone(start.body);
  double_->WaitIdle();
  EXPECT_EQ(Call("GET", std::string(kZ) + "/instances/canopy-a1").body["status"], "RUNNING");
  attrs = Call("GET",
               std::string(kZ) + "/instances/canopy-a1/getGuestAttributes?queryPath=hostkeys%2F");
  ASSERT_EQ(attrs.status, 200);
  EXPECT_EQ(attrs.body["queryValue"]["items"][0]["value"], host_key);
  GceAnswer del = Call("DELETE", std::string(kZ) + "/instances/canopy-a1");
  ASSERT_EQ(del.status, 200);
  EXPECT_EQ(del.body["operationType"], "delete");
  PollDone(del.body);
  EXPECT_EQ(Call("GET", std::string(kZ) + "/instances/canopy-a1").status, 404);
  EXPECT_EQ(Call("DELETE", std::string(kZ) + "/instances/canopy-a1").status, 404);
  EXPECT_EQ(Call("POST", std::string(kZ) + "/instances/canopy-a1/stop?requestId=nope").status, 400);
}

TEST_F(GceDoubleTest, InstancesTheSimulatorCannotRunFailTheirOperation) {
  Json ubuntu = PollDone(Insert(InstanceBody("canopy-u1", "ubuntu-2204-lts", "admin")));
  ASSERT_TRUE(ubuntu.contains("error")) << ubuntu.dump();
  EXPECT_NE(ubuntu["error"]["errors"][0]["message"].get<std::string>().find("no blank image"),
            std::string::npos);
  EXPECT_EQ(ubuntu["httpErrorStatusCode"], 400);
  Json user = PollDone(Insert(InstanceBody("canopy-u2", "debian-12", "ubuntu")));
  ASSERT_TRUE(user.contains("error"));
  EXPECT_NE(user["error"]["errors"][0]["message"].get<std::string>().find("only the user admin"),
            std::string::npos);
  EXPECT_EQ(Call("GET", std::string(kZ) + "/instances/canopy-u1").status, 404);
  // Semantic checks beyond the schema: an unknown machine type, a too small disk.
  Json bad = InstanceBody("canopy-u3");
  bad["machineType"] = "zones/us-central1-a/machineTypes/z9-huge";
  EXPECT_EQ(Call("POST", std::string(kZ) + "/instances", bad).status, 400);
  bad = InstanceBody("canopy-u3");
  bad["disks"][0]["initializeParams"]["diskSizeGb"] = "5";
  EXPECT_EQ(Call("POST", std::string(kZ) + "/instances", bad).status, 400);
  bad = InstanceBody("canopy-u3");
  bad["disks"][0]["initializeParams"]["sourceImage"] = "projects/debian-cloud/global/images/nope";
  EXPECT_EQ(Call("POST", std::string(kZ) + "/instances", bad).status, 404);
}

TEST_F(GceDoubleTest, SchemaInvalidRequestsGet400) {
  Json body = InstanceBody("canopy-s1");
  body["networkInterfaces"][0]["accessConfigs"] = {{{"type", "ONE_TO_ONE_NAT"}, {"nat_ip", "x"}}};
  GceAnswer a = Call("POST", std::string(kZ) + "/instances", body);
  EXPECT_EQ(a.status, 400);
  EXPECT_EQ(a.body["error"]["status"], "INVALID_ARGUMENT");
  EXPECT_NE(a.body["error"]["message"].get<std::string>().find("Unknown name \"nat_ip\""),
            std::string::npos);
  EXPECT_EQ(Call("GET", std::string(kZ) + "/instances?bogus=1").status, 400);
  EXPECT_EQ(Call("GET", "/compute/v1/projects/canopy-sim/zones/us-central1-a/nothing").status, 404);
  EXPECT_EQ(Call("GET", "/compute/v1/projects/canopy-sim/zones/atlantis-1/instances").status, 404);
}

TEST_F(GceDoubleTest, FirewallsInsertPatchDelete) {
  const Json fw{{"name", "canopy-fw1"},
                {"network", "global/networks/default"},
                {"direction", "INGRESS"},
                {"priority", 1000},
                {"allowed", {{{"IPProtocol", "tcp"}, {"ports", {"22"}}}}},
                {"targetTags", {"canopy-fw1"}},
                {"description", "canopy-id=fw-1; cluster=c-1"}};
  GceAnswer op = Call("POST", std::string(kP) + "/global/firewalls", fw);
  ASSERT_EQ(op.status, 200) << op.body.dump();
  EXPECT_FALSE(op.body.contains("zone"));
  PollDone(op.body);
  EXPECT_EQ(Call("POST", std::string(kP) + "/global/firewalls", fw).status, 409);
  GceAnswer got = Call("GET", std::string(kP) + "/global/firewalls/canopy-fw1");
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body["sourceRanges"], Json({"0.0.0.0/0"}));  // the default for ingress
  EXPECT_EQ(got.body["network"],
            "https://www.googleapis.com/compute/v1/projects/canopy-sim/global/networks/default");
  GceAnswer patch = Call("PATCH", std::string(kP) + "/global/firewalls/canopy-fw1",
                         Json{{"name", "canopy-fw1"},
                              {"allowed", {{{"IPProtocol", "tcp"}, {"ports", {"22", "8080"}}}}},
                              {"sourceRanges", {"10.0.0.0/8"}}});
  ASSERT_EQ(patch.status, 200) << patch.body.dump();
  EXPECT_EQ(patch.body["operationType"], "compute.firewalls.patch");
  PollDone(patch.body);
  got = Call("GET", std::string(kP) + "/global/firewalls/canopy-fw1");
  EXPECT_EQ(got.body["sourceRanges"], Json({"10.0.0.0/8"}));
  EXPECT_EQ(got.body["targetTags"], Json({"canopy-fw1"}));
  Json bad = fw;
  bad["name"] = "canopy-fw2";
  bad["allowed"][0]["ports"] = {"99999"};
  EXPECT_EQ(Call("POST", std::string(kP) + "/global/firewalls", bad).status, 400);
  GceAnswer list =
      Call("GET",
           std::string(kP) + "/global/firewalls?filter=" + net::UrlEncode("name = \"canopy-fw1\""));
  EXPECT_EQ(list.body["items"].size(), 1u);
  GceAnswer del = Call("DELETE", std::string(kP) + "/global/firewalls/canopy-fw1");
  ASSERT_EQ(del.status, 200);
  PollDone(del.body);
  EXPECT_EQ(Call("GET", std::string(kP) + "/global/firewalls/canopy-fw1").status, 404);
}

TEST_F(GceDoubleTest, SecretManagerKeepsKeyPairs) {
  const std::string s = "/v1/projects/canopy-sim/secrets";
  GceAnswer made = Call("POST", s + "?secretId=canopy-keypair-k1",
                        Json{{"replication", {{"automatic", Json::object()}}},
                             {"labels", {{"canopy-keypair", "k1"}}}});
  ASSERT_EQ(made.status, 200) << made.body.dump();
  EXPECT_EQ(made.body["name"].get<std::string>().find("projects/"), 0u);
  EXPECT_EQ(Call("POST", s + "?secretId=canopy-keypair-k1",
                 Json{{"replication", {{"automatic", Json::object()}}}})
                .status,
            409);
  EXPECT_EQ(Call("GET", s + "/canopy-keypair-k1/versions/latest:access").status, 404);
  GceAnswer v = Call("POST", s + "/canopy-keypair-k1:addVersion",
                     Json{{"payload", {{"data", Base64Encode("private key")}}}});
  ASSERT_EQ(v.status, 200) << v.body.dump();
  GceAnswer access = Call("GET", s + "/canopy-keypair-k1/versions/latest:access");
  ASSERT_EQ(access.status, 200);
  EXPECT_EQ(access.body["payload"]["data"], Base64Encode("private key"));
  EXPECT_TRUE(access.body["payload"].contains("dataCrc32c"));
  EXPECT_EQ(Call("GET", s + "/canopy-keypair-k1").status, 200);
  EXPECT_EQ(Call("DELETE", s + "/canopy-keypair-k1").status, 200);
  EXPECT_EQ(Call("GET", s + "/canopy-keypair-k1").status, 404);
}

TEST_F(GceDoubleTest, FaultsStockoutQuotaRateLimitUnavailableSlow) {
  ASSERT_OK(
      double_->AddFault(Json{{"fault", "stockout"}, {"zone", "us-central1-a"}, {"count", 1}}));
  Json op = PollDone(Insert(InstanceBody("canopy-f1")));
  ASSERT_TRUE(op.contains("error")) << op.dump();
  EXPECT_EQ(op["error"]["errors"][0]["code"], "ZONE_RESOURCE_POOL_EXHAUSTED");
  EXPECT_EQ(op["httpErrorStatusCode"], 503);
  EXPECT_EQ(op["progress"], 100);
  EXPECT_EQ(Call("GET", std::string(kZ) + "/instances/canopy-f1").status, 404);
  // count 1: the next insert works.
  EXPECT_FALSE(PollDone(Insert(InstanceBody("canopy-f2"))).contains("error"));

  ASSERT_OK(double_->AddFault(Json{{"fault", "quota"}, {"region", "us-central1"}, {"count", 1}}));
  op = PollDone(Insert(InstanceBody("canopy-f3")));
  ASSERT_TRUE(op.contains("error"));
  EXPECT_EQ(op["error"]["errors"][0]["code"], "QUOTA_EXCEEDED");
  EXPECT_EQ(op["error"]["errors"][0]["errorDetails"][0]["quotaInfo"]["dimensions"]["region"],
            "us-central1");
  EXPECT_EQ(op["httpErrorStatusCode"], 403);
  ASSERT_OK(double_->AddFault(Json{{"fault", "quota"}}));  // global, until cleared
  op = PollDone(Insert(InstanceBody("canopy-f4")));
  EXPECT_EQ(op["error"]["errors"][0]["code"], "QUOTA_EXCEEDED");
  double_->ClearFaults();

  ASSERT_OK(double_->AddFault(Json{{"fault", "rate_limit"}, {"count", 2}}));
  GceAnswer limited = Call("GET", std::string(kP) + "/regions");
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(limited.body["error"]["errors"][0]["reason"], "rateLimitExceeded");
  EXPECT_EQ(Call("GET", std::string(kP) + "/regions").status, 429);
  EXPECT_EQ(Call("GET", std::string(kP) + "/regions").status, 200);
  ASSERT_OK(double_->AddFault(Json{{"fault", "unavailable"}, {"count", 1}}));
  GceAnswer down = Call("GET", std::string(kP) + "/regions");
  EXPECT_EQ(down.status, 503);
  EXPECT_EQ(down.body["error"]["errors"][0]["reason"], "backendError");
  EXPECT_EQ(Call("GET", std::string(kP) + "/regions").status, 200);

  ASSERT_OK(double_->AddFault(Json{{"fault", "slow_operations"}, {"polls", 5}}));
  std::vector<std::string> seen;
  PollDone(Insert(InstanceBody("canopy-f5")), &seen);
  EXPECT_GE(seen.size(), 5u);
  EXPECT_FALSE(double_->AddFault(Json{{"fault", "meteor"}}));
}

// The double's answers have the top-level fields real answers have (recordings of real GCP
// traffic, k8s-config-connector): instance GET, operations, firewall GET, 404 bodies.
struct Recorded {
  std::string request;  // "GET https://..."
  int status = 0;
  Json body;
};

std::vector<Recorded> ReadRecording(const std::string& file) {
  std::ifstream in(testing::GcpReferenceDir() + "/recordings/" + file);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  std::vector<Recorded> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find("\n---\n", pos);
    std::string entry = text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    pos = end == std::string::npos ? text.size() : end + 5;
    Recorded r;
    std::istringstream lines(entry);
    std::string line;
    while (std::getline(lines, line) && line.empty()) {
    }
    r.request = line;
    // The response: the status line after the first blank line following the request.
    size_t status_at = std::string::npos;
    for (size_t p = entry.find("\n\n"); p != std::string::npos; p = entry.find("\n\n", p + 1)) {
      size_t s = p + 2;
      if (s + 4 < entry.size() && std::isdigit(static_cast<unsigned char>(entry[s])) &&
          entry[s + 3] == ' ') {
        status_at = s;
        break;
      }
    }
    if (status_at == std::string::npos) continue;
    r.status = std::stoi(entry.substr(status_at, 3));
    size_t body_at = entry.find("\n\n", status_at);
    if (body_at != std::string::npos) {
      auto j = ParseJson(entry.substr(body_at + 2));
      if (j) r.body = *j;
    }
    out.push_back(r);
  }
  return out;
}

std::set<std::string> Keys(const Json& j) {
  std::set<std::string> k;
  if (j.is_object()) {
    for (const auto& [key, v] : j.items()) k.insert(key);
  }
  return k;
}

// The recorded answer to the first request starting with `prefix` and ending with `suffix`
// (query stripped), with `status` and a body of `kind` (if given).
Json FindRecorded(const std::vector<Recorded>& rec, const std::string& method,
                  const std::string& path_suffix, int status, const std::string& kind = "",
                  const std::string& op_status = "") {
  for (const auto& r : rec) {
    std::string line = r.request.substr(0, r.request.find('?'));
    if (line.rfind(method + " ", 0) != 0 || r.status != status) continue;
    if (line.size() < path_suffix.size() ||
        line.compare(line.size() - path_suffix.size(), path_suffix.size(), path_suffix) != 0) {
      continue;
    }
    if (!kind.empty() && r.body.value("kind", "") != kind) continue;
    if (!op_status.empty() && r.body.value("status", "") != op_status) continue;
    return r.body;
  }
  return nullptr;
}

void ExpectKeysCovered(const Json& recorded, const Json& ours, const std::string& what) {
  ASSERT_FALSE(recorded.is_null()) << what << ": not found in the recording";
  for (const auto& k : Keys(recorded)) {
    EXPECT_TRUE(ours.contains(k)) << what << ": the double's answer lacks '" << k << "'\n"
                                  << ours.dump(2);
  }
}

TEST_F(GceDoubleTest, AnswersHaveTheShapeOfRecordedOnes) {
  const auto instance_log = ReadRecording("computeinstance_http.log");
  const auto firewall_log = ReadRecording("computefirewall_http.log");
  const auto iam_log = ReadRecording("iamserviceaccountkey_http.log");
  ASSERT_FALSE(instance_log.empty());
  ASSERT_FALSE(firewall_log.empty());

  // 404 of an instance: exactly the recorded keys (Compute's errors have no "status").
  GceAnswer missing = Call("GET", std::string(kZ) + "/instances/canopy-nope");
  Json rec404 = FindRecorded(instance_log, "GET", "/instances/${instanceID}", 404);
  ASSERT_FALSE(rec404.is_null());
  EXPECT_EQ(Keys(missing.body), Keys(rec404));
  EXPECT_EQ(Keys(missing.body["error"]), Keys(rec404["error"]));
  EXPECT_EQ(Keys(missing.body["error"]["errors"][0]), Keys(rec404["error"]["errors"][0]));
  // IAM's 404 has "status".
  GceAnswer no_sa = Call("GET", "/v1/projects/canopy-sim/serviceAccounts/x@y");
  Json iam404 = FindRecorded(iam_log, "GET", ".iam.gserviceaccount.com", 404);
  EXPECT_EQ(Keys(no_sa.body["error"]), Keys(iam404["error"]));

  // instances.insert (with the recorded request's optional fields) -> operation -> GET.
  Json body = InstanceBody("canopy-r1");
  body["description"] = "an basic instance example";
  body["serviceAccounts"] = {{{"email", "default"}, {"scopes", {"cloud-platform"}}}};
  Json op = Insert(body);
  Json running = Call("GET", std::string(kZ) + "/operations/" + op["name"].get<std::string>()).body;
  EXPECT_EQ(running["status"], "RUNNING");
  ExpectKeysCovered(FindRecorded(instance_log, "POST", "/instances", 200, "compute#operation"),
                    running, "instances.insert operation (RUNNING)");
  ExpectKeysCovered(FindRecorded(instance_log, "GET", "/operations/${operationID}", 200,
                                 "compute#operation", "DONE"),
                    PollDone(op), "zone operation DONE");
  ExpectKeysCovered(
      FindRecorded(instance_log, "GET", "/instances/${instanceID}", 200, "compute#instance"),
      Call("GET", std::string(kZ) + "/instances/canopy-r1").body, "instance GET");
  GceAnswer stop = Call("POST", std::string(kZ) + "/instances/canopy-r1/stop");
  ExpectKeysCovered(FindRecorded(instance_log, "POST", "/stop", 200, "compute#operation"),
                    PollDone(stop.body), "instances.stop operation");

  // Firewalls.
  const Json fw{{"name", "canopy-r2"},
                {"network", "global/networks/default"},
                {"allowed", {{{"IPProtocol", "tcp"}, {"ports", {"80", "1000-2000"}}}}},
                {"disabled", false}};
  Json fop = Call("POST", std::string(kP) + "/global/firewalls", fw).body;
  ExpectKeysCovered(FindRecorded(firewall_log, "GET", "/global/operations/${operationID}", 200,
                                 "compute#operation", "DONE"),
                    PollDone(fop), "global operation DONE");
  EXPECT_FALSE(fop.contains("zone"));
  ExpectKeysCovered(
      FindRecorded(firewall_log, "GET", "/firewalls/${firewallID}", 200, "compute#firewall"),
      Call("GET", std::string(kP) + "/global/firewalls/canopy-r2").body, "firewall GET");
  GceAnswer fw404 = Call("GET", std::string(kP) + "/global/firewalls/canopy-none");
  EXPECT_EQ(Keys(fw404.body["error"]),
            Keys(FindRecorded(firewall_log, "GET", "/firewalls/${firewallID}", 404)["error"]));
  // IAM: service account and key answers.
  auto [email, key] = NewAccount("canopy-r3-account");
  GceAnswer sa = Call("GET", "/v1/projects/canopy-sim/serviceAccounts/" + email);
  ExpectKeysCovered(FindRecorded(iam_log, "GET", ".iam.gserviceaccount.com", 200), sa.body,
                    "service account GET");
}

}  // namespace
}  // namespace canopy::sim
