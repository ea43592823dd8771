// The root's service scheduler: one thread that makes service instances follow the services'
// desired state (deployed, replicas). It is the only writer of service_instances. Each pass:
//  - creates a `pending` row per missing replica (job id "<service id>-r<N>"), and removes rows
//    beyond the replica count or of undeployed services (undeploy_job to their cluster first);
//  - places pending rows: ClusterPicker over the ACTIVE clusters' last reported nodes minus what
//    is already placed; no fit -> stays `pending` with reason code no_worker_capacity, retried
//    every `pending_retry` (a new worker or a freed node lets it deploy);
//  - sends deploy_job and follows the command: success -> `starting` on the node the cluster
//    chose; resource_exhausted -> back to pending; then follows the cluster's job reports (state,
//    node, address; a drained job shows up on its new node);
//  - re-pends instances their cluster no longer reports (two reports in a row: drained back to
//    root, cluster data lost) or whose cluster row is gone; adopts a job a cluster reports for a
//    pending row (a root killed between sending deploy_job and saving the row); and undeploys
//    jobs a cluster runs that no row places there (orphans).
// Crash-safe by construction: the row is written before the command, and every pass starts from
// the rows and the clusters' reports. Each pass is planned by the pure PlanPass
// (service_plan.h) and applied here. Policy and states: docs/services.md.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "control/cluster_commands.h"
#include "control/service_board.h"
#include "scheduler/placement.h"
#include "scheduler/service_plan.h"
#include "store/store.h"

namespace canopy::scheduler {

struct SchedulerOptions {
  std::chrono::milliseconds interval{1000};  // a pass at least this often
  PlanOptions plan;
};

class ServiceScheduler {
 public:
  // `on_change` runs (on the scheduler thread) after a pass that changed any instance; the
  // firewall sync hangs on it. `picker` null = MostFreeMemoryPicker.
  ServiceScheduler(store::Store& store, ClockPtr clock, control::ClusterCommands& commands,
                   control::ServiceBoard& board, SchedulerOptions opts,
                   std::unique_ptr<ClusterPicker> picker = nullptr,
                   std::function<void()> on_change = nullptr);
  ~ServiceScheduler();
  void Start();
  void Stop();
  // One pass (the thread calls it; tests call it directly without Start()).
  Status RunOnce();

 private:
  Result<PlanInput> Snapshot();
  // Applies one action; returns whether it changed an instance row.
  Result<bool> Apply(const SchedulerAction& a);

  store::Store& store_;
  ClockPtr clock_;
  control::ClusterCommands& commands_;
  control::ServiceBoard& board_;
  SchedulerOptions opts_;
  std::unique_ptr<ClusterPicker> picker_;
  std::function<void()> on_change_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  SchedulerMemory memory_;  // thread-confined
};

}  // namespace canopy::scheduler
