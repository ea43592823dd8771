// The service scheduler's pure planner: from one snapshot (services, instance rows, clusters,
// the clusters' last job reports and the commands the rows wait on) to the actions of one pass.
// No I/O: ServiceScheduler gathers the snapshot and applies the actions (service_scheduler.h);
// table tests drive the planner directly. What a pass does is described in service_scheduler.h.
// Thread-compatible (the memory belongs to the one scheduler thread).
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/json.h"
#include "control/service_board.h"
#include "core/types.h"
#include "scheduler/placement.h"

namespace canopy::scheduler {

struct PlanOptions {
  std::chrono::milliseconds pending_retry{2000};  // placing a pending instance again
  int missing_reports_for_lost = 2;               // reports without a job before it is lost
  std::chrono::seconds orphan_retry{10};          // undeploying the same orphan again
};

// What the scheduler remembers between passes (rebuilt from rows and reports after a restart).
struct SchedulerMemory {
  struct Missing {
    uint64_t last_seq = 0;
    int count = 0;
  };
  std::map<std::string, TimePoint> next_try;     // job -> earliest next placement
  std::map<std::string, uint64_t> baseline;      // job -> report seq when it was deployed
  std::map<std::string, Missing> missing;        // job -> reports without it
  std::map<std::string, TimePoint> orphan_sent;  // cluster/job -> last undeploy sent
};

struct PlanInput {
  std::vector<core::Service> services;
  std::vector<core::ServiceInstance> instances;
  std::vector<core::Cluster> clusters;
  std::map<std::string, control::ServiceBoard::Report> reports;  // by cluster id
  std::map<std::string, core::ClusterCommand> commands;          // by id: the rows' command_id
  TimePoint now{};
};

struct SchedulerAction {
  enum class Kind {
    kPut,             // write `instance`
    kDrop,            // delete the row of instance.job_id
    kUndeploy,        // send undeploy_job to instance.cluster_id, then write `instance` (removing)
                      // with the command's id; nothing when the command cannot be sent
    kDeploy,          // write `instance` (scheduled), send deploy_job with `args` to
                      // instance.cluster_id, write it again with the command's id (back to
                      // pending with the reason when the command cannot be sent)
    kUndeployOrphan,  // send undeploy_job for `job_id` to `cluster_id`; no row
  };
  Kind kind = Kind::kPut;
  std::string log;  // what happened, for the daemon's log ("" = nothing worth a line)
  core::ServiceInstance instance;
  Json args;
  std::string cluster_id;
  std::string job_id;
};

// One pass. Updates `memory`. The actions are in the order they must be applied.
std::vector<SchedulerAction> PlanPass(const PlanInput& in, const PlanOptions& opts,
                                      const ClusterPicker& picker, SchedulerMemory& memory);

// The deploy_job arguments of instance `i` of `s` (src/cluster/README.md "Jobs").
Json DeployArgs(const core::Service& s, const core::ServiceInstance& i);
// A job id of the form the scheduler gives its instances: "svc-<…>-r<N>" (N decimal digits).
bool IsSchedulerJobId(const std::string& job_id);

}  // namespace canopy::scheduler
