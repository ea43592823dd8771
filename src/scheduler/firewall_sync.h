// Firewalls follow deployments (thesis §3.3.2). For every cloud cluster, a worker's instance has
// exactly the per-service firewalls of the services that have an instance on its node: one
// firewall per (cluster, service) with the service's ports (canopy id "<cluster>-svc-<service>",
// ids kept in the cluster's ClusterCloud::service_firewalls), attached while at least one instance
// of that service runs on the node and detached when the last one leaves. Two services sharing a
// port on a node are two firewalls, so the port stays open until the last user is gone (the
// reference count per node, port and protocol is the set of attached firewalls).
//
// Every change is made with the cluster's limited identity (created by cluster.create; a
// provider without identities gets the cluster's credential). Edge nodes (no worker row) are
// left alone. Triggers are fire-and-forget (Trigger() only wakes the thread; the deploy path
// never waits for a cloud call); a pass also runs every `interval`, and every `resync` it reads
// the instances' attached firewalls back from the provider, so missed triggers, restarts of
// any tier and changes made behind Canopy's back are repaired.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "control/cloud_access.h"
#include "core/types.h"
#include "store/store.h"

namespace canopy::scheduler {

struct FirewallSyncOptions {
  std::chrono::milliseconds interval{5000};
  std::chrono::seconds resync{30};
};

// The per-service firewalls each worker should have: worker id -> service ids. Pure (unit-tested).
// Counts instances of `cluster_id` that are on a node (not pending, not being removed) and whose
// service exposes ports; workers are matched by node id; workers without instance or node are
// listed with an empty set.
std::map<std::string, std::set<std::string>> DesiredServiceFirewalls(
    const std::string& cluster_id, const std::vector<core::Worker>& workers,
    const std::vector<core::ServiceInstance>& instances,
    const std::vector<core::Service>& services);

// One cluster's firewall changes, planned without I/O.
struct FirewallPlanInput {
  std::map<std::string, std::set<std::string>> desired;   // DesiredServiceFirewalls
  std::map<std::string, std::string> known;               // service id -> its firewall id
  std::map<std::string, std::set<std::string>> attached;  // worker id -> firewall ids on its
                                                          // instance (workers with an instance)
};
struct FirewallPlan {
  std::vector<std::string> create;  // services needing a firewall: make them, then plan again
  std::vector<std::pair<std::string, std::string>> attach;  // (worker id, firewall id)
  std::vector<std::pair<std::string, std::string>> detach;  // managed firewalls no longer wanted
  std::vector<std::string> remove;  // services whose firewall is no longer needed or attached
  bool Empty() const {
    return create.empty() && attach.empty() && detach.empty() && remove.empty();
  }
};
FirewallPlan PlanFirewalls(const FirewallPlanInput& in);

class FirewallSync {
 public:
  FirewallSync(store::Store& store, ClockPtr clock, control::CloudAccess& clouds,
               FirewallSyncOptions opts);
  ~FirewallSync();
  void Start();
  void Stop();
  void Trigger();
  // One pass over every cloud cluster; the first error of a cluster is logged and the others
  // go on. Returns the number of attach/detach/create/delete calls made.
  Result<int> RunOnce();

 private:
  Result<int> SyncCluster(const core::Cluster& c, const std::vector<core::Worker>& workers,
                          const std::vector<core::ServiceInstance>& instances,
                          const std::vector<core::Service>& services);

  store::Store& store_;
  ClockPtr clock_;
  control::CloudAccess& clouds_;
  FirewallSyncOptions opts_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool triggered_ = false;
  bool stop_ = false;
  std::thread thread_;
  // What is attached to each instance (canopy id of the instance -> firewall ids), as last read
  // from the provider or changed by this sync; re-read every `resync`. Sync thread only.
  std::map<std::string, std::set<std::string>> attached_;
  std::map<std::string, TimePoint> read_at_;
};

}  // namespace canopy::scheduler
