// The AWS provider through the root, against moto (signatures checked): credential, offers,
// cluster create (instance tagged, key pair in Secrets Manager, SSH group shared per
// credential+region, cluster IAM user with its policy), the install step failing cleanly (moto
// has no console to read an SSH host key from, so the broker refuses to connect; every SSH
// address is 127.0.0.1:1 besides, never moto's fake IPs), delete leaving nothing behind,
// and the adapter killed right after RunInstances (still exactly one instance).
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "common/ids.h"
#include "providers/aws/aws_client.h"
#include "providers/aws/aws_provider.h"
#include "support/daemons.h"
#include "support/moto.h"
#include "support/test_util.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;
namespace aws = providers::aws;

class AwsEnv {
 public:
  explicit AwsEnv(std::vector<std::string> adapter_flags = {})
      : adapter_flags_(std::move(adapter_flags)) {}

  // False (with the reason in `why`) when moto cannot run here.
  bool Start(std::string* why) {
    auto moto = MotoServer::Shared();
    if (!moto) {
      *why = moto.error().message;
      return false;
    }
    moto_ = *moto;
    root_ = std::make_unique<RootDaemon>(
        (dir_.path() / "root").string(),
        std::vector<std::string>{"--heartbeat-interval", "1", "--ssh-wait", "2", "--op-lease-ms",
                                 "3000", "--sweep-interval", "0"});
    root_->Start();
    admin_ = root_->AdminToken();
    auto tok = root_->Call("POST", "/api/v1/provider-tokens", "{}", admin_);
    EXPECT_EQ(tok.status, 201) << tok.body;
    Json config{{"endpoint_url", moto_->url()},
                {"ssh_address_override", "127.0.0.1:1"},
                {"console_host_keys", false},
                {"instance_types", {"t3.*", "m5.*", "p3.*"}},
                {"max_attempts", 3},
                {"retry_base_ms", 20}};
    std::string catalog = canopy::testing::SourceDir() + "/../shared/reference/catalog/aws-vms.csv";
    if (std::filesystem::exists(catalog)) config["price_catalog"] = catalog;
    std::vector<std::string> flags{"--config", DumpJson(config)};
    flags.insert(flags.end(), adapter_flags_.begin(), adapter_flags_.end());
    adapter_ = std::make_unique<AdapterDaemon>("aws", root_->url(),
                                               (dir_.path() / "adapter").string(), flags);
    adapter_->Start(tok.json["token"].get<std::string>());
    return true;
  }

  ApiReply Call(const std::string& method, const std::string& path, const std::string& body = "") {
    return root_->Call(method, path, body, admin_);
  }
  ApiReply AddCredential(const Json& secret) {
    ApiReply r;
    WaitFor(
        [&] {
          r = Call("POST", "/api/v1/credentials",
                   DumpJson(Json{
                       {"name", "aws-" + RandomHex(3)}, {"provider", "aws"}, {"secret", secret}}));
          return r.status != 409;  // the adapter's registration may not be through yet
        },
        30s);
    return r;
  }
  Json WaitOperation(const std::string& id, std::chrono::seconds timeout,
                     bool restart_adapter = false) {
    Json op;
    WaitFor(
        [&] {
          if (restart_adapter && !adapter_->Running()) {
            adapter_died_ = true;
            adapter_->Start("");
          }
          auto r = Call("GET", "/api/v1/operations/" + id);
          op = r.json;
          std::string st = op.value("state", "");
          return st == "succeeded" || st == "failed";
        },
        timeout);
    return op;
  }

  // Direct reads of moto with the admin credential.
  providers::CallContext Ctx() const {
    return providers::CallContext{providers::CredentialSecret(moto_->admin_credential()),
                                  "us-east-1"};
  }
  aws::AwsProvider Direct() const {
    aws::AwsOptions o;
    o.endpoints.all = moto_->url();
    o.pricing_api = false;
    o.console_host_keys = false;
    o.instance_type_patterns = {"t3.*"};
    return aws::AwsProvider(o);
  }
  Result<aws::Xml> Query(const std::string& service, const std::string& action,
                         const aws::QueryParams& p) const {
    aws::AwsEndpoints ep;
    ep.all = moto_->url();
    aws::AwsClient client(ep, aws::RetryPolicy{1, 10ms, 10ms});
    const Json& a = moto_->admin_credential();
    aws::SigV4Credentials creds{a["access_key_id"],
                                SecretString(a["secret_access_key"].get<std::string>()), ""};
    return client.Query(creds, service, "us-east-1", action, p);
  }
  // Security groups tagged canopy-id=`canopy_id`.
  int GroupsTagged(const std::string& canopy_id) const {
    auto x = Query("ec2", "DescribeSecurityGroups",
                   {{"Filter.1.Name", "tag:canopy-id"}, {"Filter.1.Value.1", canopy_id}});
    EXPECT_TRUE(x.has_value()) << x.error().message;
    return x ? static_cast<int>(aws::XmlItems(*x, "securityGroupInfo").size()) : -1;
  }
  bool IamUserExists(const std::string& user) const {
    auto x = Query("iam", "GetUser", {{"UserName", user}});
    return x.has_value();
  }

  RootDaemon& root() { return *root_; }
  AdapterDaemon& adapter() { return *adapter_; }
  bool adapter_died() const { return adapter_died_; }

 private:
  TempDir dir_;
  std::vector<std::string> adapter_flags_;
  MotoServer* moto_ = nullptr;
  std::unique_ptr<RootDaemon> root_;
  std::unique_ptr<AdapterDaemon> adapter_;
  std::string admin_;
  bool adapter_died_ = false;
};

Json ClusterBody(const std::string& name, const std::string& cred, const std::string& image) {
  return Json{{"name", name},          {"credential_id", cred},
              {"region", "us-east-1"}, {"instance_type", "t3.micro"},
              {"image", image},        {"disk_gb", 8}};
}

TEST(AwsE2E, CredentialOffersClusterCreateFailsCleanlyAndDeleteLeavesNothing) {
  AwsEnv env;
  std::string why;
  if (!env.Start(&why)) GTEST_SKIP() << why;
  auto provider = env.Direct();

  // A wrong secret is an auth failure (422), not a crash; the right one is accepted.
  Json wrong = env.Ctx().credential.Reveal();
  wrong["secret_access_key"] = "not-the-secret-key-000000000000000000000";
  auto bad = env.AddCredential(wrong);
  EXPECT_EQ(bad.status, 422) << bad.body;
  EXPECT_EQ(bad.body.find("not-the-secret"), std::string::npos);
  auto cred = env.AddCredential(env.Ctx().credential.Reveal());
  ASSERT_EQ(cred.status, 201) << cred.body;
  const std::string cred_id = cred.json["id"];
  EXPECT_EQ(cred.body.find(env.Ctx().credential.Reveal()["secret_access_key"].get<std::string>()),
            std::string::npos);

  // Offers: regions, instance types with vCPUs/memory and prices (or a reason), images.
  auto offers =
      env.Call("GET", "/api/v1/offers?provider=aws&credential_id=" + cred_id + "&region=us-east-1");
  ASSERT_EQ(offers.status, 200) << offers.body;
  const Json& o = offers.json;
  EXPECT_NE(std::find(o["regions"].begin(), o["regions"].end(), "eu-west-1"), o["regions"].end());
  bool saw_t3 = false;
  for (const auto& t : o["instance_types"]) {
    EXPECT_GT(t["vcpus"].get<int>(), 0);
    EXPECT_TRUE(t["price_hour"].is_number() || !t["price_note"].get<std::string>().empty())
        << t.dump();
    if (t["name"] == "p3.2xlarge") {
      EXPECT_EQ(t["gpus"], 1) << t.dump();
    }
    if (t["name"] == "t3.micro") {
      saw_t3 = true;
      EXPECT_EQ(t["vcpus"], 2);
      EXPECT_EQ(t["memory_mib"], 1024);
    }
  }
  EXPECT_TRUE(saw_t3);
  ASSERT_FALSE(o["images"].empty());
  const std::string image = o["images"][0]["id"];
  // Outside the offline catalog, moto has no Pricing API: null with the reason, never a guess.
  auto eu =
      env.Call("GET", "/api/v1/offers?provider=aws&credential_id=" + cred_id + "&region=eu-west-1");
  ASSERT_EQ(eu.status, 200) << eu.body;
  ASSERT_FALSE(eu.json["instance_types"].empty());
  for (const auto& t : eu.json["instance_types"]) {
    EXPECT_TRUE(t["price_hour"].is_null()) << t.dump();
    EXPECT_NE(t["price_note"].get<std::string>().find("Pricing API"), std::string::npos)
        << t.dump();
  }

  // Two clusters: each fails at install (moto's VMs are unreachable) with a clear message.
  std::vector<std::string> clusters;
  for (const char* name : {"aws-one", "aws-two"}) {
    auto c = env.Call("POST", "/api/v1/clusters", DumpJson(ClusterBody(name, cred_id, image)));
    ASSERT_EQ(c.status, 202) << c.body;
    std::string id = c.json["cluster"]["id"];
    clusters.push_back(id);
    auto op = env.WaitOperation(c.json["operation_id"], 240s);
    ASSERT_EQ(op.value("state", ""), "failed") << op.dump();
    EXPECT_EQ(op.value("step", ""), "install") << op.dump();
    // moto has no console to read the SSH host key from: the install refuses to connect unpinned.
    EXPECT_NE(op["error"].value("message", "").find("cannot install"), std::string::npos)
        << op.dump();
    EXPECT_NE(op["error"].value("message", "").find("host key"), std::string::npos) << op.dump();
    EXPECT_EQ(env.Call("GET", "/api/v1/clusters/" + id).json.value("state", ""), "FAILED");
    std::cout << "cluster create failed as expected: " << op["error"].dump() << "\n";

    // In moto: the instance tagged with its Canopy id, the cluster's IAM user with its policy.
    auto found = provider.FindInstancesByTag(env.Ctx(), providers::kCanopyIdTag, id);
    ASSERT_OK(found);
    ASSERT_EQ(found->size(), 1u);
    EXPECT_EQ(found->front().tags.at(providers::kClusterTag), id);
    EXPECT_TRUE(env.IamUserExists("canopy-cluster-" + id));
    auto pol = env.Query("iam", "ListAttachedUserPolicies", {{"UserName", "canopy-cluster-" + id}});
    ASSERT_OK(pol);
    EXPECT_EQ(aws::XmlItems(*pol, "ListAttachedUserPoliciesResult.AttachedPolicies").size(), 1u);
    EXPECT_EQ(env.GroupsTagged(id + "-api"), 1);
  }
  // One key pair (its private key in Secrets Manager) and one SSH group for both clusters.
  auto kp = provider.GetKeyPair(env.Ctx(), "canopy-" + cred_id);
  ASSERT_OK(kp);
  EXPECT_NE(kp->private_key.Reveal().find("PRIVATE KEY"), std::string::npos);
  auto secret = env.Query("ec2", "DescribeKeyPairs", {{"KeyName.1", "canopy-" + cred_id}});
  ASSERT_OK(secret);
  EXPECT_EQ(env.GroupsTagged("ssh-" + cred_id), 1);

  // The documented policy: a failed cluster keeps its VM until DELETE, which removes it all.
  for (const auto& id : clusters) {
    auto d = env.Call("DELETE", "/api/v1/clusters/" + id);
    ASSERT_EQ(d.status, 202) << d.body;
    auto op = env.WaitOperation(d.json["operation_id"], 120s);
    ASSERT_EQ(op.value("state", ""), "succeeded") << op.dump();
    auto left = provider.FindInstancesByTag(env.Ctx(), providers::kClusterTag, id);
    ASSERT_OK(left);
    EXPECT_TRUE(left->empty());
    EXPECT_EQ(env.GroupsTagged(id + "-api"), 0);
    EXPECT_FALSE(env.IamUserExists("canopy-cluster-" + id));
  }
  // The adapter never logged a secret.
  std::string log = ReadFile(env.adapter().log_path());
  EXPECT_EQ(log.find(env.Ctx().credential.Reveal()["secret_access_key"].get<std::string>()),
            std::string::npos);
  EXPECT_EQ(log.find("PRIVATE KEY"), std::string::npos);
}

TEST(AwsE2E, AdapterKilledRightAfterRunInstancesLeavesExactlyOneInstance) {
  AwsEnv env({"--test-kill-after-call", "create_instance"});
  std::string why;
  if (!env.Start(&why)) GTEST_SKIP() << why;
  auto cred = env.AddCredential(env.Ctx().credential.Reveal());
  ASSERT_EQ(cred.status, 201) << cred.body;
  auto provider = env.Direct();
  auto offers = provider.ListOffers(env.Ctx());
  ASSERT_OK(offers);
  auto c = env.Call("POST", "/api/v1/clusters",
                    DumpJson(ClusterBody("aws-crash", cred.json["id"], offers->images.front().id)));
  ASSERT_EQ(c.status, 202) << c.body;
  const std::string id = c.json["cluster"]["id"];
  auto op = env.WaitOperation(c.json["operation_id"], 240s, /*restart_adapter=*/true);
  EXPECT_TRUE(env.adapter_died()) << "the adapter never reached create_instance";
  // The retry after the restart found the instance by its tag instead of making another.
  EXPECT_EQ(op.value("step", ""), "install") << op.dump();
  auto found = provider.FindInstancesByTag(env.Ctx(), providers::kCanopyIdTag, id);
  ASSERT_OK(found);
  EXPECT_EQ(found->size(), 1u);
  auto d = env.Call("DELETE", "/api/v1/clusters/" + id);
  ASSERT_EQ(d.status, 202) << d.body;
  ASSERT_EQ(env.WaitOperation(d.json["operation_id"], 120s).value("state", ""), "succeeded");
  found = provider.FindInstancesByTag(env.Ctx(), providers::kCanopyIdTag, id);
  ASSERT_OK(found);
  EXPECT_TRUE(found->empty());
}

}  // namespace
}  // namespace canopy::testing
