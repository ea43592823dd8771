// Discovery: requests validated against Google's discovery documents
// (../shared/reference/gcp/): the methods the Compute Engine double serves are found by path,
// valid instances.insert / firewalls.insert bodies pass, and an unknown field, a wrong type, a bad
// enum, a bad pattern or a missing required parameter are refused with Google's 400.
#include "sim/discovery.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "support/test_util.h"

namespace canopy::sim {
namespace {

std::string ReferenceDir() { return testing::SourceDir() + "/../shared/reference/gcp"; }

class DiscoveryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto d = Discovery::LoadGcp(ReferenceDir());
    if (d) {
      discovery_ = d->release();
    } else {
      load_error_ = d.error().message;
    }
  }
  static void TearDownTestSuite() {
    delete discovery_;
    discovery_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(discovery_, nullptr)
        << "the discovery documents of " << ReferenceDir() << " must be there: " << load_error_;
  }

  // Validates and returns the error (nullopt = valid); the matched call in `call_`.
  std::optional<GoogleError> Check(const std::string& method, const std::string& target,
                                   const Json& body = nullptr) {
    std::string text = body.is_null() ? "" : DumpJson(body);
    return discovery_->Validate(method, target, text, &call_);
  }

  static Json ValidInstance() {
    return Json::parse(R"({
      "name": "canopy-0123456789ab",
      "machineType": "zones/us-central1-a/machineTypes/e2-small",
      "disks": [{"boot": true, "autoDelete": true,
                 "initializeParams": {"sourceImage": "projects/debian-cloud/global/images/debian-12-bookworm-v20240110",
                                      "diskSizeGb": "10"}}],
      "networkInterfaces": [{"network": "global/networks/default",
                             "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]}],
      "metadata": {"items": [{"key": "ssh-keys", "value": "admin:ssh-ed25519 AAAA admin"},
                             {"key": "enable-guest-attributes", "value": "TRUE"}]},
      "labels": {"canopy-id": "w-abc", "canopy-cluster": "c-1"},
      "tags": {"items": ["canopy-0123456789ab"]}
    })");
  }
  static Json ValidFirewall() {
    return Json::parse(R"({
      "name": "canopy-0123456789ab", "network": "global/networks/default",
      "direction": "INGRESS", "priority": 1000,
      "allowed": [{"IPProtocol": "tcp", "ports": ["22", "8000-8010"]}],
      "sourceRanges": ["0.0.0.0/0"], "targetTags": ["canopy-0123456789ab"],
      "description": "canopy-id=fw-1; cluster=c-1"
    })");
  }

  static Discovery* discovery_;
  static std::string load_error_;
  ApiCall call_;
};

Discovery* DiscoveryTest::discovery_ = nullptr;
std::string DiscoveryTest::load_error_;

constexpr char kZone[] = "/compute/v1/projects/canopy-sim/zones/us-central1-a";

TEST_F(DiscoveryTest, FindsEveryMethodTheDoubleServes) {
  struct Case {
    std::string method, target, id;
  };
  const std::string z = kZone;
  const std::string g = "/compute/v1/projects/canopy-sim/global";
  const std::string sa =
      "/v1/projects/canopy-sim/serviceAccounts/a-b@canopy-sim.iam.gserviceaccount.com";
  const std::string sm = "/v1/projects/canopy-sim/secrets/canopy-keypair-x";
  const std::vector<Case> cases = {
      {"GET", "/compute/v1/projects/canopy-sim/regions", "compute.regions.list"},
      {"GET", "/compute/v1/projects/canopy-sim/zones", "compute.zones.list"},
      {"GET", z + "/machineTypes?maxResults=500", "compute.machineTypes.list"},
      {"GET", "/compute/v1/projects/debian-cloud/global/images/family/debian-12",
       "compute.images.getFromFamily"},
      {"GET", "/compute/v1/projects/debian-cloud/global/images/debian-12-bookworm-v20240110",
       "compute.images.get"},
      {"GET", z + "/instances?filter=labels.canopy-id%3D%22w-1%22", "compute.instances.list"},
      {"GET", z + "/instances/canopy-1", "compute.instances.get"},
      {"DELETE", z + "/instances/canopy-1?requestId=4a7e5c9e-2b1f-4d7a-9a2e-1c3b5d7f9a0b",
       "compute.instances.delete"},
      {"POST", z + "/instances/canopy-1/start", "compute.instances.start"},
      {"POST", z + "/instances/canopy-1/stop", "compute.instances.stop"},
      {"GET", z + "/instances/canopy-1/getGuestAttributes?queryPath=hostkeys%2F",
       "compute.instances.getGuestAttributes"},
      {"GET", z + "/instances/canopy-1/serialPort?port=1", "compute.instances.getSerialPortOutput"},
      {"GET", z + "/operations/operation-1-2", "compute.zoneOperations.get"},
      {"POST", z + "/operations/operation-1-2/wait", "compute.zoneOperations.wait"},
      {"GET", g + "/operations/operation-1-2", "compute.globalOperations.get"},
      {"GET", g + "/firewalls/canopy-1", "compute.firewalls.get"},
      {"GET", g + "/firewalls", "compute.firewalls.list"},
      {"DELETE", g + "/firewalls/canopy-1", "compute.firewalls.delete"},
      {"GET", "/v1/projects/canopy-sim", "cloudresourcemanager.projects.get"},
      {"GET", sa, "iam.projects.serviceAccounts.get"},
      {"DELETE", sa, "iam.projects.serviceAccounts.delete"},
      {"GET", sm, "secretmanager.projects.secrets.get"},
      {"DELETE", sm, "secretmanager.projects.secrets.delete"},
      {"GET", sm + "/versions/latest:access", "secretmanager.projects.secrets.versions.access"},
      {"GET", sm + "/versions/latest", "secretmanager.projects.secrets.versions.get"},
  };
  for (const auto& c : cases) {
    auto e = Check(c.method, c.target);
    EXPECT_FALSE(e.has_value()) << c.target << ": " << (e ? e->message : "");
    EXPECT_EQ(call_.method_id, c.id) << c.method << " " << c.target;
  }
  // Path parameters come from `path`: IAM's {+name} spans segments, and are decoded.
  ASSERT_FALSE(Check("GET", sa));
  EXPECT_EQ(call_.Param("name"),
            "projects/canopy-sim/serviceAccounts/a-b@canopy-sim.iam.gserviceaccount.com");
  ASSERT_FALSE(Check("GET", z + "/instances/canopy-1/getGuestAttributes?queryPath=hostkeys%2F"));
  EXPECT_EQ(call_.Param("zone"), "us-central1-a");
  EXPECT_EQ(call_.Param("instance"), "canopy-1");
  EXPECT_EQ(call_.Param("queryPath"), "hostkeys/");
  // A path no method has: 404.
  auto none = Check("GET", "/compute/v1/projects/p/nothing/here");
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->code, 404);
}

TEST_F(DiscoveryTest, ValidBodiesPass) {
  const std::string z = kZone;
  EXPECT_FALSE(Check("POST", z + "/instances?requestId=4a7e5c9e-2b1f-4d7a-9a2e-1c3b5d7f9a0b",
                     ValidInstance()));
  EXPECT_EQ(call_.method_id, "compute.instances.insert");
  EXPECT_EQ(call_.body["name"], "canopy-0123456789ab");
  EXPECT_FALSE(Check("POST", "/compute/v1/projects/canopy-sim/global/firewalls", ValidFirewall()));
  EXPECT_EQ(call_.method_id, "compute.firewalls.insert");
  EXPECT_FALSE(Check("PATCH", "/compute/v1/projects/canopy-sim/global/firewalls/canopy-1",
                     Json{{"name", "canopy-1"}, {"sourceRanges", {"10.0.0.0/8"}}}));
  EXPECT_FALSE(Check("POST", z + "/instances/canopy-1/setTags",
                     Json{{"items", {"canopy-1"}}, {"fingerprint", "42WmSpB8rSM="}}));
  EXPECT_FALSE(Check("POST", "/v1/projects/canopy-sim/serviceAccounts",
                     Json::parse(R"({"accountId": "canopy-c-0123456789",
                        "serviceAccount": {"displayName": "Canopy cluster c", "description": "x"}})")));
  EXPECT_FALSE(Check("POST", "/v1/projects/canopy-sim/serviceAccounts/a@b/keys",
                     Json{{"privateKeyType", "TYPE_GOOGLE_CREDENTIALS_FILE"},
                          {"keyAlgorithm", "KEY_ALG_RSA_2048"}}));
  EXPECT_EQ(call_.method_id, "iam.projects.serviceAccounts.keys.create");
  EXPECT_FALSE(Check("POST", "/v1/projects/canopy-sim:setIamPolicy",
                     Json::parse(R"({"policy": {"bindings": [{"role": "roles/compute.securityAdmin",
                        "members": ["serviceAccount:a@b"]}], "etag": "BwX="}})")));
  EXPECT_EQ(call_.method_id, "cloudresourcemanager.projects.setIamPolicy");
  EXPECT_EQ(call_.Param("resource"), "canopy-sim");
  EXPECT_FALSE(Check("POST", "/v1/projects/canopy-sim:getIamPolicy"));  // no body: {}
  EXPECT_FALSE(Check("POST", "/v1/projects/canopy-sim/secrets?secretId=canopy-keypair-x",
                     Json::parse(R"({"replication": {"automatic": {}},
                                     "labels": {"canopy-keypair": "x"}})")));
  EXPECT_FALSE(Check("POST", "/v1/projects/canopy-sim/secrets/canopy-keypair-x:addVersion",
                     Json{{"payload", {{"data", "aGVsbG8="}}}}));
  EXPECT_EQ(call_.method_id, "secretmanager.projects.secrets.addVersion");
  EXPECT_EQ(call_.Param("parent"), "projects/canopy-sim/secrets/canopy-keypair-x");
  // int64 fields take numbers too (proto3 JSON), and the standard query parameters pass.
  Json numeric = ValidInstance();
  numeric["disks"][0]["initializeParams"]["diskSizeGb"] = 20;
  EXPECT_FALSE(Check("POST", z + "/instances?alt=json&prettyPrint=false", numeric));
}

TEST_F(DiscoveryTest, UnknownFieldIsRefusedWithGooglesMessage) {
  Json body = ValidInstance();
  body["foo"] = 1;
  auto e = Check("POST", std::string(kZone) + "/instances", body);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, 400);
  EXPECT_EQ(e->status, "INVALID_ARGUMENT");
  EXPECT_EQ(
      e->message,
      "Invalid JSON payload received. Unknown name \"foo\" at 'instance': Cannot find field.");
  Json j = e->ToJson();
  EXPECT_EQ(j["error"]["code"], 400);
  EXPECT_EQ(j["error"]["errors"][0]["reason"], "badRequest");
  EXPECT_EQ(j["error"]["errors"][0]["domain"], "global");
  EXPECT_EQ(j["error"]["status"], "INVALID_ARGUMENT");

  // Nested: the path names where.
  body = ValidInstance();
  body["networkInterfaces"][0]["accessConfigs"][0]["natIp"] = "1.2.3.4";  // natIP is the name
  e = Check("POST", std::string(kZone) + "/instances", body);
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->message.find("Unknown name \"natIp\" at "
                            "'instance.network_interfaces[0].access_configs[0]'"),
            std::string::npos)
      << e->message;
  // A request message body (no resource field): no 'at'.
  e = Check("POST", "/v1/projects/canopy-sim/serviceAccounts",
            Json{{"accountId", "abcdefg"}, {"bogus", true}});
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->message,
            "Invalid JSON payload received. Unknown name \"bogus\": Cannot find field.");
}

TEST_F(DiscoveryTest, WrongTypesAreRefused) {
  const std::string url = std::string(kZone) + "/instances";
  Json body = ValidInstance();
  body["canIpForward"] = "yes";
  auto e = Check("POST", url, body);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, 400);
  EXPECT_EQ(e->message, "Invalid value at 'instance.can_ip_forward' (TYPE_BOOL), \"yes\"");

  body = ValidInstance();
  body["disks"][0]["initializeParams"]["diskSizeGb"] = "ten";
  e = Check("POST", url, body);
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->message.find("(TYPE_INT64)"), std::string::npos) << e->message;

  body = ValidInstance();
  body["tags"]["items"] = "canopy-1";  // an array is expected
  EXPECT_TRUE(Check("POST", url, body).has_value());

  body = ValidInstance();
  body["labels"]["canopy-id"] = 7;  // a map of strings
  e = Check("POST", url, body);
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->message.find("instance.labels[canopy-id]"), std::string::npos) << e->message;

  Json fw = ValidFirewall();
  fw["priority"] = 10.5;
  EXPECT_TRUE(Check("POST", "/compute/v1/projects/canopy-sim/global/firewalls", fw).has_value());

  // Not JSON at all, or not an object.
  EXPECT_TRUE(discovery_->Validate("POST", url, "{not json", &call_).has_value());
  EXPECT_TRUE(discovery_->Validate("POST", url, "[1]", &call_).has_value());
}

TEST_F(DiscoveryTest, BadEnumsAndPatternsAreRefused) {
  Json fw = ValidFirewall();
  fw["direction"] = "SIDEWAYS";
  auto e = Check("POST", "/compute/v1/projects/canopy-sim/global/firewalls", fw);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->message, "Invalid value at 'firewall.direction' (TYPE_ENUM), \"SIDEWAYS\"");

  Json body = ValidInstance();
  body["networkInterfaces"][0]["accessConfigs"][0]["type"] = "TWO_TO_ONE_NAT";
  EXPECT_TRUE(Check("POST", std::string(kZone) + "/instances", body).has_value());

  body = ValidInstance();
  body["name"] = "Not_RFC1035";
  e = Check("POST", std::string(kZone) + "/instances", body);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->reason, "invalid");
  EXPECT_NE(e->message.find("'instance.name'"), std::string::npos) << e->message;

  body = ValidInstance();
  body["tags"]["items"] = {"UPPER"};  // the array's pattern applies to its items
  EXPECT_TRUE(Check("POST", std::string(kZone) + "/instances", body).has_value());

  // Path parameter patterns, query parameter enums and types.
  e = Check("GET", "/compute/v1/projects/canopy-sim/zones/US_CENTRAL/instances");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, 400);
  EXPECT_TRUE(Check("GET", std::string(kZone) + "/instances?alt=xml").has_value());
  EXPECT_TRUE(Check("GET", std::string(kZone) + "/instances?maxResults=many").has_value());
  EXPECT_TRUE(Check("GET", std::string(kZone) + "/instances?returnPartialSuccess=maybe"));
  EXPECT_TRUE(Check("GET", std::string(kZone) + "/instances/x/serialPort?port=9").has_value());
}

TEST_F(DiscoveryTest, UnknownOrMissingParametersAreRefused) {
  // A missing required query parameter.
  auto e = Check("GET", std::string(kZone) + "/instances/canopy-1/getEffectiveFirewalls");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, 400);
  EXPECT_EQ(e->reason, "required");
  EXPECT_NE(e->message.find("networkInterface"), std::string::npos) << e->message;
  EXPECT_FALSE(Check("GET", std::string(kZone) +
                                "/instances/canopy-1/getEffectiveFirewalls?networkInterface=nic0"));

  // An unknown query parameter (requestId is only known where a method declares it).
  e = Check("GET", std::string(kZone) + "/instances?colour=blue");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, 400);
  EXPECT_NE(e->message.find("Unknown name \"colour\""), std::string::npos) << e->message;
  EXPECT_TRUE(Check("GET", std::string(kZone) + "/instances/x?requestId=abc").has_value());
  EXPECT_FALSE(Check("POST", std::string(kZone) + "/instances/x/stop?requestId=abc"));
  // A repeated non-repeated parameter.
  EXPECT_TRUE(Check("GET", std::string(kZone) + "/instances?filter=a&filter=b").has_value());

  // A field the schema annotates as required for the method.
  Json body = ValidInstance();
  body.erase("name");
  e = Check("POST", std::string(kZone) + "/instances", body);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->reason, "required");
  EXPECT_NE(e->message.find("'instance.name'"), std::string::npos) << e->message;
  body = ValidInstance();
  body["metadata"]["items"][0].erase("value");
  EXPECT_TRUE(Check("POST", std::string(kZone) + "/instances", body).has_value());
  // firewalls.patch requires the name in the body too (discovery annotation).
  EXPECT_TRUE(Check("PATCH", "/compute/v1/projects/canopy-sim/global/firewalls/canopy-1",
                    Json{{"sourceRanges", {"10.0.0.0/8"}}})
                  .has_value());
}

TEST_F(DiscoveryTest, ValidatesResponsesToo) {
  Json op = Json::parse(R"({"kind": "compute#operation", "id": "123", "name": "operation-1",
      "status": "DONE", "progress": 100, "operationType": "insert",
      "httpErrorStatusCode": 503, "httpErrorMessage": "SERVICE UNAVAILABLE",
      "error": {"errors": [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "no room"}]}})");
  EXPECT_FALSE(discovery_->ValidateValue("compute", "Operation", op, "operation"));
  op["progres"] = 1;
  EXPECT_TRUE(discovery_->ValidateValue("compute", "Operation", op, "operation"));
  EXPECT_EQ(discovery_->ResponseSchema("compute.instances.get"), "Instance");
  EXPECT_NE(discovery_->Method("iam.projects.serviceAccounts.keys.create"), nullptr);
  EXPECT_EQ(discovery_->Method("compute.nothing"), nullptr);
}

TEST(DiscoveryQuery, ParsesAndDecodes) {
  auto q = ParseQueryString("filter=labels.a%3D%22b%22&x&y=1+2&&z=%2F");
  ASSERT_TRUE(q.has_value());
  ASSERT_EQ(q->size(), 4u);
  EXPECT_EQ((*q)[0], (std::pair<std::string, std::string>{"filter", "labels.a=\"b\""}));
  EXPECT_EQ((*q)[1].first, "x");
  EXPECT_EQ((*q)[2].second, "1 2");
  EXPECT_EQ((*q)[3].second, "/");
  EXPECT_FALSE(ParseQueryString("a=%zz").has_value());
}

}  // namespace
}  // namespace canopy::sim
