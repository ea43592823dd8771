#include "scheduler/service_scheduler.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace canopy::scheduler {

using Kind = SchedulerAction::Kind;

ServiceScheduler::ServiceScheduler(store::Store& store, ClockPtr clock,
                                   control::ClusterCommands& commands, control::ServiceBoard& board,
                                   SchedulerOptions opts, std::unique_ptr<ClusterPicker> picker,
                                   std::function<void()> on_change)
    : store_(store),
      clock_(std::move(clock)),
      commands_(commands),
      board_(board),
      opts_(opts),
      picker_(std::move(picker)),
      on_change_(std::move(on_change)) {
  if (!picker_) picker_ = std::make_unique<MostFreeMemoryPicker>();
}

ServiceScheduler::~ServiceScheduler() { Stop(); }

void ServiceScheduler::Start() {
  thread_ = std::thread([this] {
    while (!stop_) {
      auto st = RunOnce();
      if (!st) SPDLOG_WARN("Scheduler pass failed error={}", st.error().ToString());
      board_.WaitForWake(opts_.interval);
    }
  });
}

void ServiceScheduler::Stop() {
  stop_ = true;
  board_.Wake();
  if (thread_.joinable()) thread_.join();
}

Result<PlanInput> ServiceScheduler::Snapshot() {
  PlanInput in;
  CANOPY_ASSIGN_OR_RETURN(in.services, store_.services().List());
  CANOPY_ASSIGN_OR_RETURN(in.instances, store_.services().ListInstances(""));
  CANOPY_ASSIGN_OR_RETURN(in.clusters, store_.clusters().List());
  in.reports = board_.Reports();
  for (const auto& i : in.instances) {
    if (i.command_id.empty()) continue;
    if (auto c = commands_.Get(i.command_id)) in.commands[i.command_id] = std::move(*c);
  }
  in.now = clock_->Now();
  return in;
}

Result<bool> ServiceScheduler::Apply(const SchedulerAction& a) {
  core::ServiceInstance i = a.instance;
  switch (a.kind) {
    case Kind::kPut:
      CANOPY_TRY(store_.services().PutInstance(i));
      return true;
    case Kind::kDrop: {
      auto st = store_.services().DeleteInstance(i.job_id);
      if (!st && st.error().code != ErrorCode::kNotFound) return st.error();
      SPDLOG_INFO("Instance removed job={}", i.job_id);
      return true;
    }
    case Kind::kUndeploy: {
      auto c =
          commands_.Enqueue(i.cluster_id, core::CommandType::kUndeployJob, {{"job_id", i.job_id}});
      if (!c) {
        SPDLOG_WARN("Cannot send undeploy_job job={} error={}", i.job_id, c.error().ToString());
        return false;
      }
      i.command_id = c->id;
      CANOPY_TRY(store_.services().PutInstance(i));
      SPDLOG_INFO("Instance undeploying job={} cluster={}", i.job_id, i.cluster_id);
      return true;
    }
    case Kind::kDeploy: {
      CANOPY_TRY(store_.services().PutInstance(i));
      auto c = commands_.Enqueue(i.cluster_id, core::CommandType::kDeployJob, a.args);
      if (!c) {
        std::string cluster = i.cluster_id;
        i.cluster_id.clear();
        i.state = core::InstanceState::kPending;
        i.reason = "cannot reach cluster " + cluster + ": " + c.error().message;
        CANOPY_TRY(store_.services().PutInstance(i));
        return true;
      }
      i.command_id = c->id;
      CANOPY_TRY(store_.services().PutInstance(i));
      SPDLOG_INFO("Instance scheduled job={} cluster={} command={}", i.job_id, i.cluster_id, c->id);
      return true;
    }
    case Kind::kUndeployOrphan:
      SPDLOG_INFO("Undeploying orphan job job={} cluster={}", a.job_id, a.cluster_id);
      (void)commands_.Enqueue(a.cluster_id, core::CommandType::kUndeployJob,
                              {{"job_id", a.job_id}});
      return false;
  }
  return false;
}

Status ServiceScheduler::RunOnce() {
  CANOPY_ASSIGN_OR_RETURN(PlanInput in, Snapshot());
  auto actions = PlanPass(in, opts_.plan, *picker_, memory_);
  bool changed = false;
  for (const auto& a : actions) {
    if (!a.log.empty()) SPDLOG_INFO("{}", a.log);
    CANOPY_ASSIGN_OR_RETURN(bool c, Apply(a));
    changed = changed || c;
  }
  if (changed && on_change_) on_change_();
  return OkStatus();
}

}  // namespace canopy::scheduler
