// BrokerHarness: the broker's four operation kinds in one test process, without root privileges,
// namespaces or SSH: an InProcessRoot whose providers are one in-memory FakeProvider (the cloud),
// FakeInstaller standing in for SSH installs, and FakeClusters standing in for the installed
// `canopyd cluster` and `canopyd node` processes (they pair, link and answer commands through the
// root's ClusterTier, as the real ones do over HTTP). Crash injection: CrashOnce drops an
// operation right after a named step returns, as a kill -9 of the root would; the lease runs out
// and the engine resumes it. Not thread-safe; one per test.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "broker/broker.h"
#include "control/adapters.h"
#include "install/installer.h"
#include "providers/fake/fake_provider.h"
#include "support/in_process_root.h"
#include "support/test_util.h"

namespace canopy::testing {

// A ProviderOpener that gives the same in-process provider for one type.
class SharedProviderOpener final : public control::ProviderOpener {
 public:
  SharedProviderOpener(std::string type, std::shared_ptr<providers::Provider> p)
      : type_(std::move(type)), p_(std::move(p)) {}
  // Any adapter id: there is one provider per type here.
  Result<std::shared_ptr<providers::Provider>> ForAdapter(const std::string& type,
                                                          const std::string& adapter_id) override;

 private:
  std::string type_;
  std::shared_ptr<providers::Provider> p_;
};

// The clusters and nodes the broker installs, in process.
class FakeClusters {
 public:
  explicit FakeClusters(control::ClusterTier& tier);
  ~FakeClusters();
  // `canopyd cluster` on the instance at `host`: pairs with the token and keeps linking.
  Status StartCluster(const std::string& host, const install::ComponentSpec& spec);
  // `canopyd node` at `host`: registers with the cluster whose URL its argv names.
  Status StartNode(const std::string& host, const install::ComponentSpec& spec);
  int node_count();

 private:
  struct Cluster;
  void LinkLoop(Cluster* c);

  control::ClusterTier& tier_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Cluster>> by_url_;
};

class FakeInstaller final : public install::Installer {
 public:
  explicit FakeInstaller(FakeClusters& clusters) : clusters_(clusters) {}
  Result<install::InstallReport> Install(const install::SshTarget& target,
                                         const install::ComponentSpec& spec) const override;
  // The next preflight of component `name` fails as an unreachable tier above would.
  void FailPreflightOf(const std::string& name);
  int installs(const std::string& name) const;

 private:
  FakeClusters& clusters_;
  mutable std::mutex mu_;
  mutable std::map<std::string, int> installs_;
  mutable std::set<std::string> fail_preflight_;
};

class BrokerHarness {
 public:
  // `tweak` adjusts the broker's options before its kinds are registered.
  explicit BrokerHarness(std::function<void(broker::BrokerOptions&)> tweak = nullptr);
  ~BrokerHarness();

  providers::fake::FakeProvider& cloud() { return *cloud_; }
  InProcessRoot& root() { return *root_; }
  control::CloudClusters& clusters() { return root_->core().cloud_clusters(); }
  FakeInstaller& installer() { return *installer_; }
  FakeClusters& fake_clusters() { return *fake_clusters_; }
  const std::string& credential_id() const { return credential_id_; }

  // The next time a step named `step` of an operation of `kind` (with data.action == `action`
  // when given) returns, the engine drops the operation without recording the step. Once.
  void CrashOnce(const std::string& kind, const std::string& step, const std::string& action = "");
  bool crashed() const { return crashed_; }

  // POST /api/v1/clusters as the API would: fake.small workers, fake-debian-12.
  control::ClusterStarted CreateCluster(const std::string& name, int workers);
  // Polls the operation until it succeeded or failed (or `timeout`); returns the last view.
  core::Operation Wait(const std::string& op_id,
                       std::chrono::seconds timeout = std::chrono::seconds(60));
  core::Cluster Cluster(const std::string& id);
  std::vector<core::Worker> Workers(const std::string& cluster_id);
  // Live instances in the fake cloud tagged canopy-id=`canopy_id`.
  int InstancesTagged(const std::string& canopy_id);

 private:
  TempDir dir_;
  std::shared_ptr<providers::fake::FakeProvider> cloud_;
  std::unique_ptr<InProcessRoot> root_;
  std::unique_ptr<FakeClusters> fake_clusters_;
  std::unique_ptr<FakeInstaller> installer_;
  std::mutex crash_mu_;
  std::string crash_kind_, crash_step_, crash_action_;
  std::atomic<bool> crashed_{false};
  std::string credential_id_;
};

}  // namespace canopy::testing
