// The cloud-cluster path by hand (what the broker will automate, docs/decisions/broker-flows.md):
// a local instance is created, `canopyd cluster` is installed on it over SSH with a cluster token,
// and the cluster dials the root from inside its namespace (through the bridge address) and pairs:
// the root shows it ACTIVE with the URL it advertised. The instance runs the blank image new
// clusters get (scripts/local-images.sh), so the installer logs in as its `admin`. Root only.
#include <chrono>
#include <memory>

#include "common/ids.h"
#include "common/json.h"
#include "install/installer.h"
#include "providers/local/local_provider.h"
#include "support/daemons.h"
#include "support/local_env.h"
#include "support/test_util.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;
using providers::CallContext;
using providers::CredentialSecret;

TEST(ClusterOnLocalInstance, InstalledClusterPairsWithTheRootFromItsNamespace) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "the local provider needs root";
  ASSERT_TRUE(ExpectBlankImageBuilt());
  TempDir tmp;
  LocalTestNet net;
  RootDaemon root(tmp.str() + "/root");
  root.SetListenHost("0.0.0.0");  // instances reach the host through the bridge address
  root.Start();
  std::string admin = root.AdminToken();

  auto provider = providers::local::LocalProvider::Create(net.Options());
  ASSERT_OK(provider);
  CallContext ctx{CredentialSecret(Json::object()), "local"};
  auto kp = (*provider)->CreateKeyPair(ctx, "e2e");
  ASSERT_OK(kp);
  providers::FirewallSpec fw;
  fw.canopy_id = "fw-" + RandomHex(4);
  fw.name = fw.canopy_id;
  fw.rules = {providers::FirewallRule{22, "tcp", {}}, providers::FirewallRule{7443, "tcp", {}}};
  auto firewall = (*provider)->CreateFirewall(ctx, fw);
  ASSERT_OK(firewall);
  providers::InstanceSpec spec;
  spec.canopy_id = "cls-e2e-" + RandomHex(4);
  spec.idempotency_key = spec.canopy_id;
  spec.instance_type = "local.small";
  spec.image = kBlankTestImage;
  spec.key_pair = "e2e";
  spec.firewalls = {firewall->id};
  auto created = (*provider)->CreateInstance(ctx, spec);
  ASSERT_OK(created);
  auto vm = (*provider)->WaitUntilRunning(ctx, created->handle, 30s);
  ASSERT_OK(vm);

  auto tok = root.Call("POST", "/api/v1/cluster-tokens", R"({"name":"cloud-1"})", admin);
  ASSERT_EQ(tok.status, 201) << tok.body;
  std::string cluster_id = tok.json["cluster_id"];
  // The root listens on every address: TLS, pinned by the fingerprint the token came with.
  const std::string root_url = "https://" + net.gateway() + ":" + std::to_string(root.port());
  const std::string cluster_url = "https://" + vm->address + ":7443";
  const std::string fingerprint = tok.json.value("ca_fingerprint", "");
  ASSERT_TRUE(fingerprint.starts_with("sha256:")) << tok.body;

  install::SshTarget target{vm->address, vm->ssh_port, vm->ssh_user, kp->private_key,
                            vm->host_key_sha256};
  install::ComponentSpec comp;
  comp.name = "cluster";
  comp.binary_path = CanopydPath() + "-dist";
  comp.argv = {"cluster",  "--root",           root_url,          "--data-dir", "cluster-data",
               "--listen", "0.0.0.0:7443",     "--advertise-url", cluster_url,  "--link-interval",
               "1",        "--ca-fingerprint", fingerprint};
  comp.env = {{"CANOPY_CLUSTER_TOKEN", tok.json["token"].get<std::string>()}};
  auto report = install::SshInstaller().Install(target, comp);
  ASSERT_OK(report);

  Json cluster;
  ASSERT_TRUE(WaitFor(
      [&] {
        cluster = root.Call("GET", "/api/v1/clusters/" + cluster_id, "", admin).json;
        return cluster.value("state", "") == "ACTIVE";
      },
      30s))
      << cluster.dump() << "\n"
      << ReadFile(root.log_path());
  EXPECT_EQ(cluster["url"], cluster_url) << cluster.dump();
  // The cluster's own API answers from the host through the instance firewall.
  EXPECT_EQ(CallApi(cluster_url, "GET", "/healthz").status, 200);

  // Stopping the instance ends the cluster: the root marks it OFFLINE (3 missed 1 s links).
  ASSERT_OK((*provider)->StopInstance(ctx, created->handle));
  EXPECT_TRUE(WaitFor(
      [&] {
        return root.Call("GET", "/api/v1/clusters/" + cluster_id, "", admin)
                   .json.value("state", "") == "OFFLINE";
      },
      15s));
  ASSERT_OK((*provider)->TerminateInstance(ctx, created->handle));
}

}  // namespace
}  // namespace canopy::testing
