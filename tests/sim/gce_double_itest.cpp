// GceDouble with real machines on a test network (LocalTestNet; needs root and the blank
// images): the token flow with RS256 JWTs made here with OpenSSL (a wrong signature and an
// expired JWT refused), instances.insert -> operation DONE -> RUNNING -> a machine at the
// instance's networkIP whose host key the guest attributes show, port 22 closed until a firewall
// rule targets the instance's tag, stop / start / delete followed by the machine, a stockout, a
// schema-invalid body (400) and a cluster account refused an insert (403). Also the simulator
// script (scripts/sim/gcp-sim through tests/support/gce_sim.h).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "common/ids.h"
#include "providers/aws/key_material.h"
#include "sim/gce_double.h"
#include "support/daemons.h"
#include "support/gce_sim.h"
#include "support/local_env.h"
#include "support/test_util.h"

namespace canopy::sim {
namespace {

using namespace std::chrono_literals;
using testing::GceAnswer;
using testing::LocalTestNet;

constexpr char kP[] = "/compute/v1/projects/canopy-sim";
constexpr char kZ[] = "/compute/v1/projects/canopy-sim/zones/us-central1-a";

// The ED25519 host key sshd at `addr` presents ("AAAA..."), by ssh-keyscan; "" when none.
std::string ScannedHostKey(const std::string& addr) {
  std::string cmd = "ssh-keyscan -T 5 -t ed25519 " + addr + " 2>/dev/null";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return "";
  char buf[4096];
  std::string out;
  while (std::fgets(buf, sizeof buf, f) != nullptr) out += buf;
  ::pclose(f);
  size_t at = out.find("ssh-ed25519 ");
  if (at == std::string::npos) return "";
  std::string key = out.substr(at + 12);
  return key.substr(0, key.find_first_of(" \r\n"));
}

// A fresh Ed25519 key pair's OpenSSH public key (the adapter's key pair stand-in).
std::string NewPublicKey() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PKCS8PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(len));
  BIO_free(bio);
  EVP_PKEY_free(key);
  auto info = providers::aws::PublicKeyFromPem(SecretString(pem));
  return info ? info->public_key : "";
}

Json InstanceBody(const std::string& name, const std::string& public_key,
                  const std::vector<std::string>& tags) {
  return Json{{"name", name},
              {"machineType", "zones/us-central1-a/machineTypes/e2-small"},
              {"disks",
               {{{"boot", true},
                 {"autoDelete", true},
                 {"initializeParams",
                  {{"sourceImage", "projects/debian-cloud/global/images/family/debian-12"},
                   {"diskSizeGb", "10"}}}}}},
              {"networkInterfaces", {{{"network", "global/networks/default"}}}},
              {"metadata",
               {{"items",
                 {{{"key", "ssh-keys"}, {"value", "admin:" + public_key + " admin"}},
                  {{"key", "enable-guest-attributes"}, {"value", "TRUE"}}}}}},
              {"labels", {{"canopy-id", name}}},
              {"tags", {{"items", tags}}}};
}

class GceMachinesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!LocalTestNet::Available()) GTEST_SKIP() << "machines need root";
    ASSERT_TRUE(testing::ExpectBlankImageBuilt("debian-12-minbase"));
    GceDoubleOptions o;
    o.discovery_dir = testing::GcpReferenceDir();
    o.local = net_.Options();
    o.local.state_dir = dir_.str() + "/machines";
    o.instance_range = net_.Options().subnet;
    local_ = o.local;
    auto d = GceDouble::Start(o);
    ASSERT_OK(d);
    double_ = std::move(*d);
    auto t = testing::AccessToken(double_->OwnerKey());
    ASSERT_OK(t);
    token_ = *t;
  }
  void TearDown() override {
    if (double_) double_->Stop();
    double_.reset();
    providers::local::LocalProvider::Purge(local_);
  }

  GceAnswer Call(const std::string& method, const std::string& path, const Json& body = nullptr,
                 const std::string& token = "") {
    auto a = testing::GceCall(double_->url(), method, path, token.empty() ? token_ : token, body);
    EXPECT_OK(a);
    return a ? *a : GceAnswer{};
  }
  Json PollDone(const Json& op) {
    const std::string path = op.contains("zone")
                                 ? std::string(kZ) + "/operations/" + op.value("name", "")
                                 : std::string(kP) + "/global/operations/" + op.value("name", "");
    Json last;
    testing::WaitFor(
        [&] {
          last = Call("GET", path).body;
          return last.value("status", "") == "DONE";
        },
        120s);
    EXPECT_EQ(last.value("status", ""), "DONE") << last.dump();
    return last;
  }
  // The guest attributes' ED25519 host key once the guest published it ("" after `wait`).
  std::string GuestHostKey(const std::string& name, std::chrono::seconds wait = 60s) {
    std::string key;
    testing::WaitFor(
        [&] {
          GceAnswer a = Call("GET", std::string(kZ) + "/instances/" + name +
                                        "/getGuestAttributes?queryPath=hostkeys%2F");
          if (a.status != 200) return false;
          key = a.body["queryValue"]["items"][0].value("value", "");
          return true;
        },
        wait);
    return key;
  }

  testing::TempDir dir_;
  LocalTestNet net_;
  providers::local::LocalOptions local_;
  std::unique_ptr<GceDouble> double_;
  std::string token_;
};

TEST_F(GceMachinesTest, TokenFlowWithRealJwts) {
  const Json key = double_->OwnerKey();
  auto jwt = testing::ServiceAccountJwt(key);
  ASSERT_OK(jwt);
  auto ok = testing::ExchangeJwt(key["token_uri"], *jwt);
  ASSERT_OK(ok);
  EXPECT_EQ(ok->status, 200) << ok->body.dump();
  // Signed by another RSA key: refused.
  GceAnswer sa =
      Call("POST", "/v1/projects/canopy-sim/serviceAccounts", Json{{"accountId", "other-account"}});
  ASSERT_EQ(sa.status, 200);
  GceAnswer k = Call(
      "POST",
      "/v1/projects/canopy-sim/serviceAccounts/" + sa.body["email"].get<std::string>() + "/keys",
      Json::object());
  ASSERT_EQ(k.status, 200);
  std::string raw;
  ASSERT_TRUE(Base64Decode(k.body["privateKeyData"].get<std::string>(), &raw));
  const Json other = Json::parse(raw);
  auto forged = testing::ServiceAccountJwt(key, Json::object(), other["private_key"]);
  ASSERT_OK(forged);
  auto bad = testing::ExchangeJwt(key["token_uri"], *forged);
  ASSERT_OK(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(bad->body["error"], "invalid_grant");
  EXPECT_EQ(bad->body["error_description"], "Invalid JWT Signature.");
  // Expired.
  const int64_t now = UnixSeconds(std::chrono::system_clock::now());
  auto expired = testing::ServiceAccountJwt(key, {{"iat", now - 4000}, {"exp", now - 400}});
  auto late = testing::ExchangeJwt(key["token_uri"], *expired);
  ASSERT_OK(late);
  EXPECT_EQ(late->status, 400);
  EXPECT_EQ(late->body["error"], "invalid_grant");
}

TEST_F(GceMachinesTest, InstanceHasAMachineThatFollowsItsFirewallAndLifecycle) {
  const std::string pub = NewPublicKey();
  ASSERT_FALSE(pub.empty());
  GceAnswer insert = Call(
      "POST", std::string(kZ) + "/instances?requestId=" + "0f0e0d0c-0b0a-4908-8706-050403020100",
      InstanceBody("canopy-m1", pub, {"canopy-other"}));
  ASSERT_EQ(insert.status, 200) << insert.body.dump();
  EXPECT_EQ(insert.body["status"], "PENDING");
  // While the machine is made: PROVISIONING, then STAGING.
  const std::string early = Call("GET", std::string(kZ) + "/instances/canopy-m1").body["status"];
  EXPECT_TRUE(early == "PROVISIONING" || early == "STAGING") << early;
  Json done = PollDone(insert.body);
  ASSERT_FALSE(done.contains("error")) << done.dump();
  GceAnswer got = Call("GET", std::string(kZ) + "/instances/canopy-m1");
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body["status"], "RUNNING");
  const std::string ip = got.body["networkInterfaces"][0]["networkIP"];
  const std::string prefix = net_.gateway().substr(0, net_.gateway().rfind('.') + 1);
  ASSERT_EQ(ip.rfind(prefix, 0), 0u) << ip << " is not in the test net";

  // Booted: the host key is published; no rule targets the instance's tag yet: 22 is closed.
  const std::string host_key = GuestHostKey("canopy-m1");
  ASSERT_FALSE(host_key.empty());
  EXPECT_FALSE(testing::TcpConnects(ip, 22));

  // A rule for another tag: still closed. Tagging the instance with it opens 22 by the time the
  // setTags operation is DONE.
  GceAnswer fw = Call("POST", std::string(kP) + "/global/firewalls",
                      Json{{"name", "canopy-ssh"},
                           {"network", "global/networks/default"},
                           {"allowed", {{{"IPProtocol", "tcp"}, {"ports", {"22"}}}}},
                           {"sourceRanges", {"0.0.0.0/0"}},
                           {"targetTags", {"canopy-ssh"}}});
  ASSERT_EQ(fw.status, 200) << fw.body.dump();
  PollDone(fw.body);
  EXPECT_FALSE(testing::TcpConnects(ip, 22));
  GceAnswer tags = Call("POST", std::string(kZ) + "/instances/canopy-m1/setTags",
                        Json{{"items", {"canopy-other", "canopy-ssh"}},
                             {"fingerprint", got.body["tags"]["fingerprint"]}});
  ASSERT_EQ(tags.status, 200) << tags.body.dump();
  PollDone(tags.body);
  EXPECT_TRUE(testing::TcpConnects(ip, 22));

  // The guest attributes' key is the one sshd presents; the serial port shows its fingerprint.
  EXPECT_EQ(ScannedHostKey(ip), host_key);
  std::string blob;
  ASSERT_TRUE(Base64Decode(host_key, &blob));
  GceAnswer serial = Call("GET", std::string(kZ) + "/instances/canopy-m1/serialPort?port=1");
  std::string fp_hex = Sha256Hex(blob), fp_raw;
  for (size_t i = 0; i < fp_hex.size(); i += 2) {
    fp_raw.push_back(static_cast<char>(std::stoi(fp_hex.substr(i, 2), nullptr, 16)));
  }
  std::string fp = Base64Encode(fp_raw);
  while (!fp.empty() && fp.back() == '=') fp.pop_back();
  EXPECT_NE(serial.body["contents"].get<std::string>().find("SHA256:" + fp), std::string::npos)
      << serial.body.dump();

  // Patching the rule away closes 22 again (by the time the patch is DONE).
  GceAnswer patch = Call("PATCH", std::string(kP) + "/global/firewalls/canopy-ssh",
                         Json{{"name", "canopy-ssh"}, {"sourceRanges", {"192.0.2.0/24"}}});
  ASSERT_EQ(patch.status, 200) << patch.body.dump();
  PollDone(patch.body);
  EXPECT_FALSE(testing::TcpConnects(ip, 22));
  patch = Call("PATCH", std::string(kP) + "/global/firewalls/canopy-ssh",
               Json{{"name", "canopy-ssh"}, {"sourceRanges", {"0.0.0.0/0"}}});
  PollDone(patch.body);
  EXPECT_TRUE(testing::TcpConnects(ip, 22));

  // Stop: the machine stops, the guest attributes go; start: the same host key again.
  GceAnswer stop = Call("POST", std::string(kZ) + "/instances/canopy-m1/stop");
  ASSERT_EQ(stop.status, 200);
  PollDone(stop.body);
  EXPECT_EQ(Call("GET", std::string(kZ) + "/instances/canopy-m1").body["status"], "TERMINATED");
  EXPECT_FALSE(testing::TcpConnects(ip, 22));
  EXPECT_EQ(
      Call("GET", std::string(kZ) + "/instances/canopy-m1/getGuestAttributes?queryPath=hostkeys%2F")
          .status,
      404);
  GceAnswer start = Call("POST", std::string(kZ) + "/instances/canopy-m1/start");
  ASSERT_EQ(start.status, 200);
  PollDone(start.body);
  EXPECT_EQ(GuestHostKey("canopy-m1"), host_key);
  EXPECT_TRUE(testing::WaitFor([&] { return testing::TcpConnects(ip, 22); }, 10s));

  // A stop overtaken by a start: both operations end DONE, and the instance runs.
  GceAnswer stop2 = Call("POST", std::string(kZ) + "/instances/canopy-m1/stop");
  GceAnswer start2 = Call("POST", std::string(kZ) + "/instances/canopy-m1/start");
  ASSERT_EQ(stop2.status, 200);
  ASSERT_EQ(start2.status, 200);
  EXPECT_FALSE(PollDone(stop2.body).contains("error"));
  EXPECT_FALSE(PollDone(start2.body).contains("error"));
  EXPECT_EQ(GuestHostKey("canopy-m1"), host_key);
  EXPECT_EQ(Call("GET", std::string(kZ) + "/instances/canopy-m1").body["status"], "RUNNING");

  // Delete: the machine goes.
  GceAnswer del = Call("DELETE", std::string(kZ) + "/instances/canopy-m1");
  ASSERT_EQ(del.status, 200);
  PollDone(del.body);
  EXPECT_EQ(Call("GET", std::string(kZ) + "/instances/canopy-m1").status, 404);
  EXPECT_FALSE(testing::TcpConnects(ip, 22));
  EXPECT_TRUE(double_->Instances().empty());
  std::error_code ec;
  EXPECT_TRUE(std::filesystem::is_empty(dir_.str() + "/machines/instances", ec));
}

TEST_F(GceMachinesTest, StockoutInvalidBodyAndForbiddenInsert) {
  const std::string pub = NewPublicKey();
  ASSERT_OK(double_->AddFault(Json{{"fault", "stockout"}, {"zone", "us-central1-a"}}));
  GceAnswer insert =
      Call("POST", std::string(kZ) + "/instances", InstanceBody("canopy-m2", pub, {}));
  ASSERT_EQ(insert.status, 200);
  Json done = PollDone(insert.body);
  ASSERT_TRUE(done.contains("error")) << done.dump();
  EXPECT_EQ(done["error"]["errors"][0]["code"], "ZONE_RESOURCE_POOL_EXHAUSTED");
  EXPECT_EQ(done["httpErrorStatusCode"], 503);
  EXPECT_EQ(Call("GET", std::string(kZ) + "/instances/canopy-m2").status, 404);
  double_->ClearFaults();

  Json invalid = InstanceBody("canopy-m3", pub, {});
  invalid["disks"][0]["initializeParams"]["diskSizeGigabytes"] = "10";
  GceAnswer refused = Call("POST", std::string(kZ) + "/instances", invalid);
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(refused.body["error"]["status"], "INVALID_ARGUMENT");

  GceAnswer sa = Call("POST", "/v1/projects/canopy-sim/serviceAccounts",
                      Json{{"accountId", "canopy-c-0000000001"}});
  ASSERT_EQ(sa.status, 200);
  const std::string email = sa.body["email"];
  GceAnswer key = Call("POST", "/v1/projects/canopy-sim/serviceAccounts/" + email + "/keys",
                       Json{{"privateKeyType", "TYPE_GOOGLE_CREDENTIALS_FILE"}});
  std::string raw;
  ASSERT_TRUE(Base64Decode(key.body["privateKeyData"].get<std::string>(), &raw));
  GceAnswer policy = Call("POST", "/v1/projects/canopy-sim:getIamPolicy", Json::object());
  Json p = policy.body;
  p["bindings"].push_back(
      {{"role", "roles/compute.securityAdmin"}, {"members", {"serviceAccount:" + email}}});
  ASSERT_EQ(Call("POST", "/v1/projects/canopy-sim:setIamPolicy", Json{{"policy", p}}).status, 200);
  auto cluster_token = testing::AccessToken(Json::parse(raw));
  ASSERT_OK(cluster_token);
  GceAnswer forbidden = Call("POST", std::string(kZ) + "/instances",
                             InstanceBody("canopy-m4", pub, {}), *cluster_token);
  EXPECT_EQ(forbidden.status, 403);
  EXPECT_EQ(forbidden.body["error"]["errors"][0]["reason"], "forbidden");
  EXPECT_EQ(double_->Instances().size(), 0u);
}

// The simulator script: canopy-sim gce in the background, sim.json, an instance with a machine,
// everything gone after stop.
TEST(GcpSimScript, StartsServesAndStops) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "machines need root";
  ASSERT_TRUE(testing::ExpectBlankImageBuilt("debian-12-minbase"));
  LocalTestNet net;
  testing::GceSim sim;
  ASSERT_OK(sim.Start(net));
  const Json& info = sim.info();
  EXPECT_EQ(info["project"], "canopy-sim");
  EXPECT_EQ(info["adapter_config"]["private_addresses"], true);
  EXPECT_EQ(info["adapter_config"]["endpoint_url"], sim.url());
  EXPECT_EQ(info["credential"]["token_uri"], sim.url() + "/token");
  auto token = testing::AccessToken(info["credential"]);
  ASSERT_OK(token);
  auto insert = testing::GceCall(sim.url(), "POST", std::string(kZ) + "/instances", *token,
                                 InstanceBody("canopy-s1", NewPublicKey(), {}));
  ASSERT_OK(insert);
  ASSERT_EQ(insert->status, 200) << insert->body.dump();
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        auto a = testing::GceCall(sim.url(), "GET",
                                  std::string(kZ) +
                                      "/instances/canopy-s1/getGuestAttributes"
                                      "?queryPath=hostkeys%2F",
                                  *token);
        return a && a->status == 200;
      },
      60s));
  EXPECT_EQ(sim.MachineState("canopy-s1"), "running");
  EXPECT_EQ(sim.MachineCount(), 1);
  std::vector<std::string> namespaces;
  for (const auto& e : std::filesystem::directory_iterator(sim.dir() + "/sim/machines/instances")) {
    namespaces.push_back("/run/netns/canopy-" + e.path().filename().string());
    EXPECT_TRUE(std::filesystem::exists(namespaces.back()));
  }
  sim.Stop();
  EXPECT_EQ(sim.MachineCount(), 0);
  for (const auto& ns : namespaces) EXPECT_FALSE(std::filesystem::exists(ns)) << ns;
  EXPECT_NE(sim.Log().find("Stopping: terminating every machine"), std::string::npos);
}

}  // namespace
}  // namespace canopy::sim
