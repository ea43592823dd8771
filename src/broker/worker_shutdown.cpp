// worker.shutdown (stop, terminate, delete): drain -> shutdown -> finish (src/broker/README.md).
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "broker/detail/common.h"
#include "control/operation_kinds.h"
#include "store/row_mutations.h"

namespace canopy::broker {
namespace {

using namespace std::chrono_literals;
using namespace detail;
using core::WorkerAction;
using ops::StepContext;
using ops::StepResult;

class WorkerShutdownKind final : public ops::OperationKind {
 public:
  struct Run {
    StepContext& ctx;
    core::Worker w;
    WorkerAction action;
  };
  using Table = std::vector<StepDef<WorkerShutdownKind, Run>>;

  WorkerShutdownKind(BrokerDeps deps, BrokerOptions opts)
      : deps_(std::move(deps)), opts_(std::move(opts)) {}
  std::string Name() const override { return control::kOpWorkerShutdown; }
  std::vector<std::string> Steps() const override { return StepNames(StepTable()); }
  Result<std::vector<std::string>> StepsFor(const Json& data) const override {
    CANOPY_ASSIGN_OR_RETURN(std::string action, GetString(data, "action", 16));
    auto a = core::ParseWorkerAction(action);
    if (!a || core::BootsInstance(*a)) return Error::InvalidArgument("unknown shutdown action");
    CANOPY_TRY(GetString(data, "worker_id", 64));
    return Steps();
  }

  Result<StepResult> RunStep(size_t step, StepContext& ctx) override {
    auto action = core::ParseWorkerAction(ctx.op.data.value("action", ""));
    if (!action) return Error::Internal("unknown shutdown action");
    CANOPY_ASSIGN_OR_RETURN(std::string wid, GetString(ctx.op.data, "worker_id", 64));
    auto got = ctx.store.workers().Get(wid);
    if (!got && got.error().code == ErrorCode::kNotFound) return StepResult::Succeed();
    CANOPY_ASSIGN_OR_RETURN(core::Worker w, std::move(got));
    if (w.operation_id != ctx.op.id) return StepResult::Succeed();  // a newer action took over
    Run run{ctx, std::move(w), *action};
    return RunTableStep(*this, StepTable(), step, run);
  }

  void OnFailed(StepContext& ctx) override {
    std::string message = ErrorText(ctx.op, "shutdown failed");
    (void)store::MutateWorker(ctx.store, ctx.clock, ctx.op.data.value("worker_id", ""),
                              [&](core::Worker& w) {
                                if (w.operation_id == ctx.op.id) {
                                  w.state = core::WorkerState::kFailed;
                                  w.last_error = message;
                                }
                                return OkStatus();
                              });
  }

 private:
  static const Table& StepTable() {
    static const Table table = {
        {"drain", &WorkerShutdownKind::Drain},
        {"shutdown", &WorkerShutdownKind::Shutdown},
        {"finish", &WorkerShutdownKind::Finish},
    };
    return table;
  }

  // The cluster marks the node draining (no new jobs) and moves its jobs to other nodes, or
  // gives them back to the root when none has room (the scheduler places them in another cluster
  // or keeps them pending); then wait until each runs elsewhere (scheduler::JobsNotYetMoved), at
  // most drain_timeout. A timeout goes on with the shutdown and leaves the reason in the worker's
  // last_error. Progress lives in op.data.drain, so a restarted root goes on where it was.
  Result<StepResult> Drain(Run& run) {
    StepContext& ctx = run.ctx;
    const core::Worker& w = run.w;
    if (w.node_id.empty()) return StepResult::Next();
    Json drain = ctx.op.data.value("drain", Json::object());
    const int64_t now_ms = UnixMillis(ctx.clock.Now());
    if (!drain.contains("command_id")) {
      auto cmd = deps_.commands->Enqueue(w.cluster_id, core::CommandType::kDrainNode,
                                         {{"node_id", w.node_id}});
      if (!cmd) {
        if (cmd.error().code == ErrorCode::kNotFound) return StepResult::Next();
        return cmd.error();
      }
      drain = {{"command_id", cmd->id}, {"started_ms", now_ms}};
      ctx.op.data["drain"] = drain;
      SPDLOG_INFO("Draining worker worker={} node={} command={}", w.id, w.node_id, cmd->id);
      return StepResult::Wait(200ms);
    }
    const int64_t elapsed_ms = now_ms - drain.value("started_ms", now_ms);
    const bool late =
        elapsed_ms >
        std::chrono::duration_cast<std::chrono::milliseconds>(opts_.drain_timeout).count();
    auto finish = [&](const std::string& outcome, bool problem) -> Result<StepResult> {
      ctx.op.data["drain"]["outcome"] = outcome;
      if (problem) {
        SPDLOG_WARN("Drain of worker incomplete worker={} outcome={}", w.id, outcome);
        (void)store::MutateWorker(ctx.store, ctx.clock, w.id, [&](core::Worker& row) {
          row.last_error = "drain: " + outcome;
          return OkStatus();
        });
      } else {
        SPDLOG_INFO("Worker drained worker={} outcome={}", w.id, outcome);
      }
      return StepResult::Next();
    };
    if (!drain.contains("jobs")) {
      auto cmd = deps_.commands->Get(drain["command_id"].get<std::string>());
      if (!cmd) {
        if (cmd.error().code == ErrorCode::kNotFound)
          return finish("the drain command is gone", true);
        return cmd.error();
      }
      if (cmd->state == core::ClusterCommandState::kPending) {
        if (late) {
          return finish(fmt::format("timed out after {} s: the cluster did not answer",
                                    opts_.drain_timeout.count()),
                        true);
        }
        return StepResult::Wait(250ms);
      }
      if (cmd->state == core::ClusterCommandState::kFailed) {
        return finish("the cluster could not drain the node: " + cmd->error_message, true);
      }
      Json jobs = Json::array();
      for (const char* list : {"moved", "returned"}) {
        for (const auto& j : cmd->result.value(list, Json::array())) {
          if (j.is_object() && j.contains("job_id") && j["job_id"].is_string())
            jobs.push_back(j["job_id"]);
        }
      }
      ctx.op.data["drain"]["jobs"] = jobs;
      ctx.op.data["drain"]["moved"] = cmd->result.value("moved", Json::array()).size();
      ctx.op.data["drain"]["returned"] = cmd->result.value("returned", Json::array()).size();
      drain = ctx.op.data["drain"];
    }
    std::vector<std::string> jobs;
    for (const auto& j : drain["jobs"]) jobs.push_back(j.get<std::string>());
    CANOPY_ASSIGN_OR_RETURN(auto waiting,
                            scheduler::JobsNotYetMoved(ctx.store, jobs, w.node_id, deps_.tcp));
    if (waiting.empty()) {
      return finish(
          fmt::format(
              "{} job(s) running elsewhere ({} moved in the cluster, {} given back to root)",
              jobs.size(), drain.value("moved", 0), drain.value("returned", 0)),
          false);
    }
    if (late) {
      return finish(
          fmt::format("timed out after {} s: {} job(s) not running elsewhere yet ({}); "
                      "shutting down anyway",
                      opts_.drain_timeout.count(), waiting.size(), fmt::join(waiting, ", ")),
          true);
    }
    return StepResult::Wait(300ms);
  }

  // Stop the instance, or terminate it and anything made under the worker's canopy id whose
  // handle was never saved.
  Result<StepResult> Shutdown(Run& run) {
    const core::Worker& w = run.w;
    CANOPY_ASSIGN_OR_RETURN(core::Cluster c, run.ctx.store.clusters().Get(w.cluster_id));
    CANOPY_ASSIGN_OR_RETURN(Cloud cloud, OpenCloud(*deps_.clouds, c));
    auto& p = cloud.provider();
    if (run.action == WorkerAction::kStop) {
      CANOPY_ASSIGN_OR_RETURN(providers::ProviderHandle h, HandleOf(w.handle));
      CANOPY_TRY(p.StopInstance(cloud.ctx, h));
      return StepResult::Next();
    }
    if (!w.handle.is_null()) {
      CANOPY_ASSIGN_OR_RETURN(providers::ProviderHandle h, HandleOf(w.handle));
      CANOPY_TRY(p.TerminateInstance(cloud.ctx, h));
    }
    CANOPY_ASSIGN_OR_RETURN(
        auto found, p.FindInstancesByTag(cloud.ctx, providers::kCanopyIdTag, w.InstanceCanopyId()));
    for (const auto& inst : found) CANOPY_TRY(p.TerminateInstance(cloud.ctx, inst.handle));
    return StepResult::Next();
  }

  Result<StepResult> Finish(Run& run) {
    const core::Worker& w = run.w;
    if (run.action == WorkerAction::kDelete) {
      CANOPY_TRY(run.ctx.store.workers().Delete(w.id));
      SPDLOG_INFO("Worker deleted worker={} name={}", w.id, w.name);
      return StepResult::Next();
    }
    CANOPY_TRY(store::MutateWorker(run.ctx.store, run.ctx.clock, w.id, [&](core::Worker& row) {
      if (run.action == WorkerAction::kStop) {
        row.state = core::WorkerState::kStopped;
      } else {
        row.state = core::WorkerState::kTerminated;
        row.handle = nullptr;
        row.address.clear();
        row.node_id.clear();
      }
      return OkStatus();
    }));
    SPDLOG_INFO("Worker {} worker={}", run.action == WorkerAction::kStop ? "stopped" : "terminated",
                w.id);
    return StepResult::Next();
  }

  BrokerDeps deps_;
  BrokerOptions opts_;
};

}  // namespace

ops::OperationKindPtr NewWorkerShutdownKind(const BrokerDeps& deps, const BrokerOptions& opts) {
  return std::make_unique<WorkerShutdownKind>(deps, opts);
}

}  // namespace canopy::broker
