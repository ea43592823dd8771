// The AWS provider through the root, against moto (signatures checked).
// AwsE2E.ClusterWithTwoWorkersReachesActive...: on the AWS simulator (scripts/sim/aws-sim: a
// machine behind every EC2 instance, in a VPC on the test's network): credential, offers, a
// cluster with two workers to ACTIVE (instance tagged, key pair in Secrets Manager, SSH group
// shared per credential+region, cluster IAM user with its policy, host keys pinned from the
// console), a service reachable from the host through the security groups, stop / restart /
// terminate / recreate of a worker, then delete leaving nothing in moto or on the host.
// AwsE2E.AdapterKilledRightAfterRunInstances...: on bare moto (no machines: the install step
// fails, every SSH address is 127.0.0.1:1, never moto's fake IPs); the adapter killed right after
// RunInstances still leaves exactly one instance.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "common/ids.h"
#include "providers/aws/aws_client.h"
#include "providers/aws/aws_provider.h"
#include "support/aws_sim.h"
#include "support/cloud_env.h"
#include "support/daemons.h"
#include "support/local_env.h"
#include "support/moto.h"
#include "support/test_util.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;
namespace aws = providers::aws;

class AwsEnv : public CloudEnv {
 public:
  explicit AwsEnv(std::vector<std::string> adapter_flags = {})
      : CloudEnv("aws", std::move(adapter_flags)) {}
  ~AwsEnv() override {
    StopDaemons();
    sim_.reset();  // terminates every machine
    net_.reset();
  }

  // False (with the reason in `why`) when moto cannot run here. `simulated`: on the AWS
  // simulator (machines behind the instances; needs root), else on bare moto.
  bool Start(std::string* why, bool simulated = false) {
    Json config{
        {"instance_types", {"t3.*", "m5.*", "p3.*"}}, {"max_attempts", 3}, {"retry_base_ms", 20}};
    std::vector<std::string> root_flags;
    if (simulated) {
      if (!LocalTestNet::Available()) {
        *why = "the AWS simulator's machines need root";
        return false;
      }
      if (!MotoServer::Available()) {
        *why = "moto is not installed (pip install 'moto[server]'; scripts/setup.sh does)";
        return false;
      }
      net_ = std::make_unique<LocalTestNet>();
      sim_ = std::make_unique<AwsSim>();
      Status st = sim_->Start(*net_);
      if (!st) {
        *why = st.error().message;
        ADD_FAILURE() << *why;  // moto is there: the simulator must start
        return false;
      }
      admin_credential_ = sim_->info()["credential"];
      endpoint_ = sim_->info()["endpoint_url"];
      config.update(sim_->info()["adapter_config"]);
      // As `canopy up` does it: the tiers' listener on the network the machines reach.
      root_flags = {"--cluster-listen", net_->gateway() + ":0"};
    } else {
      auto moto = MotoServer::Shared();
      if (!moto) {
        *why = moto.error().message;
        return false;
      }
      admin_credential_ = (*moto)->admin_credential();
      endpoint_ = (*moto)->url();
      config.update(Json{{"endpoint_url", endpoint_},
                         {"ssh_address_override", "127.0.0.1:1"},
                         {"console_host_keys", false}});
      root_flags = {"--ssh-wait", "2"};
    }
    std::string catalog = canopy::testing::SourceDir() + "/../shared/reference/catalog/aws-vms.csv";
    if (std::filesystem::exists(catalog)) config["price_catalog"] = catalog;
    StartDaemons(config, root_flags);
    return true;
  }

  // Direct reads of moto with the admin credential.
  providers::CallContext Ctx() const {
    return providers::CallContext{providers::CredentialSecret(admin_credential_), "us-east-1"};
  }
  aws::AwsProvider Direct() const {
    aws::AwsOptions o;
    o.endpoints.all = endpoint_;
    o.pricing_api = false;
    o.console_host_keys = false;
    o.instance_type_patterns = {"t3.*"};
    return aws::AwsProvider(o);
  }
  Result<aws::Xml> Query(const std::string& service, const std::string& action,
                         const aws::QueryParams& p) const {
    aws::AwsEndpoints ep;
    ep.all = endpoint_;
    aws::AwsClient client(ep, aws::RetryPolicy{1, 10ms, 10ms});
    const Json& a = admin_credential_;
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

  AwsSim& sim() { return *sim_; }

 private:
  std::unique_ptr<LocalTestNet> net_;
  std::unique_ptr<AwsSim> sim_;
  Json admin_credential_;
  std::string endpoint_;
};

Json ClusterBody(const std::string& name, const std::string& cred, const std::string& image) {
  return Json{{"name", name},          {"credential_id", cred},
              {"region", "us-east-1"}, {"instance_type", "t3.micro"},
              {"image", image},        {"disk_gb", 8}};
}

TEST(AwsE2E, ClusterWithTwoWorkersReachesActiveServesSurvivesWorkerActionsAndLeavesNothing) {
  AwsEnv env;
  std::string why;
  if (!env.Start(&why, /*simulated=*/true)) GTEST_SKIP() << why;
  ASSERT_TRUE(ExpectBlankImageBuilt("debian-12-minbase"));
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
  const std::string secret_key =
      env.Ctx().credential.Reveal()["secret_access_key"].get<std::string>();
  EXPECT_EQ(cred.body.find(secret_key), std::string::npos);

  // Offers: regions, instance types with vCPUs/memory and prices (or a reason), Debian images.
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
  std::string image;
  for (const auto& i : o["images"]) {
    if (i.value("name", "").starts_with("debian-12-")) image = i["id"];
  }
  ASSERT_FALSE(image.empty()) << o["images"].dump();
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

  // A cluster with two workers reaches ACTIVE: every VM a machine of the Debian 12 image,
  // installed over SSH as `admin` with the host key pinned from the console.
  Json body = ClusterBody("aws-demo", cred_id, image);
  body["workers"] = {{"count", 2}};
  auto c = env.Call("POST", "/api/v1/clusters", DumpJson(body));
  ASSERT_EQ(c.status, 202) << c.body;
  const std::string cluster = c.json["cluster"]["id"];
  auto op = env.WaitOperation(c.json["operation_id"], 240s);
  ASSERT_EQ(op.value("state", ""), "succeeded") << op.dump() << "\n"
                                                << ReadFile(env.root().log_path()) << "\n"
                                                << env.sim().MachinesLog();
  auto cl = env.Call("GET", "/api/v1/clusters/" + cluster).json;
  EXPECT_EQ(cl.value("state", ""), "ACTIVE") << cl.dump();
  auto workers = env.Call("GET", "/api/v1/clusters/" + cluster + "/workers").json;
  ASSERT_EQ(workers.size(), 2u) << workers.dump();
  for (const auto& w : workers) {
    EXPECT_EQ(w["state"], "ACTIVE") << w.dump();
    ASSERT_TRUE(w["system"].is_object()) << w.dump();
    EXPECT_EQ(w["system"].value("os", ""), "Debian GNU/Linux 12 (bookworm)") << w.dump();
    EXPECT_TRUE(w["provider_id"].get<std::string>().starts_with("i-")) << w.dump();
  }

  // In moto: three instances tagged with the cluster, the cluster's IAM user with its policy,
  // its API group; one key pair (private key in Secrets Manager) and one SSH group.
  auto found = provider.FindInstancesByTag(env.Ctx(), providers::kClusterTag, cluster);
  ASSERT_OK(found);
  EXPECT_EQ(found->size(), 3u);
  EXPECT_TRUE(env.IamUserExists("canopy-cluster-" + cluster));
  auto pol =
      env.Query("iam", "ListAttachedUserPolicies", {{"UserName", "canopy-cluster-" + cluster}});
  ASSERT_OK(pol);
  EXPECT_EQ(aws::XmlItems(*pol, "ListAttachedUserPoliciesResult.AttachedPolicies").size(), 1u);
  EXPECT_EQ(env.GroupsTagged(cluster + "-api"), 1);
  auto kp = provider.GetKeyPair(env.Ctx(), "canopy-" + cred_id);
  ASSERT_OK(kp);
  EXPECT_NE(kp->private_key.Reveal().find("PRIVATE KEY"), std::string::npos);
  EXPECT_EQ(env.GroupsTagged("ssh-" + cred_id), 1);
  // The groups live in the simulated subnet's VPC, not in the default one.
  auto groups =
      env.Query("ec2", "DescribeSecurityGroups",
                {{"Filter.1.Name", "tag:canopy-id"}, {"Filter.1.Value.1", cluster + "-api"}});
  ASSERT_OK(groups);
  for (const auto* g : aws::XmlItems(*groups, "securityGroupInfo")) {
    EXPECT_EQ(aws::XmlText(*g, "vpcId"), env.sim().info()["vpc_id"].get<std::string>());
  }

  // A service answers from the host on the worker it runs on: its port opened by a security
  // group, which the machine's firewall follows.
  constexpr int kPort = 8080;
  const std::string sid = env.DeployHello(cluster, kPort);
  ASSERT_FALSE(sid.empty());
  std::string address = env.WaitServing(sid, kPort, env.sim().MachinesLog());
  ASSERT_FALSE(address.empty());
  std::cout << "service answers at " << address << ":" << kPort << "\n";

  // Worker actions: stop (moto's instance and its machine stop), restart, terminate, recreate
  // (a new instance); the service keeps answering from wherever it runs.
  const std::string w1 = workers[0]["id"];
  const std::string old_instance = workers[0]["provider_id"];
  auto stop = env.WorkerAction(cluster, w1, "stop");
  ASSERT_EQ(stop.value("state", ""), "succeeded") << stop.dump();
  EXPECT_EQ(env.Worker(cluster, w1)["state"], "STOPPED");
  EXPECT_TRUE(WaitFor([&] { return env.sim().MachineState(old_instance) == "stopped"; }, 10s))
      << env.sim().MachinesLog();
  ASSERT_FALSE((address = env.WaitServing(sid, kPort, env.sim().MachinesLog())).empty());
  auto restart = env.WorkerAction(cluster, w1, "restart");
  ASSERT_EQ(restart.value("state", ""), "succeeded") << restart.dump();
  EXPECT_EQ(env.Worker(cluster, w1)["state"], "ACTIVE");
  EXPECT_EQ(env.sim().MachineState(old_instance), "running");
  auto term = env.WorkerAction(cluster, w1, "terminate");
  ASSERT_EQ(term.value("state", ""), "succeeded") << term.dump();
  EXPECT_EQ(env.Worker(cluster, w1)["state"], "TERMINATED");
  EXPECT_TRUE(WaitFor([&] { return env.sim().MachineState(old_instance).empty(); }, 10s))
      << "the terminated instance's machine stays: " << env.sim().MachinesLog();
  auto recreate = env.WorkerAction(cluster, w1, "recreate");
  ASSERT_EQ(recreate.value("state", ""), "succeeded") << recreate.dump();
  auto renewed = env.Worker(cluster, w1);
  EXPECT_EQ(renewed["state"], "ACTIVE") << renewed.dump();
  EXPECT_NE(renewed["provider_id"], old_instance) << renewed.dump();
  ASSERT_TRUE(renewed["system"].is_object()) << renewed.dump();
  EXPECT_EQ(renewed["system"].value("os", ""), "Debian GNU/Linux 12 (bookworm)");
  EXPECT_EQ(env.sim().MachineState(renewed["provider_id"]), "running");
  ASSERT_FALSE((address = env.WaitServing(sid, kPort, env.sim().MachinesLog())).empty());

  // Delete everything: the service, the workers, the cluster.
  env.UndeployAndDelete(sid, address, kPort);
  for (const auto& w : env.Call("GET", "/api/v1/clusters/" + cluster + "/workers").json) {
    auto done = env.WorkerAction(cluster, w["id"], "delete");
    ASSERT_EQ(done.value("state", ""), "succeeded") << done.dump();
  }
  auto d = env.Call("DELETE", "/api/v1/clusters/" + cluster);
  ASSERT_EQ(d.status, 202) << d.body;
  auto deleted = env.WaitOperation(d.json["operation_id"], 120s);
  ASSERT_EQ(deleted.value("state", ""), "succeeded") << deleted.dump();

  // Nothing left in moto (no live instance, no cluster group, no IAM user) or on the host (no
  // machine, no namespace of the simulator's).
  auto left = provider.FindInstancesByTag(env.Ctx(), providers::kClusterTag, cluster);
  ASSERT_OK(left);
  EXPECT_TRUE(left->empty());
  EXPECT_EQ(env.GroupsTagged(cluster + "-api"), 0);
  EXPECT_FALSE(env.IamUserExists("canopy-cluster-" + cluster));
  EXPECT_TRUE(WaitFor([&] { return env.sim().MachineCount() == 0; }, 15s))
      << env.sim().MachinesLog();

  // Neither the adapter nor the root logged a secret.
  for (const std::string& log :
       {ReadFile(env.adapter().log_path()), ReadFile(env.root().log_path())}) {
    EXPECT_EQ(log.find(secret_key), std::string::npos);
    EXPECT_EQ(log.find("PRIVATE KEY"), std::string::npos);
  }
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
