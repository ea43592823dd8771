// The GCP provider without Google: adapter configuration, names, labels and request ids, the
// request bodies (instances.insert, firewalls.insert, setTags) checked as JSON, status mapping,
// host keys from guest attributes, and the provider's calls against a small in-test fake of
// Compute, Resource Manager, IAM and Secret Manager (idempotent create by label, capacity in a
// DONE operation, key pairs, firewalls, setTags races, cluster identity confinement).
#include "providers/gcp/gcp_provider.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>

#include "common/ids.h"
#include "providers/builtin.h"
#include "providers/gcp/gcp_factory.h"
#include "providers/gcp/gcp_test_support.h"
#include "providers/registry.h"
#include "providers/ssh_keys.h"
#include "support/test_util.h"

namespace canopy::providers::gcp {
namespace {

using namespace std::chrono_literals;
using testing::FakeGoogle;
using testing::GoogleErrorBody;
using testing::MakeKeyJson;

TEST(GcpFactory, DefaultsAndOptions) {
  auto d = ParseGcpOptions(Json::object());
  ASSERT_OK(d);
  EXPECT_EQ(d->default_region, "us-central1");
  EXPECT_EQ(d->network, "global/networks/default");
  EXPECT_EQ(d->host_key_source, HostKeySource::kGuestAttributes);
  EXPECT_EQ(d->endpoints.UrlFor("compute"), "https://compute.googleapis.com");
  EXPECT_EQ(d->image_families.size(), 4u);
  canopy::testing::TempDir dir;
  std::ofstream(dir.str() + "/p.csv") << "MachineType,vCPUs,MemoryGiB,AcceleratorName,"
                                         "AcceleratorCount,LocalSsdGiB,Region,PriceHour\n";
  auto c = ParseGcpOptions(Json{{"endpoint_url", "http://127.0.0.1:9"},
                                {"endpoints", {{"iam", "http://127.0.0.1:8"}}},
                                {"default_region", "europe-west1"},
                                {"zones", {{"europe-west1", "europe-west1-c"}}},
                                {"network", "canopy-net"},
                                {"subnetworks", {{"europe-west1", "canopy-sub"}}},
                                {"private_addresses", true},
                                {"image_families", {"debian-12", "cos-cloud/cos-stable"}},
                                {"price_catalog", dir.str() + "/p.csv"},
                                {"max_attempts", 2},
                                {"retry_base_ms", 7},
                                {"offers_ttl_s", 0},
                                {"host_key_source", "serial"},
                                {"operation_poll_ms", 50}});
  ASSERT_OK(c);
  EXPECT_EQ(c->endpoints.UrlFor("compute"), "http://127.0.0.1:9");
  EXPECT_EQ(c->endpoints.UrlFor("iam"), "http://127.0.0.1:8");
  EXPECT_EQ(c->endpoints.TokenUrl("https://oauth2.googleapis.com/token"),
            "http://127.0.0.1:9/token");
  EXPECT_EQ(c->default_region, "europe-west1");
  EXPECT_EQ(c->zones.at("europe-west1"), "europe-west1-c");
  EXPECT_EQ(c->network, "global/networks/canopy-net");
  EXPECT_EQ(c->subnetworks.at("europe-west1"), "canopy-sub");
  EXPECT_TRUE(c->private_addresses);
  EXPECT_EQ(c->retry.max_attempts, 2);
  EXPECT_EQ(c->retry.base, 7ms);
  EXPECT_EQ(c->offers_ttl, 0s);
  EXPECT_EQ(c->host_key_source, HostKeySource::kSerial);
  EXPECT_EQ(c->operations.poll, 50ms);
  auto path = ParseGcpOptions(Json{{"network", "global/networks/other"}});
  ASSERT_OK(path);
  EXPECT_EQ(path->network, "global/networks/other");
}

TEST(GcpFactory, BadConfigIsNamed) {
  for (const char* bad : {R"({"colour":"red"})",
                          R"({"endpoint_url":"ftp://x"})",
                          R"({"endpoint_url":3})",
                          R"({"endpoints":{"ec2":"http://x"}})",
                          R"({"endpoints":{"compute":"x"}})",
                          R"({"default_region":"US"})",
                          R"({"zones":{"us-central1":"europe-west1-b"}})",
                          R"({"zones":["us-central1-a"]})",
                          R"({"network":"../x"})",
                          R"({"subnetworks":{"us-central1":"A B"}})",
                          R"({"private_addresses":"yes"})",
                          R"({"image_families":["windows-2022"]})",
                          R"({"image_families":"debian-12"})",
                          R"({"price_catalog":"/no/such/file.csv"})",
                          R"({"max_attempts":0})",
                          R"({"retry_base_ms":100000})",
                          R"({"offers_ttl_s":-1})",
                          R"({"host_key_source":"console"})",
                          R"({"operation_poll_ms":0})",
                          R"([1])"}) {
    auto r = GcpProviderFactory().ValidateConfig(Json::parse(bad));
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad;
  }
}

TEST(GcpFactory, RegisteredAsBuiltin) {
  ProviderRegistry registry;
  ASSERT_OK(RegisterBuiltinProviders(registry));
  auto p = registry.Create("gcp", Json{{"endpoint_url", "http://127.0.0.1:1"}});
  ASSERT_OK(p);
  ProviderInfo info = (*p)->Info();
  EXPECT_EQ(info.type, "gcp");
  EXPECT_EQ(info.contract_versions, std::vector<int>{kContractVersion});
  EXPECT_EQ(info.capabilities, (std::vector<std::string>{"cluster_identity", "gpu"}));
}

bool Rfc1035(const std::string& s) {
  if (s.empty() || s.size() > 63 || s.front() < 'a' || s.front() > 'z' || s.back() == '-')
    return false;
  return s.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos;
}

TEST(GcpNames, ResourceNamesLabelsAndRequestIds) {
  for (const std::string& id :
       std::vector<std::string>{"w-abc-g0", "UPPER case/with spaces", std::string(300, 'x'), ""}) {
    std::string n = GcpProvider::ResourceName(id);
    EXPECT_TRUE(Rfc1035(n)) << n;
    EXPECT_EQ(n, "canopy-" + Sha256Hex(id).substr(0, 12));
  }
  EXPECT_NE(GcpProvider::ResourceName("a"), GcpProvider::ResourceName("b"));
  EXPECT_EQ(GcpProvider::LabelValue("wk-0123456789abcdef-g1"), "wk-0123456789abcdef-g1");
  EXPECT_EQ(GcpProvider::LabelValue(""), "");
  for (const std::string& v :
       std::vector<std::string>{"Has-Upper", "dots.are.not.ok", std::string(64, 'a'), "a b"}) {
    std::string l = GcpProvider::LabelValue(v);
    EXPECT_EQ(l, "h-" + Sha256Hex(v).substr(0, 40)) << v;
    EXPECT_LE(l.size(), 63u);
  }
  EXPECT_EQ(GcpProvider::LabelKey("canopy-cluster"), "canopy-cluster");
  EXPECT_EQ(GcpProvider::LabelKey("Name"), "name");
  EXPECT_EQ(GcpProvider::LabelKey("9lives.x"), "k9lives_x");
  EXPECT_EQ(GcpProvider::LabelKey(std::string(80, 'k')).size(), 63u);
  std::string rid = GcpProvider::RequestId("w-1", "idem");
  EXPECT_EQ(rid, GcpProvider::RequestId("w-1", "idem"));
  EXPECT_NE(rid, GcpProvider::RequestId("w-1", "idem2"));
  ASSERT_EQ(rid.size(), 36u);
  EXPECT_EQ(rid[8], '-');
  EXPECT_EQ(rid[14], '5');
  EXPECT_NE(std::string("89ab").find(rid[19]), std::string::npos);
  EXPECT_EQ(rid.substr(0, 8), Sha256Hex("w-1/idem").substr(0, 8));
  EXPECT_EQ(GcpProvider::KeyPairSecretId("canopy-cred1"), "canopy-keypair-canopy-cred1");
  std::string sa = GcpProvider::ClusterAccountId("cl-1");
  EXPECT_EQ(sa, "canopy-c-" + Sha256Hex("cl-1").substr(0, 10));
  EXPECT_GE(sa.size(), 6u);
  EXPECT_LE(sa.size(), 30u);
}

TEST(GcpStates, StatusMapping) {
  EXPECT_EQ(GcpProvider::StateOf("PROVISIONING"), InstanceState::kPending);
  EXPECT_EQ(GcpProvider::StateOf("STAGING"), InstanceState::kPending);
  EXPECT_EQ(GcpProvider::StateOf("RUNNING"), InstanceState::kRunning);
  EXPECT_EQ(GcpProvider::StateOf("STOPPING"), InstanceState::kStopping);
  EXPECT_EQ(GcpProvider::StateOf("SUSPENDING"), InstanceState::kStopping);
  EXPECT_EQ(GcpProvider::StateOf("TERMINATED"), InstanceState::kStopped);
  EXPECT_EQ(GcpProvider::StateOf("SUSPENDED"), InstanceState::kStopped);
  EXPECT_EQ(GcpProvider::StateOf("REPAIRING"), InstanceState::kPending);
}

GcpOptions Options(const std::string& url = "http://127.0.0.1:1") {
  auto o = ParseGcpOptions(Json{
      {"endpoint_url", url}, {"retry_base_ms", 1}, {"max_attempts", 3}, {"operation_poll_ms", 1}});
  EXPECT_TRUE(o.has_value());
  return *o;
}

TEST(GcpBodies, InstancesInsert) {
  GcpProvider p(Options());
  InstanceSpec spec;
  spec.canopy_id = "wk-1-g0";
  spec.idempotency_key = "wk-1-g0";
  spec.instance_type = "e2-small";
  spec.image = "projects/debian-cloud/global/images/debian-12-bookworm-v20240110";
  spec.disk_gb = 20;
  spec.firewalls = {"canopy-aaaaaaaaaaaa", "canopy-bbbbbbbbbbbb"};
  spec.tags = {{kClusterTag, "cl-1"}, {"Name", "Worker One"}};
  Json body = p.InstanceBody(spec, "us-central1", "us-central1-a", "admin", "ssh-ed25519 AAAAC3x");
  Json expected = Json::parse(R"({
    "name": ")" + GcpProvider::ResourceName("wk-1-g0") +
                              R"(",
    "description": "canopy-id=wk-1-g0",
    "machineType": "zones/us-central1-a/machineTypes/e2-small",
    "disks": [{"boot": true, "autoDelete": true, "initializeParams": {
      "sourceImage": "projects/debian-cloud/global/images/debian-12-bookworm-v20240110",
      "diskSizeGb": "20"}}],
    "networkInterfaces": [{"network": "global/networks/default",
      "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]}],
    "metadata": {"items": [
      {"key": "ssh-keys", "value": "admin:ssh-ed25519 AAAAC3x admin"},
      {"key": "enable-guest-attributes", "value": "TRUE"}]},
    "labels": {"canopy-id": "wk-1-g0", "canopy-cluster": "cl-1", "canopy-ssh-user": "admin",
               "name": ")" + GcpProvider::LabelValue("Worker One") +
                              R"("},
    "tags": {"items": ["canopy-aaaaaaaaaaaa", "canopy-bbbbbbbbbbbb"]}
  })");
  EXPECT_EQ(body, expected) << body.dump(2);

  // Private addresses, a subnetwork, a tiny disk and no key pair.
  auto o = Options();
  o.private_addresses = true;
  o.subnetworks["us-central1"] = "canopy-sub";
  GcpProvider priv(o);
  spec.disk_gb = 1;
  spec.firewalls.clear();
  Json b2 = priv.InstanceBody(spec, "us-central1", "us-central1-a", "admin", "");
  EXPECT_EQ(b2["networkInterfaces"], Json::parse(R"([{"network":"global/networks/default",
                             "subnetwork":"regions/us-central1/subnetworks/canopy-sub"}])"));
  EXPECT_EQ(b2["disks"][0]["initializeParams"]["diskSizeGb"], "10");
  EXPECT_EQ(b2["metadata"]["items"],
            Json::parse(R"([{"key":"enable-guest-attributes","value":"TRUE"}])"));
  EXPECT_EQ(b2["tags"], Json::parse(R"({"items":[]})"));
}

TEST(GcpBodies, FirewallsInsertAndSetTags) {
  GcpProvider p(Options());
  FirewallSpec spec{"cl-1-api",
                    "api",
                    {FirewallRule{8443, "tcp", {}}, FirewallRule{53, "udp", {}}},
                    {{kClusterTag, "cl-1"}}};
  auto bodies = p.FirewallBodies(spec, "cl-1");
  ASSERT_OK(bodies);
  ASSERT_EQ(bodies->size(), 1u);
  const Json* body = &bodies->front();
  const std::string name = GcpProvider::ResourceName("cl-1-api");
  EXPECT_EQ(*body, Json::parse(R"({
    "name": ")" + name + R"(",
    "network": "global/networks/default",
    "direction": "INGRESS",
    "priority": 1000,
    "allowed": [{"IPProtocol": "tcp", "ports": ["8443"]}, {"IPProtocol": "udp", "ports": ["53"]}],
    "sourceRanges": ["0.0.0.0/0"],
    "targetTags": [")" + name + R"("],
    "description": "canopy-id=cl-1-api; cluster=cl-1"})"))
      << body->dump(2);
  FirewallSpec cidrs{"x",
                     "x",
                     {FirewallRule{22, "tcp", {"10.0.0.0/8", "192.168.0.0/16"}},
                      FirewallRule{80, "tcp", {"192.168.0.0/16", "10.0.0.0/8"}}},
                     {}};
  auto b2 = p.FirewallBodies(cidrs, "");
  ASSERT_OK(b2);
  ASSERT_EQ(b2->size(), 1u);
  EXPECT_EQ((*b2)[0]["sourceRanges"], Json::parse(R"(["10.0.0.0/8","192.168.0.0/16"])"));
  EXPECT_EQ((*b2)[0]["description"], "canopy-id=x; cluster=");
  // Two source lists: two VPC rules, the second named "<id>-s1", both targeting the tag <id>.
  auto two = p.FirewallBodies(
      FirewallSpec{
          "x", "x", {FirewallRule{22, "tcp", {"10.0.0.0/8"}}, FirewallRule{80, "tcp", {}}}, {}},
      "");
  ASSERT_OK(two);
  ASSERT_EQ(two->size(), 2u);
  const std::string x = GcpProvider::ResourceName("x");
  EXPECT_EQ((*two)[0]["name"], x);
  EXPECT_EQ((*two)[1]["name"], x + "-s1");
  for (const Json& b : *two) EXPECT_EQ(b["targetTags"], Json::array({x}));
  EXPECT_EQ((*two)[0]["sourceRanges"], Json::parse(R"(["0.0.0.0/0"])"));
  EXPECT_EQ((*two)[1]["sourceRanges"], Json::parse(R"(["10.0.0.0/8"])"));
  // No rules, bad ports and protocols, bad ranges.
  for (const FirewallSpec& bad :
       {FirewallSpec{"x", "x", {}, {}}, FirewallSpec{"x", "x", {FirewallRule{0, "tcp", {}}}, {}},
        FirewallSpec{"x", "x", {FirewallRule{1, "icmp", {}}}, {}},
        FirewallSpec{"x", "x", {FirewallRule{1, "tcp", {"1.2.3.4/32; rm"}}}, {}}}) {
    auto r = p.FirewallBodies(bad, "");
    ASSERT_FALSE(r);
    EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kInvalidRequest);
  }
  EXPECT_EQ(GcpProvider::SetTagsBody({"canopy-a", "canopy-b"}, "42WmSpB8rSM="),
            Json::parse(R"({"items":["canopy-a","canopy-b"],"fingerprint":"42WmSpB8rSM="})"));
}

TEST(GcpHostKeys, GuestAttributesPreferEd25519) {
  auto ed = GenerateEd25519("host");
  ASSERT_OK(ed);
  const std::string ed_b64 = ed->public_key.substr(12);
  auto other = GenerateEd25519("other");
  ASSERT_OK(other);
  // The ECDSA/RSA entries only need to be valid SSH blobs here: reuse another Ed25519 blob.
  Json ga{
      {"kind", "compute#guestAttributes"},
      {"queryPath", "hostkeys/"},
      {"queryValue",
       {{"items",
         {{{"namespace", "hostkeys"}, {"key", "ssh-rsa"}, {"value", other->public_key.substr(12)}},
          {{"namespace", "hostkeys"}, {"key", "ssh-ed25519"}, {"value", ed_b64}},
          {{"namespace", "other"}, {"key", "ssh-ed25519"}, {"value", "AAAA"}}}}}}};
  EXPECT_EQ(GcpProvider::HostKeyFromGuestAttributes(ga), ed->fingerprint);
  ga["queryValue"]["items"].erase(1);
  EXPECT_EQ(GcpProvider::HostKeyFromGuestAttributes(ga), other->fingerprint);
  EXPECT_EQ(GcpProvider::HostKeyFromGuestAttributes(Json::object()), "");
  EXPECT_EQ(
      GcpProvider::HostKeyFromGuestAttributes(Json{
          {"queryValue",
           {{"items",
             {{{"namespace", "hostkeys"}, {"key", "ssh-ed25519"}, {"value", "not base64!"}}}}}}}),
      "");
}

TEST(GcpInstances, FromComputeResource) {
  Json g = Json::parse(R"({
    "kind": "compute#instance", "name": "canopy-0123456789ab", "status": "RUNNING",
    "zone": "https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-a",
    "description": "canopy-id=wk-1-g0",
    "networkInterfaces": [{"networkIP": "10.128.0.5",
      "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "natIP": "34.1.2.3"}]}],
    "labels": {"canopy-id": "wk-1-g0", "canopy-cluster": "cl-1", "canopy-ssh-user": "ubuntu"},
    "tags": {"items": ["canopy-aaaaaaaaaaaa"], "fingerprint": "f1"},
    "metadata": {"items": [{"key": "ssh-keys", "value": "ubuntu:ssh-ed25519 AAAA ubuntu"}]}})");
  GcpProvider p(Options());
  Instance i = p.FromGce(g);
  EXPECT_EQ(i.provider_id, "canopy-0123456789ab");
  EXPECT_EQ(i.state, InstanceState::kRunning);
  EXPECT_EQ(i.address, "34.1.2.3");
  EXPECT_EQ(i.private_address, "10.128.0.5");
  EXPECT_EQ(i.canopy_id, "wk-1-g0");
  EXPECT_EQ(i.tags.at(kClusterTag), "cl-1");
  EXPECT_EQ(i.ssh_user, "ubuntu");
  EXPECT_EQ(i.firewalls, std::vector<std::string>{"canopy-aaaaaaaaaaaa"});
  EXPECT_EQ(i.handle.data, (Json{{"name", "canopy-0123456789ab"}, {"zone", "us-central1-a"}}));
  // A canopy id too long for a label: the description keeps it exactly.
  std::string long_id(80, 'w');
  g["description"] = "canopy-id=" + long_id;
  g["labels"]["canopy-id"] = GcpProvider::LabelValue(long_id);
  g["labels"].erase("canopy-ssh-user");
  g["networkInterfaces"][0].erase("accessConfigs");
  i = p.FromGce(g);
  EXPECT_EQ(i.canopy_id, long_id);
  EXPECT_EQ(i.tags.at(kCanopyIdTag), long_id);
  EXPECT_EQ(i.ssh_user, "ubuntu");  // from the ssh-keys metadata
  EXPECT_EQ(i.address, "10.128.0.5");
  auto o = Options();
  o.private_addresses = true;
  g["networkInterfaces"][0]["accessConfigs"] = Json::parse(R"([{"natIP":"34.1.2.3"}])");
  EXPECT_EQ(GcpProvider(o).FromGce(g).address, "10.128.0.5");
  EXPECT_EQ(p.DefaultSshUser("projects/ubuntu-os-cloud/global/images/ubuntu-2204-jammy-v1"),
            "ubuntu");
  EXPECT_EQ(p.DefaultSshUser("projects/debian-cloud/global/images/debian-12-bookworm-v1"), "admin");
}

// ---------------------------------------------------------------------------------------------
// A small fake of the Google APIs the provider calls, for the flows. Every operation it answers
// is RUNNING first and DONE on the first poll.

class FakeGcp {
 public:
  FakeGcp() {
    auto& r = g.router();
    const std::string c = "/compute/v1/projects/{p}/";
    r.Add("GET", c + "regions", [this](const net::Request& q) {
      Log(q);
      return Ok(Json::parse(R"({"items":[
        {"name":"us-central1","status":"UP","zones":[
          "https://www.googleapis.com/compute/v1/projects/proj-1/zones/us-central1-b",
          "https://www.googleapis.com/compute/v1/projects/proj-1/zones/us-central1-a"]},
        {"name":"europe-west1","status":"UP","zones":[
          "https://www.googleapis.com/compute/v1/projects/proj-1/zones/europe-west1-b"]}]})"));
    });
    r.Add("GET", c + "zones/{z}/machineTypes", [this](const net::Request& q) {
      Log(q);
      if (q.Query("pageToken").empty()) {
        return Ok(Json::parse(R"({"items":[
          {"name":"e2-small","guestCpus":2,"memoryMb":2048},
          {"name":"old-1","guestCpus":1,"memoryMb":1024,"deprecated":{"state":"OBSOLETE"}}],
          "nextPageToken":"p2"})"));
      }
      return Ok(Json::parse(R"({"items":[{"name":"a2-highgpu-1g","guestCpus":12,
        "memoryMb":87040,"accelerators":[{"guestAcceleratorType":"nvidia-tesla-a100",
        "guestAcceleratorCount":1}]}]})"));
    });
    r.Add("GET", "/compute/v1/projects/{p}/global/images/family/{f}",
          [this](const net::Request& q) {
            Log(q);
            if (q.Param("f") != "debian-12") return Error(404, "notFound", "no family");
            return Ok(
                Json{{"name", "debian-12-bookworm-v20240110"},
                     {"family", "debian-12"},
                     {"status", "READY"},
                     {"selfLink",
                      "https://www.googleapis.com/compute/v1/projects/debian-cloud/global/images/"
                      "debian-12-bookworm-v20240110"}});
          });
    r.Add("GET", c + "zones/{z}/instances", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      // filter=labels.KEY="VALUE"
      std::string f = q.Query("filter");
      auto eq = f.find('=');
      std::string key = f.substr(7, eq - 7), value = f.substr(eq + 2, f.size() - eq - 3);
      Json items = Json::array();
      for (const auto& [name, i] : instances) {
        if (i["zone"].get<std::string>().ends_with("/" + q.Param("z")) &&
            i["labels"].value(key, "") == value)
          items.push_back(i);
      }
      return Ok(Json{{"items", items}});
    });
    r.Add("POST", c + "zones/{z}/instances", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      Json body = Json::parse(q.body);
      std::string name = body["name"];
      if (instances.count(name)) return Error(409, "alreadyExists", "exists");
      if (!fail_insert.empty()) {
        std::string code = fail_insert;
        fail_insert.clear();
        return Ok(Operation(q.Param("z"), Json{{"errors", {{{"code", code}, {"message", "m"}}}}}));
      }
      body["status"] = "RUNNING";
      body["zone"] = "https://www.googleapis.com/compute/v1/projects/proj-1/zones/" + q.Param("z");
      body["networkInterfaces"][0]["networkIP"] = "10.128.0.2";
      if (body["networkInterfaces"][0].contains("accessConfigs"))
        body["networkInterfaces"][0]["accessConfigs"][0]["natIP"] = "34.0.0.2";
      body["tags"]["fingerprint"] = "fp-0";
      instances[name] = body;
      return Ok(Operation(q.Param("z")));
    });
    r.Add("GET", c + "zones/{z}/instances/{i}", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      auto it = instances.find(q.Param("i"));
      if (it == instances.end()) return Error(404, "notFound", "no instance");
      return Ok(it->second);
    });
    r.Add("DELETE", c + "zones/{z}/instances/{i}", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      if (!instances.erase(q.Param("i"))) return Error(404, "notFound", "no instance");
      return Ok(Operation(q.Param("z")));
    });
    for (const char* action : {"stop", "start"}) {
      r.Add("POST", c + "zones/{z}/instances/{i}/" + action, [this, action](const net::Request& q) {
        Log(q);
        std::lock_guard lock(mu);
        auto it = instances.find(q.Param("i"));
        if (it == instances.end()) return Error(404, "notFound", "no instance");
        it->second["status"] = std::string(action) == "stop" ? "TERMINATED" : "RUNNING";
        return Ok(Operation(q.Param("z")));
      });
    }
    r.Add("POST", c + "zones/{z}/instances/{i}/setTags", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      auto it = instances.find(q.Param("i"));
      if (it == instances.end()) return Error(404, "notFound", "no instance");
      Json body = Json::parse(q.body);
      if (race_set_tags > 0) {  // someone else changed the tags just before
        --race_set_tags;
        it->second["tags"]["fingerprint"] = "fp-raced-" + std::to_string(race_set_tags);
      }
      if (body["fingerprint"] != it->second["tags"]["fingerprint"])
        return Error(412, "conditionNotMet", "Supplied fingerprint does not match");
      it->second["tags"] = Json{{"items", body["items"]}, {"fingerprint", "fp-" + RandomHex(4)}};
      return Ok(Operation(q.Param("z")));
    });
    r.Add("GET", c + "zones/{z}/instances/{i}/getGuestAttributes", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      if (guest_404s > 0) {
        --guest_404s;
        return Error(404, "notFound", "The resource 'hostkeys/' was not found");
      }
      return Ok(Json{{"queryPath", q.Query("queryPath")},
                     {"queryValue",
                      {{"items",
                        {{{"namespace", "hostkeys"},
                          {"key", "ssh-ed25519"},
                          {"value", host_key.substr(12)}}}}}}});
    });
    r.Add("GET", c + "zones/{z}/operations/{op}", [this](const net::Request& q) {
      Log(q);
      return Done(q.Param("op"));
    });
    r.Add("GET", c + "global/operations/{op}", [this](const net::Request& q) {
      Log(q);
      return Done(q.Param("op"));
    });
    r.Add("GET", c + "global/firewalls/{f}", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      auto it = firewalls.find(q.Param("f"));
      if (it == firewalls.end()) return Error(404, "notFound", "no firewall");
      return Ok(it->second);
    });
    r.Add("POST", c + "global/firewalls", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      Json body = Json::parse(q.body);
      if (firewalls.count(body["name"])) return Error(409, "alreadyExists", "exists");
      firewalls[body["name"]] = body;
      return Ok(Operation(""));
    });
    r.Add("PATCH", c + "global/firewalls/{f}", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      auto it = firewalls.find(q.Param("f"));
      if (it == firewalls.end()) return Error(404, "notFound", "no firewall");
      it->second.update(Json::parse(q.body));
      return Ok(Operation(""));
    });
    r.Add("DELETE", c + "global/firewalls/{f}", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      if (!firewalls.erase(q.Param("f"))) return Error(404, "notFound", "no firewall");
      return Ok(Operation(""));
    });
    // Secret Manager.
    r.Add("POST", "/v1/projects/{p}/secrets", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      std::string id = q.Query("secretId");
      if (secrets.count(id))
        return Error(409, "alreadyExists", "Secret already exists", "ALREADY_EXISTS");
      secrets[id] = {};
      return Ok(Json{{"name", "projects/proj-1/secrets/" + id}});
    });
    r.Add("POST", "/v1/projects/{p}/secrets/{s}", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      std::string s = q.Param("s");
      auto colon = s.find(":addVersion");
      if (colon == std::string::npos) return Error(404, "notFound", "no method");
      auto it = secrets.find(s.substr(0, colon));
      if (it == secrets.end()) return Error(404, "notFound", "no secret", "NOT_FOUND");
      it->second.push_back(Json::parse(q.body)["payload"]["data"]);
      return Ok(Json{{"name", "v"}});
    });
    r.Add("GET", "/v1/projects/{p}/secrets/{s}/versions/{v}", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      auto it = secrets.find(q.Param("s"));
      if (it == secrets.end() || it->second.empty() || q.Param("v") != "latest:access")
        return Error(404, "notFound", "no version", "NOT_FOUND");
      return Ok(Json{{"name", "v"}, {"payload", {{"data", it->second.back()}}}});
    });
    // Resource Manager.
    r.Add("GET", "/v1/projects/{p}", [this](const net::Request& q) {
      Log(q);
      if (q.Param("p") != "proj-1") return Error(403, "forbidden", "denied", "PERMISSION_DENIED");
      return Ok(
          Json{{"projectId", "proj-1"}, {"projectNumber", "1"}, {"lifecycleState", "ACTIVE"}});
    });
    r.Add("POST", "/v1/projects/{p}", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      std::string p = q.Param("p");
      if (p.ends_with(":getIamPolicy")) return Ok(policy);
      if (!p.ends_with(":setIamPolicy")) return Error(404, "notFound", "no method");
      Json body = Json::parse(q.body);
      if (body["policy"]["etag"] != policy["etag"]) return Error(409, "aborted", "etag", "ABORTED");
      policy = body["policy"];
      policy["etag"] = "e-" + RandomHex(4);
      return Ok(policy);
    });
    // IAM.
    r.Add("POST", "/v1/projects/{p}/serviceAccounts", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      Json body = Json::parse(q.body);
      std::string email = body["accountId"].get<std::string>() + "@proj-1.iam.gserviceaccount.com";
      if (accounts.count(email)) return Error(409, "alreadyExists", "exists", "ALREADY_EXISTS");
      accounts[email] = Json{{"email", email},
                             {"name", "projects/proj-1/serviceAccounts/" + email},
                             {"description", body["serviceAccount"]["description"]}};
      return Ok(accounts[email]);
    });
    r.Add("GET", "/v1/projects/{p}/serviceAccounts/{e}", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      auto it = accounts.find(q.Param("e"));
      if (it == accounts.end())
        return Error(404, "notFound", "Unknown service account", "NOT_FOUND");
      return Ok(it->second);
    });
    r.Add("DELETE", "/v1/projects/{p}/serviceAccounts/{e}", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      if (!accounts.erase(q.Param("e")))
        return Error(404, "notFound", "Unknown service account", "NOT_FOUND");
      return Ok(Json::object());
    });
    r.Add("POST", "/v1/projects/{p}/serviceAccounts/{e}/keys", [this](const net::Request& q) {
      Log(q);
      std::lock_guard lock(mu);
      if (!accounts.count(q.Param("e"))) return Error(404, "notFound", "Unknown service account");
      Json file = MakeKeyJson(token_uri, "proj-1", q.Param("e"));
      return Ok(Json{{"name", "projects/proj-1/serviceAccounts/" + q.Param("e") + "/keys/k1"},
                     {"privateKeyType", "TYPE_GOOGLE_CREDENTIALS_FILE"},
                     {"privateKeyData", Base64Encode(file.dump())}});
    });
    g.Start();
    token_uri = g.url() + "/token";
  }

  net::Response Ok(const Json& j) { return net::Response::FromJson(200, j); }
  net::Response Error(int code, const std::string& reason, const std::string& message,
                      const std::string& status = "") {
    return net::Response::Text(code, GoogleErrorBody(code, reason, message, status),
                               "application/json");
  }
  Json Operation(const std::string& zone, Json error = nullptr) {
    std::string name = "operation-" + RandomHex(6);
    Json op{{"kind", "compute#operation"}, {"name", name}, {"status", "RUNNING"}};
    if (!zone.empty())
      op["zone"] = "https://www.googleapis.com/compute/v1/projects/proj-1/zones/" + zone;
    Json done = op;
    done["status"] = "DONE";
    if (!error.is_null()) {
      done["error"] = error;
      done["httpErrorStatusCode"] = 503;
    }
    operations[name] = done;
    return op;
  }
  net::Response Done(const std::string& name) {
    std::lock_guard lock(mu);
    auto it = operations.find(name);
    if (it == operations.end()) return Error(404, "notFound", "no operation");
    return Ok(it->second);
  }
  void Log(const net::Request& q) {
    std::lock_guard lock(mu);
    log.push_back(q.method + " " + q.target);
    bodies.push_back(q.body);
  }
  int Count(const std::string& prefix) {
    std::lock_guard lock(mu);
    return static_cast<int>(std::count_if(
        log.begin(), log.end(), [&](const std::string& l) { return l.rfind(prefix, 0) == 0; }));
  }

  FakeGoogle g;
  std::string token_uri;
  std::mutex mu;
  std::map<std::string, Json> instances, firewalls, operations, accounts;
  std::map<std::string, std::vector<Json>> secrets;
  Json policy = Json{{"version", 1}, {"etag", "e0"}, {"bindings", Json::array()}};
  std::string fail_insert;
  int race_set_tags = 0;
  int guest_404s = 0;
  std::string host_key;
  std::vector<std::string> log, bodies;
};

class GcpProviderFlows : public ::testing::Test {
 protected:
  void SetUp() override {
    auto hk = GenerateEd25519("host");
    ASSERT_OK(hk);
    fake_.host_key = hk->public_key;
    host_fp_ = hk->fingerprint;
    ctx_ = CallContext{CredentialSecret(MakeKeyJson(fake_.token_uri)), "us-central1"};
  }
  InstanceSpec Spec(const std::string& cid) {
    InstanceSpec s;
    s.canopy_id = cid;
    s.idempotency_key = cid;
    s.instance_type = "e2-small";
    s.image = "projects/debian-cloud/global/images/debian-12-bookworm-v20240110";
    s.key_pair = "kp";
    return s;
  }
  FakeGcp fake_;
  GcpProvider p_{Options(fake_.g.url())};
  CallContext ctx_;
  std::string host_fp_;
};

TEST_F(GcpProviderFlows, CredentialValidation) {
  EXPECT_OK(p_.ValidateCredential(ctx_));
  Json other = MakeKeyJson(fake_.token_uri, "proj-2");
  auto r = p_.ValidateCredential(CallContext{CredentialSecret(other), ""});
  ASSERT_FALSE(r);
  EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kAuth);
  EXPECT_NE(r.error().message.find("proj-2"), std::string::npos);
  fake_.g.set_token_status(400);
  auto refused = p_.ValidateCredential(
      CallContext{CredentialSecret(MakeKeyJson(fake_.token_uri, "proj-1", "new@x.y")), ""});
  ASSERT_FALSE(refused);
  EXPECT_EQ(KindOf(refused.error()), ProviderErrorKind::kAuth);
  auto malformed = p_.ValidateCredential(CallContext{CredentialSecret(Json{{"a", "b"}}), ""});
  ASSERT_FALSE(malformed);
  EXPECT_EQ(KindOf(malformed.error()), ProviderErrorKind::kInvalidRequest);
}

TEST_F(GcpProviderFlows, OffersFromRegionsMachineTypesAndFamilies) {
  canopy::testing::TempDir dir;
  std::ofstream(dir.str() + "/p.csv")
      << "MachineType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,LocalSsdGiB,Region,"
         "PriceHour,SpotPriceHour\n"
         "e2-small,2,2,,,,us-central1,0.016751,0.005\n"
         "e2-small,2,2,,,,europe-west1,0.018,0.006\n";
  auto o = Options(fake_.g.url());
  o.price_catalog = dir.str() + "/p.csv";
  GcpProvider p(o);
  auto offers = p.ListOffers(ctx_);
  ASSERT_OK(offers);
  EXPECT_EQ(offers->regions, (std::vector<std::string>{"europe-west1", "us-central1"}));
  ASSERT_EQ(offers->instance_types.size(), 2u);
  const InstanceType& gpu = offers->instance_types[0];
  EXPECT_EQ(gpu.name, "a2-highgpu-1g");
  EXPECT_EQ(gpu.gpus, 1);
  EXPECT_EQ(gpu.memory_mib, 87040);
  EXPECT_FALSE(gpu.price_hour.has_value());
  EXPECT_NE(gpu.price_note.find("not in the offline catalog"), std::string::npos);
  const InstanceType& small = offers->instance_types[1];
  EXPECT_EQ(small.vcpus, 2);
  ASSERT_TRUE(small.price_hour.has_value());
  EXPECT_DOUBLE_EQ(*small.price_hour, 0.016751);
  ASSERT_EQ(offers->images.size(), 1u);
  EXPECT_EQ(offers->images[0].id,
            "projects/debian-cloud/global/images/debian-12-bookworm-v20240110");
  // The instance zone is the region's first by name; machine types paged with maxResults.
  EXPECT_EQ(fake_.Count("GET /compute/v1/projects/proj-1/zones/us-central1-a/machineTypes?"
                        "maxResults=500"),
            2);
  EXPECT_EQ(fake_.Count("GET /compute/v1/projects/ubuntu-os-cloud/global/images/family/"
                        "ubuntu-2204-lts"),
            1);
  // Cached.
  ASSERT_OK(p.ListOffers(ctx_));
  EXPECT_EQ(fake_.Count("GET /compute/v1/projects/proj-1/regions"), 1);
  auto q = p.GetQuote(ctx_, "e2-small", 3);
  ASSERT_OK(q);
  EXPECT_NEAR(*q->price_hour_total, 3 * 0.016751, 1e-12);
  auto bad = p.GetQuote(ctx_, "n9-huge", 1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(KindOf(bad.error()), ProviderErrorKind::kInvalidRequest);
}

TEST_F(GcpProviderFlows, KeyPairsLiveInSecretManager) {
  auto missing = p_.GetKeyPair(ctx_, "kp");
  ASSERT_FALSE(missing);
  EXPECT_EQ(KindOf(missing.error()), ProviderErrorKind::kNotFound);
  auto a = p_.CreateKeyPair(ctx_, "kp");
  ASSERT_OK(a);
  EXPECT_EQ(a->public_key.rfind("ssh-ed25519 ", 0), 0u);
  EXPECT_EQ(a->private_key.Reveal().rfind("-----BEGIN OPENSSH PRIVATE KEY-----", 0), 0u);
  auto b = p_.CreateKeyPair(ctx_, "kp");
  ASSERT_OK(b);
  EXPECT_EQ(a->private_key.Reveal(), b->private_key.Reveal());
  auto got = p_.GetKeyPair(ctx_, "kp");
  ASSERT_OK(got);
  EXPECT_EQ(got->fingerprint, a->fingerprint);
  EXPECT_EQ(fake_.Count("POST /v1/projects/proj-1/secrets?secretId=canopy-keypair-kp"), 1);
  EXPECT_EQ(fake_.Count("POST /v1/projects/proj-1/secrets/canopy-keypair-kp:addVersion"), 1);
  // A secret left without a version by a crash gets one.
  {
    std::lock_guard lock(fake_.mu);
    fake_.secrets["canopy-keypair-crashed"] = {};
  }
  auto healed = p_.CreateKeyPair(ctx_, "crashed");
  ASSERT_OK(healed);
  EXPECT_OK(p_.GetKeyPair(ctx_, "crashed"));
  auto bad = p_.CreateKeyPair(ctx_, "a/b");
  ASSERT_FALSE(bad);
  EXPECT_EQ(KindOf(bad.error()), ProviderErrorKind::kInvalidRequest);
}

TEST_F(GcpProviderFlows, InstanceLifecycleIsIdempotentByLabel) {
  ASSERT_OK(p_.CreateKeyPair(ctx_, "kp"));
  auto spec = Spec("wk-1-g0");
  spec.tags[kClusterTag] = "cl-1";
  auto a = p_.CreateInstance(ctx_, spec);
  ASSERT_OK(a);
  EXPECT_EQ(a->canopy_id, "wk-1-g0");
  EXPECT_EQ(a->tags.at(kCanopyIdTag), "wk-1-g0");
  EXPECT_EQ(a->address, "34.0.0.2");
  EXPECT_EQ(a->ssh_user, "admin");
  EXPECT_EQ(a->handle.data["zone"], "us-central1-a");
  const std::string filter = "filter=labels.canopy-id%3D%22wk-1-g0%22";
  EXPECT_EQ(fake_.Count("GET /compute/v1/projects/proj-1/zones/us-central1-a/instances?" + filter),
            1);
  EXPECT_EQ(fake_.Count("POST /compute/v1/projects/proj-1/zones/us-central1-a/instances?"
                        "requestId=" +
                        GcpProvider::RequestId("wk-1-g0", "wk-1-g0")),
            1);
  {
    std::lock_guard lock(fake_.mu);
    Json inst = fake_.instances.at(GcpProvider::ResourceName("wk-1-g0"));
    std::string keys = inst["metadata"]["items"][0]["value"];
    EXPECT_EQ(keys.rfind("admin:ssh-ed25519 AAAA", 0), 0u) << keys;
  }
  auto b = p_.CreateInstance(ctx_, spec);
  ASSERT_OK(b);
  EXPECT_EQ(b->provider_id, a->provider_id);
  EXPECT_EQ(fake_.Count("POST /compute/v1/projects/proj-1/zones/us-central1-a/instances?"), 1);
  auto found = p_.FindInstancesByTag(ctx_, kClusterTag, "cl-1");
  ASSERT_OK(found);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ(fake_.Count("GET /compute/v1/projects/proj-1/zones/us-central1-b/instances?"), 1);

  fake_.guest_404s = 1;
  auto running = p_.WaitUntilRunning(ctx_, a->handle, 20s);
  ASSERT_OK(running);
  EXPECT_EQ(running->host_key_sha256, host_fp_);
  EXPECT_EQ(fake_.Count("GET /compute/v1/projects/proj-1/zones/us-central1-a/instances/" +
                        a->provider_id + "/getGuestAttributes?queryPath=hostkeys%2F"),
            2);

  ASSERT_OK(p_.StopInstance(ctx_, a->handle));
  auto stopped = p_.DescribeInstance(ctx_, a->handle);
  ASSERT_OK(stopped);
  EXPECT_EQ(stopped->state, InstanceState::kStopped);
  ASSERT_OK(p_.StartInstance(ctx_, a->handle));
  EXPECT_EQ(fake_.Count("POST /compute/v1/projects/proj-1/zones/us-central1-a/instances/" +
                        a->provider_id + "/stop?requestId="),
            1);
  ASSERT_OK(p_.TerminateInstance(ctx_, a->handle));
  ASSERT_OK(p_.TerminateInstance(ctx_, a->handle));
  auto gone = p_.DescribeInstance(ctx_, a->handle);
  ASSERT_FALSE(gone);
  EXPECT_EQ(KindOf(gone.error()), ProviderErrorKind::kNotFound);
  auto none = p_.FindInstancesByTag(ctx_, kCanopyIdTag, "wk-1-g0");
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
}

TEST_F(GcpProviderFlows, CapacityAndQuotaInTheDoneOperation) {
  ASSERT_OK(p_.CreateKeyPair(ctx_, "kp"));
  fake_.fail_insert = "ZONE_RESOURCE_POOL_EXHAUSTED";
  auto r = p_.CreateInstance(ctx_, Spec("cap-1"));
  ASSERT_FALSE(r);
  EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kCapacity);
  fake_.fail_insert = "QUOTA_EXCEEDED";
  r = p_.CreateInstance(ctx_, Spec("cap-1"));
  ASSERT_FALSE(r);
  EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kQuota);
  EXPECT_OK(p_.CreateInstance(ctx_, Spec("cap-1")));
  // A missing key pair and a malformed image are the caller's.
  auto spec = Spec("x");
  spec.key_pair = "nope";
  EXPECT_EQ(KindOf(p_.CreateInstance(ctx_, spec).error()), ProviderErrorKind::kInvalidRequest);
  spec = Spec("x");
  spec.image = "ami-123";
  EXPECT_EQ(KindOf(p_.CreateInstance(ctx_, spec).error()), ProviderErrorKind::kInvalidRequest);
}

TEST_F(GcpProviderFlows, FirewallsConvergeAndAttachThroughTags) {
  ASSERT_OK(p_.CreateKeyPair(ctx_, "kp"));
  auto inst = p_.CreateInstance(ctx_, Spec("wk-2-g0"));
  ASSERT_OK(inst);
  FirewallSpec spec{"ssh-cred1", "ssh", {FirewallRule{22, "tcp", {}}}, {}};
  auto a = p_.CreateFirewall(ctx_, spec);
  ASSERT_OK(a);
  EXPECT_EQ(a->id, GcpProvider::ResourceName("ssh-cred1"));
  auto b = p_.CreateFirewall(ctx_, spec);
  ASSERT_OK(b);
  EXPECT_EQ(b->id, a->id);
  EXPECT_EQ(fake_.Count("POST /compute/v1/projects/proj-1/global/firewalls?requestId="), 1);
  EXPECT_EQ(fake_.Count("PATCH "), 0);
  spec.rules.push_back(FirewallRule{2222, "tcp", {}});
  ASSERT_OK(p_.CreateFirewall(ctx_, spec));
  EXPECT_EQ(fake_.Count("PATCH /compute/v1/projects/proj-1/global/firewalls/" + a->id), 1);
  {
    std::lock_guard lock(fake_.mu);
    EXPECT_EQ(fake_.firewalls[a->id]["allowed"].size(), 2u);
  }
  auto exists = p_.FirewallExists(ctx_, a->id);
  ASSERT_OK(exists);
  EXPECT_TRUE(*exists);

  fake_.race_set_tags = 1;
  ASSERT_OK(p_.AttachFirewall(ctx_, inst->handle, a->id));
  ASSERT_OK(p_.AttachFirewall(ctx_, inst->handle, a->id));
  auto desc = p_.DescribeInstance(ctx_, inst->handle);
  ASSERT_OK(desc);
  EXPECT_EQ(std::count(desc->firewalls.begin(), desc->firewalls.end(), a->id), 1);
  EXPECT_EQ(fake_.Count("POST /compute/v1/projects/proj-1/zones/us-central1-a/instances/" +
                        inst->provider_id + "/setTags"),
            2);  // one raced (412), one applied
  ASSERT_OK(p_.DetachFirewall(ctx_, inst->handle, a->id));
  ASSERT_OK(p_.DetachFirewall(ctx_, inst->handle, a->id));
  desc = p_.DescribeInstance(ctx_, inst->handle);
  ASSERT_OK(desc);
  EXPECT_TRUE(desc->firewalls.empty());
  ASSERT_OK(p_.DeleteFirewall(ctx_, a->id));
  ASSERT_OK(p_.DeleteFirewall(ctx_, a->id));
  exists = p_.FirewallExists(ctx_, a->id);
  ASSERT_OK(exists);
  EXPECT_FALSE(*exists);
  auto attach_missing = p_.AttachFirewall(ctx_, inst->handle, a->id);
  ASSERT_FALSE(attach_missing);
  EXPECT_EQ(KindOf(attach_missing.error()), ProviderErrorKind::kNotFound);
}

TEST_F(GcpProviderFlows, ClusterIdentityIsConfinedToItsCluster) {
  ASSERT_OK(p_.CreateKeyPair(ctx_, "kp"));
  auto ident = p_.CreateClusterIdentity(ctx_, "cl-1");
  ASSERT_OK(ident);
  EXPECT_EQ(ident->id, GcpProvider::ClusterAccountId("cl-1") + "@proj-1.iam.gserviceaccount.com");
  const Json& cred = ident->credential.Reveal();
  EXPECT_EQ(cred.value(kClusterField, ""), "cl-1");
  EXPECT_EQ(cred.value("client_email", ""), ident->id);
  {
    std::lock_guard lock(fake_.mu);
    EXPECT_EQ(fake_.policy["bindings"],
              Json::parse(R"([{"role":"roles/compute.securityAdmin","members":["serviceAccount:)" +
                          ident->id + R"("]}])"));
  }
  // Again: the account exists (409), the binding is there; a new key is made.
  auto again = p_.CreateClusterIdentity(ctx_, "cl-1");
  ASSERT_OK(again);
  EXPECT_EQ(again->id, ident->id);

  auto s1 = Spec("ci1");
  s1.tags[kClusterTag] = "cl-1";
  auto s2 = Spec("ci2");
  s2.tags[kClusterTag] = "cl-2";
  auto i1 = p_.CreateInstance(ctx_, s1);
  ASSERT_OK(i1);
  auto i2 = p_.CreateInstance(ctx_, s2);
  ASSERT_OK(i2);
  CallContext cc{ident->credential, "us-central1"};
  auto expect_auth = [](const auto& r, const char* what) {
    ASSERT_FALSE(r.has_value()) << what;
    EXPECT_EQ(KindOf(r.error()), ProviderErrorKind::kAuth) << what << ": " << r.error().ToString();
  };
  expect_auth(p_.CreateInstance(cc, Spec("ci3")), "create instance");
  expect_auth(p_.TerminateInstance(cc, i1->handle), "terminate");
  expect_auth(p_.CreateKeyPair(cc, "x"), "key pair");
  expect_auth(p_.ListOffers(cc), "offers");
  expect_auth(p_.CreateClusterIdentity(cc, "cl-1"), "identity");
  expect_auth(p_.DescribeInstance(cc, i2->handle), "describe other");
  auto f1 =
      p_.CreateFirewall(cc, FirewallSpec{"cfw-1", "own", {FirewallRule{8080, "tcp", {}}}, {}});
  ASSERT_OK(f1);
  {
    std::lock_guard lock(fake_.mu);
    EXPECT_EQ(fake_.firewalls[f1->id]["description"], "canopy-id=cfw-1; cluster=cl-1");
  }
  EXPECT_OK(p_.AttachFirewall(cc, i1->handle, f1->id));
  expect_auth(p_.AttachFirewall(cc, i2->handle, f1->id), "other cluster's instance");
  FirewallSpec other{"cfw-2", "other", {FirewallRule{9090, "tcp", {}}}, {{kClusterTag, "cl-2"}}};
  auto f2 = p_.CreateFirewall(ctx_, other);
  ASSERT_OK(f2);
  expect_auth(p_.AttachFirewall(cc, i1->handle, f2->id), "other cluster's firewall");
  expect_auth(p_.DeleteFirewall(cc, f2->id), "delete other's firewall");
  expect_auth(p_.CreateFirewall(cc, other), "take over by canopy id");
  expect_auth(p_.FirewallExists(cc, f2->id), "see other's firewall");
  auto mine = p_.FindInstancesByTag(cc, kCanopyIdTag, "ci2");
  ASSERT_OK(mine);
  EXPECT_TRUE(mine->empty());
  EXPECT_OK(p_.DetachFirewall(cc, i1->handle, f1->id));
  EXPECT_OK(p_.DeleteFirewall(cc, f1->id));
  // A canopy id cannot pass its rule off as another cluster's.
  auto sneaky =
      p_.CreateFirewall(cc, FirewallSpec{"x cluster=cl-2", "x", {FirewallRule{1, "tcp", {}}}, {}});
  ASSERT_OK(sneaky);
  EXPECT_OK(p_.FirewallExists(cc, sneaky->id));
  EXPECT_OK(p_.DeleteFirewall(cc, sneaky->id));
  auto split =
      p_.CreateFirewall(cc, FirewallSpec{"x; cluster=cl-2", "x", {FirewallRule{1, "tcp", {}}}, {}});
  ASSERT_FALSE(split);
  EXPECT_EQ(KindOf(split.error()), ProviderErrorKind::kInvalidRequest);

  ASSERT_OK(p_.DeleteClusterIdentity(ctx_, ident->id));
  ASSERT_OK(p_.DeleteClusterIdentity(ctx_, ident->id));
  {
    std::lock_guard lock(fake_.mu);
    EXPECT_TRUE(fake_.policy["bindings"].empty());
    EXPECT_TRUE(fake_.accounts.empty());
  }
}

}  // namespace
}  // namespace canopy::providers::gcp
